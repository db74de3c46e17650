//! Domain values that can only be built valid ("parse, don't validate").
//!
//! The HTTP layer runs these same parsers to report field errors, so every rule lives here once.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a value was refused: a stable code (`LENGTH`, `FORMAT`, ...) and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    pub code: &'static str,
    pub message: String,
}

impl ValueError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ValueError {}

fn char_len_between(s: &str, min: usize, max: usize) -> Result<(), ValueError> {
    let len = s.chars().count();
    if len < min || len > max {
        return Err(ValueError::new(
            "LENGTH",
            format!("must be {min} to {max} characters"),
        ));
    }
    Ok(())
}

macro_rules! string_value {
    ($name:ident) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_value!(Email);
string_value!(UserName);
string_value!(Bio);
string_value!(Password);
string_value!(PostTitle);
string_value!(PostBody);
string_value!(Tag);

impl Email {
    pub const MAX_LEN: usize = 254;

    /// Accepts a plausible address and normalises it (trimmed, lower-cased), which is also the
    /// key that makes uniqueness case-insensitive.
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let email = raw.trim().to_lowercase();
        let invalid = || ValueError::new("EMAIL", "must be a valid email address");
        if email.is_empty() || email.len() > Self::MAX_LEN {
            return Err(invalid());
        }
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !domain.contains('@');
        if local.is_empty()
            || !domain_ok
            || email.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid());
        }
        Ok(Self(email))
    }
}

impl UserName {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let name = raw.trim();
        char_len_between(name, 1, 100)?;
        Ok(Self(name.to_owned()))
    }
}

impl Bio {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        char_len_between(raw, 0, 1000)?;
        Ok(Self(raw.to_owned()))
    }
}

impl Password {
    /// Length only: NIST 800-63B advises against composition rules. Not trimmed: every
    /// character the user typed counts.
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        char_len_between(raw, 8, 128)?;
        Ok(Self(raw.to_owned()))
    }
}

impl PostTitle {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let title = raw.trim();
        char_len_between(title, 1, 200)?;
        Ok(Self(title.to_owned()))
    }
}

impl PostBody {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        if raw.trim().is_empty() {
            return Err(ValueError::new("LENGTH", "must be 1 to 100000 characters"));
        }
        char_len_between(raw, 1, 100_000)?;
        Ok(Self(raw.to_owned()))
    }
}

impl Tag {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let valid = (1..=32).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(ValueError::new(
                "PATTERN",
                "must be 1 to 32 characters of a-z, 0-9 and -",
            ));
        }
        Ok(Self(raw.to_owned()))
    }
}

/// A post's tags: at most ten, each a valid [`Tag`], duplicates removed (first one wins).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tags(Vec<Tag>);

impl Tags {
    pub const MAX: usize = 10;

    /// Errors carry the index of the offending tag (`None` for the list as a whole), so the
    /// HTTP layer can report `tags[2]`.
    pub fn parse(raw: &[String]) -> Result<Self, Vec<(Option<usize>, ValueError)>> {
        if raw.len() > Self::MAX {
            return Err(vec![(
                None,
                ValueError::new("COUNT", format!("must have at most {} tags", Self::MAX)),
            )]);
        }
        let mut tags: Vec<Tag> = Vec::with_capacity(raw.len());
        let mut errors = Vec::new();
        for (index, tag) in raw.iter().enumerate() {
            match Tag::parse(tag) {
                Ok(tag) if !tags.contains(&tag) => tags.push(tag),
                Ok(_) => {}
                Err(e) => errors.push((Some(index), e)),
            }
        }
        if errors.is_empty() {
            Ok(Self(tags))
        } else {
            Err(errors)
        }
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|t| t.as_str().to_owned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_normalised_to_lower_case_and_trimmed() {
        let email = Email::parse("  Ada@Example.COM ").expect("valid");

        assert_eq!(email.as_str(), "ada@example.com");
    }

    #[test]
    fn implausible_emails_are_refused() {
        for raw in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@example..com",
        ] {
            assert!(Email::parse(raw).is_err(), "{raw:?} should be refused");
        }
    }

    #[test]
    fn title_length_counts_characters_not_bytes() {
        assert!(PostTitle::parse(&"é".repeat(200)).is_ok());
        assert!(PostTitle::parse(&"é".repeat(201)).is_err());
        assert!(PostTitle::parse("   ").is_err());
    }

    #[test]
    fn password_needs_8_to_128_characters() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn bad_tags_are_reported_with_their_index() {
        let raw = vec!["rust".to_owned(), "Bad Tag".to_owned(), "ok-1".to_owned()];

        let errors = Tags::parse(&raw).expect_err("one bad tag");

        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, Some(1));
        assert_eq!(errors[0].1.code, "PATTERN");
    }

    #[test]
    fn more_than_ten_tags_are_refused_and_duplicates_collapse() {
        let eleven: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
        assert!(Tags::parse(&eleven).is_err());

        let dup = Tags::parse(&["a".to_owned(), "a".to_owned()]).expect("valid");
        assert_eq!(dup.to_strings(), vec!["a"]);
    }
}
