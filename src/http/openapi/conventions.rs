//! What the layers do for every route, added to every operation of the document: the request id,
//! CORS, the rate limit on `/api/v1` (its headers on every 2xx and 4xx, its 429), idempotency
//! keys on POSTs, `security: []` on public operations, and the 408 and 500 that any route can
//! give. [`super::problems`] adds the problem answers that follow from an operation's input and
//! security.
//! Handlers' annotations describe only what the handler itself does.

use std::collections::BTreeMap;

use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{Schema, SchemaType};
use utoipa::openapi::{Components, ContentBuilder, OpenApi, Ref, RefOr, Required, Response};
use utoipa::openapi::{ObjectBuilder, Type};
use utoipa::PartialSchema;

use super::schemas::PROBLEM_JSON;
use crate::http::idempotency::NEVER_KEPT;

const REQUEST_ID: &str = "X-Request-Id";

fn string_header(description: &str) -> Header {
    HeaderBuilder::new()
        .schema(String::schema())
        .description(Some(description))
        .build()
}

fn header_parameter(name: &str, description: &str, min: usize, max: usize) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(min))
                .max_length(Some(max)),
        ))
        .build()
}

fn reference(name: &str) -> RefOr<Response> {
    RefOr::Ref(Ref::from_response_name(name))
}

/// Every `(method, operation)` of a path item.
pub(super) fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> [(&'static str, &mut Option<Operation>); 8] {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("patch", &mut item.patch),
        ("head", &mut item.head),
        ("options", &mut item.options),
        ("trace", &mut item.trace),
    ]
}

pub fn apply(document: &mut OpenApi) {
    let components = document.components.get_or_insert_with(Components::new);
    for (name, response) in components.responses.iter_mut() {
        if let RefOr::T(response) = response {
            add_request_id(response);
            // The timeout layer answers from outside CORS and the rate limiter, with neither's
            // headers.
            if name == "RequestTimeout" {
                continue;
            }
            add_cors_origin(response);
            // The shared 4xx answers are the ones /api/v1 routes give, after the rate limiter.
            if name != "InternalError" && name != "Unavailable" {
                add_rate_limit_headers(response);
            }
        }
    }
    let shared = components.responses.clone();

    for (path, item) in document.paths.paths.iter_mut() {
        let api = path.starts_with("/api/v1/");
        for (method, operation) in operations(item) {
            let Some(operation) = operation.as_mut() else {
                continue;
            };
            // An operation that names no scheme is public (health, documents, sign-in): say so
            // rather than leave readers to guess whether a global requirement applies.
            operation.security.get_or_insert_with(Vec::new);
            let parameters = operation.parameters.get_or_insert_with(Vec::new);
            parameters.push(header_parameter(
                REQUEST_ID,
                "Your id for this request (1-128 characters of `A-Za-z0-9._-`): it comes back \
                 in `X-Request-Id`, is the problem's `trace_id` and the `correlation_id` of the \
                 events the request appends. Otherwise the server makes one.",
                1,
                128,
            ));
            for parameter in parameters.iter_mut() {
                bound_string(parameter);
            }
            // Before `idempotency`, which extends the 422 a body implies.
            super::problems::add(operation);
            let responses = &mut operation.responses.responses;
            if api {
                responses
                    .entry("429".into())
                    .or_insert_with(|| reference("RateLimited"));
                responses
                    .entry("503".into())
                    .or_insert_with(|| reference("Unavailable"));
            }
            // The timeout layer wraps every route, probes and documents included.
            responses
                .entry("408".into())
                .or_insert_with(|| reference("RequestTimeout"));
            responses
                .entry("500".into())
                .or_insert_with(|| reference("InternalError"));
            if api && method == "post" {
                idempotency(operation, &shared, path.starts_with(NEVER_KEPT));
            }
            for (status, response) in operation.responses.responses.iter_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                add_request_id(response);
                add_cors_origin(response);
                describe_known_headers(response);
                if api && (status.starts_with('2') || status.starts_with('4')) {
                    add_rate_limit_headers(response);
                }
            }
        }
    }
    super::envelopes::name(document);
    super::envelopes::prune_unused(document);
}

fn add_request_id(response: &mut Response) {
    response.headers.insert(
        REQUEST_ID.into(),
        string_header("The request's id: the caller's, when acceptable, else a new one."),
    );
}

/// The headers handlers name without a description (`headers(("ETag"))`) mean the same
/// everywhere, so they are described once, here.
fn describe_known_headers(response: &mut Response) {
    for (name, header) in response.headers.iter_mut() {
        if header.description.is_some() {
            continue;
        }
        header.description = match name.as_str() {
            "ETag" => Some(
                "`\"<version>\"`: the aggregate's version, for `If-Match` and `If-None-Match`.",
            ),
            "Location" => Some("The URL of the created resource."),
            "Chronicle-Position" => Some(
                "Opaque log position token: of the command's last event, or that the read \
                 models of a query had reached. Accepted by `Chronicle-Min-Position`.",
            ),
            "X-Consistency" => Some(
                "`eventual` when the answer was given before the read models applied the \
                 command (wait bound reached, or `Prefer: respond-async`).",
            ),
            "WWW-Authenticate" => Some("`Bearer`"),
            _ => None,
        }
        .map(str::to_owned);
    }
}

/// Gives a string parameter that names no bound of its own (length, enum, or a format such as
/// `uuid` that fixes it) the one every parameter has: `MAX_QUERY_VALUE` characters for query
/// values, which [`crate::http::query::StrictQuery`] refuses beyond (and path values, which
/// name something that exists or are a 404), and `MAX_HEADER_VALUE` for headers.
fn bound_string(parameter: &mut Parameter) {
    let Some(RefOr::T(Schema::Object(schema))) = parameter.schema.as_mut() else {
        return;
    };
    let string = matches!(&schema.schema_type, SchemaType::Type(Type::String))
        || matches!(&schema.schema_type, SchemaType::Array(types) if types.contains(&Type::String));
    if !string
        || schema.max_length.is_some()
        || schema.enum_values.is_some()
        || schema.format.is_some()
    {
        return;
    }
    schema.max_length = Some(match parameter.parameter_in {
        ParameterIn::Header => MAX_HEADER_VALUE,
        _ => crate::http::query::MAX_QUERY_VALUE,
    });
}

/// Longer than any header value the server reads (tokens, ETags, `Prefer`).
const MAX_HEADER_VALUE: usize = 1024;

fn add_cors_origin(response: &mut Response) {
    response.headers.insert(
        "Access-Control-Allow-Origin".into(),
        string_header(
            "The request's `Origin` when it is one of `CORS_ALLOWED_ORIGINS`; absent otherwise \
             (no origin is allowed unless configured).",
        ),
    );
}

/// The budget's headers, sent on every answer under /api/v1 that reached the rate limiter.
/// The `X-RateLimit-*` copies are only mentioned: documenting both sets would read as two
/// competing rate-limit conventions to linters and client generators.
fn add_rate_limit_headers(response: &mut Response) {
    for (name, description) in [
        (
            "RateLimit-Limit",
            "Requests allowed per minute (also sent as `X-RateLimit-Limit`).",
        ),
        (
            "RateLimit-Remaining",
            "Requests left in the budget (also `X-RateLimit-Remaining`).",
        ),
        (
            "RateLimit-Reset",
            "Seconds until the budget is full again, or, with none left, until the next \
             request is allowed (also `X-RateLimit-Reset`).",
        ),
    ] {
        let header = HeaderBuilder::new()
            .schema(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::Int64,
                    )))
                    .minimum(Some(0))
                    .maximum(Some(u32::MAX)),
            )
            .description(Some(description))
            .build();
        response.headers.insert(name.into(), header);
    }
}

/// `Idempotency-Key` on every POST, with the answers it can add; `/auth/*` answers (tokens) are
/// never kept, so there the key is only checked.
fn idempotency(
    operation: &mut Operation,
    shared: &BTreeMap<String, RefOr<Response>>,
    never_kept: bool,
) {
    let description = if never_kept {
        "Accepted, but this answer is never kept (it carries credentials): the call always runs."
    } else {
        "Makes the POST safe to retry: the first completed answer is kept 24 h per caller and \
         key (sealed at rest), and a retry of the same request by the same caller, who must \
         still authenticate, gets it again (`Idempotent-Replayed: true`) without appending \
         anything."
    };
    operation
        .parameters
        .get_or_insert_with(Vec::new)
        .push(header_parameter("Idempotency-Key", description, 1, 255));
    let responses = &mut operation.responses.responses;
    if never_kept {
        responses
            .entry("400".into())
            .or_insert_with(|| reference("BadRequest"));
        return;
    }
    for (status, response) in responses.iter_mut() {
        if let (true, RefOr::T(response)) = (status.starts_with('2'), response) {
            response.headers.insert(
                "Idempotent-Replayed".into(),
                string_header("`true` when this is the kept answer to an earlier request."),
            );
        }
    }
    responses
        .entry("400".into())
        .or_insert_with(|| reference("BadRequest"));
    extend_problem(
        responses,
        "409",
        "IDEMPOTENCY_KEY_IN_USE: a request with this Idempotency-Key is still running.",
        shared,
    );
    extend_problem(
        responses,
        "422",
        "IDEMPOTENCY_KEY_REUSED: this Idempotency-Key was used for a different request.",
        shared,
    );
}

/// Adds `text` to the problem response for `status`, creating it when the operation has none.
fn extend_problem(
    responses: &mut BTreeMap<String, RefOr<Response>>,
    status: &str,
    text: &str,
    shared: &BTreeMap<String, RefOr<Response>>,
) {
    let existing = match responses.remove(status) {
        Some(RefOr::T(response)) => Some(response),
        Some(RefOr::Ref(reference)) => {
            let name = reference
                .ref_location
                .rsplit('/')
                .next()
                .unwrap_or_default();
            match shared.get(name) {
                Some(RefOr::T(response)) => Some(response.clone()),
                _ => None,
            }
        }
        None => None,
    };
    let response = match existing {
        Some(mut response) => {
            response.description = format!("{} Or {text}", response.description);
            response
        }
        None => {
            let mut response = Response::new(text);
            response.content.insert(
                PROBLEM_JSON.into(),
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            );
            response
        }
    };
    responses.insert(status.into(), RefOr::T(response));
}
