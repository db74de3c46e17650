//! The OTLP span exporter, configured by the standard `OTEL_*` variables: the endpoint
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` / `_TRACES_ENDPOINT`), the protocol (`http/protobuf`, the
//! default, or `grpc`), `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER` / `_ARG` and the batch
//! processor's `OTEL_BSP_*` (the last ones read by the SDK itself).

use std::time::Duration;

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

/// An export that takes longer is abandoned; the batch processor drops it and goes on.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("OTEL_EXPORTER_OTLP_PROTOCOL must be `http/protobuf` or `grpc`, not `{0}`")]
    Protocol(String),
    #[error("the OTLP exporter: {0}")]
    Build(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("the OTLP HTTP exporter needs a tokio runtime")]
    NoRuntime,
    #[error("the OTLP exporter's HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

fn setting(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The provider whose spans are exported, or `None` when no endpoint is configured.
pub fn tracer_provider() -> Result<Option<SdkTracerProvider>, ExportError> {
    if setting("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
        && setting("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
    {
        return Ok(None);
    }
    let protocol = setting("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| setting("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".to_owned());
    let exporter = match protocol.as_str() {
        "http/protobuf" => SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_http_client(OnTokio::new()?)
            .with_timeout(EXPORT_TIMEOUT)
            .build()?,
        "grpc" => SpanExporter::builder()
            .with_tonic()
            .with_timeout(EXPORT_TIMEOUT)
            .build()?,
        other => return Err(ExportError::Protocol(other.to_owned())),
    };
    let mut resource = Resource::builder();
    if setting("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("chronicle");
    }
    let resource = resource
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build(),
    ))
}

/// The exporter's HTTP client: our own reqwest, run on the server's tokio runtime. The batch
/// processor exports from its own thread, where an async client has no reactor; the request is
/// therefore spawned onto the runtime and only its result crosses back.
#[derive(Debug)]
struct OnTokio {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl OnTokio {
    fn new() -> Result<Self, ExportError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ExportError::NoRuntime)?;
        let client = reqwest::Client::builder().timeout(EXPORT_TIMEOUT).build()?;
        Ok(Self { client, runtime })
    }
}

#[async_trait::async_trait]
impl HttpClient for OnTokio {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        self.runtime
            .spawn(async move {
                let response = client.execute(request).await?;
                let mut answer = Response::builder().status(response.status().as_u16());
                if let Some(headers) = answer.headers_mut() {
                    *headers = response.headers().clone();
                }
                let body = response.bytes().await?;
                Ok(answer.body(body)?)
            })
            .await?
    }
}
