//! Parse, don't validate: a request body becomes domain values (`PostTitle`, `Tags`, …) in one
//! step, or the full list of its invalid fields. Handlers receive only parsed values, so no
//! value is checked in one place and parsed again in another.

use aggregates::values::{Tags, ValueError};
use serde::de::DeserializeOwned;

use crate::http::error::FieldError;

/// A request body that turns into domain values.
pub trait Parse: DeserializeOwned {
    type Output;

    /// The parsed input, or every field that is not acceptable (each with its JSON path).
    fn parse(self) -> Result<Self::Output, Vec<FieldError>>;
}

/// Collects field errors while a body is parsed, so one answer names every bad field.
#[derive(Default)]
pub struct Fields(Vec<FieldError>);

impl Fields {
    /// The parsed value, or `None` with the error recorded against `field`.
    pub fn take<T>(&mut self, field: &str, parsed: Result<T, ValueError>) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(e) => {
                self.0.push(FieldError::new(field, e.code, e.message));
                None
            }
        }
    }

    /// For a field that may be absent: `Some(None)` when it is, `None` when it is invalid.
    pub fn optional<R, T>(
        &mut self,
        field: &str,
        raw: Option<R>,
        parse: impl FnOnce(R) -> Result<T, ValueError>,
    ) -> Option<Option<T>> {
        match raw {
            None => Some(None),
            Some(raw) => self.take(field, parse(raw)).map(Some),
        }
    }

    /// Tags, with each bad tag named by its index (`tags[2]`).
    pub fn tags(&mut self, field: &str, raw: &[String]) -> Option<Tags> {
        match Tags::parse(raw) {
            Ok(tags) => Some(tags),
            Err(errors) => {
                for (index, e) in errors {
                    let path = index.map_or_else(|| field.to_owned(), |i| format!("{field}[{i}]"));
                    self.0.push(FieldError::new(path, e.code, e.message));
                }
                None
            }
        }
    }

    /// A free-text field of `min..=max` characters, kept as given.
    pub fn text(&mut self, field: &str, raw: String, min: usize, max: usize) -> Option<String> {
        let length = raw.chars().count();
        if (min..=max).contains(&length) {
            Some(raw)
        } else {
            self.refuse(
                field,
                "LENGTH",
                format!("must be {min} to {max} characters"),
            );
            None
        }
    }

    /// Records an error that no value parser produced.
    pub fn refuse(&mut self, field: impl Into<String>, code: &str, message: impl Into<String>) {
        self.0.push(FieldError::new(field, code, message));
    }

    /// The parsed value when no field was refused. `value` is what the parse built from the
    /// fields' `Option`s, so it is `Some` exactly when every one of them was accepted.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, Vec<FieldError>> {
        match value {
            Some(value) if self.0.is_empty() => Ok(value),
            _ => {
                let mut errors = self.0;
                errors.sort_by(|a, b| a.field.cmp(&b.field));
                Err(errors)
            }
        }
    }
}

/// An optional enumeration field: `Some(None)` when absent, `None` (refused) when unknown.
pub fn one_of<T>(
    fields: &mut Fields,
    field: &str,
    raw: Option<&str>,
    parse: impl FnOnce(&str) -> Option<T>,
    message: &str,
) -> Option<Option<T>> {
    fields.optional(field, raw, |raw| {
        parse(raw).ok_or_else(|| ValueError {
            code: "ENUM",
            message: message.to_owned(),
        })
    })
}

#[cfg(test)]
mod tests {
    use aggregates::values::PostTitle;

    use super::*;

    #[test]
    fn every_refused_field_is_reported_in_path_order() {
        let mut fields = Fields::default();
        let tags = fields.tags("tags", &["ok".into(), "Not A Tag!".into()]);
        let title = fields.take("title", PostTitle::parse(""));
        let errors = fields
            .finish(tags.zip(title))
            .expect_err("two fields are refused");
        let paths: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(paths, ["tags[1]", "title"]);
    }

    #[test]
    fn an_absent_optional_field_is_accepted_and_an_invalid_one_refused() {
        let mut fields = Fields::default();
        let absent = fields.optional("title", None::<&str>, PostTitle::parse);
        let invalid = fields.optional("body", Some(""), PostTitle::parse);
        assert!(matches!(absent, Some(None)));
        assert!(invalid.is_none());
        let errors = fields.finish(Some(())).expect_err("body is refused");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "body");
    }

    #[test]
    fn text_counts_characters_not_bytes() {
        let mut fields = Fields::default();
        assert!(fields.text("name", "é".repeat(100), 1, 100).is_some());
        assert!(fields.text("name", String::new(), 1, 100).is_none());
        let errors = fields.finish(Some(())).expect_err("empty name refused");
        assert_eq!(errors[0].code, "LENGTH");
        assert_eq!(errors[0].message, "must be 1 to 100 characters");
    }
}
