//! What `up` refuses before it starts anything (a taken port, a missing
//! program, a bad profile), a dependency that crashes while booting, and
//! the help and doctor that name the fix.

use crate::support::{self, Fleet, text};

#[test]
fn taken_port_is_named_and_nothing_starts() {
    let fleet = Fleet::new("dev");
    let holder = std::net::TcpListener::bind(("127.0.0.1", fleet.port_base + 1)).unwrap();
    let out = fleet.run(&["up"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{} (redis)", fleet.port_base + 1)),
        "{err}"
    );
    assert!(
        err.contains("--port-base"),
        "the error names the fix: {err}"
    );
    // The holder is ours, not the fleet's: only what `up` might have left counts.
    drop(holder);
    fleet.assert_nothing_left();
}

#[test]
fn missing_binary_is_named_with_the_fix_and_nothing_starts() {
    let mut fleet = Fleet::new("dev");
    fleet
        .env
        .push(("STOREFRONT_BAO".into(), "/nonexistent/bao".into()));
    let out = fleet.run(&["up"]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("bao not found at /nonexistent/bao"), "{err}");
    assert!(err.contains("scripts/setup.sh"), "{err}");
    fleet.assert_nothing_left();
}

#[test]
fn crashed_dependency_fails_up_with_its_log_and_stops_the_rest() {
    support::require_service_binaries();
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("broken.toml");
    // Postgres refuses to start on an invalid setting; everything else boots.
    std::fs::write(&profile, "port_base = 40000\n[postgres.settings]\nshared_buffers = \"lots\"\n[[services]]\nname = \"catalog\"\nneeds = [\"postgres\", \"redis\"]\nschema = \"catalog\"\n").unwrap();
    let fleet = Fleet::new(profile.to_str().unwrap());
    let out = fleet.run(&["up"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("postgres exited during start-up"), "{err}");
    assert!(
        err.contains("shared_buffers"),
        "the error shows postgres's own log: {err}"
    );
    assert!(
        err.contains("everything it had started was stopped"),
        "{err}"
    );
    fleet.assert_nothing_left();
    assert!(!fleet.dir().join("fleet.json").exists());
}

#[test]
fn bad_profile_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("typo.toml");
    std::fs::write(
        &profile,
        "port_base = 40000\n\n[[services]]\nname = \"catalog\"\nreplica = 2\n",
    )
    .unwrap();
    let fleet = Fleet::new(profile.to_str().unwrap());
    let out = fleet.run(&["status"]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("typo.toml"), "{err}");
    assert!(err.contains("line 5"), "{err}");
    assert!(err.contains("replica"), "{err}");
}

#[test]
fn help_documents_exit_codes() {
    let out = std::process::Command::new(support::storefront())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("Exit codes"));
    let bad = std::process::Command::new(support::storefront())
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(64));
}

#[test]
fn doctor_finds_every_program_and_names_the_fix_for_a_missing_one() {
    let fleet = Fleet::new("dev");
    let found = fleet.json(&["doctor", "--json"], 0);
    let checks: Vec<&str> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    for program in [
        "postgres",
        "redis-server",
        "rabbitmq-server",
        "epmd",
        "bao",
        "service catalog",
    ] {
        assert!(
            checks.contains(&program),
            "{program} not checked: {checks:?}"
        );
    }
    let mut broken = Fleet::new("dev");
    broken.env.push((
        "STOREFRONT_REDIS_SERVER".into(),
        "/nonexistent/redis-server".into(),
    ));
    let report = broken.json(&["doctor", "--json"], 1);
    let redis = report
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "redis-server")
        .unwrap();
    assert_eq!(redis["ok"], false);
    assert!(
        redis["fix"]
            .as_str()
            .unwrap()
            .contains("apt-get install redis-server"),
        "{redis:#}"
    );
}
