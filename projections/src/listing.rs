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
            let mut count =
                QueryBuilder::<Postgres>::new(format!("SELECT count(*) FROM {}", query.table));
            push_where(&mut count, &query.conditions);
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
