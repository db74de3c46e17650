//! The post's state and rules.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::actor::Actor;
use crate::check_version;
use crate::ids::{PostId, UserId};
use crate::post::{PostCommand, PostError, PostEvent};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PostStatus {
    #[default]
    Draft,
    Published,
}

impl PostStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            PostStatus::Draft => "draft",
            PostStatus::Published => "published",
        }
    }
}

/// State is public for reading; only `apply` changes it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Post {
    pub id: Option<PostId>,
    pub author_id: Option<UserId>,
    pub title: String,
    pub body: String,
    pub tags: Vec<String>,
    pub status: PostStatus,
    pub deleted: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub published_at: Option<DateTime<Utc>>,
    /// The number of events applied: the aggregate's sequence and the ETag.
    pub version: u64,
}

impl Post {
    /// The checks every change shares, in the order a client can act on: existence (to this
    /// actor), then permission, then the `If-Match` precondition.
    fn require_writable(
        &self,
        actor: &Actor,
        expected_version: Option<u64>,
    ) -> Result<(), PostError> {
        let author = match self.author_id {
            Some(author) if !self.deleted => author,
            _ => return Err(PostError::NotFound),
        };
        if !actor.may_act_for(author) {
            // A draft exists only for its author and admins: refusing it as forbidden would
            // tell anyone who guesses an id that it exists.
            return Err(match self.status {
                PostStatus::Draft => PostError::NotFound,
                PostStatus::Published => PostError::Forbidden,
            });
        }
        check_version(expected_version, self.version)
            .map_err(|current| PostError::VersionMismatch { current })
    }

    fn content_update(
        &self,
        title: String,
        body: String,
        tags: Vec<String>,
        at: DateTime<Utc>,
    ) -> Vec<PostEvent> {
        if title == self.title && body == self.body && tags == self.tags {
            return Vec::new();
        }
        vec![PostEvent::Updated {
            title,
            body,
            tags,
            updated_at: at,
        }]
    }
}

impl Aggregate for Post {
    const TYPE: &'static str = "post";
    type Command = PostCommand;
    type Event = PostEvent;
    type Error = PostError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = match command {
            PostCommand::Create {
                post_id,
                actor,
                title,
                body,
                tags,
                publish,
                at,
            } => {
                if self.id.is_some() {
                    return Err(PostError::AlreadyExists);
                }
                let author_id = actor.user_id().ok_or(PostError::AuthorRequired)?;
                let mut events = vec![PostEvent::Created {
                    post_id,
                    author_id,
                    title: title.into_inner(),
                    body: body.into_inner(),
                    tags: tags.to_strings(),
                    created_at: at,
                }];
                if publish {
                    events.push(PostEvent::Published { published_at: at });
                }
                events
            }
            PostCommand::Update {
                actor,
                expected_version,
                title,
                body,
                tags,
                at,
            } => {
                self.require_writable(&actor, expected_version)?;
                self.content_update(
                    title.map_or_else(|| self.title.clone(), |t| t.into_inner()),
                    body.map_or_else(|| self.body.clone(), |b| b.into_inner()),
                    tags.map_or_else(|| self.tags.clone(), |t| t.to_strings()),
                    at,
                )
            }
            PostCommand::Replace {
                actor,
                expected_version,
                title,
                body,
                tags,
                at,
            } => {
                self.require_writable(&actor, expected_version)?;
                self.content_update(title.into_inner(), body.into_inner(), tags.to_strings(), at)
            }
            PostCommand::Publish {
                actor,
                expected_version,
                at,
            } => {
                self.require_writable(&actor, expected_version)?;
                if self.status == PostStatus::Published {
                    return Err(PostError::AlreadyPublished);
                }
                vec![PostEvent::Published { published_at: at }]
            }
            PostCommand::Unpublish {
                actor,
                expected_version,
                at,
            } => {
                self.require_writable(&actor, expected_version)?;
                if self.status != PostStatus::Published {
                    return Err(PostError::NotPublished);
                }
                vec![PostEvent::Unpublished { unpublished_at: at }]
            }
            PostCommand::Delete {
                actor,
                expected_version,
                at,
            } => {
                self.require_writable(&actor, expected_version)?;
                vec![PostEvent::Deleted { deleted_at: at }]
            }
        };
        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.version += 1;
        match event {
            PostEvent::Created {
                post_id,
                author_id,
                title,
                body,
                tags,
                created_at,
            } => {
                self.id = Some(post_id);
                self.author_id = Some(author_id);
                self.title = title;
                self.body = body;
                self.tags = tags;
                self.status = PostStatus::Draft;
                self.created_at = Some(created_at);
                self.updated_at = Some(created_at);
            }
            PostEvent::Updated {
                title,
                body,
                tags,
                updated_at,
            } => {
                self.title = title;
                self.body = body;
                self.tags = tags;
                self.updated_at = Some(updated_at);
            }
            PostEvent::Published { published_at } => {
                self.status = PostStatus::Published;
                self.published_at = Some(published_at);
                self.updated_at = Some(published_at);
            }
            PostEvent::Unpublished { unpublished_at } => {
                self.status = PostStatus::Draft;
                self.published_at = None;
                self.updated_at = Some(unpublished_at);
            }
            PostEvent::Deleted { deleted_at } => {
                self.deleted = true;
                self.updated_at = Some(deleted_at);
            }
        }
    }
}
