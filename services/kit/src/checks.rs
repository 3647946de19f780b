//! Readiness checks: named async probes that `/ready` runs concurrently.
//!
//! A failing check's message goes to the client (the supervisor, a load
//! balancer), so it is passed through [`redact`] first: driver errors can
//! quote connection strings, and connection strings carry passwords.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use sqlx::PgPool;

/// How long one check may take before it counts as failed; shorter than the
/// pool's acquire timeout so `/ready` answers before a prober gives up.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

type Probe = dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync;

/// One named readiness probe.
#[derive(Clone)]
pub struct Check {
    /// The key under `checks` in the `/ready` body.
    name: String,
    /// Runs the probe; `Err` carries a message for the client.
    probe: Arc<Probe>,
}

/// What one probe found, as reported by `/ready`.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct Outcome {
    /// `"ok"` or `"fail"`.
    pub status: &'static str,
    /// Wall time the probe took, so slow dependencies show before they fail.
    pub latency_ms: u64,
    /// Why it failed, redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Outcome {
    /// Whether the probe passed.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }
}

impl Check {
    /// A check from any async closure; this is how a service adds RabbitMQ
    /// or an upstream HTTP dependency.
    pub fn new<F, Fut, E>(name: impl Into<String>, probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        Self {
            name: name.into(),
            probe: Arc::new(move || {
                let fut = probe();
                Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
            }),
        }
    }

    /// The check's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs the probe under [`CHECK_TIMEOUT`].
    pub async fn run(&self) -> Outcome {
        let started = Instant::now();
        let result = match tokio::time::timeout(CHECK_TIMEOUT, (self.probe)()).await {
            Ok(result) => result,
            Err(_) => Err(format!("timed out after {}s", CHECK_TIMEOUT.as_secs())),
        };
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match result {
            Ok(()) => Outcome {
                status: "ok",
                latency_ms,
                error: None,
            },
            Err(message) => {
                tracing::warn!(check = %self.name, error = %redact(&message), "readiness check failed");
                Outcome {
                    status: "fail",
                    latency_ms,
                    error: Some(redact(&message)),
                }
            }
        }
    }
}

/// `SELECT 1` on the pool: proves a connection can be acquired and used.
pub fn postgres(pool: PgPool) -> Check {
    Check::new("postgres", move || {
        let pool = pool.clone();
        async move { sqlx::query("SELECT 1").execute(&pool).await.map(drop) }
    })
}

/// `PING` through the connection manager (which reconnects on its own).
pub fn redis(connection: ConnectionManager) -> Check {
    Check::new("redis", move || {
        let mut connection = connection.clone();
        async move {
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .map(drop)
        }
    })
}

/// Replaces the userinfo of any `scheme://user:password@host` in `message`
/// with `***`, so a driver error quoting its URL can't leak a password.
pub fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(scheme_end) = rest.find("://") {
        let authority_start = scheme_end + 3;
        out.push_str(&rest[..authority_start]);
        rest = &rest[authority_start..];
        let authority_len = rest
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(rest.len());
        if let Some(at) = rest[..authority_len].rfind('@') {
            out.push_str("***");
            rest = &rest[at..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_userinfo_but_keeps_host() {
        assert_eq!(
            redact("error connecting to postgres://catalog:s3cret@10.0.0.1:5432/db now"),
            "error connecting to postgres://***@10.0.0.1:5432/db now"
        );
        assert_eq!(redact("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
        assert_eq!(
            redact("a amqp://u:p@h/ and b redis://:pw@h2"),
            "a amqp://***@h/ and b redis://***@h2"
        );
    }

    #[tokio::test]
    async fn failing_check_reports_redacted_error() {
        let check = Check::new("mq", || async {
            Err::<(), _>("cannot reach amqp://guest:guest@localhost:5672")
        });
        let outcome = check.run().await;
        assert!(!outcome.is_ok());
        assert_eq!(
            outcome.error.as_deref(),
            Some("cannot reach amqp://***@localhost:5672")
        );
    }
}
