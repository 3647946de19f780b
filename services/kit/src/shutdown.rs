//! The one shutdown mechanism every service uses: a
//! [`CancellationToken`]. [`crate::entry::run`] cancels it on SIGTERM or
//! SIGINT; the server ([`crate::startup::Server`]) stops accepting when it
//! fires, lets in-flight requests finish and gives up waiting after a grace
//! period so a stuck request can't keep a replica alive forever; then the
//! background tasks ([`crate::startup::Tasks`]) are cancelled through their
//! own token and awaited. Closing pools is the service's job after that,
//! because only it owns them.

pub use tokio_util::sync::CancellationToken;

/// What a service's `run_until` serves until: the cancellation of a
/// [`CancellationToken`] (`token.cancelled_owned()`), the one shutdown
/// mechanism — `main` gets it from [`on_signal`], a test from its own token.
pub type Signal = tokio_util::sync::WaitForCancellationFutureOwned;

/// A token cancelled on the first SIGTERM or SIGINT (what [`shutdown_signal`]
/// waits for), for code that takes the one mechanism rather than a future.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        cancel.cancel();
    });
    token
}

/// Resolves on the first SIGTERM (what the supervisor sends) or SIGINT
/// (Ctrl-C when run by hand).
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = interrupt => tracing::info!(signal = "SIGINT", "shutdown requested"),
        () = terminate => tracing::info!(signal = "SIGTERM", "shutdown requested"),
    }
}
