//! Logging and tracing: log lines (JSON in production, readable in development; `RUST_LOG`
//! filters) and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, OpenTelemetry traces over OTLP.

mod export;
pub mod propagation;
pub mod spans;

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Level, Metadata};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::LogFormat;

pub use export::ExportError;

const DEFAULT_FILTER: &str =
    "info,sqlx=warn,tower_http=warn,opentelemetry=warn,opentelemetry_sdk=warn,opentelemetry_otlp=warn,opentelemetry-otlp=warn";

/// Keeps logging and tracing running; dropping it flushes both (the last log lines and the
/// spans still queued for export).
pub struct Telemetry {
    _logs: tracing_appender::non_blocking::WorkerGuard,
    traces: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.traces.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("chronicle: flushing traces at exit: {e}");
            }
        }
    }
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the subscriber. Lines go to stdout from a background thread, so a request never
/// waits on the terminal or the log collector (not lossy: when the writer falls far behind,
/// logging waits rather than dropping lines). Traces are exported only when an OTLP endpoint is
/// configured; without one no tracing layer exists, so the spans that only traces need
/// (`TRACE` level) are disabled at their call sites and cost nothing.
///
/// `Ok(None)` when a subscriber is already installed (tests start many servers in one process
/// and keep the first); an error when the OTLP configuration is unusable.
pub fn init(format: LogFormat) -> Result<Option<Telemetry>, ExportError> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stdout());
    let logs: BoxedLayer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
    };
    let provider = export::tracer_provider()?;
    let mut layers = vec![logs];
    if let Some(provider) = &provider {
        use opentelemetry::trace::TracerProvider as _;
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("chronicle"))
                .with_location(false)
                .with_threads(false)
                .with_filter(filter_fn(traced))
                .boxed(),
        );
    }
    if tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .is_err()
    {
        return Ok(None);
    }
    if provider.is_some() {
        propagation::enable();
    }
    Ok(Some(Telemetry {
        _logs: guard,
        traces: provider,
    }))
}

/// What becomes part of a trace: Chronicle's own spans (whatever their level), and warnings and
/// errors as span events, so a failed step shows why in the trace.
fn traced(metadata: &Metadata<'_>) -> bool {
    if metadata.is_span() {
        let target = metadata.target();
        target.starts_with("chronicle") || target.starts_with("projections")
    } else {
        *metadata.level() <= Level::WARN
    }
}
