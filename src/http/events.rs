//! `GET /events`: the global log in commit order, in its public form (admins only).

use aggregates::values::ValueError;
use axum::extract::State;
use projections::Position;
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::consistency::{log_position, MinPosition};
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::AdminUser;
use crate::http::openapi::schemas::{
    CursorPagination, Listing, Pagination, PublicEvent, ReadHeaders,
};
use crate::http::parse::{Fields, Parse};
use crate::http::query::{page_size, StrictQuery};
use crate::http::respond::Answer;
use crate::state::AppState;

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

/// The parameters of `GET /events`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    /// A position token: only events after it.
    #[param(nullable = false)]
    after: Option<String>,
    /// Page size, 1 to 1000.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000, default = 100, nullable = false)]
    limit: Option<String>,
    /// The tail: the newest `last` events (1 to 1000), oldest first; not with `after`.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000, nullable = false)]
    last: Option<String>,
    /// `user`, `post` or `session`.
    #[param(nullable = false)]
    aggregate_type: Option<String>,
    /// A public event type, e.g. `post.published`.
    #[param(nullable = false)]
    event_type: Option<String>,
}

/// Which stretch of the log to read.
enum LogPage {
    /// Forward from a position.
    After { after: Position, limit: i64 },
    /// The newest `last` events.
    Tail { last: i64 },
}

pub struct EventQuery {
    page: LogPage,
    aggregate_type: Option<String>,
    event_type: Option<String>,
}

impl Parse for EventParams {
    type Output = EventQuery;

    fn parse(self) -> Result<EventQuery, Vec<FieldError>> {
        let mut fields = Fields::default();
        let after = fields.optional("after", self.after.as_deref(), |raw| {
            raw.parse::<Position>().map_err(|_| ValueError {
                code: "FORMAT",
                message: "must be a position token".into(),
            })
        });
        let limit = page_size(
            &mut fields,
            "limit",
            self.limit.as_deref(),
            MAX_LIMIT,
            DEFAULT_LIMIT,
        );
        let last = match self.last.as_deref() {
            None => Some(None),
            Some(raw) => {
                page_size(&mut fields, "last", Some(raw), MAX_LIMIT, DEFAULT_LIMIT).map(Some)
            }
        };
        let page = match (after, last, limit) {
            (Some(Some(_)), Some(Some(_)), _) => {
                fields.refuse(
                    "last",
                    "CONFLICT",
                    "cannot be combined with after: last reads the tail, after pages forward",
                );
                None
            }
            (Some(None), Some(Some(last)), _) => Some(LogPage::Tail { last }),
            (Some(after), Some(None), Some(limit)) => Some(LogPage::After {
                after: after.unwrap_or(Position::START),
                limit,
            }),
            _ => None,
        };
        fields.finish(page.map(|page| EventQuery {
            page,
            aggregate_type: self.aggregate_type,
            event_type: self.event_type,
        }))
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_events))
}

/// Read the event log.
///
/// Every event in commit order, in its public form. Admins only. Page with `after=` (the
/// `next_cursor` of the previous page, or any event's `position`); `last=N` gives the log's
/// tail instead (the newest N, oldest first), to follow from its last `position`.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    params(EventParams, ReadHeaders),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "A page of events; `next_cursor` is a position token",
            body = Listing<PublicEvent>, headers(("Chronicle-Position"))),
    )
)]
async fn list_events(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    min: MinPosition,
    StrictQuery(query): StrictQuery<EventParams>,
) -> Result<Answer<Vec<Value>>, ApiError> {
    let position = log_position(&state, &min).await?;
    let EventQuery {
        page,
        aggregate_type,
        event_type,
    } = query;
    let filter = Some((&aggregate_type, &event_type));
    let (events, has_more, limit) = match page {
        LogPage::Tail { last } => {
            let events = projections::log::read_last(&state.pool, last, filter).await?;
            (events, false, last)
        }
        LogPage::After { after, limit } => {
            let mut events =
                projections::log::read_filtered(&state.pool, after, limit + 1, filter).await?;
            let has_more = events.len() as i64 > limit;
            events.truncate(limit as usize);
            (events, has_more, limit)
        }
    };
    let next_cursor = events
        .last()
        .filter(|_| has_more)
        .map(|e| e.position.to_string());
    let data: Vec<_> = events
        .iter()
        .map(projections::public::public_event)
        .collect();
    Ok(Answer::ok(data)
        .paginated(Pagination::Cursor(CursorPagination {
            limit,
            next_cursor,
            has_more,
        }))
        .position(Some(position)))
}
