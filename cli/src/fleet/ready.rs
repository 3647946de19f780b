//! Readiness polling with a deadline: the one way `up` (and the tests) wait.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::process;

/// The client every HTTP readiness probe uses: no proxy (the fleet is on
/// loopback), short timeouts so a hung component fails its poll, not `up`.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .build()
        // Only TLS backend initialisation can fail here, and the binary
        // would not have linked without one.
        .expect("a client with no proxy and two timeouts always builds")
}

/// How often a readiness check is retried.
pub const POLL: Duration = Duration::from_millis(50);

/// What to watch while polling: a process that must stay alive, and its log
/// for the error message.
pub struct Watch<'a> {
    pub what: &'a str,
    pub pid: Option<(i32, Option<u64>)>,
    pub log: Option<&'a Path>,
}

impl Watch<'_> {
    fn log_tail(&self) -> String {
        match self.log {
            Some(log) => {
                let t = process::tail(log, 15);
                if t.is_empty() {
                    String::new()
                } else {
                    format!("\n--- last lines of {} ---\n{t}", log.display())
                }
            }
            None => String::new(),
        }
    }
}

/// Calls `check` until it succeeds, the process dies, or `deadline` passes.
/// Returns the time it took.
pub async fn poll<F, Fut>(watch: Watch<'_>, deadline: Duration, mut check: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let start = Instant::now();
    let mut last_err;
    loop {
        if let Some((pid, ticks)) = watch.pid
            && !process::alive(pid, ticks)
        {
            process::reap(pid);
            bail!("{} exited during start-up{}", watch.what, watch.log_tail());
        }
        match tokio::time::timeout(Duration::from_secs(3), check()).await {
            Ok(Ok(())) => return Ok(start.elapsed()),
            Ok(Err(e)) => last_err = format!("{e:#}"),
            Err(_) => last_err = "check timed out after 3s".into(),
        }
        if start.elapsed() >= deadline {
            bail!(
                "{} not ready after {:.0?} (last check: {last_err}){}",
                watch.what,
                deadline,
                watch.log_tail()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Is something accepting TCP connections on 127.0.0.1:port?
pub fn port_listening(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
        .is_ok()
}

/// The kernel's ephemeral port range, if it can be read.
pub fn ephemeral_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(|x| x.parse().ok());
    Some((it.next()??, it.next()??))
}

/// Can we bind 127.0.0.1:port right now?
pub fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// GET `url` and require a 2xx.
pub async fn http_ok(client: &reqwest::Client, url: &str) -> Result<()> {
    let r = client.get(url).send().await?;
    if r.status().is_success() {
        Ok(())
    } else {
        bail!("{url} answered {}", r.status())
    }
}
