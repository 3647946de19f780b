//! What the steps of `up` share while they run concurrently: the persisted
//! record of what has been started so far, and one gate per dependency that
//! opens once it is usable. Providers and `boot` both use these; neither
//! reaches into the other for them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Result;
use tokio::sync::watch;

use super::process::Spawned;
use super::profile::Dependency;
use super::state::{Component, ComponentKind, FleetState};

/// Shared, persisted record of what has been started so far.
#[derive(Clone)]
pub struct Record {
    state: Arc<Mutex<FleetState>>,
    dir: PathBuf,
}

/// The fleet's one convention for a poisoned lock: take the guard anyway.
/// A step that panicked while holding it has already failed `up`, and the
/// record of what was started is exactly what the cleanup then needs to
/// stop everything; refusing it would leave processes running unrecorded.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Record {
    /// A record of `state`, saved to `dir`/fleet.json on every update.
    pub fn new(state: FleetState, dir: &Path) -> Self {
        Self {
            state: Arc::new(Mutex::new(state)),
            dir: dir.to_path_buf(),
        }
    }

    pub fn update(&self, f: impl FnOnce(&mut FleetState)) -> Result<()> {
        let mut s = lock(&self.state);
        f(&mut s);
        s.save(&self.dir)
    }

    pub fn snapshot(&self) -> FleetState {
        lock(&self.state).clone()
    }

    pub fn spawned(
        &self,
        name: &str,
        kind: ComponentKind,
        sp: Spawned,
        ports: Vec<u16>,
        url: String,
        log: &Path,
    ) -> Result<()> {
        self.update(|s| {
            s.upsert(Component {
                name: name.into(),
                kind,
                pid: Some(sp.pid),
                start_ticks: sp.start_ticks,
                ports,
                url,
                log: Some(log.to_path_buf()),
                boot_ms: None,
                detail: None,
            })
        })
    }

    /// An endpoint we use but did not start (external or compose infra).
    pub fn known(
        &self,
        name: &str,
        url: String,
        took: Duration,
        detail: Option<String>,
    ) -> Result<()> {
        self.update(|s| {
            s.upsert(Component {
                name: name.into(),
                kind: ComponentKind::Infra,
                pid: None,
                start_ticks: None,
                ports: Vec::new(),
                url,
                log: None,
                boot_ms: Some(took.as_millis() as u64),
                detail,
            })
        })
    }

    pub fn ready(&self, name: &str, took: Duration, detail: Option<String>) -> Result<()> {
        self.update(|s| {
            if let Some(c) = s.components.iter_mut().find(|c| c.name == name) {
                c.boot_ms = Some(took.as_millis() as u64);
                c.detail = detail;
            }
        })
    }
}

/// One signal per dependency: flips to `true` once it is usable.
pub struct Gates {
    tx: [watch::Sender<bool>; 4],
}

impl Default for Gates {
    fn default() -> Self {
        Self {
            tx: std::array::from_fn(|_| watch::channel(false).0),
        }
    }
}

impl Gates {
    /// Each dependency's gate: the match is exhaustive, so a new
    /// dependency cannot be left without one.
    fn gate(&self, d: Dependency) -> &watch::Sender<bool> {
        let [postgres, redis, rabbitmq, vault] = &self.tx;
        match d {
            Dependency::Postgres => postgres,
            Dependency::Redis => redis,
            Dependency::Rabbitmq => rabbitmq,
            Dependency::Vault => vault,
        }
    }

    pub fn open(&self, d: Dependency) {
        self.gate(d).send_replace(true);
    }

    pub async fn wait(&self, d: Dependency) {
        let mut rx = self.gate(d).subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }
}
