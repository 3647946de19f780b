//! The accept loop every service runs. Not `axum::serve`: that cannot set
//! hyper's header-read timeout, so a client could hold a connection open
//! forever by never finishing its headers. Here each HTTP/1.1 connection is
//! served by hyper with a timer and [`HEADER_READ_TIMEOUT`], watched for a
//! graceful drain, and optionally handed the client's address as
//! `ConnectInfo<SocketAddr>` (what the BFF's per-address limits need).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// A client that has not sent its complete request headers by then is
/// disconnected. hyper measures it from the moment the connection waits for
/// a request, so it also closes a keep-alive connection idle this long.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client of a storefront service should keep an idle pooled
/// connection (`reqwest::ClientBuilder::pool_idle_timeout`): well below
/// [`HEADER_READ_TIMEOUT`], so the client always drops an idle connection
/// before the server closes it, and never sends a request into a socket the
/// server is closing (the keep-alive race, seen as "connection closed before
/// message completed").
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

// Changing either constant must keep the client's the shorter, with margin.
const _: () = assert!(CLIENT_IDLE_TIMEOUT.as_millis() * 2 <= HEADER_READ_TIMEOUT.as_millis());

/// How a server treats its connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServeOptions {
    /// See [`HEADER_READ_TIMEOUT`]; tests shorten it.
    pub header_read: Duration,
    /// Insert `ConnectInfo<SocketAddr>` into every request.
    pub connect_info: bool,
}

impl ServeOptions {
    pub(crate) fn new(connect_info: bool) -> Self {
        Self {
            header_read: HEADER_READ_TIMEOUT,
            connect_info,
        }
    }
}

/// Serves `router` on `listener` until `signal`, then stops accepting and
/// waits at most `grace` for in-flight requests (idle keep-alive
/// connections are closed at once).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    grace: Duration,
    signal: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut signal = std::pin::pin!(signal);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            () = &mut signal => break,
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            if options.connect_info {
                request.extensions_mut().insert(ConnectInfo(peer));
            }
            router.clone().oneshot(request.map(Body::new))
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("no longer accepting connections; draining in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("server drained"),
        () = tokio::time::sleep(grace) => tracing::warn!(
            grace_secs = grace.as_secs_f64(),
            "grace period over; abandoning in-flight requests"
        ),
    }
    Ok(())
}

/// An accept error is the listener's, not one client's when it is about
/// resources (too many open files): back off briefly instead of spinning.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accept failed; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Peer address type, re-exported for callers of the connect-info server.
pub type ClientAddr = ConnectInfo<SocketAddr>;

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Extension;
    use axum::routing::get;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn spawn(options: ServeOptions) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/peer",
            get(|info: Option<Extension<ClientAddr>>| async move {
                info.map_or("none".to_owned(), |Extension(ConnectInfo(a))| {
                    a.ip().to_string()
                })
            }),
        );
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(
            listener,
            router,
            Duration::from_secs(1),
            async move {
                let _ = stop_rx.await;
            },
            options,
        ));
        (addr, stop_tx)
    }

    async fn get_peer(addr: SocketAddr) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_disconnected_within_the_timeout() {
        let options = ServeOptions {
            header_read: Duration::from_millis(300),
            connect_info: false,
        };
        let (addr, _stop) = spawn(options).await;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let mut rest = Vec::new();
        // Reading to the end only finishes once the server closes; the
        // deadline is generous, the assertion is that it closes at all.
        let closed =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "connection still open after 10 s");
        assert!(started.elapsed() >= Duration::from_millis(250));
    }

    #[tokio::test]
    async fn connect_info_is_handed_to_handlers_only_when_asked_for() {
        let (with, _s1) = spawn(ServeOptions::new(true)).await;
        let (without, _s2) = spawn(ServeOptions::new(false)).await;
        assert!(get_peer(with).await.ends_with("127.0.0.1"));
        assert!(get_peer(without).await.ends_with("none"));
    }
}
