//! The request bodies of the user commands, parsed with the domain's own parsers.

use aggregates::user::{UserChanges, UserStatus};
use aggregates::values::{Bio, Email, Password, UserName};
use aggregates::Role;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::app::accounts::Registration;
use crate::http::error::FieldError;
use crate::http::openapi::schemas;
use crate::http::parse::{one_of, Fields, Parse};

fn parse_status(raw: &str) -> Option<UserStatus> {
    match raw {
        "active" => Some(UserStatus::Active),
        "deactivated" => Some(UserStatus::Deactivated),
        _ => None,
    }
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

impl Parse for CreateUserRequest {
    type Output = Registration;

    fn parse(self) -> Result<Registration, Vec<FieldError>> {
        let mut fields = Fields::default();
        let email = fields.take("email", Email::parse(&self.email));
        let name = fields.take("name", UserName::parse(&self.name));
        let password = fields.take("password", Password::parse(&self.password));
        let role = one_of(
            &mut fields,
            "role",
            self.role.as_deref(),
            Role::parse,
            "must be user or admin",
        );
        fields.finish((|| {
            Some(Registration {
                email: email?,
                name: name?,
                password: password?,
                role: role?.unwrap_or_default(),
            })
        })())
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

impl Parse for UpdateUserRequest {
    type Output = UserChanges;

    fn parse(self) -> Result<UserChanges, Vec<FieldError>> {
        let mut fields = Fields::default();
        let name = fields.optional("name", self.name.as_deref(), UserName::parse);
        let bio = fields.optional("bio", self.bio.as_deref(), Bio::parse);
        let role = one_of(
            &mut fields,
            "role",
            self.role.as_deref(),
            Role::parse,
            "must be user or admin",
        );
        let status = one_of(
            &mut fields,
            "status",
            self.status.as_deref(),
            parse_status,
            "must be active or deactivated",
        );
        fields.finish((|| {
            Some(UserChanges {
                name: name?,
                bio: bio?,
                role: role?,
                status: status?,
            })
        })())
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

impl Parse for ReplaceUserRequest {
    type Output = UserChanges;

    fn parse(self) -> Result<UserChanges, Vec<FieldError>> {
        let mut fields = Fields::default();
        let name = fields.take("name", UserName::parse(&self.name));
        let bio = fields.take("bio", Bio::parse(&self.bio));
        fields.finish((|| {
            Some(UserChanges {
                name: Some(name?),
                bio: Some(bio?),
                role: None,
                status: None,
            })
        })())
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmailRequest {
    /// The `token` of the link in the user's newest welcome or verification email.
    #[schema(min_length = 1, max_length = 256)]
    pub token: String,
}

impl Parse for VerifyEmailRequest {
    type Output = String;

    fn parse(self) -> Result<String, Vec<FieldError>> {
        let mut fields = Fields::default();
        let token = fields.text("token", self.token, 1, 256);
        fields.finish(token)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    #[schema(min_length = 1, max_length = 128)]
    pub current_password: String,
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: String,
}

/// The current password as typed (the aggregate checks it) and the new one.
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: Password,
}

impl Parse for ChangePasswordRequest {
    type Output = PasswordChange;

    fn parse(self) -> Result<PasswordChange, Vec<FieldError>> {
        let mut fields = Fields::default();
        let new_password = fields.take("new_password", Password::parse(&self.new_password));
        let current_password = fields.text("current_password", self.current_password, 1, 128);
        fields.finish((|| {
            Some(PasswordChange {
                current_password: current_password?,
                new_password: new_password?,
            })
        })())
    }
}
