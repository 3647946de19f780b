//! Progress of a run as events — a phase begins, a count moves, an
//! invariant is judged, the run is done — sent through one cheap, cloneable
//! [`Progress`] handle to whichever sink the command chose:
//! - a spinner on stderr, only when stderr is a terminal, not under CI and
//!   not with `--json` (stdout carries the report);
//! - JSON lines on stderr (`STOREFRONT_PROGRESS=json`), one event per line,
//!   for a program (a web page) following the run;
//! - nowhere.
//!
//! Progress is never the result: the report is, so a sink that cannot
//! write drops the event.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::verdict::{Invariant, Verdict};

/// The environment variable that asks for JSON-lines progress on stderr.
pub const ENV: &str = "STOREFRONT_PROGRESS";

/// One step of a run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A phase began (`arrange`, `act`, `check`, or an experiment's name).
    Phase { name: String },
    /// A running count: `n` of `label` so far (requests sent, rows read).
    Count { label: String, n: u64 },
    /// One invariant was judged.
    Judged(Invariant),
    /// The run is over, with this overall verdict.
    Done { verdict: Verdict },
}

/// Where events go; see the module docs.
#[derive(Clone)]
pub struct Progress {
    sink: Arc<Sink>,
}

enum Sink {
    None,
    Terminal(Spinner),
    Lines(Mutex<Box<dyn Write + Send>>),
}

/// The terminal sink's state: the spinner and how many were judged.
struct Spinner {
    bar: ProgressBar,
    judged: Mutex<(u64, u64)>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match *self.sink {
            Sink::None => "none",
            Sink::Terminal(_) => "terminal",
            Sink::Lines(_) => "json lines",
        };
        write!(f, "Progress({kind})")
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::none()
    }
}

impl Progress {
    /// Events go nowhere.
    pub fn none() -> Self {
        Self {
            sink: Arc::new(Sink::None),
        }
    }

    /// The sink a command's output mode implies: JSON lines on stderr when
    /// `STOREFRONT_PROGRESS=json`; else a spinner when stderr is a terminal,
    /// `CI` is unset and the report is not `--json`; else none.
    pub fn for_output(json: bool) -> Self {
        if std::env::var(ENV).is_ok_and(|v| v == "json") {
            return Self::json_lines(std::io::stderr());
        }
        let terminal = !json && std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        if terminal {
            Self::terminal()
        } else {
            Self::none()
        }
    }

    /// A spinner on stderr.
    fn terminal() -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {msg} {elapsed:>4}")
                .expect("static template"),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        Self {
            sink: Arc::new(Sink::Terminal(Spinner {
                bar,
                judged: Mutex::new((0, 0)),
            })),
        }
    }

    /// One JSON object per event, one per line, to `out`.
    pub fn json_lines(out: impl Write + Send + 'static) -> Self {
        Self {
            sink: Arc::new(Sink::Lines(Mutex::new(Box::new(out)))),
        }
    }

    pub fn emit(&self, event: Event) {
        match &*self.sink {
            Sink::None => {}
            Sink::Terminal(s) => s.show(&event),
            Sink::Lines(out) => {
                let mut out = out.lock().unwrap_or_else(PoisonError::into_inner);
                if let Ok(line) = serde_json::to_string(&event) {
                    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
                }
            }
        }
    }

    pub fn phase(&self, name: impl Into<String>) {
        self.emit(Event::Phase { name: name.into() });
    }

    pub fn count(&self, label: impl Into<String>, n: u64) {
        self.emit(Event::Count {
            label: label.into(),
            n,
        });
    }

    /// Each invariant judged, then the run's verdict.
    pub fn judged(&self, invariants: &[Invariant], verdict: Verdict) {
        for i in invariants {
            self.emit(Event::Judged(i.clone()));
        }
        self.emit(Event::Done { verdict });
    }
}

impl Spinner {
    fn show(&self, event: &Event) {
        match event {
            Event::Phase { name } => {
                self.bar.set_prefix(name.clone());
                self.bar.set_message("");
            }
            Event::Count { label, n } => self.bar.set_message(format!("{label}: {n}")),
            Event::Judged(i) => {
                let mut judged = self.judged.lock().unwrap_or_else(PoisonError::into_inner);
                judged.0 += 1;
                judged.1 += u64::from(i.verdict == Verdict::Fail);
                self.bar.set_message(format!(
                    "judged {} invariants, {} failed",
                    judged.0, judged.1
                ));
            }
            // The report follows on stdout: leave no spinner behind it.
            Event::Done { .. } => self.bar.finish_and_clear(),
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_carry_one_event_per_line_in_order_from_every_clone() {
        let out = Shared::default();
        let progress = Progress::json_lines(out.clone());
        let clone = progress.clone();
        progress.phase("act");
        clone.count("requests", 7);
        let invariants = [
            Invariant::check("stock.never_negative", true, "≥ 0", "3", "SELECT"),
            Invariant::check("orders.one_per_key", false, "1", "2", "SELECT"),
        ];
        progress.judged(&invariants, Verdict::Fail);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
        assert_eq!(events, ["phase", "count", "judged", "judged", "done"]);
        assert_eq!(lines[0]["name"], "act");
        assert_eq!(lines[1]["n"], 7);
        assert_eq!(lines[3]["name"], "orders.one_per_key");
        assert_eq!(lines[3]["verdict"], "fail");
        assert_eq!(lines[4]["verdict"], "fail");
    }

    #[test]
    fn no_sink_takes_every_event_and_shows_nothing() {
        let progress = Progress::none();
        progress.phase("act");
        progress.judged(&[], Verdict::Unknown);
        assert_eq!(format!("{progress:?}"), "Progress(none)");
    }
}
