//! How every service's `Application::build` starts, and how starting or
//! serving can fail: bind `BIND_ADDR` (port 0 allowed, so tests learn the
//! real port), build pools, serve.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::db::DbError;

/// Why a service could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// `BIND_ADDR` is taken or not ours to bind.
    #[error("cannot bind BIND_ADDR {addr}: {source}")]
    Bind {
        /// The address from the configuration.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A pool could not be built (malformed URL).
    #[error("{0}")]
    Pool(#[from] DbError),
    /// The server failed while serving.
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
}

/// Binds `addr`; returns the listener and the port actually bound.
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, u16), StartupError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { addr, source })?;
    let port = listener
        .local_addr()
        .map_err(|source| StartupError::Bind { addr, source })?
        .port();
    Ok((listener, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn port_zero_reports_the_real_port_and_a_taken_port_names_bind_addr() {
        let (listener, port) = bind(([127, 0, 0, 1], 0).into()).await.unwrap();
        assert_ne!(port, 0);
        let err = bind(([127, 0, 0, 1], port).into()).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot bind BIND_ADDR 127.0.0.1:{port}")),
            "{err}"
        );
        drop(listener);
    }
}
