//! Supervision: a service instance that dies is started again with
//! backoff, so a fault run measures recovery, not the operator. This is the
//! loop the supervisor process ([`super::supervisor`]) runs; it exits by
//! itself when fleet.json is gone or names another supervisor.
//!
//! Only deaths are its business: an instance stopped on purpose (`storefront
//! stop NAME`) is recorded without a pid and left alone.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::process;
use super::state::FleetState;
use super::supervisor::NAME;
use super::{Ctx, control};

/// How often it looks.
const TICK: Duration = Duration::from_millis(200);
/// First delay before a restart; doubles per restart in a row.
const FIRST: Duration = Duration::from_millis(250);
/// Longest delay between restarts.
const MAX: Duration = Duration::from_secs(10);
/// Up this long, an instance's restarts no longer count as "in a row".
const STABLE: Duration = Duration::from_secs(30);

/// One instance's restart history, in time since the supervisor started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backoff {
    /// Restarts in a row (reset once it stayed up for [`STABLE`]).
    pub in_a_row: u32,
    /// When it was last (re)started.
    pub started_at: Option<Duration>,
    /// When it was first seen dead this time.
    pub dead_since: Option<Duration>,
}

/// What to do about one instance now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Nothing,
    Restart,
}

/// The delay before restart number `in_a_row` (0-based): 250 ms, 500 ms,
/// 1 s, ... up to 10 s.
pub fn delay(in_a_row: u32) -> Duration {
    FIRST.saturating_mul(1u32 << in_a_row.min(16)).min(MAX)
}

/// The pure transition: given whether the instance is dead now, and `now`.
pub fn next(mut b: Backoff, dead: bool, now: Duration) -> (Backoff, Action) {
    if !dead {
        b.dead_since = None;
        if b.started_at
            .is_some_and(|t| now.saturating_sub(t) >= STABLE)
        {
            b.in_a_row = 0;
        }
        return (b, Action::Nothing);
    }
    let since = *b.dead_since.get_or_insert(now);
    if now.saturating_sub(since) < delay(b.in_a_row) {
        return (b, Action::Nothing);
    }
    b.in_a_row = b.in_a_row.saturating_add(1);
    b.started_at = Some(now);
    b.dead_since = None;
    (b, Action::Restart)
}

/// Is this process still the fleet's supervisor?
fn still_ours(state: &FleetState) -> bool {
    let me = std::process::id() as i32;
    state
        .components
        .iter()
        .any(|c| c.name == NAME && c.pid == Some(me))
}

/// The supervisor's loop: runs until the fleet is gone or has another one.
pub async fn run(ctx: &Ctx) -> Result<()> {
    let t0 = Instant::now();
    let supervised: Vec<String> = ctx
        .profile
        .instances()
        .into_iter()
        .filter(|(spec, ..)| ctx.profile.supervised(spec))
        .map(|(_, name, _)| name)
        .collect();
    println!("supervising {}", supervised.join(", "));
    let mut book: BTreeMap<String, Backoff> = BTreeMap::new();
    // It starts before whoever spawned it has recorded its pid: give that a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let Some(state) = FleetState::load(&ctx.state_dir)? else {
            println!("fleet.json is gone: exiting");
            return Ok(());
        };
        if !still_ours(&state) {
            if Instant::now() < deadline {
                tokio::time::sleep(TICK).await;
                continue;
            }
            println!("fleet.json names another supervisor (or none): exiting");
            return Ok(());
        }
        for name in &supervised {
            let Some(c) = state.components.iter().find(|c| &c.name == name) else {
                continue;
            };
            // No pid: stopped on purpose. A pid that is not alive: it died.
            let dead = c.pid.is_some_and(|p| !process::alive(p, c.start_ticks));
            let b = book.entry(name.clone()).or_default();
            let (nb, action) = next(*b, dead, t0.elapsed());
            *b = nb;
            if action == Action::Restart {
                println!(
                    "{name} (pid {}) died: starting it again (restart {} in a row)",
                    c.pid.unwrap_or_default(),
                    nb.in_a_row
                );
                match control::start_detailed(ctx, name).await {
                    Ok(s) => println!("{name}: ready again (pid {}) in {} ms", s.pid, s.took_ms),
                    Err(e) => println!("{name}: start failed: {e:#}"),
                }
            }
        }
        tokio::time::sleep(TICK).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn backoff_doubles_from_a_quarter_second_up_to_ten_seconds() {
        assert_eq!(delay(0), S(250));
        assert_eq!(delay(1), S(500));
        assert_eq!(delay(3), S(2000));
        assert_eq!(delay(6), MAX);
        assert_eq!(delay(u32::MAX), MAX);
    }

    #[test]
    fn a_dead_instance_is_restarted_after_its_delay_and_a_live_one_never() {
        let b = Backoff::default();
        assert_eq!(next(b, false, S(0)).1, Action::Nothing);
        let (b, a) = next(b, true, S(1000));
        assert_eq!(a, Action::Nothing, "first sight of death starts the clock");
        let (b, a) = next(b, true, S(1249));
        assert_eq!(a, Action::Nothing);
        let (b, a) = next(b, true, S(1250));
        assert_eq!(a, Action::Restart);
        assert_eq!(b.in_a_row, 1);
        // Dies again at once: the next delay is twice as long.
        let (b, _) = next(b, true, S(1300));
        assert_eq!(next(b, true, S(1799)).1, Action::Nothing);
        let (b, a) = next(b, true, S(1800));
        assert_eq!(a, Action::Restart);
        assert_eq!(b.in_a_row, 2);
    }

    #[test]
    fn restarts_stop_counting_in_a_row_once_it_stayed_up() {
        let b = Backoff {
            in_a_row: 5,
            started_at: Some(S(0)),
            dead_since: None,
        };
        assert_eq!(next(b, false, S(29_999)).0.in_a_row, 5);
        assert_eq!(next(b, false, STABLE).0.in_a_row, 0);
    }
}
