//! Experiments and loads started from the page: this very binary
//! (`std::env::current_exe`) run as a child against the same state dir with
//! `--json` (its report, on stdout) and `--html FILE` (its page, written by
//! the same renderer as any report), its stderr lines kept as progress. One
//! run at a time: the fleet's lab lock would serialise them anyway, and one
//! page shows one run.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// The experiments the page may start (the CLI's own subcommands).
pub const EXPERIMENTS: [&str; 7] = [
    "race", "replay", "flood", "breaker", "hostile", "rotate", "saga",
];

/// What the page asks for.
#[derive(Debug, Clone, Deserialize)]
pub struct Request {
    /// An experiment name, or `load`.
    pub kind: String,
    /// Flags as `name → value`: `true` is a bare switch, `false`/"" left out.
    #[serde(default)]
    pub params: serde_json::Map<String, Value>,
}

/// Where the child finds the fleet: the dashboard's own global options.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub state_dir: PathBuf,
    pub port_base: Option<u16>,
    pub fleet_profile: String,
}

/// The command line for `req`, or why it is refused. Only known commands,
/// flag names of letters, digits and dashes, values of a plain alphabet: the
/// page can start any arm with any parameter, and nothing else.
pub fn argv(fleet: &Fleet, req: &Request, html: &std::path::Path) -> Result<Vec<String>> {
    let load = req.kind == "load";
    if !load && !EXPERIMENTS.contains(&req.kind.as_str()) {
        bail!(
            "unknown run `{}`: one of {} or load",
            req.kind,
            EXPERIMENTS.join(", ")
        );
    }
    let mut a = vec![
        "--state-dir".to_owned(),
        fleet.state_dir.display().to_string(),
    ];
    if let Some(b) = fleet.port_base {
        a.extend(["--port-base".into(), b.to_string()]);
    }
    a.extend(["--fleet".into(), fleet.fleet_profile.clone()]);
    a.push(req.kind.clone());
    for (name, value) in &req.params {
        let name_ok = !name.is_empty()
            && name.len() <= 32
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok
            || [
                "json",
                "html",
                "state-dir",
                "port-base",
                "hdr-out",
                "goose-html",
            ]
            .contains(&name.as_str())
        {
            bail!("parameter `{name}` is not allowed");
        }
        let value = match value {
            Value::Bool(true) => {
                a.push(format!("--{name}"));
                continue;
            }
            Value::Bool(false) | Value::Null => continue,
            Value::Number(n) => n.to_string(),
            Value::String(s) if s.is_empty() => continue,
            Value::String(s) => s.clone(),
            _ => bail!("parameter `{name}`: give a number, a word or a switch"),
        };
        let value_ok = value.len() <= 64
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._:/-".contains(c))
            && !value.starts_with('-');
        if !value_ok {
            bail!("parameter `{name}`: `{value}` has characters a flag value may not have");
        }
        a.extend([format!("--{name}"), value]);
    }
    a.extend(["--json".into(), "--html".into(), html.display().to_string()]);
    Ok(a)
}

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: u64,
    pub kind: String,
    pub argv: Vec<String>,
    /// stderr, line by line.
    pub lines: Vec<String>,
    /// None while running.
    pub exit_code: Option<i32>,
    pub running: bool,
    pub took_ms: u64,
    /// The `--json` document, once the child ended and printed one.
    #[serde(skip)]
    pub json: Option<String>,
    #[serde(skip)]
    pub html: PathBuf,
    #[serde(skip)]
    pub pid: Option<u32>,
    #[serde(skip)]
    started: Option<Instant>,
    pub has_report: bool,
}

/// The current (or last) run.
#[derive(Default, Clone)]
pub struct Runs(Arc<Mutex<Option<Run>>>);

impl Runs {
    pub fn current(&self) -> Option<Run> {
        let mut g = self.0.lock().expect("runs");
        if let Some(r) = g.as_mut().filter(|r| r.running) {
            r.took_ms = r.started.map_or(0, |s| s.elapsed().as_millis() as u64);
        }
        g.clone()
    }

    /// Starts `req` unless a run is going; returns its id.
    pub fn start(&self, fleet: &Fleet, req: &Request, out_dir: &std::path::Path) -> Result<u64> {
        let mut g = self.0.lock().expect("runs");
        if g.as_ref().is_some_and(|r| r.running) {
            bail!("a run is going: one at a time (the fleet has one lab lock)");
        }
        let id = g.as_ref().map_or(1, |r| r.id + 1);
        crate::fleet::private_dir(out_dir)?;
        let html = out_dir.join(format!("run-{id}.html"));
        let _ = std::fs::remove_file(&html);
        let args = argv(fleet, req, &html)?;
        let exe = std::env::current_exe().context("cannot find this program's own binary")?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("cannot start the run")?;
        *g = Some(Run {
            id,
            kind: req.kind.clone(),
            argv: args,
            lines: Vec::new(),
            exit_code: None,
            running: true,
            took_ms: 0,
            json: None,
            html,
            pid: child.id(),
            started: Some(Instant::now()),
            has_report: false,
        });
        drop(g);
        let stderr = child.stderr.take().expect("piped");
        let mut stdout = child.stdout.take().expect("piped");
        let me = self.clone();
        tokio::spawn(async move {
            let lines = {
                let me = me.clone();
                async move {
                    let mut r = BufReader::new(stderr).lines();
                    while let Ok(Some(line)) = r.next_line().await {
                        me.with(id, |run| {
                            if run.lines.len() < 5_000 {
                                run.lines.push(line);
                            }
                        });
                    }
                }
            };
            let out = async move {
                let mut s = String::new();
                let _ = stdout.read_to_string(&mut s).await;
                s
            };
            let (_, out) = tokio::join!(lines, out);
            let status = child.wait().await.ok();
            me.with(id, |run| {
                run.running = false;
                run.exit_code = status.and_then(|s| s.code());
                run.took_ms = run.started.map_or(0, |s| s.elapsed().as_millis() as u64);
                run.json = serde_json::from_str::<Value>(&out).ok().map(|_| out);
                run.has_report = run.html.exists();
            });
        });
        Ok(id)
    }

    /// Stops the running child (SIGTERM: it cleans up as on Ctrl-C).
    pub fn stop(&self) -> Result<()> {
        let g = self.0.lock().expect("runs");
        let Some(pid) = g.as_ref().filter(|r| r.running).and_then(|r| r.pid) else {
            bail!("nothing is running");
        };
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        Ok(())
    }

    fn with(&self, id: u64, f: impl FnOnce(&mut Run)) {
        if let Some(r) = self.0.lock().expect("runs").as_mut().filter(|r| r.id == id) {
            f(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fleet() -> Fleet {
        Fleet {
            state_dir: "/tmp/sf".into(),
            port_base: Some(32500),
            fleet_profile: "dev".into(),
        }
    }

    fn req(kind: &str, params: Value) -> Request {
        Request {
            kind: kind.into(),
            params: params.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn an_experiment_runs_against_the_same_fleet_with_json_and_html() {
        let a = argv(
            &fleet(),
            &req(
                "race",
                json!({"n": 20, "rounds": "3", "seed": 7, "control": true, "x": false}),
            ),
            "/tmp/r.html".as_ref(),
        )
        .unwrap();
        assert_eq!(
            a.join(" "),
            "--state-dir /tmp/sf --port-base 32500 --fleet dev race --control --n 20 --rounds 3 --seed 7 --json --html /tmp/r.html"
        );
        let l = argv(
            &fleet(),
            &req("load", json!({"profile": "smoke", "duration": "5s"})),
            "/h".as_ref(),
        )
        .unwrap();
        assert_eq!(
            l.join(" "),
            "--state-dir /tmp/sf --port-base 32500 --fleet dev load --duration 5s --profile smoke --json --html /h"
        );
    }

    #[test]
    fn unknown_commands_odd_flags_and_odd_values_are_refused() {
        let h: &std::path::Path = "/h".as_ref();
        assert!(argv(&fleet(), &req("down", json!({})), h).is_err());
        for bad in [
            json!({"state-dir": "/etc"}),
            json!({"html": "/etc/x"}),
            json!({"N": 1}),
            json!({"n": "1; rm -rf /"}),
            json!({"n": "--purge"}),
            json!({"n": [1]}),
            json!({"-n": 1}),
        ] {
            assert!(
                argv(&fleet(), &req("race", bad.clone()), h).is_err(),
                "{bad}"
            );
        }
    }
}
