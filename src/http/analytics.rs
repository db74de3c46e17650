//! `/analytics` (admins): counters kept by the analytics consumer.

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::{json, Map, Value};
use sqlx::Row;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::http::error::ApiError;
use crate::http::extract::AdminUser;
use crate::http::listing::{bad_parameter, QueryParams};
use crate::http::openapi::schemas::{BadRequest, Forbidden, Unauthorized};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(summary))
        .routes(routes!(timeseries))
}

const METRICS: [&str; 5] = [
    "events",
    "users_registered",
    "logins",
    "posts_published",
    "active_users",
];

/// The longest range a summary covers: its counts (distinct active users above all) cost a scan
/// of every bucket in range.
const MAX_SUMMARY_DAYS: i64 = 31;
/// The longest range of an hourly series (745 buckets).
const MAX_HOURLY_DAYS: i64 = 31;
/// The longest range of a daily series (a leap year and a day of buckets).
const MAX_DAILY_DAYS: i64 = 366;

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct RangeParams {
    /// RFC 3339; truncated to the hour. Default: 24 hours before `to`. At most 31 days before
    /// `to` (else 400 naming `from`).
    from: Option<DateTime<Utc>>,
    /// RFC 3339; truncated to the hour, inclusive. Default: now.
    to: Option<DateTime<Utc>>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct SeriesParams {
    /// `events`, `users_registered`, `logins`, `posts_published` or `active_users`.
    metric: String,
    /// `hour` (default) or `day`.
    interval: Option<String>,
    /// RFC 3339; truncated to the hour. Default: 24 hours before `to`. At most 31 days before
    /// `to` with `interval=hour`, 366 days with `interval=day` (else 400 naming `from`).
    from: Option<DateTime<Utc>>,
    /// RFC 3339; truncated to the hour, inclusive.
    to: Option<DateTime<Utc>>,
}

struct Range {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

fn hour(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::hours(1)).unwrap_or(t)
}

fn parse_time(name: &str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| bad_parameter(name, "FORMAT", "must be an RFC 3339 timestamp"))
}

/// Reads `from`/`to` (and the extra names a route allows), refusing anything else.
fn parse(params: &QueryParams, extra: &[&str]) -> Result<(Range, Map<String, Value>), ApiError> {
    let mut from = None;
    let mut to = None;
    let mut rest = Map::new();
    for (name, value) in &params.0 {
        match name.as_str() {
            "from" => from = Some(parse_time("from", value)?),
            "to" => to = Some(parse_time("to", value)?),
            other if extra.contains(&other) => {
                rest.insert(other.to_owned(), Value::String(value.clone()));
            }
            other => {
                return Err(bad_parameter(
                    other,
                    "UNKNOWN_PARAMETER",
                    "is not a parameter here",
                ))
            }
        }
    }
    let to = hour(to.unwrap_or_else(Utc::now));
    let from = hour(from.unwrap_or(to - Duration::hours(24)));
    if from > to {
        return Err(bad_parameter("from", "RANGE", "must not be after `to`"));
    }
    Ok((Range { from, to }, rest))
}

/// Refuses a range longer than `days`: the cost of an answer grows with its range.
fn within(range: &Range, days: i64, what: &str) -> Result<(), ApiError> {
    if range.to - range.from > Duration::days(days) {
        return Err(bad_parameter(
            "from",
            "RANGE",
            &format!("must be at most {days} days before `to` {what}"),
        ));
    }
    Ok(())
}

/// Totals over a range.
#[utoipa::path(
    get,
    path = "/api/v1/analytics/summary",
    tag = "analytics",
    params(RangeParams),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "`{data: {from, to, events_by_type, users_registered, logins, posts_published, active_users}}`"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
async fn summary(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let (range, _) = parse(&params, &[])?;
    within(&range, MAX_SUMMARY_DAYS, "for a summary")?;
    let rows = sqlx::query(
        "SELECT event_type, sum(count)::bigint AS n FROM analytics_hourly
          WHERE bucket BETWEEN $1 AND $2 GROUP BY event_type ORDER BY event_type",
    )
    .bind(range.from)
    .bind(range.to)
    .fetch_all(&state.pool)
    .await
    .map_err(ApiError::internal)?;
    let mut by_type = Map::new();
    for row in &rows {
        let event_type: String = row.try_get("event_type").map_err(ApiError::internal)?;
        let n: i64 = row.try_get("n").map_err(ApiError::internal)?;
        by_type.insert(event_type, json!(n));
    }
    let active: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT user_id) FROM analytics_active_users WHERE bucket BETWEEN $1 AND $2",
    )
    .bind(range.from)
    .bind(range.to)
    .fetch_one(&state.pool)
    .await
    .map_err(ApiError::internal)?;
    let count = |t: &str| by_type.get(t).and_then(Value::as_i64).unwrap_or(0);
    let data = json!({
        "from": range.from,
        "to": range.to,
        "users_registered": count("user.registered"),
        "logins": count("session.started"),
        "posts_published": count("post.published"),
        "active_users": active,
        "events_by_type": Value::Object(by_type.clone()),
    });
    Ok(Json(json!({ "data": data })).into_response())
}

/// One metric per hour or day, with empty buckets as zero.
#[utoipa::path(
    get,
    path = "/api/v1/analytics/timeseries",
    tag = "analytics",
    params(SeriesParams),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "`{data: [{bucket, value}]}`, oldest first"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
async fn timeseries(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let (range, rest) = parse(&params, &["metric", "interval"])?;
    let metric = rest
        .get("metric")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !METRICS.contains(&metric) {
        return Err(bad_parameter(
            "metric",
            "ENUM",
            &format!("must be one of {}", METRICS.join(", ")),
        ));
    }
    let interval = match rest
        .get("interval")
        .and_then(Value::as_str)
        .unwrap_or("hour")
    {
        i @ ("hour" | "day") => i,
        _ => return Err(bad_parameter("interval", "ENUM", "must be hour or day")),
    };
    match interval {
        "day" => within(&range, MAX_DAILY_DAYS, "with interval=day")?,
        _ => within(
            &range,
            MAX_HOURLY_DAYS,
            "with interval=hour (use interval=day for longer ranges)",
        )?,
    }
    let value_sql = match metric {
        "active_users" => {
            "(SELECT count(DISTINCT user_id) FROM analytics_active_users a
                            WHERE a.bucket >= s.bucket AND a.bucket < s.bucket + $3::interval)"
        }
        _ => {
            "(SELECT coalesce(sum(count), 0) FROM analytics_hourly h
               WHERE h.bucket >= s.bucket AND h.bucket < s.bucket + $3::interval
                 AND ($4::text IS NULL OR h.event_type = $4))"
        }
    };
    let event_type = match metric {
        "users_registered" => Some("user.registered"),
        "logins" => Some("session.started"),
        "posts_published" => Some("post.published"),
        _ => None,
    };
    let sql = format!(
        "SELECT s.bucket, {value_sql}::bigint AS value
           FROM generate_series(date_trunc($5, $1::timestamptz), $2::timestamptz, $3::interval) AS s(bucket)
          ORDER BY s.bucket"
    );
    let rows = sqlx::query(&sql)
        .bind(range.from)
        .bind(range.to)
        .bind(format!("1 {interval}"))
        .bind(event_type)
        .bind(interval)
        .fetch_all(&state.pool)
        .await
        .map_err(ApiError::internal)?;
    let mut data = Vec::with_capacity(rows.len());
    for row in &rows {
        let bucket: DateTime<Utc> = row.try_get("bucket").map_err(ApiError::internal)?;
        let value: i64 = row.try_get("value").map_err(ApiError::internal)?;
        data.push(json!({ "bucket": bucket, "value": value }));
    }
    Ok(Json(json!({ "data": data })).into_response())
}
