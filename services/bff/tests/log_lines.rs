//! Log lines leave a real service process while it lives, not only at
//! exit: the kit writes them to stdout in batches, a few milliseconds
//! after their first line (`storefront_kit::telemetry::out`). The `bff` binary
//! runs as a child process, its stdout piped to the test: its startup
//! line, a request's line and its drain lines must each arrive while the
//! process is otherwise idle, and nothing may be left behind at exit.
//! No Redis is needed: the limiter fails open, and `/health` needs none.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The child, killed if the test fails before it has exited.
struct Bff(Child);

impl Drop for Bff {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The child's stdout, line by line, as JSON.
struct Lines {
    rx: Receiver<String>,
    seen: Vec<Value>,
}

impl Lines {
    /// Waits (up to `limit`) for a line that `wanted` accepts; the lines
    /// read on the way are kept.
    fn until(&mut self, limit: Duration, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        if let Some(found) = self.seen.iter().find(|l| wanted(l)) {
            return found.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    let value: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                    self.seen.push(value.clone());
                    if wanted(&value) {
                        return value;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "{what}: not written within {limit:?}; lines: {:#?}",
                        self.seen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{what}: stdout closed first; lines: {:#?}", self.seen)
                }
            }
        }
    }

    /// Every line still to come, up to the end of stdout.
    fn rest(&mut self, limit: Duration) -> &[Value] {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => self.seen.push(serde_json::from_str(&line).unwrap()),
                Err(RecvTimeoutError::Disconnected) => return &self.seen,
                Err(RecvTimeoutError::Timeout) => panic!("stdout still open after {limit:?}"),
            }
        }
    }
}

fn message(line: &Value) -> &str {
    line["fields"]["message"]
        .as_str()
        .or_else(|| line["message"].as_str())
        .unwrap_or("")
}

fn field<'a>(line: &'a Value, name: &str) -> &'a Value {
    match &line["fields"][name] {
        Value::Null => &line[name],
        found => found,
    }
}

#[tokio::test]
async fn a_services_lines_reach_stdout_while_it_idles_and_none_are_left_at_exit() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bff"))
        .env_clear()
        .env("SERVICE_NAME", "bff-log-lines")
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("RATE_LIMIT_REDIS_FAILURE", "open")
        .env("CATALOG_URLS", "http://127.0.0.1:1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the bff binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut bff = Bff(child);
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Lines {
        rx,
        seen: Vec::new(),
    };

    // The startup line names the port: it is written while the BFF waits
    // for its first connection.
    let listening = lines.until(Duration::from_secs(10), "bff listening", |l| {
        message(l) == "bff listening"
    });
    let port = field(&listening, "port")
        .as_u64()
        .unwrap_or_else(|| panic!("no port: {listening}"));

    // A request's line arrives once the BFF is idle again, with no other
    // request after it to push it out.
    let request_id = "log-lines-test-request";
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/health"))
        .header("x-request-id", request_id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let finished = lines.until(Duration::from_secs(10), "the request's line", |l| {
        message(l) == "finished processing request" && l.to_string().contains(request_id)
    });
    assert_eq!(field(&finished, "status"), 200, "{finished}");

    // SIGTERM: the drain lines and the last one are all there when stdout
    // closes.
    let pid = bff.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let all = lines.rest(Duration::from_secs(30));
    let messages: Vec<&str> = all.iter().map(message).collect();
    for wanted in ["server drained", "bff stopped"] {
        assert!(messages.contains(&wanted), "no {wanted:?} in {messages:#?}");
    }
    let status = bff.0.wait().unwrap();
    assert!(status.success(), "bff exited with {status}");
}
