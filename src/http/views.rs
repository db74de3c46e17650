//! The JSON representations of users and posts. Secrets have no field here, so they cannot
//! leak through an answer.

use aggregates::post::Post;
use aggregates::user::User;
use chrono::{DateTime, Utc};
use projections::posts::PostRow;
use projections::users::UserRow;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::openapi::schemas;

/// A user in full: for the user themselves and for admins.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(format = Email)]
    pub email: String,
    pub name: String,
    pub bio: String,
    #[schema(value_type = schemas::Role)]
    pub role: String,
    #[schema(value_type = schemas::UserStatus)]
    pub status: String,
    pub email_verified: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    /// The aggregate's version, which is also the `ETag`.
    pub version: u64,
}

/// What other users may see of someone.
#[derive(Debug, Serialize, ToSchema)]
// Closed to other properties in the OpenAPI document (utoipa reads `deny_unknown_fields`), so a
// full view never also matches this one in `AnyUserView`'s `oneOf`.
#[serde(deny_unknown_fields)]
pub struct PublicUserView {
    #[schema(format = Uuid)]
    pub id: String,
    pub name: String,
    pub bio: String,
    pub created_at: Option<DateTime<Utc>>,
}

/// The full view for the user themselves and admins, the public view for everyone else.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum AnyUserView {
    Full(UserView),
    Public(PublicUserView),
}

impl UserView {
    pub fn from_state(user: &User) -> Self {
        Self {
            id: user.id.map(|id| id.to_string()).unwrap_or_default(),
            email: user.email.clone(),
            name: user.name.clone(),
            bio: user.bio.clone(),
            role: user.role.as_str().to_owned(),
            status: user.status.as_str().to_owned(),
            email_verified: user.email_verified,
            created_at: user.created_at,
            updated_at: user.updated_at,
            version: user.version,
        }
    }
}

impl PublicUserView {
    pub fn from_state(user: &User) -> Self {
        Self {
            id: user.id.map(|id| id.to_string()).unwrap_or_default(),
            name: user.name.clone(),
            bio: user.bio.clone(),
            created_at: user.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PostView {
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(format = Uuid)]
    pub author_id: String,
    pub title: String,
    pub body: String,
    pub tags: Vec<String>,
    #[schema(value_type = schemas::PostStatus)]
    pub status: String,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub published_at: Option<DateTime<Utc>>,
    /// The aggregate's version, which is also the `ETag`.
    pub version: u64,
}

impl PostView {
    pub fn from_state(post: &Post) -> Self {
        Self {
            id: post.id.map(|id| id.to_string()).unwrap_or_default(),
            author_id: post.author_id.map(|id| id.to_string()).unwrap_or_default(),
            title: post.title.clone(),
            body: post.body.clone(),
            tags: post.tags.clone(),
            status: post.status.as_str().to_owned(),
            created_at: post.created_at,
            updated_at: post.updated_at,
            published_at: post.published_at,
            version: post.version,
        }
    }
}

impl UserView {
    pub fn from_row(row: UserRow) -> Self {
        Self {
            id: row.id.to_string(),
            email: row.email,
            name: row.name,
            bio: row.bio,
            role: row.role,
            status: row.status,
            email_verified: row.email_verified,
            created_at: Some(row.created_at),
            updated_at: Some(row.updated_at),
            version: row.version as u64,
        }
    }
}

impl PublicUserView {
    pub fn from_row(row: UserRow) -> Self {
        Self {
            id: row.id.to_string(),
            name: row.name,
            bio: row.bio,
            created_at: Some(row.created_at),
        }
    }
}

impl PostView {
    pub fn from_row(row: PostRow) -> Self {
        Self {
            id: row.id.to_string(),
            author_id: row.author_id.to_string(),
            title: row.title,
            body: row.body,
            tags: row.tags,
            status: row.status,
            created_at: Some(row.created_at),
            updated_at: Some(row.updated_at),
            published_at: row.published_at,
            version: row.version as u64,
        }
    }
}
