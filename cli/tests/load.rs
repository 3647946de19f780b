//! `storefront load`, `report merge` and `verify` against a real fleet on a
//! free port range (and, for a malformed profile, against none).

mod support;

use support::{Fleet, text};

/// A catalog-only profile whose threshold no server can meet.
const IMPOSSIBLE: &str = r#"
users = 2
ramp = 2
duration = "1s"

[vars]
product_id = { from = "catalog.products" }

[[scenarios]]
name = "shopper"

[[scenarios.transactions]]
name = "product"
service = "catalog"
method = "GET"
path = "/products/{product_id}"
success = [200]

[[thresholds]]
transaction = "shopper/product"
p99_ms = 0.001
"#;

#[test]
fn load_smoke_passes_and_its_hdr_log_merges_back_to_the_same_counts() {
    support::require_service_binaries();
    let fleet = Fleet::new("dev");
    fleet.json(&["up", "--json"], 0);
    let hdr = tempfile::tempdir().unwrap();
    let hdr_dir = hdr.path().to_str().unwrap();

    let rep = fleet.json(
        &["load", "--profile", "smoke", "--json", "--hdr-out", hdr_dir],
        0,
    );
    assert_eq!(rep["verdict"], "pass", "{rep:#}");
    let txs = rep["transactions"].as_array().unwrap();
    assert_eq!(txs.len(), 6, "{rep:#}");
    for t in txs {
        assert!(t["requests"].as_u64().unwrap() > 0, "{t:#}");
        assert_eq!(t["errors"], 0, "{t:#}");
    }
    let names: Vec<&str> = rep["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    // (goose's count as a cross-check exists only with --goose-html, when
    // goose drives the users; by default our own users do.)
    for n in [
        "catalog.stock_conservation",
        "claims.one_row_per_key",
        "every login through the BFF succeeded",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    // Through the BFF the users logged in as real accounts: the shoppers and
    // claimants as customers, the reserver as staff (a catalog write).
    let logins = rep["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m[0] == "logins (password grant through the BFF)")
        .unwrap_or_else(|| panic!("no login measurement in {rep:#}"));
    assert!(
        logins[1].as_str().unwrap().ends_with(" ok, 0 failed"),
        "{logins}"
    );
    let retry = txs.iter().find(|t| t["name"] == "claimant/retry").unwrap();
    assert!(
        retry["outcomes"]["201 replayed"].as_u64().unwrap() > 0,
        "a retry is answered from the idempotency record: {retry:#}"
    );

    // The interval log holds the same histograms: merged alone, the same counts.
    let logs: Vec<String> = std::fs::read_dir(hdr.path())
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let merged = fleet.json(&["report", "merge", &logs[0], "--json"], 0);
    for t in txs {
        let m = merged["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == t["name"])
            .unwrap_or_else(|| panic!("{} missing from {merged:#}", t["name"]));
        assert_eq!(m["requests"], t["requests"]);
        assert_eq!(m["raw"]["p99_ms"], t["raw"]["p99_ms"]);
    }
}

#[test]
fn a_profile_with_an_impossible_threshold_exits_1_naming_it() {
    support::require_service_binaries();
    let fleet = Fleet::new("dev");
    fleet.json(&["up", "--json"], 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("impossible.toml");
    std::fs::write(&path, IMPOSSIBLE).unwrap();

    // Direct to the catalog: through the BFF two think-less users outrun
    // their per-session buckets, and 429s would blur what this tests.
    let rep = fleet.json(
        &[
            "load",
            "--profile",
            path.to_str().unwrap(),
            "--via",
            "direct",
            "--json",
        ],
        1,
    );
    assert_eq!(rep["verdict"], "fail", "{rep:#}");
    let th = &rep["thresholds"][0];
    assert_eq!(th["name"], "shopper/product p99 ≤ 0.001 ms", "{rep:#}");
    assert_eq!(th["verdict"], "fail", "{rep:#}");
    // The requests themselves were fine: it is the threshold that failed.
    assert_eq!(rep["transactions"][0]["errors"], 0, "{rep:#}");
}

#[test]
fn a_malformed_profile_is_refused_naming_file_line_and_field() {
    // No fleet: the profile is read and refused before anything connects.
    let fleet = Fleet::new("dev");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.toml");
    std::fs::write(
        &path,
        IMPOSSIBLE.replace("method = \"GET\"", "method = \"GET\"\ntimeout_ms = 5"),
    )
    .unwrap();
    let out = fleet.run(&["load", "--profile", path.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "{}:16: scenarios.transactions.timeout_ms",
            path.display()
        )),
        "{err}"
    );
    assert!(err.contains("unknown field `timeout_ms`"), "{err}");

    // A fleet profile given where a load profile belongs: told apart, with the names to use.
    let out = fleet.run(&["load", "--profile", "dev"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("is a fleet profile") && err.contains("smoke"),
        "{err}"
    );
}

#[test]
fn verify_boots_a_fleet_passes_the_gate_writes_junit_and_leaves_nothing() {
    support::require_service_binaries();
    let fleet = Fleet::new("dev");
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("verify.xml");
    // A control arm and a load: the whole gate runs in CI's README step
    // (scripts/demo.sh runs `storefront verify` to its end), so here only
    // what the gate does around its checks, on two of them.
    let out = fleet.json(
        &[
            "verify",
            "--json",
            "--junit",
            junit.to_str().unwrap(),
            "--only",
            "race,load --profile smoke",
        ],
        0,
    );
    assert_eq!(out["verdict"], "pass", "{out:#}");
    assert_eq!(out["booted_a_fleet"], true);
    let checks: Vec<&str> = out["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        ["race", "race --control", "load --profile smoke"],
        "{out:#}"
    );
    let not_run: Vec<&str> = out["not_run"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(not_run.contains(&"saga --fail-at mixed"), "{not_run:?}");
    assert!(!not_run.contains(&"race"), "{not_run:?}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(r#"failures="0" errors="0""#), "{xml}");
    assert!(
        xml.contains("<testsuite name=\"load --profile smoke\""),
        "{xml}"
    );
    assert!(
        xml.contains("race --control: the checkers catch the control arm"),
        "{xml}"
    );
    // It stopped the fleet it booted.
    assert!(!fleet.dir().join("fleet.json").exists());
    fleet.assert_nothing_left();
}

#[test]
fn verify_only_with_an_unknown_check_is_a_usage_error_before_anything_boots() {
    let fleet = Fleet::new("dev");
    let out = fleet.run(&["verify", "--only", "race,nope"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("\"nope\"") && err.contains("race, replay, flood"),
        "{err}"
    );
    assert!(!fleet.dir().join("fleet.json").exists());
    fleet.assert_nothing_left();
}
