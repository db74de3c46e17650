//! `GET /events`: the global log in commit order, in its public form (admins only).

use axum::extract::State;
use axum::response::Response;
use projections::Position;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::consistency::{log_position, with_position, MinPosition};
use crate::http::error::ApiError;
use crate::http::extract::AdminUser;
use crate::http::listing::{bad_parameter, QueryParams};
use crate::http::openapi::schemas::{
    BadRequest, EventParams, Forbidden, Listing, PublicEvent, ReadHeaders, Unauthorized,
};
use crate::state::AppState;

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

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
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "A page of events; `next_cursor` is a position token",
            body = Listing<PublicEvent>, headers(("Chronicle-Position"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
async fn list_events(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    min: MinPosition,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let position = log_position(&state, &min).await?;
    let mut after = None;
    let mut last = None;
    let mut limit = DEFAULT_LIMIT;
    let mut aggregate_type = None;
    let mut event_type = None;
    for (name, value) in &params.0 {
        match name.as_str() {
            "after" => {
                after =
                    Some(value.parse::<Position>().map_err(|_| {
                        bad_parameter("after", "FORMAT", "must be a position token")
                    })?);
            }
            "last" => {
                last = Some(
                    value
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            bad_parameter("last", "RANGE", "must be an integer from 1 to 1000")
                        })?,
                );
            }
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        bad_parameter("limit", "RANGE", "must be an integer from 1 to 1000")
                    })?;
            }
            "aggregate_type" => aggregate_type = Some(value.clone()),
            "event_type" => event_type = Some(value.clone()),
            other => {
                return Err(bad_parameter(
                    other,
                    "UNKNOWN_PARAMETER",
                    "is not a parameter of this list",
                ))
            }
        }
    }

    let filter = Some((&aggregate_type, &event_type));
    let (events, has_more) = match (after, last) {
        (Some(_), Some(_)) => {
            return Err(bad_parameter(
                "last",
                "CONFLICT",
                "cannot be combined with after: last reads the tail, after pages forward",
            ))
        }
        (None, Some(last)) => {
            let events = projections::log::read_last(&state.pool, last, filter)
                .await
                .map_err(ApiError::internal)?;
            limit = last;
            (events, false)
        }
        (after, None) => {
            let mut events = projections::log::read_filtered(
                &state.pool,
                after.unwrap_or(Position::START),
                limit + 1,
                filter,
            )
            .await
            .map_err(ApiError::internal)?;
            let has_more = events.len() as i64 > limit;
            events.truncate(limit as usize);
            (events, has_more)
        }
    };
    let page = &events[..];
    let next = page
        .last()
        .filter(|_| has_more)
        .map(|e| e.position.to_string());
    let data: Vec<_> = page.iter().map(projections::public::public_event).collect();
    Ok(with_position(
        json!({
            "data": data,
            "pagination": { "limit": limit, "next_cursor": next, "has_more": has_more },
        }),
        position,
    ))
}
