//! Where log lines go: stdout, written in batches, by a thread of its own.
//!
//! Each line used to be written on its own, one `write(2)` under stdout's
//! lock, on the request's path between the handler and the response: on
//! the BFF under load that call was a twentieth of its CPU per request
//! (scripts/bench.sh, BENCH_PERF=1). Lines are now appended to a buffer in
//! memory, and a writer thread (`start`) writes what waits:
//!
//! - [`MAX_WAIT`] after the oldest waiting line came, timed by the writer
//!   itself, so a quiet service's lines are in its log file within
//!   [`MAX_WAIT`];
//! - at once when [`LIMIT`] bytes wait;
//! - at exit ([`flush`] waits until they are written), and before a
//!   panic's message.
//!
//! The threads that serve requests wake the writer once a batch, with its
//! first line. They used to hand the batch over each time their runtime
//! went idle, which at one connection was every request: the writer woke
//! 1.3 times a request, in the BFF and in the catalog alike, and each wake
//! is a `futex(2)` call and a context switch beside the request.
//!
//! No thread that serves requests calls `write(2)`. A log file on disk
//! makes that call stall now and then: ext4 holds an appending write while
//! its journal commits (every 5 s). When the batch was written under its
//! own lock, every thread with a line to log waited out the stall too.
//! Under an open-model load of the catalog at 30,000 requests/s, the
//! load's p99 from the intended send time was 117–176 ms with the
//! catalog's log file on ext4, against 12–27 ms with the same file on
//! tmpfs (the stalls themselves were inferred, not traced). Now a
//! stall holds only the writer; lines keep arriving in memory meanwhile,
//! up to [`HOLD`] bytes, past which a line waits for the writer to take
//! the batch (memory stays bounded, and no line is dropped).
//!
//! Every [`WRITEBACK_AFTER`] bytes the writer asks the kernel to start
//! writing the file to disk, so its dirty pages never pile up into one
//! large write-back.
//!
//! A process killed by SIGKILL loses the lines still waiting: those of
//! its last [`MAX_WAIT`], [`HOLD`] bytes at most.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

/// Bytes that are handed to the writer as soon as they wait.
pub const LIMIT: usize = 64 * 1024;
/// The longest a line waits in memory before the writer takes it (unless
/// the writer is still writing the batch before).
pub const MAX_WAIT: Duration = Duration::from_millis(10);
/// Bytes that may wait while the writer is stalled; a line beyond them
/// waits until the writer takes the batch.
pub const HOLD: usize = 4 * 1024 * 1024;
/// How long [`flush`] waits for a stalled writer before giving up (exit
/// must not hang on a dead disk).
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// Lines waiting for `sink`.
pub(crate) struct Batch<W> {
    state: Mutex<State>,
    sink: Mutex<W>,
    /// The writer waits here for a batch to be handed over.
    work: Condvar,
    /// [`Batch::flush`] and appenders held at [`HOLD`] wait here for the
    /// writer to take or finish a batch.
    progress: Condvar,
}

struct State {
    waiting: Vec<u8>,
    /// When the oldest waiting line came; `None` when nothing waits.
    since: Option<Instant>,
    /// A writer thread takes the batches; without one (not started, or it
    /// could not be), they are written by the thread that hands them over.
    writer: bool,
    /// `waiting` is handed over, and the writer has not taken it yet.
    due: bool,
    /// Hand-overs so far, and how many of them are written.
    handed: u64,
    written: u64,
    /// The writer waits on `work`, and how many threads wait on `progress`:
    /// a condvar is only signalled when somebody waits on it, since each
    /// signal is a `futex(2)` call.
    writer_waits: bool,
    waiting_on_progress: u32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<W: Write> Batch<W> {
    pub(crate) const fn new(sink: W) -> Self {
        Self {
            state: Mutex::new(State {
                waiting: Vec::new(),
                since: None,
                writer: false,
                due: false,
                handed: 0,
                written: 0,
                writer_waits: false,
                waiting_on_progress: 0,
            }),
            sink: Mutex::new(sink),
            work: Condvar::new(),
            progress: Condvar::new(),
        }
    }

    /// Writes `bytes` to the sink. A failed write is dropped, as the log
    /// layer drops a line it cannot write: logging never fails a request.
    fn write(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut sink = lock(&self.sink);
        let _ = sink.write_all(bytes);
        let _ = sink.flush();
    }

    /// Hands what waits to the writer (or, with none, writes it here).
    /// Returns the hand-over number the lines are written under.
    fn hand_over<'a>(&'a self, mut state: MutexGuard<'a, State>) -> (MutexGuard<'a, State>, u64) {
        if state.waiting.is_empty() {
            let handed = state.handed;
            return (state, handed);
        }
        if !state.writer {
            let lines = std::mem::take(&mut state.waiting);
            state.since = None;
            drop(state);
            self.write(&lines);
            let mut state = lock(&self.state);
            if state.waiting.is_empty() {
                // Keep the allocation for the next batch.
                state.waiting = lines;
                state.waiting.clear();
            }
            let handed = state.handed;
            return (state, handed);
        }
        state.handed += 1;
        if !state.due {
            state.due = true;
            if state.writer_waits {
                self.work.notify_one();
            }
        }
        let handed = state.handed;
        (state, handed)
    }

    /// Adds `bytes` (one whole line, as the log layer writes them) to what
    /// waits, and hands everything over if too much waits. Without a
    /// writer thread, also if the oldest line has waited [`MAX_WAIT`]; with
    /// one, its first line wakes the writer, which times the wait.
    pub(crate) fn append(&self, bytes: &[u8]) {
        let mut state = lock(&self.state);
        // A stalled writer: wait for it to take the batch.
        while state.writer && state.waiting.len() >= HOLD {
            state = self.wait_for_progress(state, MAX_WAIT);
        }
        let now = Instant::now();
        let first = state.since.is_none();
        let since = *state.since.get_or_insert(now);
        state.waiting.extend_from_slice(bytes);
        if state.waiting.len() >= LIMIT || (!state.writer && now.duration_since(since) >= MAX_WAIT)
        {
            drop(self.hand_over(state));
        } else if first && state.writer_waits {
            self.work.notify_one();
        }
    }

    /// Hands over whatever waits and returns once it is written (or after
    /// [`FLUSH_WAIT`], with the writer stalled).
    pub(crate) fn flush(&self) {
        let (mut state, ticket) = self.hand_over(lock(&self.state));
        let deadline = Instant::now() + FLUSH_WAIT;
        while state.written < ticket {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            state = self.wait_for_progress(state, left);
        }
    }

    /// Waits (at most `timeout`) for the writer to take or write a batch,
    /// counted among the threads it signals.
    fn wait_for_progress<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        timeout: Duration,
    ) -> MutexGuard<'a, State> {
        state.waiting_on_progress += 1;
        let mut state = self
            .progress
            .wait_timeout(state, timeout)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        state.waiting_on_progress -= 1;
        state
    }

    /// Writes what waits here and now, unless another thread holds the
    /// batch: from a panic hook, which may run on the thread holding it.
    fn try_flush(&self) {
        let mut state = match self.state.try_lock() {
            Ok(state) => state,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        state.since = None;
        let lines = std::mem::take(&mut state.waiting);
        drop(state);
        self.write(&lines);
    }

    /// The writer thread's loop: takes each batch handed over and writes it.
    fn write_behind(&self) -> ! {
        let mut spare = Vec::new();
        let mut state = lock(&self.state);
        loop {
            // Until a batch is handed over, or the oldest line has waited
            // MAX_WAIT.
            while !state.due {
                let left = state
                    .since
                    .map(|since| MAX_WAIT.saturating_sub(since.elapsed()));
                if left.is_some_and(|left| left.is_zero()) {
                    // Taken for its age: a hand-over of its own.
                    state.handed += 1;
                    break;
                }
                state.writer_waits = true;
                state = match left {
                    None => self
                        .work
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner),
                    Some(left) => {
                        let waited = self.work.wait_timeout(state, left);
                        waited.unwrap_or_else(PoisonError::into_inner).0
                    }
                };
                state.writer_waits = false;
            }
            state.due = false;
            state.since = None;
            let upto = state.handed;
            let lines = std::mem::replace(&mut state.waiting, spare);
            let held = state.waiting_on_progress > 0;
            drop(state);
            if held {
                // Appenders held at HOLD may go on.
                self.progress.notify_all();
            }
            // A sink that panics loses its batch, not the writer: with no
            // writer, appenders would wait at HOLD for good.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.write(&lines)));
            spare = lines;
            spare.clear();
            spare.shrink_to(LIMIT);
            state = lock(&self.state);
            state.written = upto;
            if state.waiting_on_progress > 0 {
                self.progress.notify_all();
            }
        }
    }
}

impl<W: Write + Send + 'static> Batch<W> {
    /// Starts the writer thread; until then (or if it cannot start) lines
    /// are written by the thread that hands them over.
    pub(crate) fn start(&'static self) -> io::Result<()> {
        let mut state = lock(&self.state);
        if state.writer {
            return Ok(());
        }
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || self.write_behind())?;
        state.writer = true;
        Ok(())
    }
}

/// The process's stdout, as a sink that is only written in whole batches.
pub(crate) struct Stdout(Writeback);

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = io::stdout().lock().write(buf)?;
        self.0.wrote(n);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush()?;
        self.0.due(io::stdout().as_raw_fd());
        Ok(())
    }
}

static STDOUT: Batch<Stdout> = Batch::new(Stdout(Writeback::new()));

/// Bytes written to a log file after which the writer asks the kernel to
/// start writing them to disk (as Postgres's `wal_writer_flush_after`).
///
/// Left to itself, the kernel writes a file's dirty pages back about 30 s
/// after it was first dirtied (`vm.dirty_expire_centisecs`), all at once.
/// In `scripts/bench.sh`'s http and load sections (the catalog logs about
/// 415 bytes a request, at up to 40,000 requests/s) `vmstat` showed 200–330
/// MB written back within one or two seconds. In two runs such a burst
/// came in the first seconds of the open-model load, and that second's p99
/// from the intended send time read 58 and 150 ms, against at most 47 ms
/// in every other second. Asked every [`WRITEBACK_AFTER`] bytes, the same
/// writing is spread out: in the two runs alternated with those, `bo`
/// stayed at or under 38 MB a second.
pub const WRITEBACK_AFTER: u64 = 1024 * 1024;

/// When to ask for the write-back of a log file written so far.
pub(crate) struct Writeback {
    /// Bytes written since the last request.
    unsynced: u64,
    /// Off once the sink turned out not to be a file (a pipe, a terminal).
    on: bool,
}

impl Writeback {
    pub(crate) const fn new() -> Self {
        Self {
            unsynced: 0,
            on: true,
        }
    }

    fn wrote(&mut self, n: usize) {
        self.unsynced += n as u64;
    }

    /// After a batch: asks for `fd`'s write-back if [`WRITEBACK_AFTER`]
    /// bytes were written since the last time.
    fn due(&mut self, fd: RawFd) {
        if self.on && self.unsynced >= WRITEBACK_AFTER {
            self.unsynced = 0;
            self.on = start_writeback(fd);
        }
    }
}

/// Asks the kernel to start writing `fd`'s dirty pages to disk, without
/// waiting for them to be written; `false` if `fd` is not a file it can do
/// that for.
#[allow(unsafe_code)]
fn start_writeback(fd: RawFd) -> bool {
    // SAFETY: sync_file_range takes integers only and touches no memory of
    // ours; a descriptor that is not a file is an error, not undefined
    // behaviour.
    unsafe { libc::sync_file_range(fd, 0, 0, libc::SYNC_FILE_RANGE_WRITE) == 0 }
}

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

/// Starts stdout's writer thread (once; [`super::init`] does). If the
/// thread cannot start, lines are written as before, by the thread that
/// hands them over.
pub(crate) fn start() {
    if let Err(error) = STDOUT.start() {
        eprintln!("telemetry: no log writer thread ({error}); log lines are written inline");
    }
}

/// Writes out the log lines waiting for stdout and returns once they are
/// written: call it before exiting.
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
    fn write_back_is_asked_for_every_so_many_bytes_and_given_up_on_a_pipe() {
        let path = std::env::temp_dir().join(format!("kit-writeback-{}", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        let _ = std::fs::remove_file(&path); // the open file lives on
        let mut w = Writeback::new();
        w.wrote(WRITEBACK_AFTER as usize - 1);
        w.due(file.as_raw_fd());
        assert_eq!(w.unsynced, WRITEBACK_AFTER - 1, "not yet");
        w.wrote(1);
        w.due(file.as_raw_fd());
        assert_eq!(w.unsynced, 0, "asked for");
        assert!(w.on, "a file can be written back");

        let (reader, _writer) = io::pipe().unwrap();
        let mut p = Writeback::new();
        p.wrote(WRITEBACK_AFTER as usize);
        p.due(reader.as_raw_fd());
        assert!(!p.on, "a pipe cannot: not asked again");
        p.wrote(WRITEBACK_AFTER as usize);
        p.due(reader.as_raw_fd());
        assert_eq!(p.unsynced, WRITEBACK_AFTER, "nothing asked once off");
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

    /// A batch with its writer thread running, for the life of the test
    /// process (the writer thread never ends).
    fn started<W: Write + Send + 'static>(sink: W) -> &'static Batch<W> {
        let batch: &'static Batch<W> = Box::leak(Box::new(Batch::new(sink)));
        batch.start().expect("a writer thread");
        batch
    }

    /// Polls `f` until it holds, for 10 s at most.
    fn eventually(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "{what}: not within 10s");
            std::thread::yield_now();
        }
    }

    #[test]
    fn with_a_writer_lines_are_written_after_max_wait_and_flush_returns_once_they_are_written() {
        let writes = Writes::default();
        let batch = started(writes.clone());
        let appended = Instant::now();
        batch.append(b"a\n");
        batch.append(b"b\n");
        let mut got = Vec::new();
        eventually("the waiting lines written", || {
            got.extend(writes.taken());
            !got.is_empty()
        });
        assert!(appended.elapsed() >= MAX_WAIT, "not before MAX_WAIT");
        assert_eq!(got, vec![b"a\nb\n".to_vec()], "in one write");
        // And again, now that the writer had nothing to wait for.
        batch.append(b"c\n");
        eventually("the next line written", || {
            got.extend(writes.taken());
            got.len() == 2
        });
        assert_eq!(got[1], b"c\n".to_vec());
        batch.append(b"d\n");
        batch.flush();
        assert_eq!(
            writes.taken(),
            vec![b"d\n".to_vec()],
            "written when flush returns"
        );
        batch.flush();
        assert!(writes.taken().is_empty(), "an empty batch writes nothing");
    }

    #[test]
    fn a_stalled_sink_holds_only_the_writer_and_loses_no_line() {
        /// Records writes, but its first write waits until the gate opens.
        struct Gated(Writes, Option<std::sync::mpsc::Receiver<()>>);
        impl Write for Gated {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if let Some(gate) = self.1.take() {
                    let _ = gate.recv();
                }
                self.0.write(buf)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let writes = Writes::default();
        let (open, gate) = std::sync::mpsc::channel();
        let batch = started(Gated(writes.clone(), Some(gate)));
        let line = |n: usize| format!("{n:0>999}\n").into_bytes();
        // The first full batch goes to the writer, which stalls on it.
        let first = LIMIT.div_ceil(1000);
        for n in 0..first {
            batch.append(&line(n));
        }
        eventually("the writer took the first batch", || {
            // try_lock: a writer that held the batch through its write
            // would hang this test instead of failing it.
            batch.state.try_lock().is_ok_and(|s| s.waiting.is_empty())
        });
        // Three more batches' worth of lines are appended meanwhile, on
        // another thread, which must not wait for the stalled write.
        let (done, appended) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for n in first..4 * first {
                batch.append(&line(n));
            }
            let _ = done.send(());
        });
        appended
            .recv_timeout(Duration::from_secs(10))
            .expect("appending did not wait for the stalled write");
        assert!(
            writes.0.lock().unwrap().is_empty(),
            "the sink is still stalled"
        );
        open.send(()).unwrap();
        batch.flush();
        let all: Vec<u8> = writes.taken().concat();
        let expected: Vec<u8> = (0..4 * first).flat_map(line).collect();
        assert_eq!(all.len(), expected.len());
        assert!(all == expected, "every line, once, in order");
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
