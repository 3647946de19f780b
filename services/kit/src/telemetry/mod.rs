//! Structured logs and distributed traces. Logs: one JSON object per line
//! on stdout (written in batches: [`out`]), which the fleet supervisor
//! redirects to the service's log file, each carrying the `trace_id` and
//! `span_id` of the span it was written in, so one request's lines can be
//! found across every service with `grep` or `jq`.
//!
//! Traces: every span is an OpenTelemetry span (tracing-opentelemetry), so
//! it has W3C ids. The HTTP edge continues the caller's trace from its
//! `traceparent` header ([`crate::http`]); outbound calls carry it on
//! ([`trace_headers`]); so do RabbitMQ messages and outbox rows
//! ([`current_traceparent`], [`context_from_traceparent`]). Spans are
//! exported over OTLP/HTTP only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set;
//! otherwise no exporter, thread or connection exists, and ended spans are
//! dropped.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry};

mod ids;
mod line;
pub mod out;

pub use out::flush;

/// The W3C header (and AMQP header) carrying trace context.
pub const TRACEPARENT: &str = "traceparent";
/// Setting it (e.g. `http://127.0.0.1:4318`) turns OTLP/HTTP export on.
pub const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// The provider installed by [`init`], kept to flush it at [`shutdown`].
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the global subscriber: JSON logs on stdout filtered by
/// `RUST_LOG` (default `info`), and OpenTelemetry spans exported when
/// [`OTLP_ENDPOINT_VAR`] is set. Calling it again is a no-op, so tests may
/// call it freely.
pub fn init(service_name: &str) {
    let exporting = std::env::var(OTLP_ENDPOINT_VAR).is_ok_and(|v| !v.trim().is_empty());
    let provider = match exporting {
        true => match otlp_provider(service_name) {
            Ok(provider) => provider,
            Err(error) => {
                eprintln!("{service_name}: OTLP export is off: {error}");
                plain_provider(service_name)
            }
        },
        false => plain_provider(service_name),
    };
    let installed = build(&provider, service_name, || out::Line, exporting)
        .try_init()
        .is_ok();
    if installed {
        out::start();
        out::flush_on_panic();
        let _ = PROVIDER.set(provider);
        tracing::info!(
            service = service_name,
            otlp_export = exporting,
            "telemetry initialised"
        );
    }
}

/// Flushes spans not yet exported (a no-op when nothing exports) and
/// writes out the log lines still waiting ([`flush`]). The service's
/// `main` calls it after serving.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(error) = provider.shutdown()
    {
        eprintln!("telemetry: flushing spans failed: {error}");
    }
    flush();
}

/// Ids and a service name, no exporter: spans cost an id and a few fields.
pub fn plain_provider(service_name: &str) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_resource(resource(service_name))
        .build()
}

fn otlp_provider(service_name: &str) -> Result<SdkTracerProvider, String> {
    // The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT and appends /v1/traces.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| e.to_string())?;
    Ok(SdkTracerProvider::builder()
        .with_resource(resource(service_name))
        .with_batch_exporter(exporter)
        .build())
}

fn resource(service_name: &str) -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_owned())
        .build()
}

/// The subscriber [`init`] installs when nothing exports spans, writing to
/// `writer`; tests give it a buffer and install it for their thread only.
pub fn subscriber<W>(
    provider: &SdkTracerProvider,
    service_name: &str,
    writer: W,
) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    build(provider, service_name, writer, false)
}

/// The subscriber; `exporting` says whether spans leave the process.
///
/// When they do, the OpenTelemetry layer builds, times and exports every
/// span. When they don't, [`ids::Ids`] keeps only what log lines and
/// outbound calls need, a span's trace and span id: building and dropping
/// an OpenTelemetry span for each tracing span was the larger part of a
/// request's tracing cost (scripts/bench.sh, BENCH_PERF=1).
fn build<W>(
    provider: &SdkTracerProvider,
    service_name: &str,
    writer: W,
    exporting: bool,
) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let otel = exporting.then(|| {
        tracing_opentelemetry::layer().with_tracer(provider.tracer(service_name.to_owned()))
    });
    let ids = (!exporting).then_some(ids::Ids);
    let json = tracing_subscriber::fmt::layer()
        .fmt_fields(line::SpanFields)
        .event_format(line::JsonLine)
        .with_writer(writer);
    Registry::default()
        .with(filter)
        .with(otel)
        .with(ids)
        .with(json)
}

/// `traceparent` of the current span, if it belongs to a valid trace: what
/// an outbound message or an outbox row carries.
pub fn current_traceparent() -> Option<String> {
    let span = tracing::Span::current();
    if let Some(ids) = ids::of(&span) {
        return Some(ids.traceparent());
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The context a received `traceparent` names (an empty context when it is
/// malformed, so the receiver starts a new trace).
pub fn context_from_traceparent(traceparent: &str) -> opentelemetry::Context {
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    TraceContextPropagator::new().extract(&carrier)
}

/// Makes `span` a child of the trace `traceparent` names; a missing or
/// malformed one leaves `span` the root of a new trace.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    if let Some(caller) = ids::Caller::parse(traceparent)
        && ids::continue_from(span, caller)
    {
        return;
    }
    let cx = context_from_traceparent(traceparent);
    if cx.span().span_context().is_valid() {
        // Fails only without the OpenTelemetry layer (some unit tests).
        let _ = span.set_parent(cx);
    }
}

/// Headers carrying the current span's context, for an outbound HTTP call:
/// `client.post(url).headers(telemetry::trace_headers())`. Empty outside
/// a trace.
pub fn trace_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    let span = tracing::Span::current();
    if let Some(ids) = ids::of(&span) {
        if let Ok(value) = HeaderValue::from_str(&ids.traceparent()) {
            headers.insert(TRACEPARENT, value);
        }
        return headers;
    }
    TraceContextPropagator::new()
        .inject_context(&span.context(), &mut HeaderInjector(&mut headers));
    headers
}

/// The `traceparent` header of a request, if it is readable text.
pub fn traceparent_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(TRACEPARENT).and_then(|v| v.to_str().ok())
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A caller's context: trace 4bf9…4736, parent span 00f0…02b7, sampled.
    const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    /// Log lines written by the subscriber under test.
    #[derive(Clone, Default)]
    pub(crate) struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Lines {
        /// What was written, as it was written.
        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }

        pub(crate) fn json(&self) -> Vec<serde_json::Value> {
            self.text()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect()
        }
    }

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    /// Makes `subscriber` this thread's default until the guard drops, such
    /// that no other test thread can switch its spans and events off.
    ///
    /// tracing caches per callsite, for the whole process, whether anybody
    /// wants it. While at most one subscriber exists that cache is filled by
    /// asking the default of whichever thread reaches the callsite first: a
    /// test running without a subscriber then caches "nobody" and this
    /// thread's spans are never made (the edge's request span went missing
    /// in 6 of 60 runs of this crate's tests, 16 test threads beside two
    /// busy loops; in 0 of 120 with this). A second
    /// subscriber that lives as long as the process and wants everything
    /// makes tracing ask all of them instead; rebuilding the cache once ours
    /// is the default mends what was cached before.
    pub(crate) fn scoped(
        subscriber: impl tracing::Subscriber + Send + Sync + 'static,
    ) -> tracing::subscriber::DefaultGuard {
        static ANCHOR: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
        ANCHOR.get_or_init(|| tracing::Dispatch::new(tracing_subscriber::Registry::default()));
        let guard = tracing::subscriber::set_default(subscriber);
        tracing::callsite::rebuild_interest_cache();
        guard
    }

    /// Installs a test subscriber for this thread; its lines land in the
    /// returned buffer until the guard drops.
    pub(crate) fn capture() -> (tracing::subscriber::DefaultGuard, Lines) {
        let lines = Lines::default();
        let provider = plain_provider("test");
        let guard = scoped(subscriber(&provider, "test", lines.clone()));
        (guard, lines)
    }

    /// Runs `f` under a test subscriber; returns its result and the lines.
    fn traced<T>(f: impl FnOnce() -> T) -> (T, Vec<serde_json::Value>) {
        traced_with(false, f)
    }

    /// [`traced`], under the subscriber spans are exported with when
    /// `exporting` (its provider has no exporter: nothing leaves the test).
    fn traced_with<T>(exporting: bool, f: impl FnOnce() -> T) -> (T, Vec<serde_json::Value>) {
        let lines = Lines::default();
        let provider = plain_provider("test");
        let subscriber = build(&provider, "test", lines.clone(), exporting);
        let out = {
            let _guard = scoped(subscriber);
            f()
        };
        (out, lines.json())
    }

    fn ids(traceparent: &str) -> (String, String) {
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "{traceparent}");
        (parts[1].to_owned(), parts[2].to_owned())
    }

    #[test]
    fn a_continued_trace_reaches_the_log_line_and_the_outbound_headers() {
        let (headers, lines) = traced(|| {
            let span = tracing::info_span!("request");
            continue_trace(&span, Some(CALLER));
            let _entered = span.enter();
            tracing::info!("handling");
            trace_headers()
        });
        let sent = headers[TRACEPARENT].to_str().unwrap();
        let (trace, span) = ids(sent);
        assert_eq!(trace, CALLER_TRACE);
        assert_ne!(span, "00f067aa0ba902b7", "our own span, not the caller's");
        let line = lines
            .iter()
            .find(|l| l["fields"]["message"] == "handling")
            .unwrap();
        assert_eq!(line["trace_id"], CALLER_TRACE);
        assert_eq!(line["span_id"], span.as_str());
        assert_eq!(
            line["level"], "INFO",
            "the rest of the line is intact: {line}"
        );
    }

    #[test]
    fn a_malformed_traceparent_starts_a_new_trace() {
        let (sent, _) = traced(|| {
            let span = tracing::info_span!("request");
            continue_trace(&span, Some("00-not-a-trace-01"));
            let _entered = span.enter();
            current_traceparent()
        });
        let (trace, _) = ids(&sent.expect("a new trace"));
        assert_ne!(trace, CALLER_TRACE);
        assert_ne!(trace, "0".repeat(32));
    }

    #[test]
    fn outside_any_span_nothing_is_sent_and_lines_have_no_ids() {
        let ((headers, parent), lines) = traced(|| {
            tracing::info!("outside");
            (trace_headers(), current_traceparent())
        });
        assert!(headers.is_empty());
        assert_eq!(parent, None);
        assert!(lines[0].get("trace_id").is_none(), "{}", lines[0]);
    }

    /// A span continuing [`CALLER`]'s trace, a span inside it and a line
    /// there: both spans are in the caller's trace, each with its own id,
    /// and the line and the outbound headers name the inner one.
    fn a_nested_span_keeps_the_callers_trace(exporting: bool) {
        let ((outer, inner, headers), lines) = traced_with(exporting, || {
            let span = tracing::info_span!("request");
            continue_trace(&span, Some(CALLER));
            let _outer = span.enter();
            let outer = current_traceparent().unwrap();
            let _inner = tracing::info_span!("store").entered();
            tracing::info!("querying");
            (outer, current_traceparent().unwrap(), trace_headers())
        });
        let (outer_trace, outer_span) = ids(&outer);
        let (inner_trace, inner_span) = ids(&inner);
        assert_eq!(
            (outer_trace.as_str(), inner_trace.as_str()),
            (CALLER_TRACE, CALLER_TRACE)
        );
        assert_ne!(outer_span, inner_span);
        assert_eq!(headers[TRACEPARENT].to_str().unwrap(), inner);
        let line = lines
            .iter()
            .find(|l| l["fields"]["message"] == "querying")
            .unwrap();
        assert_eq!(line["trace_id"], CALLER_TRACE);
        assert_eq!(line["span_id"], inner_span.as_str());
    }

    #[test]
    fn a_nested_span_keeps_the_trace_and_gets_its_own_span_id() {
        a_nested_span_keeps_the_callers_trace(false);
    }

    #[test]
    fn with_spans_exported_the_opentelemetry_layer_carries_the_same_ids() {
        a_nested_span_keeps_the_callers_trace(true);
    }
}
