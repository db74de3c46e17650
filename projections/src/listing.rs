//! Lists over read models: filters, multi-key sorts, keyset (cursor) and offset pagination.
//!
//! Keyset pagination compares the last row's sort values instead of skipping rows, so page
//! 10,000 costs what page 1 costs. When every key sorts the same way the comparison is a row
//! comparison (`(a, b, id) < (...)`), which an index on `(a, b, id)` answers directly; mixed
//! directions fall back to the equivalent OR chain. The id is always the last key, so the order
//! is total and no row is seen twice or skipped.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder, Row};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    Timestamp,
    Text,
}

impl SqlType {
    fn cast(&self) -> &'static str {
        match self {
            SqlType::Timestamp => "::timestamptz",
            SqlType::Text => "::text",
        }
    }
}

impl SqlType {
    /// The value in a form this type's cast always takes, or `None`. Cursor values are cast in
    /// SQL, where one that does not parse would be an error rather than a refusal, so a cursor
    /// is checked (and normalised) before it reaches a query.
    pub fn normalize(&self, value: &str) -> Option<String> {
        match self {
            SqlType::Text => (!value.contains('\0')).then(|| value.to_owned()),
            SqlType::Timestamp => normalize_timestamp(value),
        }
    }
}

fn normalize_timestamp(value: &str) -> Option<String> {
    // `published_at` sorts missing values as -infinity, and `::text` writes it so.
    if value == "infinity" || value == "-infinity" {
        return Some(value.to_owned());
    }
    // Postgres writes `2026-01-01 10:00:00.123456+00`; RFC 3339 is accepted too.
    let parsed = DateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S%.f%#z")
        .or_else(|_| DateTime::parse_from_rfc3339(value))
        .ok()?
        .with_timezone(&Utc);
    // Years past 9999 would print in a form Postgres does not read back.
    if !(1..=9999).contains(&chrono::Datelike::year(&parsed)) {
        return None;
    }
    Some(parsed.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

/// The values of a cursor for `sort` (its keys, then the id), normalised, or `None` when their
/// number or any value does not fit.
pub fn cursor_values(sort: &[Sort], values: &[String]) -> Option<Vec<String>> {
    if values.len() != sort.len() + 1 {
        return None;
    }
    let (keys, id) = values.split_at(sort.len());
    let mut normalized: Vec<String> = sort
        .iter()
        .zip(keys)
        .map(|(s, value)| s.key.ty.normalize(value))
        .collect::<Option<_>>()?;
    normalized.push(uuid::Uuid::parse_str(id.first()?).ok()?.to_string());
    Some(normalized)
}

/// A field a resource may be sorted by: its public name and the SQL expression behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    pub field: &'static str,
    pub expr: &'static str,
    pub ty: SqlType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Text(String),
    Uuid(uuid::Uuid),
    Time(DateTime<Utc>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Eq(&'static str, Bind),
    After(&'static str, DateTime<Utc>),
    Before(&'static str, DateTime<Utc>),
    ArrayContains(&'static str, String),
    /// `q=`: Postgres full-text search with web-search syntax.
    Search {
        column: &'static str,
        config: &'static str,
        query: String,
    },
    /// A fixed predicate with no input (e.g. `status = 'published'`).
    Fixed(&'static str),
    /// Matches nothing (e.g. someone else's drafts).
    Nothing,
}

/// How deep offset pagination reaches: a page must start within the first this many rows, and
/// `total` counts at most this many. Deeper offsets cost a scan of every row skipped (and an
/// exact count a scan of every match), which anyone could make the server do; cursors reach
/// any depth at the cost of page 1.
pub const MAX_OFFSET_ROWS: i64 = 10_000;

#[derive(Debug, Clone, PartialEq)]
pub enum Page {
    /// After the row whose sort values (then id) are given; `None` for the first page.
    After(Option<Vec<String>>),
    /// 1-based page number.
    Offset(i64),
}

pub struct ListQuery {
    pub table: &'static str,
    pub columns: &'static str,
    pub conditions: Vec<Condition>,
    pub sort: Vec<Sort>,
    pub page: Page,
    pub limit: i64,
}

pub struct Listed<T> {
    pub items: Vec<T>,
    pub has_more: bool,
    /// The last item's sort values then id, for the next cursor (keyset mode).
    pub last_values: Option<Vec<String>>,
    /// Offset mode only.
    pub total: Option<i64>,
}

fn push_condition(builder: &mut QueryBuilder<'_, Postgres>, condition: &Condition) {
    match condition {
        Condition::Eq(column, value) => {
            builder.push(format!("{column} = "));
            push_bind(builder, value);
        }
        Condition::After(column, time) => {
            builder.push(format!("{column} > ")).push_bind(*time);
        }
        Condition::Before(column, time) => {
            builder.push(format!("{column} < ")).push_bind(*time);
        }
        Condition::ArrayContains(column, value) => {
            builder
                .push(format!("{column} @> ARRAY["))
                .push_bind(value.clone())
                .push("]::text[]");
        }
        Condition::Search {
            column,
            config,
            query,
        } => {
            builder
                .push(format!("{column} @@ websearch_to_tsquery('{config}', "))
                .push_bind(query.clone())
                .push(")");
        }
        Condition::Fixed(sql) => {
            builder.push(*sql);
        }
        Condition::Nothing => {
            builder.push("false");
        }
    }
}

fn push_bind(builder: &mut QueryBuilder<'_, Postgres>, value: &Bind) {
    match value {
        Bind::Text(v) => builder.push_bind(v.clone()),
        Bind::Uuid(v) => builder.push_bind(*v),
        Bind::Time(v) => builder.push_bind(*v),
    };
}

fn push_where(builder: &mut QueryBuilder<'_, Postgres>, conditions: &[Condition]) {
    builder.push(" WHERE true");
    for condition in conditions {
        builder.push(" AND ");
        push_condition(builder, condition);
    }
}

/// The keys in order, with the id last following the first key's direction.
fn keys_with_id(sort: &[Sort]) -> Vec<(&'static str, &'static str, bool)> {
    let id_descending = sort.first().is_some_and(|s| s.descending);
    sort.iter()
        .map(|s| (s.key.expr, s.key.ty.cast(), s.descending))
        .chain(std::iter::once(("id", "::uuid", id_descending)))
        .collect()
}

fn push_keyset(builder: &mut QueryBuilder<'_, Postgres>, sort: &[Sort], values: &[String]) {
    let keys = keys_with_id(sort);
    let uniform = keys.iter().all(|k| k.2 == keys[0].2);
    builder.push(" AND ");
    if uniform {
        let columns: Vec<&str> = keys.iter().map(|k| k.0).collect();
        builder.push(format!(
            "({}) {} (",
            columns.join(", "),
            if keys[0].2 { "<" } else { ">" }
        ));
        for (i, ((_, cast, _), value)) in keys.iter().zip(values).enumerate() {
            if i > 0 {
                builder.push(", ");
            }
            builder.push_bind(value.clone()).push(*cast);
        }
        builder.push(")");
        return;
    }
    builder.push("(");
    for i in 0..keys.len() {
        if i > 0 {
            builder.push(" OR ");
        }
        builder.push("(");
        for (j, ((expr, cast, descending), value)) in
            keys.iter().zip(values).enumerate().take(i + 1)
        {
            if j > 0 {
                builder.push(" AND ");
            }
            let op = if j < i {
                "="
            } else if *descending {
                "<"
            } else {
                ">"
            };
            builder
                .push(format!("{expr} {op} "))
                .push_bind(value.clone())
                .push(*cast);
        }
        builder.push(")");
    }
    builder.push(")");
}

fn push_order(builder: &mut QueryBuilder<'_, Postgres>, sort: &[Sort]) {
    let order: Vec<String> = keys_with_id(sort)
        .iter()
        .map(|(expr, _, descending)| format!("{expr} {}", if *descending { "DESC" } else { "ASC" }))
        .collect();
    builder.push(" ORDER BY ").push(order.join(", "));
}

#[tracing::instrument(level = "trace", name = "query list", skip_all)]
pub async fn list<T>(pool: &PgPool, query: &ListQuery) -> Result<Listed<T>, sqlx::Error>
where
    T: for<'r> FromRow<'r, PgRow> + Send + Unpin,
{
    let key_columns: Vec<String> = query
        .sort
        .iter()
        .enumerate()
        .map(|(i, s)| format!("({})::text AS __sort_{i}", s.key.expr))
        .collect();
    let mut builder = QueryBuilder::<Postgres>::new(format!(
        "SELECT {}, {}{}id::text AS __sort_id FROM {}",
        query.columns,
        key_columns.join(", "),
        if key_columns.is_empty() { "" } else { ", " },
        query.table
    ));
    push_where(&mut builder, &query.conditions);
    if let Page::After(Some(values)) = &query.page {
        push_keyset(&mut builder, &query.sort, values);
    }
    push_order(&mut builder, &query.sort);
    builder.push(" LIMIT ").push_bind(query.limit + 1);
    if let Page::Offset(page) = query.page {
        builder
            .push(" OFFSET ")
            // Saturating: a page far past the end is simply empty.
            .push_bind((page.max(1) - 1).saturating_mul(query.limit));
    }

    let mut rows = builder.build().fetch_all(pool).await?;
    let has_more = rows.len() as i64 > query.limit;
    rows.truncate(query.limit.max(0) as usize);
    let last_values = match rows.last() {
        Some(row) => {
            let mut values = Vec::with_capacity(query.sort.len() + 1);
            for i in 0..query.sort.len() {
                values.push(row.try_get::<String, _>(format!("__sort_{i}").as_str())?);
            }
            values.push(row.try_get::<String, _>("__sort_id")?);
            Some(values)
        }
        None => None,
    };
    let items = rows
        .iter()
        .map(T::from_row)
        .collect::<Result<Vec<T>, _>>()?;

    let total = match query.page {
        Page::Offset(_) => {
            // Counted over the reachable window only, so the count stops after
            // MAX_OFFSET_ROWS matches however many rows there are.
            let mut count = QueryBuilder::<Postgres>::new(format!(
                "SELECT count(*) FROM (SELECT 1 FROM {}",
                query.table
            ));
            push_where(&mut count, &query.conditions);
            count
                .push(" LIMIT ")
                .push_bind(MAX_OFFSET_ROWS)
                .push(") AS reachable");
            Some(count.build_query_scalar::<i64>().fetch_one(pool).await?)
        }
        Page::After(_) => None,
    };
    Ok(Listed {
        items,
        has_more,
        last_values,
        total,
    })
}

impl<T> Listed<T> {
    /// The same page with its items converted (e.g. rows to JSON views).
    pub fn try_map<U, E>(self, f: impl FnMut(T) -> Result<U, E>) -> Result<Listed<U>, E> {
        Ok(Listed {
            items: self.items.into_iter().map(f).collect::<Result<_, _>>()?,
            has_more: self.has_more,
            last_values: self.last_values,
            total: self.total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATED: SortKey = SortKey {
        field: "created_at",
        expr: "created_at",
        ty: SqlType::Timestamp,
    };
    const TITLE: SortKey = SortKey {
        field: "title",
        expr: "title",
        ty: SqlType::Text,
    };

    fn sort(key: SortKey) -> Vec<Sort> {
        vec![Sort {
            key,
            descending: true,
        }]
    }

    fn values(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    const ID: &str = "0190b3c2-7a4e-7c3d-8e2f-1a2b3c4d5e6f";

    #[test]
    fn postgres_timestamps_and_infinity_are_kept_to_the_microsecond() {
        for (raw, normal) in [
            (
                "2026-01-02 03:04:05.123456+00",
                "2026-01-02T03:04:05.123456Z",
            ),
            ("2026-01-02 03:04:05+05:30", "2026-01-01T21:34:05.000000Z"),
            ("2026-01-02T03:04:05.5Z", "2026-01-02T03:04:05.500000Z"),
            ("-infinity", "-infinity"),
        ] {
            assert_eq!(
                cursor_values(&sort(CREATED), &values(&[raw, ID])),
                Some(values(&[normal, ID])),
                "{raw}"
            );
        }
    }

    #[test]
    fn values_a_cast_would_choke_on_are_refused() {
        for bad in [
            values(&["garbage", ID]),
            values(&["2026-13-01 00:00:00+00", ID]),
            values(&["2026-01-01 00:00:00+00", "not-a-uuid"]),
            values(&["2026-01-01 00:00:00+00"]),
            values(&["2026-01-01 00:00:00+00", ID, ID]),
            values(&["0000-01-01 00:00:00+00", ID]),
        ] {
            assert_eq!(cursor_values(&sort(CREATED), &bad), None, "{bad:?}");
        }
        assert_eq!(cursor_values(&sort(TITLE), &values(&["a\0b", ID])), None);
        assert_eq!(
            cursor_values(&sort(TITLE), &values(&["any title", ID])),
            Some(values(&["any title", ID]))
        );
    }
}
