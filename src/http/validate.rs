//! Request validation with the domain's own parsers, reported through `validator`'s error
//! types so every body goes through the same `ValidatedJson` path.

use std::borrow::Cow;

use aggregates::values::{Tags, ValueError};
use validator::{ValidationError, ValidationErrors, ValidationErrorsKind};

#[derive(Default)]
pub struct Rules(ValidationErrors);

impl Rules {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn check<T>(&mut self, field: &str, result: Result<T, ValueError>) -> &mut Self {
        if let Err(e) = result {
            self.add(field.to_owned(), e);
        }
        self
    }

    pub fn check_tags(&mut self, field: &str, tags: &[String]) -> &mut Self {
        if let Err(errors) = Tags::parse(tags) {
            for (index, e) in errors {
                let path = index.map_or_else(|| field.to_owned(), |i| format!("{field}[{i}]"));
                self.add(path, e);
            }
        }
        self
    }

    fn add(&mut self, field: String, error: ValueError) {
        let mut v = ValidationError::new(error.code);
        v.message = Some(Cow::Owned(error.message));
        match self
            .0
            .errors_mut()
            .entry(Cow::Owned(field))
            .or_insert_with(|| ValidationErrorsKind::Field(Vec::new()))
        {
            ValidationErrorsKind::Field(list) => list.push(v),
            ValidationErrorsKind::Struct(_) | ValidationErrorsKind::List(_) => {}
        }
    }

    pub fn finish(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}
