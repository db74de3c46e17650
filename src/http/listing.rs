//! List requests: `limit`, `cursor` or `page`, `sort`, `fields` and filters, parsed strictly
//! (a bad value is a 400 naming the parameter, never a 500), and list answers.
//!
//! Cursors are opaque and tamper-evident: the last row's sort values and the sort they belong
//! to, signed with a full-length HMAC-SHA256 tag, so a modified, truncated or forged cursor or
//! one reused with another sort is refused; its values are checked against the sort keys' types
//! too, so even a validly signed one never makes a query fail.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use projections::listing::{Listed, Page, Sort, SortKey, MAX_OFFSET_ROWS};
use projections::Position;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::http::error::{ApiError, FieldError};
use crate::http::openapi::schemas::{CursorPagination, OffsetPagination, Pagination};
use crate::http::query::{bad_parameter, bad_query};
use crate::http::respond::Answer;

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

/// What a resource allows in a list request.
pub struct ListSpec {
    /// Binds cursors to the list that issued them.
    pub resource: &'static str,
    pub sort_keys: &'static [SortKey],
    pub filters: &'static [&'static str],
    pub fields: &'static [&'static str],
}

/// The parameters a list request was given, by name.
#[derive(Default)]
pub struct ListValues(pub Vec<(&'static str, String)>);

impl ListValues {
    pub fn push(&mut self, name: &'static str, value: Option<String>) {
        if let Some(value) = value {
            self.0.push((name, value));
        }
    }
}

/// A list's query parameters: the six every list takes, then the list's own filters, as one
/// struct that is both the documented parameters and what `StrictQuery` reads. One struct a
/// list, because serde's `deny_unknown_fields` does not combine with `flatten`.
macro_rules! list_params {
    ($(#[$meta:meta])* $name:ident { $($(#[$field_meta:meta])* $field:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(serde::Deserialize, utoipa::IntoParams)]
        #[into_params(parameter_in = Query)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Page size, 1 to 100.
            #[param(value_type = Option<i64>, minimum = 1, maximum = 100, default = 20, nullable = false)]
            limit: Option<String>,
            /// `next_cursor` of the previous page (not together with `page`).
            #[param(nullable = false)]
            cursor: Option<String>,
            /// Offset pagination: 1-based page number; the answer then has `total` and
            /// `total_pages`. Pages reach the first 10,000 rows only (page × limit may exceed
            /// 10,000 by less than one page; deeper is 400): use `cursor` to go further.
            /// `total` counts at most 10,000 rows.
            #[param(value_type = Option<i64>, minimum = 1, maximum = 10000, nullable = false)]
            page: Option<String>,
            /// Comma list of sort keys, `-` for descending, e.g. `-created_at,title`.
            #[param(default = "-created_at", nullable = false)]
            sort: Option<String>,
            /// Comma list of the fields to return (`id` always comes too); the items then hold
            /// only those fields.
            #[param(nullable = false)]
            fields: Option<String>,
            /// Full-text search.
            #[param(nullable = false)]
            q: Option<String>,
            $($(#[$field_meta])* $field: Option<String>,)*
        }

        impl $crate::http::parse::Parse for $name {
            type Output = $crate::http::listing::ListValues;

            fn parse(
                self,
            ) -> Result<$crate::http::listing::ListValues, Vec<$crate::http::error::FieldError>> {
                let mut values = $crate::http::listing::ListValues::default();
                values.push("limit", self.limit);
                values.push("cursor", self.cursor);
                values.push("page", self.page);
                values.push("sort", self.sort);
                values.push("fields", self.fields);
                values.push("q", self.q);
                $(values.push(stringify!($field), self.$field);)*
                Ok(values)
            }
        }
    };
}
pub(crate) use list_params;

pub struct ListRequest {
    pub sort: Vec<Sort>,
    sort_text: String,
    pub page: Page,
    pub limit: i64,
    pub fields: Option<Vec<String>>,
    pub filters: HashMap<String, String>,
}

impl ListRequest {
    /// Reads the values a list's `StrictQuery` let through (serde has refused unknown and
    /// repeated parameters already).
    pub fn parse(given: ListValues, spec: &ListSpec, cursor_key: &[u8]) -> Result<Self, ApiError> {
        let mut errors = Vec::new();
        let values: HashMap<&str, &str> = given
            .0
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();

        let limit = match values.get("limit") {
            None => DEFAULT_LIMIT,
            Some(raw) => match raw.parse::<i64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    errors.push(FieldError::new(
                        "limit",
                        "RANGE",
                        format!("must be an integer from 1 to {MAX_LIMIT}"),
                    ));
                    DEFAULT_LIMIT
                }
            },
        };

        let sort_text = values
            .get("sort")
            .copied()
            .unwrap_or("-created_at")
            .to_owned();
        let mut sort = Vec::new();
        for part in sort_text.split(',') {
            let (descending, name) = match part.trim().strip_prefix('-') {
                Some(name) => (true, name),
                None => (false, part.trim()),
            };
            match spec.sort_keys.iter().find(|k| k.field == name) {
                Some(key) if !sort.iter().any(|s: &Sort| s.key.field == name) => sort.push(Sort {
                    key: *key,
                    descending,
                }),
                _ => {
                    let allowed: Vec<&str> = spec.sort_keys.iter().map(|k| k.field).collect();
                    errors.push(FieldError::new(
                        "sort",
                        "INVALID_SORT",
                        format!("{name:?} is not one of {}", allowed.join(", ")),
                    ));
                }
            }
        }

        let fields = values.get("fields").map(|raw| {
            raw.split(',')
                .map(|f| f.trim().to_owned())
                .filter(|f| !f.is_empty())
                .collect::<Vec<_>>()
        });
        if let Some(unknown) = fields
            .iter()
            .flatten()
            .find(|f| !spec.fields.contains(&f.as_str()))
        {
            errors.push(FieldError::new(
                "fields",
                "UNKNOWN_FIELD",
                format!("{unknown:?} is not one of {}", spec.fields.join(", ")),
            ));
        }

        let page = match (values.get("page"), values.get("cursor")) {
            (Some(_), Some(_)) => {
                errors.push(FieldError::new(
                    "page",
                    "CONFLICT",
                    "use either page or cursor",
                ));
                Page::After(None)
            }
            (Some(raw), None) => match raw.parse::<i64>() {
                Ok(n) if n >= 1 => Page::Offset(n),
                _ => {
                    errors.push(FieldError::new(
                        "page",
                        "RANGE",
                        "must be an integer of at least 1",
                    ));
                    Page::After(None)
                }
            },
            (None, Some(cursor)) => {
                match decode_cursor(cursor, &scope(spec, &sort_text), &sort, cursor_key) {
                    Some(values) => Page::After(Some(values)),
                    None => {
                        errors.push(FieldError::new(
                            "cursor",
                            "INVALID_CURSOR",
                            "is not a cursor this list issued",
                        ));
                        Page::After(None)
                    }
                }
            }
            (None, None) => Page::After(None),
        };

        if let Page::Offset(number) = &page {
            // Pages reach as deep as their first row lies within the window.
            let deepest = (MAX_OFFSET_ROWS + limit - 1) / limit;
            if *number > deepest {
                errors.push(FieldError::new(
                    "page",
                    "RANGE",
                    format!(
                        "must be at most {deepest} with limit={limit}: pages reach only the \
                         first {MAX_OFFSET_ROWS} rows; use cursor pagination (without page=, \
                         follow next_cursor) to go further"
                    ),
                ));
            }
        }

        if !errors.is_empty() {
            return Err(bad_query(errors));
        }
        let filters = values
            .iter()
            .filter(|(k, _)| spec.filters.contains(k) || **k == "q")
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Ok(Self {
            sort,
            sort_text: scope(spec, &sort_text),
            page,
            limit,
            fields,
            filters,
        })
    }

    pub fn filter(&self, name: &str) -> Option<&str> {
        self.filters
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn time_filter(
        &self,
        name: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
        self.filter(name)
            .map(|raw| {
                chrono::DateTime::parse_from_rfc3339(raw)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .map_err(|_| bad_parameter(name, "FORMAT", "must be an RFC 3339 timestamp"))
            })
            .transpose()
    }

    pub fn uuid_filter(&self, name: &str) -> Result<Option<uuid::Uuid>, ApiError> {
        self.filter(name)
            .map(|raw| {
                uuid::Uuid::parse_str(raw)
                    .map_err(|_| bad_parameter(name, "FORMAT", "must be a UUID"))
            })
            .transpose()
    }

    pub fn enum_filter(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
        match self.filter(name) {
            Some(v) if allowed.contains(&v) => Ok(Some(v.to_owned())),
            Some(_) => Err(bad_parameter(
                name,
                "ENUM",
                &format!("must be one of {}", allowed.join(", ")),
            )),
            None => Ok(None),
        }
    }

    /// Builds the answer: `{data, pagination}` with the page's items cut to `fields`.
    pub fn answer(
        &self,
        listed: Listed<Value>,
        cursor_key: &[u8],
        position: Position,
    ) -> ListAnswer {
        let items: Vec<Value> = listed
            .items
            .into_iter()
            .map(|item| self.project(item))
            .collect();
        let pagination = match self.page {
            Page::Offset(page) => {
                let total = listed.total.unwrap_or(0);
                Pagination::Offset(OffsetPagination {
                    page,
                    limit: self.limit,
                    total,
                    total_pages: (total + self.limit - 1) / self.limit,
                })
            }
            Page::After(_) => {
                let next_cursor = if listed.has_more {
                    listed
                        .last_values
                        .map(|v| encode_cursor(&self.sort_text, &v, cursor_key))
                } else {
                    None
                };
                Pagination::Cursor(CursorPagination {
                    limit: self.limit,
                    next_cursor,
                    has_more: listed.has_more,
                })
            }
        };
        Answer::ok(items)
            .paginated(pagination)
            .position(Some(position))
    }

    /// Runs the list over a read model and renders each row through `view`.
    pub async fn run<Row, View>(
        &self,
        state: &crate::state::AppState,
        source: (&'static str, &'static str),
        conditions: Vec<projections::listing::Condition>,
        position: Position,
        view: impl Fn(Row) -> View,
    ) -> Result<ListAnswer, ApiError>
    where
        Row: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
        View: serde::Serialize,
    {
        let (table, columns) = source;
        let query = projections::listing::ListQuery {
            table,
            columns,
            conditions,
            sort: self.sort.clone(),
            page: self.page.clone(),
            limit: self.limit,
        };
        let listed = projections::listing::list::<Row>(&state.pool, &query)
            .await?
            .try_map(|row| serde_json::to_value(view(row)))
            .map_err(ApiError::internal)?;
        Ok(self.answer(listed, &state.cursor_key, position))
    }

    /// Keeps only the requested fields (and always `id`).
    pub fn project(&self, item: Value) -> Value {
        match (&self.fields, item) {
            (Some(fields), Value::Object(map)) => Value::Object(
                map.into_iter()
                    .filter(|(k, _)| k == "id" || fields.iter().any(|f| f == k))
                    .collect(),
            ),
            (_, item) => item,
        }
    }
}

/// What a cursor is bound to: the list and its sort.
fn scope(spec: &ListSpec, sort_text: &str) -> String {
    format!("{}:{sort_text}", spec.resource)
}

/// A page of a list, its items projected to the requested fields.
pub type ListAnswer = Answer<Vec<Value>>;

type HmacSha256 = Hmac<Sha256>;

fn signature(key: &[u8], payload: &str) -> Vec<u8> {
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return Vec::new(),
    };
    mac.update(payload.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

pub fn encode_cursor(sort_text: &str, values: &[String], key: &[u8]) -> String {
    let payload = URL_SAFE_NO_PAD.encode(json!({ "s": sort_text, "v": values }).to_string());
    let sig = URL_SAFE_NO_PAD.encode(signature(key, &payload));
    format!("{payload}.{sig}")
}

fn decode_cursor(cursor: &str, sort_text: &str, sort: &[Sort], key: &[u8]) -> Option<Vec<String>> {
    let (payload, sig) = cursor.split_once('.')?;
    let given = URL_SAFE_NO_PAD.decode(sig).ok()?;
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    mac.update(payload.as_bytes());
    // The whole tag, compared in constant time: a shortened tag is tampering, and accepting a
    // prefix would let anyone guess one byte in 256 tries.
    mac.verify_slice(&given).ok()?;
    let decoded: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    if decoded["s"] != sort_text {
        return None;
    }
    let values: Vec<String> = serde_json::from_value(decoded["v"].clone()).ok()?;
    projections::listing::cursor_values(sort, &values)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use projections::listing::SqlType;

    const ID: &str = "0190b3c2-7a4e-7c3d-8e2f-1a2b3c4d5e6f";

    fn by_created() -> Vec<Sort> {
        vec![Sort {
            key: SortKey {
                field: "created_at",
                expr: "created_at",
                ty: SqlType::Timestamp,
            },
            descending: true,
        }]
    }

    #[test]
    fn a_cursor_round_trips_and_any_change_to_it_is_refused() {
        let sort = by_created();
        let values = vec!["2026-01-01T00:00:00.000000Z".to_owned(), ID.to_owned()];
        let cursor = encode_cursor("-created_at", &values, b"key");

        assert_eq!(
            decode_cursor(&cursor, "-created_at", &sort, b"key"),
            Some(values)
        );
        assert_eq!(
            decode_cursor(&cursor, "title", &sort, b"key"),
            None,
            "another sort"
        );
        assert_eq!(
            decode_cursor(&cursor, "-created_at", &sort, b"other key"),
            None
        );
        let mut tampered = cursor.clone().into_bytes();
        tampered[3] ^= 1;
        assert_eq!(
            decode_cursor(
                &String::from_utf8(tampered).unwrap(),
                "-created_at",
                &sort,
                b"key"
            ),
            None
        );
        assert_eq!(decode_cursor("garbage", "-created_at", &sort, b"key"), None);
    }

    #[test]
    fn a_shortened_tag_is_refused_however_short() {
        let sort = by_created();
        let values = vec!["2026-01-01T00:00:00.000000Z".to_owned(), ID.to_owned()];
        let cursor = encode_cursor("-created_at", &values, b"key");
        let (payload, sig) = cursor.split_once('.').unwrap();
        let tag = URL_SAFE_NO_PAD.decode(sig).unwrap();
        assert_eq!(tag.len(), 32);
        for keep in [1, 16, 31] {
            let short = format!("{payload}.{}", URL_SAFE_NO_PAD.encode(&tag[..keep]));
            assert_eq!(decode_cursor(&short, "-created_at", &sort, b"key"), None);
        }
    }

    #[test]
    fn a_signed_cursor_with_values_of_the_wrong_type_is_refused() {
        let sort = by_created();
        let bad = vec!["not a time".to_owned(), ID.to_owned()];
        let cursor = encode_cursor("-created_at", &bad, b"key");
        assert_eq!(decode_cursor(&cursor, "-created_at", &sort, b"key"), None);
    }
}
