//! Graceful shutdown: on SIGTERM or SIGINT stop accepting, let in-flight
//! requests finish, and give up waiting after a grace period so a stuck
//! request can't keep a replica alive forever. Closing pools is the
//! caller's job once [`serve`] returns, because only it owns them.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::http::server::{self, ServeOptions};

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

/// Serves `router` on `listener` until [`shutdown_signal`], then drains for
/// at most `grace`.
pub async fn serve(listener: TcpListener, router: Router, grace: Duration) -> std::io::Result<()> {
    serve_until(listener, router, grace, shutdown_signal()).await
}

/// [`serve`] with the shutdown trigger supplied, so tests can fire it.
///
/// Every connection gets the header-read timeout
/// ([`crate::http::HEADER_READ_TIMEOUT`]); see `http/server.rs`.
pub async fn serve_until(
    listener: TcpListener,
    router: Router,
    grace: Duration,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, router, grace, signal, ServeOptions::new(false)).await
}

/// [`serve_until`], and every request carries the client's address as
/// `ConnectInfo<SocketAddr>` (the BFF keys anonymous rate limits on it).
/// Same timeouts, same drain.
pub async fn serve_with_connect_info_until(
    listener: TcpListener,
    router: Router,
    grace: Duration,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, router, grace, signal, ServeOptions::new(true)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get_slow(addr: std::net::SocketAddr) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    fn slow_router(delay: Duration) -> Router {
        Router::new().route(
            "/slow",
            get(move || async move {
                tokio::time::sleep(delay).await;
                "done"
            }),
        )
    }

    #[tokio::test]
    async fn in_flight_request_finishes_after_shutdown_signal() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_until(
            listener,
            slow_router(Duration::from_millis(300)),
            Duration::from_secs(5),
            async move {
                let _ = stop_rx.await;
            },
        ));
        let request = tokio::spawn(get_slow(addr));
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop_tx.send(()).unwrap();

        let response = request.await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("done"), "{response}");
        server.await.unwrap().unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn serve_returns_when_grace_expires() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_until(
            listener,
            slow_router(Duration::from_secs(60)),
            Duration::from_millis(200),
            async move {
                let _ = stop_rx.await;
            },
        ));
        let _request = tokio::spawn(get_slow(addr));
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop_tx.send(()).unwrap();
        let finished = tokio::time::timeout(Duration::from_secs(5), server).await;
        assert!(
            finished.is_ok(),
            "serve did not give up after the grace period"
        );
    }
}
