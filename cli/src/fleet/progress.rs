//! Progress of `up`/`down` on stderr: one spinner per component, shown only
//! on a terminal (and never with --json), so logs and pipes stay clean.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone)]
pub struct Progress {
    multi: MultiProgress,
    enabled: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        let enabled = !quiet && std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        let target = if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            multi: MultiProgress::with_draw_target(target),
            enabled,
        }
    }

    /// A spinner for one component, e.g. `postgres  initdb`.
    pub fn component(&self, name: &str) -> Step {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:<12} {msg} {elapsed:>4}")
                .expect("static template")
                .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏✓"),
        );
        bar.set_prefix(name.to_owned());
        if self.enabled {
            bar.enable_steady_tick(Duration::from_millis(100));
        }
        Step { bar }
    }
}

pub struct Step {
    bar: ProgressBar,
}

impl Step {
    pub fn stage(&self, msg: &str) {
        self.bar.set_message(msg.to_owned());
    }

    pub fn done(&self, msg: &str) {
        self.bar.finish_with_message(msg.to_owned());
    }

    pub fn failed(&self, msg: &str) {
        self.bar.abandon_with_message(format!("FAILED: {msg}"));
    }
}
