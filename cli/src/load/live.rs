//! The live progress line on stderr while a load runs: elapsed/total,
//! current req/s, errors. Only on a terminal (never in CI or with --json),
//! as `fleet::progress` does for `up`.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::plan::Shared;

pub struct Live {
    bar: ProgressBar,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Live {
    pub fn start(shared: Arc<Shared>, total: Duration, quiet: bool) -> Self {
        let enabled = !quiet && std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        if !enabled {
            return Self {
                bar: ProgressBar::hidden(),
                ticker: None,
            };
        }
        let bar = ProgressBar::with_draw_target(
            Some(total.as_secs().max(1)),
            ProgressDrawTarget::stderr(),
        );
        bar.set_style(
            ProgressStyle::with_template("{spinner} load {bar:30} {pos:>3}/{len}s  {msg}")
                .expect("static template")
                .progress_chars("█▌ "),
        );
        let b = bar.clone();
        let ticker = tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let mut last = (0u64, started);
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let now = tokio::time::Instant::now();
                let n = shared.recorder.requests.load(Ordering::Relaxed);
                let errors = shared.recorder.errors.load(Ordering::Relaxed);
                let rate = (n - last.0) as f64 / (now - last.1).as_secs_f64().max(1e-3);
                last = (n, now);
                b.set_position((now - started).as_secs());
                b.set_message(format!("{rate:>8.0} req/s  {n} requests  {errors} errors"));
            }
        });
        Self {
            bar,
            ticker: Some(ticker),
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        self.bar.finish_and_clear();
    }
}
