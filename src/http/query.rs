//! Query strings, read strictly: a value too long or holding NUL, an unknown parameter, a
//! repeated one or a value the route refuses is a 400 naming the parameter, never a 500 and
//! never silently ignored.

use axum::extract::{FromRequestParts, RawQuery};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::http::error::{ApiError, FieldError};
use crate::http::parse::{Fields, Parse};

/// The longest query parameter value any route takes (a cursor, a search, a field list); the
/// OpenAPI document states it as the parameters' `maxLength`.
pub const MAX_QUERY_VALUE: usize = 2048;

/// The query deserialised into `T`, whose `deny_unknown_fields` refuses what a route does not
/// take, then parsed by `T::parse` into what the handler needs; `T` is also the route's
/// documented parameters, so the document and the parser cannot disagree.
pub struct StrictQuery<T: Parse>(pub T::Output);

/// A 400 listing every refused parameter.
pub fn bad_query(errors: Vec<FieldError>) -> ApiError {
    let detail = match errors.len() {
        1 => "1 query parameter is invalid".to_owned(),
        n => format!("{n} query parameters are invalid"),
    };
    ApiError::Malformed { detail, errors }
}

pub fn bad_parameter(name: &str, code: &str, message: &str) -> ApiError {
    bad_query(vec![FieldError::new(name, code, message)])
}

/// An integer parameter from 1 to `max`, `default` when absent.
pub fn page_size(
    fields: &mut Fields,
    name: &str,
    raw: Option<&str>,
    max: i64,
    default: i64,
) -> Option<i64> {
    match raw {
        None => Some(default),
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => Some(n),
            _ => {
                fields.refuse(name, "RANGE", format!("must be an integer from 1 to {max}"));
                None
            }
        },
    }
}

/// An operator's log list (webhook deliveries, the email outbox): an optional `status` among
/// a route's own, and `limit` from 1 to 100 (default 50).
pub struct StatusList {
    pub status: Option<String>,
    pub limit: i64,
}

impl StatusList {
    /// The whole parse of a log list's query, for routes whose only parameters these are.
    pub fn from_query(
        status: Option<String>,
        limit: Option<&str>,
        statuses: &[&str],
    ) -> Result<Self, Vec<FieldError>> {
        let mut fields = Fields::default();
        let list = Self::parse(&mut fields, status, limit, statuses);
        fields.finish(list)
    }

    fn parse(
        fields: &mut Fields,
        status: Option<String>,
        limit_raw: Option<&str>,
        statuses: &[&str],
    ) -> Option<Self> {
        let status = match status {
            Some(status) if !statuses.contains(&status.as_str()) => {
                let allowed = match statuses.split_last() {
                    Some((last, [])) => (*last).to_owned(),
                    Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                    None => String::new(),
                };
                fields.refuse("status", "ENUM", format!("must be {allowed}"));
                None
            }
            status => Some(status),
        };
        let limit = page_size(fields, "limit", limit_raw, 100, 50);
        Some(Self {
            status: status?,
            limit: limit?,
        })
    }
}

async fn raw_query(parts: &mut Parts) -> Result<String, ApiError> {
    let RawQuery(raw) = RawQuery::from_request_parts(parts, &())
        .await
        .map_err(|_| ApiError::NotFound)?;
    Ok(raw.unwrap_or_default())
}

/// Refuses a value too long or holding NUL before serde sees the query.
fn checked_pairs(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if let Some((name, _)) = pairs
        .iter()
        .find(|(_, v)| v.chars().count() > MAX_QUERY_VALUE)
    {
        return Err(bad_parameter(
            name,
            "LENGTH",
            &format!("must be at most {MAX_QUERY_VALUE} characters"),
        ));
    }
    // Postgres text cannot hold NUL; refuse it here rather than fail in the query.
    if let Some((name, _)) = pairs
        .iter()
        .find(|(k, v)| k.contains('\0') || v.contains('\0'))
    {
        return Err(bad_parameter(
            name,
            "FORMAT",
            "must not contain NUL characters",
        ));
    }
    Ok(pairs)
}

impl<S, T> FromRequestParts<S> for StrictQuery<T>
where
    S: Send + Sync,
    T: Parse,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let raw = raw_query(parts).await?;
        checked_pairs(&raw)?;
        let query: T = deserialize(&raw)?;
        query.parse().map(StrictQuery).map_err(bad_query)
    }
}

/// serde names the offending parameter in its message (``unknown field `foo` ``); the path
/// says where, for values of the wrong type.
fn deserialize<T: DeserializeOwned>(raw: &str) -> Result<T, ApiError> {
    let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(raw.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let named = message.split('`').nth(1).unwrap_or_default().to_owned();
        if message.starts_with("unknown field") {
            bad_parameter(&named, "UNKNOWN_PARAMETER", "is not a parameter here")
        } else if message.starts_with("duplicate field") {
            bad_parameter(&named, "DUPLICATE", "may be given once")
        } else if message.starts_with("missing field") {
            bad_parameter(&named, "REQUIRED", "is required")
        } else {
            bad_parameter(&path, "FORMAT", &message)
        }
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        limit: Option<String>,
    }

    fn refused(raw: &str) -> FieldError {
        match deserialize::<Sample>(raw) {
            Err(ApiError::Malformed { errors, .. }) => errors[0].clone(),
            other => panic!("{raw:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn unknown_and_repeated_parameters_are_named() {
        let unknown = refused("limit=1&foo=2");
        assert_eq!(
            (unknown.field.as_str(), unknown.code.as_str()),
            ("foo", "UNKNOWN_PARAMETER")
        );
        let repeated = refused("limit=1&limit=2");
        assert_eq!(
            (repeated.field.as_str(), repeated.code.as_str()),
            ("limit", "DUPLICATE")
        );
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct OutboxQuery {
        status: Option<String>,
        limit: Option<String>,
    }

    impl Parse for OutboxQuery {
        type Output = StatusList;

        fn parse(self) -> Result<StatusList, Vec<FieldError>> {
            StatusList::from_query(
                self.status,
                self.limit.as_deref(),
                &["pending", "sent", "failed"],
            )
        }
    }

    /// The list, or the first parameter refused.
    fn status_list(raw: &str) -> Result<StatusList, String> {
        let query = match deserialize::<OutboxQuery>(raw) {
            Ok(query) => query,
            Err(ApiError::Malformed { errors, .. }) => return Err(errors[0].field.clone()),
            Err(other) => panic!("expected a 400, got {other:?}"),
        };
        query.parse().map_err(|errors| errors[0].field.clone())
    }

    #[test]
    fn a_status_list_takes_a_known_status_and_a_bounded_limit_and_refuses_the_rest() {
        let list = status_list("status=sent&limit=7").expect("accepted");
        let default = status_list("").expect("accepted");

        assert_eq!((list.status.as_deref(), list.limit), (Some("sent"), 7));
        assert_eq!((default.status, default.limit), (None, 50));
        for (bad, field) in [
            ("status=succeeded", "status"),
            ("limit=0", "limit"),
            ("limit=101", "limit"),
            ("limit=ten", "limit"),
            ("sort=-id", "sort"),
        ] {
            assert_eq!(status_list(bad).err().as_deref(), Some(field), "{bad}");
        }
    }

    #[test]
    fn a_known_parameter_is_read() {
        let sample: Sample = deserialize("limit=7").expect("accepted");
        assert_eq!(sample.limit.as_deref(), Some("7"));
    }
}
