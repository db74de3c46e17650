//! Analytics queries over the counters the analytics consumer keeps (`analytics_hourly`,
//! `analytics_active_users`), bucketed by the hour.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};

/// Hours, both ends included, already truncated to the hour.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Totals over a range.
#[derive(Debug)]
pub struct Summary {
    pub events_by_type: BTreeMap<String, i64>,
    pub active_users: i64,
}

impl Summary {
    pub fn count(&self, event_type: &str) -> i64 {
        self.events_by_type.get(event_type).copied().unwrap_or(0)
    }
}

/// What a time series counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Events,
    UsersRegistered,
    Logins,
    PostsPublished,
    ActiveUsers,
}

impl Metric {
    pub const NAMES: [&'static str; 5] = [
        "events",
        "users_registered",
        "logins",
        "posts_published",
        "active_users",
    ];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "events" => Some(Self::Events),
            "users_registered" => Some(Self::UsersRegistered),
            "logins" => Some(Self::Logins),
            "posts_published" => Some(Self::PostsPublished),
            "active_users" => Some(Self::ActiveUsers),
            _ => None,
        }
    }

    /// The one event type the metric counts, if it counts events of one type.
    fn event_type(self) -> Option<&'static str> {
        match self {
            Self::UsersRegistered => Some("user.registered"),
            Self::Logins => Some("session.started"),
            Self::PostsPublished => Some("post.published"),
            Self::Events | Self::ActiveUsers => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Hour,
    Day,
}

impl Interval {
    fn unit(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }
}

pub async fn summary(pool: &PgPool, range: Range) -> Result<Summary, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT event_type, sum(count)::bigint AS n FROM analytics_hourly
          WHERE bucket BETWEEN $1 AND $2 GROUP BY event_type ORDER BY event_type",
    )
    .bind(range.from)
    .bind(range.to)
    .fetch_all(pool)
    .await?;
    let mut events_by_type = BTreeMap::new();
    for row in &rows {
        events_by_type.insert(row.try_get("event_type")?, row.try_get("n")?);
    }
    let active_users: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT user_id) FROM analytics_active_users WHERE bucket BETWEEN $1 AND $2",
    )
    .bind(range.from)
    .bind(range.to)
    .fetch_one(pool)
    .await?;
    Ok(Summary {
        events_by_type,
        active_users,
    })
}

/// One value per bucket, oldest first, empty buckets as zero.
pub async fn timeseries(
    pool: &PgPool,
    range: Range,
    metric: Metric,
    interval: Interval,
) -> Result<Vec<(DateTime<Utc>, i64)>, sqlx::Error> {
    let value_sql = match metric {
        Metric::ActiveUsers => {
            "(SELECT count(DISTINCT user_id) FROM analytics_active_users a
                            WHERE a.bucket >= s.bucket AND a.bucket < s.bucket + $3::interval)"
        }
        _ => {
            "(SELECT coalesce(sum(count), 0) FROM analytics_hourly h
               WHERE h.bucket >= s.bucket AND h.bucket < s.bucket + $3::interval
                 AND ($4::text IS NULL OR h.event_type = $4))"
        }
    };
    let sql = format!(
        "SELECT s.bucket, {value_sql}::bigint AS value
           FROM generate_series(date_trunc($5, $1::timestamptz), $2::timestamptz, $3::interval) AS s(bucket)
          ORDER BY s.bucket"
    );
    let rows = sqlx::query(&sql)
        .bind(range.from)
        .bind(range.to)
        .bind(format!("1 {}", interval.unit()))
        .bind(metric.event_type())
        .bind(interval.unit())
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("bucket")?, row.try_get("value")?)))
        .collect()
}
