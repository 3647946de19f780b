//! The control plane on real fleets: `stop | start | restart | pause |
//! resume NAME` for infrastructure and services, `up` on a partly dead
//! fleet, processes started by hand on the fleet's ports (ours adopted,
//! anyone else's named), and `down` finding what rewrote its environment.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Fleet, text};

fn component<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing: {v:#}"))
}

fn pid(v: &serde_json::Value, name: &str) -> i64 {
    component(v, name)["pid"].as_i64().unwrap()
}

fn state(v: &serde_json::Value, name: &str) -> String {
    component(v, name)["state"].as_str().unwrap().to_owned()
}

fn comm(pid: i64) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn kill9(pid: i64) {
    assert!(
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

/// Polls `status --json` until `pred` holds (deadline 30 s).
fn status_until(
    fleet: &Fleet,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = fleet.run(&["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if pred(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never seen; last status {v:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn vault_token_works(vault_addr: &str, token: &str) -> bool {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("{vault_addr}/v1/auth/token/lookup-self"))
        .header("X-Vault-Token", token)
        .send()
        .is_ok_and(|r| r.status().is_success())
}

fn fleet_json(fleet: &Fleet) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fleet.dir().join("fleet.json")).unwrap()).unwrap()
}

#[test]
fn every_component_stops_starts_pauses_and_restarts_and_a_new_vault_serves_identity_again() {
    support::require_service_binaries();
    let fleet = Fleet::new("dev");
    let up = fleet.json(&["up", "--json"], 0);

    // Defect f: the recorded RabbitMQ pid is beam.smp, not its sh wrapper,
    // so killing it and `status` agree.
    let beam = pid(&up, "rabbitmq");
    assert_eq!(comm(beam), "beam.smp");
    kill9(beam);
    let st = status_until(&fleet, "rabbitmq dead", |v| state(v, "rabbitmq") == "dead");
    assert_eq!(st["healthy"], false);
    await_closed(
        fleet.port_base + 2,
        "status says dead, yet AMQP still serves",
    );

    // `up` on a partly dead fleet starts only what is dead.
    let again = fleet.json(&["up", "--json"], 0);
    assert_eq!(again["healthy"], true, "{again:#}");
    for n in [
        "postgres",
        "redis",
        "vault",
        "catalog-1",
        "identity",
        "checkout",
    ] {
        assert_eq!(
            pid(&again, n),
            pid(&up, n),
            "{n} was running and must be left alone"
        );
    }
    assert_ne!(pid(&again, "rabbitmq"), beam);
    assert_eq!(comm(pid(&again, "rabbitmq")), "beam.smp");

    // A new Vault knows nothing: it is initialised and configured again,
    // identity gets a new token (and is restarted to use it), the old one is gone.
    let old_token = fleet_json(&fleet)["endpoints"]["service_vault_tokens"]["identity"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = fleet.json(&["restart", "vault", "--json"], 0);
    assert_eq!(
        r["started"]["also"],
        serde_json::json!(["identity"]),
        "{r:#}"
    );
    let rec = fleet_json(&fleet);
    let addr = rec["endpoints"]["vault_addr"].as_str().unwrap();
    let new_token = rec["endpoints"]["service_vault_tokens"]["identity"]
        .as_str()
        .unwrap();
    assert_ne!(new_token, old_token);
    assert!(
        vault_token_works(addr, new_token),
        "identity's new token is valid"
    );
    assert!(
        !vault_token_works(addr, &old_token),
        "the old Vault's token means nothing"
    );
    let st = status_until(&fleet, "healthy after vault", |v| v["healthy"] == true);
    assert_ne!(pid(&st, "identity"), pid(&up, "identity"));

    // Postgres: immediate shutdown (SIGQUIT) and back; the services recover.
    let r = fleet.json(&["restart", "postgres", "--mode", "immediate", "--json"], 0);
    assert_eq!(r["stopped"], "graceful", "{r:#}");
    status_until(&fleet, "healthy after postgres", |v| v["healthy"] == true);

    // Pause freezes the whole group; status says so; resume thaws it.
    let p = fleet.json(&["pause", "redis", "--json"], 0);
    assert_eq!(p["action"], "pause");
    let st = fleet.json(&["status", "--json"], 1);
    assert_eq!(state(&st, "redis"), "paused");
    let redis_pid = pid(&st, "redis");
    let stat = std::fs::read_to_string(format!("/proc/{redis_pid}/stat")).unwrap();
    assert!(
        stat[stat.rfind(')').unwrap() + 2..].starts_with('T'),
        "{stat}"
    );
    let again = fleet.run(&["start", "redis"]);
    assert_eq!(again.status.code(), Some(3));
    assert!(
        text(&again.stderr).contains("storefront resume redis"),
        "{}",
        text(&again.stderr)
    );
    fleet.json(&["resume", "redis", "--json"], 0);
    status_until(&fleet, "redis ready after resume", |v| {
        state(v, "redis") == "ready"
    });

    // Stop and start by name, infrastructure and a service instance.
    for n in ["redis", "epmd", "catalog-2"] {
        let s = fleet.json(&["stop", n, "--json"], 0);
        assert_eq!(s["outcome"], "graceful", "{s:#}");
        let st = fleet.json(&["status", "--json"], 1);
        assert_eq!(state(&st, n), "dead", "{n}");
        let s = fleet.json(&["start", n, "--json"], 0);
        assert_eq!(s["outcome"], "ready", "{s:#}");
    }
    let k = fleet.json(&["stop", "payments", "--crash", "--json"], 0);
    assert_eq!(k["outcome"], "killed");
    fleet.json(&["start", "payments", "--json"], 0);
    status_until(&fleet, "healthy at the end", |v| v["healthy"] == true);

    let bad = fleet.run(&["pause", "nosuch"]);
    assert_eq!(bad.status.code(), Some(3));
    assert!(
        text(&bad.stderr).contains("it has: "),
        "{}",
        text(&bad.stderr)
    );

    fleet.json(&["down", "--json"], 0);
    fleet.assert_nothing_left();
}

/// A redis-server on `port`, started by hand (not by the fleet), in `dir`,
/// with the users of `dir/users.acl` if there is one (the fleet's).
fn hand_redis(port: u16, dir: &std::path::Path) -> std::process::Child {
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--bind",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--save",
        "",
    ])
    .arg("--dir")
    .arg(dir);
    if dir.join("users.acl").exists() {
        cmd.arg("--aclfile").arg(dir.join("users.acl"));
    }
    cmd.current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server")
}

/// Kills the fleet's Redis and waits (deadline 10 s) until its listening
/// socket has closed. `kill -9` returns before the process is gone: a Redis
/// started by hand at once could lose the port to the dying one, and a
/// connect could still reach the dying one's socket.
fn kill_redis(pid: i64, port: u16) {
    kill9(pid);
    await_closed(port, &format!("the killed Redis (pid {pid}) still listens"));
}

/// Polls (deadline 10 s) until nothing accepts a connection on `port`.
fn await_closed(port: u16, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "{why} on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (deadline 10 s) until `child` listens on `port`; fails at once if
/// it exited (the port was taken, say).
fn wait_listening(child: &mut std::process::Child, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("the Redis started by hand on {port} exited: {st}");
        }
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_redis_started_by_hand_is_named_by_start_and_up_and_left_alone_by_down() {
    let fleet = Fleet::new("test-infra");
    let up = fleet.json(&["up", "--json"], 0);
    let port = fleet.port_base + 1;
    kill_redis(pid(&up, "redis"), port);
    let elsewhere = tempfile::tempdir().unwrap();
    let mut theirs = hand_redis(port, elsewhere.path());
    wait_listening(&mut theirs, port);

    let out = fleet.run(&["start", "redis"]);
    assert_eq!(out.status.code(), Some(3));
    let want = format!(
        "port {port} is held by pid {} (redis-server), not started by this fleet",
        theirs.id()
    );
    assert!(text(&out.stderr).contains(&want), "{}", text(&out.stderr));
    let out = fleet.run(&["up"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains(&want), "{}", text(&out.stderr));

    // Defect e: `down` stops everything of ours, names the stranger, exit 0.
    let down = fleet.json(&["down", "--json"], 0);
    assert_eq!(down["not_ours"][0]["pid"], theirs.id(), "{down:#}");
    assert!(
        theirs.try_wait().unwrap().is_none(),
        "someone else's Redis is left running"
    );
    theirs.kill().unwrap();
    theirs.wait().unwrap();
    fleet.assert_nothing_left();
}

#[test]
fn a_redis_of_ours_restarted_by_hand_is_adopted_and_down_finds_it_without_its_marker() {
    let fleet = Fleet::new("test-infra");
    let up = fleet.json(&["up", "--json"], 0);
    let port = fleet.port_base + 1;
    // The premise of defect e: redis-server overwrites its environment with
    // its process title, so the fleet's marker cannot find it.
    let redis = pid(&up, "redis");
    assert!(
        !fleet.processes().contains(&(redis as i32)),
        "redis still shows the marker"
    );

    kill_redis(redis, port);
    // Restarted by hand on the fleet's data directory: ours.
    let ours_dir = fleet.dir().join("redis");
    let mut hand = hand_redis(port, &ours_dir);
    wait_listening(&mut hand, port);
    let again = fleet.json(&["up", "--json"], 0);
    assert_eq!(
        pid(&again, "redis"),
        hand.id() as i64,
        "adopted, not started anew"
    );
    assert_eq!(again["healthy"], true, "{again:#}");

    fleet.json(&["down", "--json"], 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while hand.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "down left the adopted Redis running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    fleet.assert_nothing_left();
}

#[test]
fn a_supervised_service_that_dies_is_restarted_and_down_stops_the_supervisor_first() {
    support::require_service_binaries();
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("supervised.toml");
    std::fs::write(
        &profile,
        "port_base = 40000\nsupervise = true\n[[services]]\nname = \"catalog\"\nneeds = [\"postgres\", \"redis\"]\nschema = \"catalog\"\n",
    )
    .unwrap();
    let fleet = Fleet::new(profile.to_str().unwrap());
    let up = fleet.json(&["up", "--json"], 0);
    assert_eq!(state(&up, "supervisor"), "ready", "{up:#}");
    let supervisor = pid(&up, "supervisor");
    let before = pid(&up, "catalog");

    kill9(before);
    let st = status_until(&fleet, "catalog restarted by the supervisor", |v| {
        v["healthy"] == true && pid(v, "catalog") != before
    });
    assert_eq!(pid(&st, "supervisor"), supervisor);
    let log = std::fs::read_to_string(fleet.dir().join("logs/supervisor.log")).unwrap();
    assert!(
        log.contains(&format!("catalog (pid {before}) died")),
        "{log}"
    );

    let down = fleet.json(&["down", "--json"], 0);
    assert_eq!(down["stopped"][0]["name"], "supervisor", "{down:#}");
    fleet.assert_nothing_left();
}

#[test]
fn down_finds_an_unrecorded_redis_of_ours_by_its_port_and_stops_it() {
    let fleet = Fleet::new("test-infra");
    let up = fleet.json(&["up", "--json"], 0);
    let port = fleet.port_base + 1;
    kill_redis(pid(&up, "redis"), port);
    // Started by hand on the fleet's data directory and never recorded: no
    // marker (redis rewrites its environment), not in fleet.json; only its
    // port and working directory say it is ours.
    let mut hand = hand_redis(port, &fleet.dir().join("redis"));
    wait_listening(&mut hand, port);
    assert!(!fleet.processes().contains(&(hand.id() as i32)));

    let down = fleet.json(&["down", "--json"], 0);
    let stray = format!("stray pid {} (redis-server)", hand.id());
    assert!(
        down["stopped"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == stray.as_str()),
        "{down:#}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while hand.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "down left our hand-started Redis running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    fleet.assert_nothing_left();
}
