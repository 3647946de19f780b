//! Child processes that outlive `storefront up`: each one leads its own
//! process group (so a terminal's Ctrl-C doesn't reach it and `down` can
//! signal everything it forked), writes to its own log file, and is known by
//! pid + start time so a reused pid is never mistaken for ours.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// A spawned process: pid and its start time.
#[derive(Debug, Clone, Copy)]
pub struct Spawned {
    pub pid: i32,
    pub start_ticks: Option<u64>,
}

/// Environment variable every fleet process (and everything it forks)
/// carries: the state directory. `down` sweeps by it; tests audit by it.
pub const MARKER: &str = "STOREFRONT_FLEET";

/// Spawns `cmd` detached into its own process group with stdin closed and
/// stdout/stderr appended to `log` (mode 0600: logs can quote connection
/// strings and tokens), marked with [`MARKER`]=`fleet`. The
/// `Child` handle is dropped: the process is not killed when `up` exits, and
/// a process that dies early is seen through `/proc` (a zombie counts as dead).
pub fn spawn(mut cmd: Command, log: &Path, fleet: &Path) -> Result<Spawned> {
    cmd.env(MARKER, fleet);
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = open_log(log)?;
    let err = out.try_clone()?;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    let child = cmd
        .spawn()
        .with_context(|| format!("failed to start {program}"))?;
    let pid = child.id() as i32;
    Ok(Spawned {
        pid,
        start_ticks: start_ticks(pid),
    })
}

/// Opens `log` for appending, created with mode 0600; an existing one (from
/// an older run) is set to 0600 too.
pub fn open_log(log: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)
        .with_context(|| format!("failed to open log {}", log.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("failed to make log {} private", log.display()))?;
    Ok(f)
}

/// Parses `/proc/PID/stat`: (state, start time in ticks).
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); field 22 (starttime) is index 19.
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

pub fn start_ticks(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|(_, t)| t)
}

/// True if `pid` runs, is not a zombie, and (when known) started when we recorded.
pub fn alive(pid: i32, expected_start: Option<u64>) -> bool {
    match proc_stat(pid) {
        None => false,
        Some(('Z' | 'X', _)) => false,
        Some((_, start)) => expected_start.is_none_or(|t| t == start),
    }
}

/// Reaps `pid` if it is our zombie child (harmless otherwise).
pub fn reap(pid: i32) {
    use nix::sys::wait::{WaitPidFlag, waitpid};
    let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
}

/// Any live (non-zombie) process in process group `pgid`?
pub fn group_alive(pgid: i32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .any(|pid| {
            let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some(close) = text.rfind(')') else {
                return false;
            };
            let fields: Vec<&str> = text[close + 2..].split_whitespace().collect();
            // field 3 state, field 5 pgrp → indexes 0 and 2
            fields.first().is_some_and(|s| *s != "Z" && *s != "X")
                && fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
        })
}

/// How a stop went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It was not running (or the pid belongs to someone else now).
    NotRunning,
    /// Exited after the polite signal.
    Graceful,
    /// Needed SIGKILL after the deadline.
    Killed,
}

/// Sends `signal` to the process, waits up to `grace` for it and its process
/// group to exit, then SIGKILLs the group. Polls; never sleeps a fixed time
/// longer than one poll interval.
pub fn stop(pid: i32, expected_start: Option<u64>, signal: Signal, grace: Duration) -> Stopped {
    let group_left = group_alive(pid);
    if !alive(pid, expected_start) {
        if group_left {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        reap(pid);
        return Stopped::NotRunning;
    }
    let _ = kill(Pid::from_raw(pid), signal);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        reap(pid);
        if !alive(pid, expected_start) && !group_alive(pid) {
            return Stopped::Graceful;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && (alive(pid, expected_start) || group_alive(pid)) {
        reap(pid);
        std::thread::sleep(Duration::from_millis(10));
    }
    Stopped::Killed
}

/// Live processes whose environment carries `MARKER=fleet`.
pub fn marked(fleet: &Path) -> Vec<i32> {
    let needle = format!("{MARKER}={}", fleet.display()).into_bytes();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_slice()))
                && alive(*pid, None)
        })
        .collect()
}

/// Last `n` lines of a log file, for error messages.
pub fn tail(log: &Path, n: usize) -> String {
    let Ok(bytes) = std::fs::read(log) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawned_process_is_alive_then_stopped_with_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        let mut cmd = Command::new("sh");
        // A child that forks a grandchild: stop must take both.
        cmd.args(["-c", "sleep 30 & echo started; wait"]);
        let s = spawn(cmd, &log, dir.path()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while marked(dir.path()).len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            marked(dir.path()).len(),
            2,
            "the shell and its sleep carry the marker"
        );
        assert!(alive(s.pid, s.start_ticks));
        assert!(
            !alive(s.pid, s.start_ticks.map(|t| t + 1)),
            "a different start time is not ours"
        );
        let r = stop(
            s.pid,
            s.start_ticks,
            Signal::SIGTERM,
            Duration::from_secs(1),
        );
        assert_ne!(r, Stopped::NotRunning);
        assert!(!alive(s.pid, s.start_ticks));
        assert!(!group_alive(s.pid), "grandchild left behind");
        assert!(marked(dir.path()).is_empty());
    }

    #[test]
    fn stopping_a_dead_pid_reports_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let s = spawn(Command::new("true"), &dir.path().join("t.log"), dir.path()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(s.pid, s.start_ticks) && Instant::now() < deadline {
            reap(s.pid);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            stop(
                s.pid,
                s.start_ticks,
                Signal::SIGTERM,
                Duration::from_secs(1)
            ),
            Stopped::NotRunning
        );
    }

    #[test]
    fn logs_are_created_private_and_existing_ones_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh.log");
        let old = dir.path().join("old.log");
        std::fs::write(&old, "from an older run\n").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        for log in [&fresh, &old] {
            let s = spawn(Command::new("true"), log, dir.path()).unwrap();
            reap(s.pid);
            let mode = std::fs::metadata(log).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", log.display());
        }
        assert!(
            std::fs::read_to_string(&old)
                .unwrap()
                .starts_with("from an older run")
        );
    }

    #[test]
    fn tail_returns_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        std::fs::write(&p, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&p, 2), "b\nc");
        assert_eq!(tail(&dir.path().join("missing"), 2), "");
    }
}
