//! Test harness: a real fleet on a free port range in a throwaway state
//! directory, torn down (`down --purge`) when the handle drops, even when the
//! test panicked.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// Ports a fleet may use from its base (infra block + services).
pub const SPAN: u16 = 30;

/// A free port range no other test of this process has taken, below the
/// kernel's ephemeral range (32768+), where outgoing connections could
/// briefly hold one of our ports.
pub fn free_port_base() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Spread processes apart by pid; tests within one process by a counter.
    let spread = (std::process::id() % 200) as u16 * 100;
    loop {
        let base = 10_000 + (spread + NEXT.fetch_add(SPAN + 10, Ordering::SeqCst)) % 22_000;
        if (base..base + SPAN).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
}

pub fn storefront() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_storefront"))
}

/// Binaries the dev profile runs.
pub const SERVICE_BINARIES: &[&str] = &[
    "catalog", "claims", "bff", "identity", "payments", "checkout",
];

/// Fails loudly if the service binaries were not built beside storefront.
pub fn require_service_binaries() {
    let dir = storefront().parent().unwrap().to_path_buf();
    for b in SERVICE_BINARIES {
        assert!(
            dir.join(b).exists(),
            "service binary {b} missing in {}: run `cargo build --workspace` before the tests (scripts/test.sh does)",
            dir.display()
        );
    }
}

pub struct Fleet {
    pub state_dir: tempfile::TempDir,
    pub port_base: u16,
    pub profile: String,
    pub env: Vec<(String, String)>,
}

impl Fleet {
    /// A fleet handle (nothing started yet) with the given profile.
    pub fn new(profile: &str) -> Self {
        Self {
            state_dir: tempfile::Builder::new()
                .prefix("storefront-test-")
                .tempdir()
                .unwrap(),
            port_base: free_port_base(),
            profile: profile.to_owned(),
            env: Vec::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        self.state_dir.path()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(storefront());
        c.current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("--fleet")
            .arg(&self.profile)
            .arg("--state-dir")
            .arg(self.dir())
            .arg("--port-base")
            .arg(self.port_base.to_string())
            .args(args)
            .env("CI", "true");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run storefront")
    }

    /// Runs and parses stdout as JSON, asserting the exit code.
    pub fn json(&self, args: &[&str], code: i32) -> serde_json::Value {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "storefront {args:?}\nstdout: {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out.stdout)))
    }

    /// Live processes started for this fleet (they carry its marker).
    pub fn processes(&self) -> Vec<i32> {
        let needle = format!("STOREFRONT_FLEET={}", self.dir().display()).into_bytes();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let zombie = stat
                    .rfind(')')
                    .is_some_and(|i| stat[i + 2..].starts_with('Z'));
                !zombie && env.split(|b| *b == 0).any(|kv| kv == needle.as_slice())
            })
            .collect()
    }

    /// Ports of the range that accept connections.
    pub fn listening(&self) -> Vec<u16> {
        (self.port_base..self.port_base + SPAN)
            .filter(|p| {
                std::net::TcpStream::connect_timeout(
                    &([127, 0, 0, 1], *p).into(),
                    Duration::from_millis(100),
                )
                .is_ok()
            })
            .collect()
    }

    /// Polls until nothing of the fleet runs or listens, or the deadline passes.
    pub fn assert_nothing_left(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (procs, ports) = (self.processes(), self.listening());
            if procs.is_empty() && ports.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "left running: pids {procs:?}, listening ports {ports:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `sql` on the fleet's Postgres as superuser: the rows it touched,
    /// and its first row's first column as text (if it returned any).
    pub fn sql(&self, sql: &str) -> (u64, Option<String>) {
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.dir().join("fleet.json")).unwrap()).unwrap();
        let url = state["endpoints"]["postgres_admin_url"]
            .as_str()
            .unwrap()
            .to_owned();
        let sql = sql.to_owned();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                use sqlx::{Connection, Row};
                let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
                if sql.starts_with("SELECT") {
                    let row = sqlx::query(&sql).fetch_optional(&mut c).await.unwrap();
                    (0, row.map(|r| r.get::<String, _>(0)))
                } else {
                    let done = sqlx::query(&sql).execute(&mut c).await.unwrap();
                    (done.rows_affected(), None)
                }
            })
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.run(&["down", "--purge"]);
        // Whatever `down` missed (it is what the tests check): kill it so one
        // failing test doesn't leave servers behind for the next.
        for pid in self.processes() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
