//! When the open model sends: each arrival as soon as it is due, never
//! before.
//!
//! tokio's timer ticks in whole milliseconds and rounds a deadline up to
//! the next tick, so `sleep_until(due)` sent arrivals late, in bursts of a
//! millisecond's worth. That lateness counted in every latency from the
//! intended send time: at 1,000 arrivals/s against an idle catalog, the
//! corrected p50 read 1.21 ms against a raw (service time) p50 of 0.14 ms,
//! and the corrected mean was 1.07 ms above the raw one.
//! [`Pace::precise`] waits on a timerfd instead: the kernel's
//! high-resolution timer, armed for each wait and watched by the runtime's
//! reactor like a socket, so the thread sleeps in `epoll_wait` until the
//! arrival is due, or, when arrivals come closer together than
//! [`MIN_GAP`], until the last wake-up plus that gap.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Duration;

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// The timer wakes the thread this often at most; arrivals due in between
/// go out together at the next wake-up, late by less than this.
///
/// Each wake-up costs the generator a sleep and a wake on the CPUs it
/// shares with the target. At 15,000 arrivals/s against one catalog, a
/// wake-up for every arrival took the generator's CPU from 3.9 to 8.0 s
/// per 10 s run, and a 0.5 ms gap to 5.5–5.8 s; a 1 ms gap (as many
/// wake-ups as tokio's ticks) took 4.2–4.5 s against 3.8–4.2 s on ticks.
pub const MIN_GAP: Duration = Duration::from_millis(1);

/// Makes the calling thread `SCHED_BATCH`: the kernel no longer lets its
/// wake-ups preempt a thread already running, so the open model's threads
/// stop cutting into the target they share the cores with.
///
/// At 25,900 arrivals/s against one catalog on this 2-core machine, runs
/// went between two modes at the same request rate: a calm one (catalog
/// about 90% of a core, the generator 40%) and one where the catalog was
/// preempted 7,000 to 11,000 times a second (700 to 2,500 calm), took
/// 115 to 128% of a core, and the generator 60 to 72%, with no CPU left to
/// drain the backlog for seconds. Six 10 s runs each, alternating with the
/// generator as it was: corrected p99 median 46 ms (17 to 83) against
/// 146 ms (42 to 491), raw p99 3.3 to 4.3 ms against 4.8 to 5.8 ms. A late
/// wake-up only ever adds to the latency measured, never hides any. Where
/// the kernel refuses, the thread runs as it was (logged at debug).
pub fn yield_to_the_target() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `sched_setscheduler` only reads `param`, a live local, during
    // the call; pid 0 is the calling thread, and SCHED_BATCH takes
    // priority 0.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if rc != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "the arrival thread keeps its scheduling policy");
    }
}

/// How a driver waits for its next arrival.
pub enum Pace {
    /// tokio's timer: millisecond ticks, and the only one that follows a
    /// paused test clock.
    Ticks,
    /// A timerfd on this thread's runtime (see the module doc), and when
    /// it last woke the thread.
    Precise(AsyncFd<Timer>, Option<Instant>),
}

/// A timerfd as the reactor takes it (`AsyncFd` wants `AsRawFd`).
pub struct Timer(TimerFd);

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl Pace {
    /// A timerfd pace for the current runtime, or tokio's ticks (with a
    /// warning) if the kernel gives no timerfd. Must be called inside a
    /// runtime with IO enabled.
    pub fn precise() -> Pace {
        let made = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(io::Error::from)
        .and_then(|fd| {
            // SAFETY: `Timer` owns the timerfd (an `OwnedFd` inside
            // `TimerFd`), which stays open until the `AsyncFd` drops it,
            // and its `as_raw_fd` always returns that one descriptor.
            #[allow(unsafe_code)]
            let registered =
                unsafe { AsyncFd::register_with_interest(Timer(fd), Interest::READABLE) };
            registered.map_err(|e| e.into_parts().1)
        });
        match made {
            Ok(fd) => Pace::Precise(fd, None),
            Err(error) => {
                tracing::warn!(%error, "no timerfd: arrivals are paced by tokio's millisecond timer");
                Pace::Ticks
            }
        }
    }

    /// Returns once `due` has come: at once if it has passed, and not
    /// before the last wake-up plus [`MIN_GAP`].
    pub async fn until(&mut self, due: Instant) {
        let (fd, last) = match self {
            Pace::Ticks => return tokio::time::sleep_until(due).await,
            Pace::Precise(fd, last) => (fd, last),
        };
        loop {
            let now = Instant::now();
            if now >= due {
                return;
            }
            let wake = match *last {
                Some(last) => due.max(last + MIN_GAP),
                None => due,
            };
            let ok = Self::wait_once(fd, wake - now).await;
            *last = Some(Instant::now());
            if !ok {
                // The timerfd failed; the rest of the run on ticks.
                tracing::warn!(
                    "the timerfd failed: arrivals are paced by tokio's millisecond timer"
                );
                *self = Pace::Ticks;
                return tokio::time::sleep_until(due).await;
            }
        }
    }

    /// Arms the timer for `left` and waits until it fires (or its readiness
    /// turns out stale: the caller looks at the clock again). False if the
    /// timerfd failed.
    async fn wait_once(fd: &AsyncFd<Timer>, left: Duration) -> bool {
        let armed = fd.get_ref().0.set(
            Expiration::OneShot(TimeSpec::from_duration(left)),
            TimerSetTimeFlags::empty(),
        );
        if armed.is_err() {
            return false;
        }
        let Ok(mut ready) = fd.readable().await else {
            return false;
        };
        // Reading the expiry count clears it; a read that would block
        // (readiness left over from an earlier expiry) clears the
        // readiness, and the loop arms the timer again.
        match ready.try_io(|fd| fd.get_ref().0.wait().map_err(io::Error::from)) {
            Ok(read) => read.is_ok(),
            Err(_would_block) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_precise_pace_never_returns_before_the_due_time() {
        let mut pace = Pace::precise();
        assert!(matches!(pace, Pace::Precise(..)), "Linux has timerfd");
        for micros in [0u64, 50, 300, 1_500, 3_000] {
            let due = Instant::now() + Duration::from_micros(micros);
            pace.until(due).await;
            assert!(
                Instant::now() >= due,
                "returned before a due time {micros} µs ahead"
            );
        }
        // Due times that have passed, or come back to back, return.
        let past = Instant::now();
        pace.until(past).await;
        let start = Instant::now();
        for i in 1..=20u64 {
            let due = start + Duration::from_micros(100 * i);
            pace.until(due).await;
            assert!(Instant::now() >= due, "arrival {i} returned early");
        }
        assert!(
            matches!(pace, Pace::Precise(..)),
            "no fallback on a working timerfd"
        );
    }

    #[tokio::test]
    async fn wake_ups_come_at_least_a_gap_apart_and_what_fell_due_between_goes_at_once() {
        let mut pace = Pace::precise();
        // The pace last woke now. (Set by hand: a due time a little ahead,
        // waited on by the test, may already have passed on a busy machine,
        // and then no wake-up happens and no gap applies.)
        let woke = Instant::now();
        let Pace::Precise(_, last) = &mut pace else {
            panic!("Linux has timerfd")
        };
        *last = Some(woke);
        // Due 100 µs after that wake-up: it waits for the gap to pass.
        pace.until(woke + Duration::from_micros(100)).await;
        let second = Instant::now();
        assert!(
            second >= woke + MIN_GAP,
            "the second wake-up came {:?} after the first",
            second - woke
        );
        let Pace::Precise(_, Some(recorded)) = pace else {
            panic!("a precise pace that has woken remembers when")
        };
        assert!(
            recorded >= woke + MIN_GAP && recorded <= second,
            "the wake-up is recorded when it happened"
        );
        // Both of these fell due during that wait: no wait at all.
        pace.until(woke + Duration::from_micros(300)).await;
        pace.until(woke + Duration::from_micros(600)).await;
        let Pace::Precise(_, Some(last)) = pace else {
            panic!("a precise pace that has woken remembers when")
        };
        assert_eq!(last, recorded, "no wake-up for arrivals already due");
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_follow_tokio_s_clock() {
        let mut pace = Pace::Ticks;
        let due = Instant::now() + Duration::from_secs(3600);
        pace.until(due).await;
        assert!(Instant::now() >= due);
    }
}
