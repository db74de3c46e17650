//! OpenTelemetry traces, exported to OTLP receivers of the test's own (HTTP/protobuf, and gRPC)
//! that decode what arrives with the protocol's own protobuf types: one command is one trace
//! from the request to the webhook, and without an endpoint nothing is propagated.

use std::collections::HashMap;
use std::io::Write;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{header, StatusCode as AxumStatus};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tonic::transport::server::TcpIncoming;

use crate::helpers::{poll_pause, ServerProcess, TestApp, TestDatabase};
use crate::webhooks::Receiver;

#[derive(Clone, Debug)]
struct RecordedSpan {
    trace_id: String,
    parent_span_id: String,
    name: String,
    attributes: HashMap<String, String>,
}

/// An OTLP/HTTP traces endpoint that keeps every span it is sent.
struct OtlpReceiver {
    endpoint: String,
    spans: Arc<Mutex<Vec<RecordedSpan>>>,
}

impl OtlpReceiver {
    async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| {
                let kept = kept.clone();
                async move {
                    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                        return (AxumStatus::BAD_REQUEST, Vec::new());
                    };
                    kept.lock().unwrap().extend(recorded(request));
                    (
                        AxumStatus::OK,
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { endpoint, spans }
    }

    fn of_trace(&self, trace_id: &str) -> Vec<RecordedSpan> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }

    /// The trace's spans once one is named by each of `names` (by prefix), or what there is at
    /// the deadline.
    async fn wait_for(&self, trace_id: &str, names: &[&str]) -> Vec<RecordedSpan> {
        let started = Instant::now();
        loop {
            let spans = self.of_trace(trace_id);
            let complete = names
                .iter()
                .all(|n| spans.iter().any(|s| s.name.starts_with(n)));
            if complete || started.elapsed() > Duration::from_secs(30) {
                return spans;
            }
            poll_pause().await;
        }
    }
}

fn recorded(request: ExportTraceServiceRequest) -> Vec<RecordedSpan> {
    let mut spans = Vec::new();
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            for span in scope.spans {
                let attributes = span
                    .attributes
                    .iter()
                    .map(|kv| {
                        let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                            Some(AnyValue::StringValue(s)) => s.clone(),
                            Some(AnyValue::IntValue(i)) => i.to_string(),
                            Some(AnyValue::BoolValue(b)) => b.to_string(),
                            Some(other) => format!("{other:?}"),
                            None => String::new(),
                        };
                        (kv.key.clone(), value)
                    })
                    .collect();
                spans.push(RecordedSpan {
                    trace_id: hex::encode(&span.trace_id),
                    parent_span_id: hex::encode(&span.parent_span_id),
                    name: span.name,
                    attributes,
                });
            }
        }
    }
    spans
}

/// An OTLP/gRPC traces collector that keeps every span it is sent.
struct GrpcCollector(Arc<Mutex<Vec<RecordedSpan>>>);

#[tonic::async_trait]
impl TraceService for GrpcCollector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0
            .lock()
            .unwrap()
            .extend(recorded(request.into_inner()));
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl OtlpReceiver {
    async fn start_grpc() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let service = TraceServiceServer::new(GrpcCollector(spans.clone()));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        Self { endpoint, spans }
    }
}

/// An admin made with the CLI, as an operator would; returns a token.
async fn admin_token(db: &TestDatabase, base: &str) -> String {
    let email = format!("tracer-{}@example.com", uuid::Uuid::new_v4().simple());
    let mut child = crate::cli::chronicle(&db.url)
        .args([
            "users",
            "create-admin",
            "--email",
            &email,
            "--name",
            "Tracer",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a tracing password\n")
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let login: Value = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": "a tracing password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    login["data"]["access_token"].as_str().unwrap().to_owned()
}

/// A server process exporting its traces to `endpoint` over `protocol`, on its own database
/// and NATS stream (deleted by [`Exporting::finish`]).
struct Exporting {
    db: TestDatabase,
    server: ServerProcess,
    nats_url: String,
    stream: String,
}

impl Exporting {
    async fn start(endpoint: &str, protocol: &str) -> Self {
        let db = TestDatabase::create().await;
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let stream = format!("TEST_{unique}");
        let prefix = format!("test.{unique}");
        let nats_url =
            std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
        let server = ServerProcess::start(
            &db,
            &[],
            &[
                ("NATS_URL", &nats_url),
                ("NATS_STREAM", &stream),
                ("NATS_SUBJECT_PREFIX", &prefix),
                ("WEBHOOK_ALLOW_PRIVATE_TARGETS", "true"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ],
        )
        .await;
        Self {
            db,
            server,
            nats_url,
            stream,
        }
    }

    async fn finish(self) {
        drop(self.server);
        crate::helpers::delete_stream_named(&self.nats_url, &self.stream).await;
    }
}

#[tokio::test]
async fn one_command_is_one_trace_from_the_request_through_the_projector_and_nats_to_the_webhook() {
    let otlp = OtlpReceiver::start().await;
    let exporting = Exporting::start(&otlp.endpoint, "http/protobuf").await;
    let (db, server) = (&exporting.db, &exporting.server);
    let client = reqwest::Client::new();
    let admin = admin_token(db, &server.base).await;
    let hook = Receiver::start(vec![]).await;
    let created = client
        .post(format!("{}/api/v1/webhooks", server.base))
        .bearer_auth(&admin)
        .json(&json!({"url": hook.url, "event_types": ["post.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let failing = Receiver::start(vec![500; 20]).await;
    let created = client
        .post(format!("{}/api/v1/webhooks", server.base))
        .bearer_auth(&admin)
        .json(&json!({"url": failing.url, "event_types": ["post.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let caller_span = "00f067aa0ba902b7";

    let response = client
        .post(format!("{}/api/v1/posts", server.base))
        .bearer_auth(&admin)
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&json!({"title": "traced", "body": "from request to webhook"}))
        .send()
        .await
        .unwrap();
    let delivered = hook.wait_for(1, Duration::from_secs(30)).await;
    let spans = otlp
        .wait_for(
            &trace_id,
            &[
                "POST /api/v1/posts",
                "post.create",
                "append",
                "posts apply",
                "publish ",
                "process chronicle-webhooks",
                "webhook deliver",
            ],
        )
        .await;

    let failure = failure_of_trace(&client, &server.base, &admin, &trace_id).await;

    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(failure["kind"], "webhook", "{failure}");
    let named = |name: &str| {
        spans
            .iter()
            .find(|s| s.name.starts_with(name))
            .unwrap_or_else(|| {
                let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
                panic!("no span `{name}` in trace {trace_id}: {names:?}")
            })
            .clone()
    };
    let request = named("POST /api/v1/posts");
    assert_eq!(
        request.parent_span_id, caller_span,
        "the caller's span is the parent"
    );
    assert_eq!(request.attributes["http.route"], "/api/v1/posts");
    assert_eq!(request.attributes["http.response.status_code"], "201");
    let request_id = response.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(request.attributes["request_id"], request_id);
    let command = named("post.create");
    assert_eq!(command.attributes["outcome"], "ok");
    assert_eq!(command.attributes["aggregate.type"], "post");
    for later in [
        "append",
        "posts apply",
        "publish ",
        "process chronicle-webhooks",
        "webhook deliver",
    ] {
        named(later);
    }
    assert!(named("publish ").name.ends_with(".post.created"));
    assert_eq!(delivered.len(), 1);
    assert!(
        delivered[0]
            .traceparent
            .starts_with(&format!("00-{trace_id}-")),
        "the webhook receiver continues the trace: {:?}",
        delivered[0].traceparent
    );
    exporting.finish().await;
}

/// The operator page's entry for a failure in this trace (waits for the first failed attempt).
async fn failure_of_trace(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    trace_id: &str,
) -> Value {
    let started = Instant::now();
    loop {
        let listed: Value = client
            .get(format!("{base}/api/v1/admin/failures"))
            .bearer_auth(admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let found = listed["data"]
            .as_array()
            .and_then(|items| items.iter().find(|f| f["trace_id"] == trace_id).cloned());
        match found {
            Some(failure) => return failure,
            None => assert!(
                started.elapsed() < Duration::from_secs(30),
                "no failure with trace id {trace_id}: {listed}"
            ),
        }
        poll_pause().await;
    }
}

#[tokio::test]
async fn traces_go_to_a_grpc_collector_when_the_protocol_says_grpc() {
    let collector = OtlpReceiver::start_grpc().await;
    let exporting = Exporting::start(&collector.endpoint, "grpc").await;
    let (db, server) = (&exporting.db, &exporting.server);
    let admin = admin_token(db, &server.base).await;
    let trace_id = uuid::Uuid::new_v4().simple().to_string();

    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/posts", server.base))
        .bearer_auth(&admin)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({"title": "over grpc", "body": "b"}))
        .send()
        .await
        .unwrap();
    let spans = collector
        .wait_for(
            &trace_id,
            &["POST /api/v1/posts", "post.create", "posts apply"],
        )
        .await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for name in ["POST /api/v1/posts", "post.create", "append", "posts apply"] {
        assert!(names.contains(&name), "no `{name}` in {names:?}");
    }
    exporting.finish().await;
}

#[tokio::test]
async fn without_an_otlp_endpoint_no_trace_context_is_stored_or_passed_on() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin().await;

    let response = app
        .request(reqwest::Method::POST, "/api/v1/posts", Some(&admin))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header(header::CONTENT_TYPE.as_str(), "application/json")
        .body(json!({"title": "untraced", "body": "b"}).to_string())
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    let id = body["data"]["id"].as_str().unwrap();
    let metadata: Value = sqlx::query_scalar("SELECT metadata FROM events WHERE aggregate_id = $1")
        .bind(id)
        .fetch_one(&app.state.pool)
        .await
        .unwrap();
    assert!(metadata.get("correlation_id").is_some());
    assert!(
        metadata.get("traceparent").is_none(),
        "nothing is propagated without an exporter: {metadata}"
    );
}

#[tokio::test]
async fn an_unknown_otlp_protocol_stops_the_server_at_start_with_a_clear_message() {
    let db = TestDatabase::create().await;

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("BIND_ADDR", "127.0.0.1:0")
        .env(
            "JWT_SECRET",
            "test-secret-that-is-long-enough-for-hs256-0123",
        )
        .env("CHRONICLE_ENV", "test")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
        .output()
        .await
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && stderr.contains("carrier-pigeon"),
        "{stderr}"
    );
}
