use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::release::{Holder, holder};
use super::*;
use crate::fleet::{process, ready};

#[test]
fn postgres_stops_fast_on_sigint_and_immediate_on_sigquit() {
    assert_eq!(signal("postgres", How::Graceful).unwrap(), Signal::SIGINT);
    assert_eq!(signal("postgres", How::Immediate).unwrap(), Signal::SIGQUIT);
    assert_eq!(signal("redis", How::Graceful).unwrap(), Signal::SIGTERM);
    assert_eq!(signal("catalog-1", How::Crash).unwrap(), Signal::SIGKILL);
    let err = signal("redis", How::Immediate).unwrap_err().to_string();
    assert!(err.contains("only postgres"), "{err}");
}

/// Defect b: a process whose leader thread exited while another thread
/// still holds its listening socket (as a SIGKILLed multi-threaded
/// server briefly does) counts as dead, yet its port is not free. A
/// start must see it as still leaving, not spawn into EADDRINUSE.
#[test]
fn a_zombie_leader_whose_thread_holds_the_port_is_still_leaving() {
    let dir = tempfile::tempdir().unwrap();
    // Python binds a port of the kernel's choosing and prints it, so no
    // other test can take the port between a probe and Python's bind.
    // The main thread then calls the raw exit syscall (not exit_group):
    // the leader becomes a zombie, the listening thread lives on.
    let script = "import socket, threading, ctypes, time\n\
         s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n\
         print(s.getsockname()[1], flush=True)\n\
         threading.Thread(target=lambda: time.sleep(30)).start()\n\
         ctypes.CDLL(None).syscall(60, 0)\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdout(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("python3");
    let pid = child.id() as i32;
    // Should an assertion fail, the sleeping thread must not outlive the test.
    let guard = process::KillGroupOnDrop(pid);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let port: u16 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("python3 printed no port: {line:?}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while process::alive(pid, None) || ready::port_free(port) {
        assert!(
            Instant::now() < deadline,
            "the leader never became a zombie holding {port}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!process::alive(pid, None), "the leader counts as dead");
    assert!(process::lingering(pid), "but a thread of it still runs");
    assert!(!ready::port_free(port), "and holds the port");
    assert_ne!(holder(port, Some(pid), dir.path()), Holder::Free);
    assert!(matches!(
        holder(port, Some(pid), dir.path()),
        Holder::Leaving | Holder::Unseen
    ));
    drop(guard);
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while process::lingering(pid) || !ready::port_free(port) {
        assert!(Instant::now() < deadline, "still held after SIGKILL");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(holder(port, Some(pid), dir.path()), Holder::Free);
}

#[test]
fn a_free_port_has_no_holder_and_a_held_one_is_named_as_ours_or_foreign() {
    let dir = tempfile::tempdir().unwrap();
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let me = std::process::id() as i32;
    // This test process is not the fleet's: foreign.
    assert_eq!(holder(port, None, dir.path()), Holder::Foreign(me));
    // Recorded as the component's old pid: it is still letting go.
    assert_eq!(holder(port, Some(me), dir.path()), Holder::Leaving);
    drop(l);
    // Free once every copy of the socket is closed: a test that spawns a
    // process at this moment holds one in its child until the child execs.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h = holder(port, None, dir.path());
        if h == Holder::Free {
            break;
        }
        assert!(Instant::now() < deadline, "{port} still held: {h:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
