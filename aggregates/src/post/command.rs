//! What can be asked of a post. Every command but `Create` names its actor, so ownership is a
//! domain rule, and may carry the `If-Match` version.

use chrono::{DateTime, Utc};

use crate::actor::Actor;
use crate::ids::PostId;
use crate::values::{PostBody, PostTitle, Tags};

#[derive(Debug, Clone)]
pub enum PostCommand {
    /// `publish: true` appends `post.created` then `post.published` in one commit.
    Create {
        post_id: PostId,
        actor: Actor,
        title: PostTitle,
        body: PostBody,
        tags: Tags,
        publish: bool,
        at: DateTime<Utc>,
    },
    /// A PATCH: `None` keeps the field.
    Update {
        actor: Actor,
        expected_version: Option<u64>,
        title: Option<PostTitle>,
        body: Option<PostBody>,
        tags: Option<Tags>,
        at: DateTime<Utc>,
    },
    /// A PUT: title, body and tags all replaced.
    Replace {
        actor: Actor,
        expected_version: Option<u64>,
        title: PostTitle,
        body: PostBody,
        tags: Tags,
        at: DateTime<Utc>,
    },
    Publish {
        actor: Actor,
        expected_version: Option<u64>,
        at: DateTime<Utc>,
    },
    Unpublish {
        actor: Actor,
        expected_version: Option<u64>,
        at: DateTime<Utc>,
    },
    Delete {
        actor: Actor,
        expected_version: Option<u64>,
        at: DateTime<Utc>,
    },
}

impl PostCommand {
    /// The command's name (`post.create`), for traces and metrics: a fixed set.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Create { .. } => "post.create",
            Self::Update { .. } => "post.update",
            Self::Replace { .. } => "post.replace",
            Self::Publish { .. } => "post.publish",
            Self::Unpublish { .. } => "post.unpublish",
            Self::Delete { .. } => "post.delete",
        }
    }
}
