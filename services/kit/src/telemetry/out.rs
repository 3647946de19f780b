//! Where log lines go: stdout, written in batches.
//!
//! Each line used to be written on its own, one `write(2)` under stdout's
//! lock, on the request's path between the handler and the response: on
//! the BFF under load that call was a twentieth of its CPU per request
//! (scripts/bench.sh, BENCH_PERF=1). Lines are now appended to a buffer in
//! memory and written out together:
//!
//! - when the runtime is about to go idle ([`flush`] is every service
//!   runtime's park hook, [`crate::entry::block_on`]), so a quiet service's
//!   lines are in its log file as soon as it has nothing else to do, and a
//!   request's line is written after its response, not before;
//! - when [`LIMIT`] bytes wait, or at the first line after the oldest one
//!   has waited [`MAX_WAIT`], so a busy runtime's lines are not held back;
//! - at exit, and before a panic's message.
//!
//! A process killed by SIGKILL loses the lines still waiting: those since
//! its runtime last went idle, [`LIMIT`] bytes at most.

use std::io::{self, Write};
use std::sync::{Mutex, PoisonError, TryLockError};
use std::time::{Duration, Instant};

/// Bytes that are written out as soon as they wait.
pub const LIMIT: usize = 64 * 1024;
/// The longest a line waits while others keep coming.
pub const MAX_WAIT: Duration = Duration::from_millis(100);

/// Lines waiting for `sink`.
pub(crate) struct Batch<W> {
    state: Mutex<State<W>>,
}

struct State<W> {
    waiting: Vec<u8>,
    /// When the oldest waiting line came; `None` when nothing waits.
    since: Option<Instant>,
    sink: W,
}

impl<W: Write> State<W> {
    /// Writes everything waiting. A failed write is dropped, as the log
    /// layer drops a line it cannot write: logging never fails a request.
    fn write_out(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let _ = self.sink.write_all(&self.waiting);
        let _ = self.sink.flush();
        self.waiting.clear();
        self.since = None;
    }
}

impl<W: Write> Batch<W> {
    pub(crate) const fn new(sink: W) -> Self {
        Self {
            state: Mutex::new(State {
                waiting: Vec::new(),
                since: None,
                sink,
            }),
        }
    }

    /// Adds `bytes` (one whole line, as the log layer writes them) to what
    /// waits, and writes everything out if too much or too old waits.
    pub(crate) fn append(&self, bytes: &[u8]) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let since = *state.since.get_or_insert(now);
        state.waiting.extend_from_slice(bytes);
        if state.waiting.len() >= LIMIT || now.duration_since(since) >= MAX_WAIT {
            state.write_out();
        }
    }

    /// Writes out whatever waits.
    pub(crate) fn flush(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write_out();
    }

    /// [`Self::flush`] unless another thread holds the batch: from a panic
    /// hook, which may run on the thread holding it.
    fn try_flush(&self) {
        match self.state.try_lock() {
            Ok(mut state) => state.write_out(),
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner().write_out(),
            Err(TryLockError::WouldBlock) => {}
        }
    }
}

/// The process's stdout, as a sink that is only written in whole batches.
pub(crate) struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::stdout().lock().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush()
    }
}

static STDOUT: Batch<Stdout> = Batch::new(Stdout);

/// The log layer's writer: appends each line to the stdout batch.
pub(crate) struct Line;

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        STDOUT.append(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes out the log lines waiting for stdout. Every service runtime calls
/// it before going idle; call it before exiting.
pub fn flush() {
    STDOUT.flush();
}

/// Has a panic write out the waiting lines before its message, so a
/// crash's log ends with what led to it. Installed once, by
/// [`super::init`].
pub(crate) fn flush_on_panic() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        STDOUT.try_flush();
        previous(info);
    }));
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A sink that records each write it is given.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Writes {
        fn taken(&self) -> Vec<Vec<u8>> {
            std::mem::take(&mut self.0.lock().unwrap())
        }
    }

    #[test]
    fn lines_wait_for_a_flush_and_then_leave_in_one_write_in_their_order() {
        let writes = Writes::default();
        let batch = Batch::new(writes.clone());
        batch.append(b"{\"n\":1}\n");
        batch.append(b"{\"n\":2}\n");
        assert!(
            writes.taken().is_empty(),
            "nothing is written before a flush"
        );
        batch.flush();
        assert_eq!(writes.taken(), vec![b"{\"n\":1}\n{\"n\":2}\n".to_vec()]);
        batch.flush();
        assert!(writes.taken().is_empty(), "an empty batch writes nothing");
    }

    #[test]
    fn a_full_batch_is_written_at_once_and_the_next_starts_empty() {
        let writes = Writes::default();
        let batch = Batch::new(writes.clone());
        let line = [b'x'; 1000];
        let lines_to_fill = LIMIT.div_ceil(line.len());
        for _ in 0..lines_to_fill - 1 {
            batch.append(&line);
        }
        assert!(writes.taken().is_empty());
        batch.append(&line);
        let written = writes.taken();
        assert_eq!(written.len(), 1);
        assert_eq!(written[0].len(), lines_to_fill * line.len());
        batch.append(b"next\n");
        assert!(writes.taken().is_empty());
        batch.flush();
        assert_eq!(writes.taken(), vec![b"next\n".to_vec()]);
    }

    #[test]
    fn a_line_that_comes_after_the_oldest_has_waited_too_long_writes_them_both() {
        let writes = Writes::default();
        let batch = Batch::new(writes.clone());
        batch.append(b"old\n");
        // Age the waiting line instead of sleeping.
        batch.state.lock().unwrap().since = Some(Instant::now() - MAX_WAIT);
        batch.append(b"new\n");
        assert_eq!(writes.taken(), vec![b"old\nnew\n".to_vec()]);
    }

    #[test]
    fn a_sink_that_fails_loses_that_batch_but_not_the_next() {
        struct Failing(Writes, bool);
        impl Write for Failing {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if std::mem::take(&mut self.1) {
                    return Err(io::Error::other("disk full"));
                }
                self.0.write(buf)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let writes = Writes::default();
        let batch = Batch::new(Failing(writes.clone(), true));
        batch.append(b"lost\n");
        batch.flush();
        batch.append(b"kept\n");
        batch.flush();
        assert_eq!(writes.taken(), vec![b"kept\n".to_vec()]);
    }

    #[test]
    fn try_flush_writes_out_unless_the_batch_is_held() {
        let writes = Writes::default();
        let batch = Batch::new(writes.clone());
        batch.append(b"a\n");
        {
            let _held = batch.state.lock().unwrap();
            batch.try_flush();
        }
        assert!(writes.taken().is_empty());
        batch.try_flush();
        assert_eq!(writes.taken(), vec![b"a\n".to_vec()]);
    }
}
