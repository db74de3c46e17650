//! `/analytics` (admins): counters kept by the analytics consumer.

use std::collections::BTreeMap;

use aggregates::values::ValueError;
use axum::extract::State;
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::analytics::{self, Interval, Metric, Range};
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::AdminUser;
use crate::http::openapi::schemas::{Data, Items};
use crate::http::parse::{Fields, Parse};
use crate::http::query::StrictQuery;
use crate::http::respond::Answer;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(summary))
        .routes(routes!(timeseries))
}

/// The longest range a summary covers: its counts (distinct active users above all) cost a scan
/// of every bucket in range.
const MAX_SUMMARY_DAYS: i64 = 31;
/// The longest range of an hourly series (745 buckets).
const MAX_HOURLY_DAYS: i64 = 31;
/// The longest range of a daily series (a leap year and a day of buckets).
const MAX_DAILY_DAYS: i64 = 366;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RangeParams {
    /// RFC 3339; truncated to the hour. Default: 24 hours before `to`. At most 31 days before
    /// `to` (else 400 naming `from`).
    #[param(value_type = Option<DateTime<Utc>>)]
    from: Option<String>,
    /// RFC 3339; truncated to the hour, inclusive. Default: now.
    #[param(value_type = Option<DateTime<Utc>>)]
    to: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SeriesParams {
    /// `events`, `users_registered`, `logins`, `posts_published` or `active_users`.
    #[param(value_type = String)]
    metric: Option<String>,
    /// `hour` (default) or `day`.
    interval: Option<String>,
    /// RFC 3339; truncated to the hour. Default: 24 hours before `to`. At most 31 days before
    /// `to` with `interval=hour`, 366 days with `interval=day` (else 400 naming `from`).
    #[param(value_type = Option<DateTime<Utc>>)]
    from: Option<String>,
    /// RFC 3339; truncated to the hour, inclusive.
    #[param(value_type = Option<DateTime<Utc>>)]
    to: Option<String>,
}

fn hour(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::hours(1)).unwrap_or(t)
}

fn time(fields: &mut Fields, name: &str, raw: Option<&str>) -> Option<Option<DateTime<Utc>>> {
    fields.optional(name, raw, |raw| {
        DateTime::parse_from_rfc3339(raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| ValueError {
                code: "FORMAT",
                message: "must be an RFC 3339 timestamp".into(),
            })
    })
}

/// `from`/`to`, truncated to the hour, at most `days` apart (`what` says why).
fn range(
    fields: &mut Fields,
    from: Option<&str>,
    to: Option<&str>,
    days: i64,
    what: &str,
) -> Option<Range> {
    let (from, to) = (time(fields, "from", from)?, time(fields, "to", to)?);
    let to = hour(to.unwrap_or_else(Utc::now));
    let from = hour(from.unwrap_or(to - Duration::hours(24)));
    if from > to {
        fields.refuse("from", "RANGE", "must not be after `to`");
        return None;
    }
    // The cost of an answer grows with its range.
    if to - from > Duration::days(days) {
        fields.refuse(
            "from",
            "RANGE",
            format!("must be at most {days} days before `to` {what}"),
        );
        return None;
    }
    Some(Range { from, to })
}

impl Parse for RangeParams {
    type Output = Range;

    fn parse(self) -> Result<Range, Vec<FieldError>> {
        let mut fields = Fields::default();
        let range = range(
            &mut fields,
            self.from.as_deref(),
            self.to.as_deref(),
            MAX_SUMMARY_DAYS,
            "for a summary",
        );
        fields.finish(range)
    }
}

pub struct Series {
    range: Range,
    metric: Metric,
    interval: Interval,
}

impl Parse for SeriesParams {
    type Output = Series;

    fn parse(self) -> Result<Series, Vec<FieldError>> {
        let mut fields = Fields::default();
        let metric = self.metric.as_deref().and_then(Metric::parse);
        if metric.is_none() {
            fields.refuse(
                "metric",
                "ENUM",
                format!("must be one of {}", Metric::NAMES.join(", ")),
            );
        }
        let interval = match self.interval.as_deref().unwrap_or("hour") {
            "hour" => Some(Interval::Hour),
            "day" => Some(Interval::Day),
            _ => {
                fields.refuse("interval", "ENUM", "must be hour or day");
                None
            }
        };
        let range = match interval {
            Some(Interval::Day) => range(
                &mut fields,
                self.from.as_deref(),
                self.to.as_deref(),
                MAX_DAILY_DAYS,
                "with interval=day",
            ),
            _ => range(
                &mut fields,
                self.from.as_deref(),
                self.to.as_deref(),
                MAX_HOURLY_DAYS,
                "with interval=hour (use interval=day for longer ranges)",
            ),
        };
        fields.finish((|| {
            Some(Series {
                range: range?,
                metric: metric?,
                interval: interval?,
            })
        })())
    }
}

/// Totals over a range.
#[derive(Serialize, ToSchema)]
pub struct SummaryView {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    users_registered: i64,
    logins: i64,
    posts_published: i64,
    /// Distinct users with any event in the range.
    active_users: i64,
    /// Every event type seen in the range, with its count.
    events_by_type: BTreeMap<String, i64>,
}

/// One bucket of a time series.
#[derive(Serialize, ToSchema)]
pub struct BucketView {
    /// The bucket's start (an hour or a day, UTC).
    bucket: DateTime<Utc>,
    value: i64,
}

/// Totals over a range.
#[utoipa::path(
    get,
    path = "/api/v1/analytics/summary",
    tag = "analytics",
    params(RangeParams),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "Totals over the range", body = Data<SummaryView>),
    )
)]
async fn summary(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    StrictQuery(range): StrictQuery<RangeParams>,
) -> Result<Answer<SummaryView>, ApiError> {
    let summary = analytics::summary(&state.pool, range).await?;
    Ok(Answer::ok(SummaryView {
        from: range.from,
        to: range.to,
        users_registered: summary.count("user.registered"),
        logins: summary.count("session.started"),
        posts_published: summary.count("post.published"),
        active_users: summary.active_users,
        events_by_type: summary.events_by_type,
    }))
}

/// One metric per hour or day, with empty buckets as zero.
#[utoipa::path(
    get,
    path = "/api/v1/analytics/timeseries",
    tag = "analytics",
    params(SeriesParams),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "One value per bucket, oldest first", body = Items<BucketView>),
    )
)]
async fn timeseries(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    StrictQuery(series): StrictQuery<SeriesParams>,
) -> Result<Answer<Vec<BucketView>>, ApiError> {
    let buckets =
        analytics::timeseries(&state.pool, series.range, series.metric, series.interval).await?;
    Ok(Answer::ok(
        buckets
            .into_iter()
            .map(|(bucket, value)| BucketView { bucket, value })
            .collect(),
    ))
}
