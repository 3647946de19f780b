//! Structured logs: one JSON object per line on stdout, which the fleet
//! supervisor redirects to the service's log file, so logs can be grepped
//! with `jq` and correlated by `request_id`.

use tracing_subscriber::EnvFilter;

/// Installs the global JSON subscriber, filtered by `RUST_LOG` (default
/// `info`). Calling it again is a no-op, so tests may call it freely.
pub fn init(service_name: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let installed = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_writer(std::io::stdout)
        .try_init()
        .is_ok();
    if installed {
        tracing::info!(service = service_name, "telemetry initialised");
    }
}
