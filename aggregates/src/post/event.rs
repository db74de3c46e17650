//! What has happened to a post. Variants are renamed to their public type names.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::ids::{PostId, UserId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PostEvent {
    #[serde(rename = "post.created")]
    Created {
        post_id: PostId,
        author_id: UserId,
        title: String,
        body: String,
        tags: Vec<String>,
        created_at: DateTime<Utc>,
    },
    /// Carries the whole resulting content, so applying it sets values and never merges.
    #[serde(rename = "post.updated")]
    Updated {
        title: String,
        body: String,
        tags: Vec<String>,
        updated_at: DateTime<Utc>,
    },
    #[serde(rename = "post.published")]
    Published { published_at: DateTime<Utc> },
    #[serde(rename = "post.unpublished")]
    Unpublished { unpublished_at: DateTime<Utc> },
    #[serde(rename = "post.deleted")]
    Deleted { deleted_at: DateTime<Utc> },
}

impl DomainEvent for PostEvent {
    fn event_type(&self) -> String {
        match self {
            PostEvent::Created { .. } => "post.created",
            PostEvent::Updated { .. } => "post.updated",
            PostEvent::Published { .. } => "post.published",
            PostEvent::Unpublished { .. } => "post.unpublished",
            PostEvent::Deleted { .. } => "post.deleted",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        crate::EVENT_VERSION.to_owned()
    }
}
