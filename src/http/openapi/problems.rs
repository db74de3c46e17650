//! The problem answers that follow from an operation's shape, so that annotations name only
//! what their handler decides itself (a 409, a 403 of its own check, a 401 with a meaning of
//! its own, which are kept as written). Each rule is what an extractor or layer answers:
//!
//! - a request body ([`crate::http::extract::Parsed`]): 415 for another media type, 413 over
//!   the size limit, 400 for what is not JSON, 422 for JSON that does not fit the request;
//! - query parameters (`StrictQuery`) and `Chronicle-Min-Position`
//!   (`MinPosition`): 400 for a value they cannot read;
//! - a path parameter (`PathId`): 404 for one that names nothing, a malformed id included;
//! - `If-Match` (`IfMatch`): 412 when it does not name the current version;
//! - any security scheme: 401 for bad credentials, also where anonymous callers are welcome,
//!   since a bad token is refused rather than ignored;
//! - a role named in a security requirement (`["admin"]`, `AdminUser`): 403 for signed-in
//!   callers without it.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{Ref, RefOr};

/// Adds the shared answers `operation` implies, keeping any it already describes.
pub(super) fn add(operation: &mut Operation) {
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let takes = |place: ParameterIn, name: Option<&str>| {
        parameters.iter().any(|p| {
            p.parameter_in == place && name.is_none_or(|name| p.name.eq_ignore_ascii_case(name))
        })
    };
    let body = operation.request_body.is_some();
    let query = takes(ParameterIn::Query, None);
    let min_position = takes(ParameterIn::Header, Some("Chronicle-Min-Position"));
    let path = takes(ParameterIn::Path, None);
    let if_match = takes(ParameterIn::Header, Some("If-Match"));
    let (authenticates, needs_role) = security(operation);

    let mut shared = Vec::new();
    if body || query || min_position {
        shared.push(("400", "BadRequest"));
    }
    if authenticates {
        shared.push(("401", "Unauthorized"));
    }
    if needs_role {
        shared.push(("403", "Forbidden"));
    }
    if path {
        shared.push(("404", "NotFound"));
    }
    if if_match {
        shared.push(("412", "PreconditionFailed"));
    }
    if body {
        shared.extend([
            ("413", "PayloadTooLarge"),
            ("415", "UnsupportedMediaType"),
            ("422", "ValidationFailed"),
        ]);
    }
    let responses = &mut operation.responses.responses;
    for (status, name) in shared {
        responses
            .entry(status.into())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
    }
}

/// Whether some requirement names a scheme, and whether every one that does names a role.
fn security(operation: &Operation) -> (bool, bool) {
    // `SecurityRequirement` keeps its schemes private; its serialised form is `{scheme: [roles]}`.
    let schemes: Vec<Vec<serde_json::Value>> = operation
        .security
        .iter()
        .flatten()
        .filter_map(|requirement| match serde_json::to_value(requirement) {
            Ok(serde_json::Value::Object(schemes)) => {
                Some(schemes.into_iter().map(|(_, roles)| roles).collect())
            }
            _ => None,
        })
        .filter(|schemes: &Vec<serde_json::Value>| !schemes.is_empty())
        .collect();
    let needs_role = !schemes.is_empty()
        && schemes.iter().flatten().all(|roles| {
            roles
                .as_array()
                .is_some_and(|roles: &Vec<serde_json::Value>| !roles.is_empty())
        });
    (!schemes.is_empty(), needs_role)
}
