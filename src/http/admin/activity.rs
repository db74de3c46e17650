//! `/api/v1/admin/activity` and `/api/v1/admin/failures` (admins): what the operator page charts
//! and lists.

use axum::extract::State;

use crate::activity::ActivityView;
use crate::app::failures::{self, FailureView};
use crate::http::error::ApiError;
use crate::http::extract::AdminUser;
use crate::http::openapi::schemas::{Data, Items};
use crate::http::respond::Answer;
use crate::state::AppState;

/// The failures listed, newest first: a page's worth, as the page shows them.
const FAILURES_SHOWN: i64 = 50;

/// This instance's view of the last 15 minutes, oldest sample first: events appended, requests
/// and 5xx answers per second, each projector's lag and the relay's (null unless this instance
/// leads the relay). Requests and errors are this instance's only; behind a load balancer each
/// instance answers for itself. Sampled every `ACTIVITY_SAMPLE_INTERVAL` (5 s) from memory.
#[utoipa::path(
    get,
    path = "/api/v1/admin/activity",
    tag = "admin",
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "The samples", body = Data<ActivityView>),
    )
)]
pub(super) async fn activity(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
) -> Answer<ActivityView> {
    Answer::ok(state.activity.view())
}

/// The 50 newest failures, newest first: webhook deliveries and emails that failed or are being
/// retried, and failed projectors, each with the request id and W3C trace id of the request
/// that appended the event (when the event carries them).
#[utoipa::path(
    get,
    path = "/api/v1/admin/failures",
    tag = "admin",
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "The failures", body = Items<FailureView>),
    )
)]
pub(super) async fn list_failures(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
) -> Result<Answer<Vec<FailureView>>, ApiError> {
    let recent = failures::recent(&state.pool, FAILURES_SHOWN).await?;
    Ok(Answer::ok(recent))
}
