//! The request bodies of the user commands, validated with the domain's own parsers.

use aggregates::user::{UserChanges, UserStatus};
use aggregates::values::{Bio, Email, Password, UserName};
use aggregates::Role;
use serde::Deserialize;
use utoipa::ToSchema;
use validator::{Validate, ValidationError, ValidationErrors};

use crate::http::error::ApiError;
use crate::http::openapi::schemas;
use crate::http::validate::Rules;

fn parse_role(raw: &str) -> Result<Role, ValidationError> {
    Role::parse(raw).ok_or_else(|| {
        let mut e = ValidationError::new("ENUM");
        e.message = Some("must be user or admin".into());
        e
    })
}

fn parse_status(raw: &str) -> Option<UserStatus> {
    match raw {
        "active" => Some(UserStatus::Active),
        "deactivated" => Some(UserStatus::Deactivated),
        _ => None,
    }
}

fn enum_error(rules: &mut Rules, field: &str, message: &str) {
    rules.check::<()>(
        field,
        Err(aggregates::values::ValueError {
            code: "ENUM",
            message: message.to_owned(),
        }),
    );
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    /// Defaults to `user`.
    #[schema(value_type = Option<schemas::Role>)]
    pub role: Option<String>,
}

impl Validate for CreateUserRequest {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut rules = Rules::new();
        rules
            .check("email", Email::parse(&self.email))
            .check("name", UserName::parse(&self.name))
            .check("password", Password::parse(&self.password));
        if self.role.as_deref().is_some_and(|r| parse_role(r).is_err()) {
            enum_error(&mut rules, "role", "must be user or admin");
        }
        rules.finish()
    }
}

/// The fields to change; `role` and `status` only for admins.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    #[schema(max_length = 1000)]
    pub bio: Option<String>,
    #[schema(value_type = Option<schemas::Role>)]
    pub role: Option<String>,
    #[schema(value_type = Option<schemas::UserStatus>)]
    pub status: Option<String>,
}

impl Validate for UpdateUserRequest {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut rules = Rules::new();
        if let Some(name) = &self.name {
            rules.check("name", UserName::parse(name));
        }
        if let Some(bio) = &self.bio {
            rules.check("bio", Bio::parse(bio));
        }
        if self.role.as_deref().is_some_and(|r| parse_role(r).is_err()) {
            enum_error(&mut rules, "role", "must be user or admin");
        }
        if self
            .status
            .as_deref()
            .is_some_and(|s| parse_status(s).is_none())
        {
            enum_error(&mut rules, "status", "must be active or deactivated");
        }
        rules.finish()
    }
}

impl UpdateUserRequest {
    pub(super) fn changes(self) -> Result<UserChanges, ApiError> {
        Ok(UserChanges {
            name: self
                .name
                .as_deref()
                .map(UserName::parse)
                .transpose()
                .map_err(invalid("name"))?,
            bio: self
                .bio
                .as_deref()
                .map(Bio::parse)
                .transpose()
                .map_err(invalid("bio"))?,
            role: self.role.as_deref().and_then(Role::parse),
            status: self.status.as_deref().and_then(parse_status),
        })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceUserRequest {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[schema(max_length = 1000)]
    pub bio: String,
}

impl Validate for ReplaceUserRequest {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut rules = Rules::new();
        rules
            .check("name", UserName::parse(&self.name))
            .check("bio", Bio::parse(&self.bio));
        rules.finish()
    }
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmailRequest {
    /// The `token` of the link in the user's newest welcome or verification email.
    #[validate(length(min = 1, max = 256, message = "must be 1 to 256 characters"))]
    #[schema(min_length = 1, max_length = 256)]
    pub token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    #[schema(min_length = 1, max_length = 128)]
    pub current_password: String,
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: String,
}

impl Validate for ChangePasswordRequest {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut rules = Rules::new();
        rules.check("new_password", Password::parse(&self.new_password));
        if self.current_password.is_empty() || self.current_password.chars().count() > 128 {
            rules.check::<()>(
                "current_password",
                Err(aggregates::values::ValueError {
                    code: "LENGTH",
                    message: "must be 1 to 128 characters".into(),
                }),
            );
        }
        rules.finish()
    }
}

pub(super) fn invalid(field: &'static str) -> impl Fn(aggregates::values::ValueError) -> ApiError {
    move |e| ApiError::field(field, e.code, &e.message)
}
