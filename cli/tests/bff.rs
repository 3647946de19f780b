//! `storefront flood`, `storefront breaker` and `storefront chaos` against a
//! real fleet (the dev profile: two catalogs, claims and the BFF on real
//! Postgres and Redis). The two tests run one after the other: both time
//! things, and two fleets loading two cores at once would judge the machine.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use support::{Fleet, text};

/// Serialises the tests of this file.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn invariant<'a>(report: &'a Value, starts: &str) -> &'a Value {
    report["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"].as_str().unwrap().starts_with(starts))
        .unwrap_or_else(|| panic!("no invariant `{starts}…` in {report:#}"))
}

fn booted() -> Fleet {
    booted_with("dev")
}

fn booted_with(profile: &str) -> Fleet {
    support::require_service_binaries();
    let fleet = Fleet::new(profile);
    let up = fleet.json(&["up", "--json"], 0);
    assert_eq!(up["healthy"], true, "{up:#}");
    fleet
}

#[test]
fn flood_holds_each_session_to_its_bucket_and_a_wrong_capacity_is_caught() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let fleet = booted();

    let args = [
        "flood",
        "--rps",
        "400",
        "--duration",
        "3s",
        "--sessions",
        "2",
        "--seed",
        "11",
        "--json",
    ];
    let report = fleet.json(&args, 0);
    assert_eq!(report["verdict"], "pass", "{report:#}");
    assert_eq!(report["invariants"].as_array().unwrap().len(), 8);
    let accepted = report["outcomes"]["accepted (200)"]["200"]
        .as_u64()
        .unwrap();
    let rejected = report["outcomes"]["rejected (429)"]["429"]
        .as_u64()
        .unwrap();
    assert_eq!(accepted + rejected, 1200, "{report:#}");
    // 2 sessions × (200 + 100/s × ~3 s): about 1000 let in, the rest refused.
    assert!((900..=1010).contains(&accepted), "{accepted}");
    assert_eq!(
        invariant(&report, "the upstream's own")["observed"],
        accepted.to_string()
    );

    // Control arm: judged against a capacity the BFF doesn't have.
    let control = [
        "flood",
        "--rps",
        "400",
        "--duration",
        "2s",
        "--sessions",
        "2",
        "--expect-capacity",
        "20",
        "--json",
    ];
    let report = fleet.json(&control, 1);
    assert_eq!(report["verdict"], "fail");
    assert_eq!(
        invariant(&report, "per user, all BFF instances together: accepted ≤")["verdict"],
        "fail",
        "{report:#}"
    );

    // Bad usage is refused before anything is sent.
    let out = fleet.run(&["flood", "--rps", "100000"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    // A session is a seeded customer: there are seven.
    let out = fleet.run(&["flood", "--sessions", "8"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("there are 7"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn flood_on_two_bffs_holds_each_user_to_one_bucket_across_both_and_a_wrong_capacity_is_caught() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let fleet = booted_with("two-bff");
    let status = fleet.json(&["status", "--json"], 0);
    assert_eq!(
        status["services"]["bff"].as_array().unwrap().len(),
        2,
        "{status:#}"
    );

    // One user at 300/s (a third of the dev test's work: every request is a
    // token verification on a 2-core machine), spread over both instances.
    let args = [
        "flood",
        "--rps",
        "300",
        "--duration",
        "3s",
        "--sessions",
        "1",
        "--seed",
        "12",
        "--json",
    ];
    let report = fleet.json(&args, 0);
    assert_eq!(report["verdict"], "pass", "{report:#}");
    assert_eq!(
        report["params"]["bff instances"].as_array().unwrap().len(),
        2
    );
    let accepted = report["outcomes"]["accepted (200)"]["200"]
        .as_u64()
        .unwrap();
    // One bucket for both instances together: 200 + 100/s × ~3 s ≈ 500 of
    // the 900 sent, not twice that.
    assert!((450..=510).contains(&accepted), "{accepted}");
    assert_eq!(
        invariant(&report, "the upstream's own")["observed"],
        accepted.to_string()
    );
    assert_eq!(
        invariant(&report, "each user's requests were accepted by every BFF")["verdict"],
        "pass",
        "{report:#}"
    );

    let control = [
        "flood",
        "--rps",
        "300",
        "--duration",
        "2s",
        "--sessions",
        "1",
        "--expect-capacity",
        "20",
        "--json",
    ];
    let report = fleet.json(&control, 1);
    assert_eq!(
        invariant(&report, "per user, all BFF instances together: accepted ≤")["verdict"],
        "fail",
        "{report:#}"
    );
}

#[test]
fn chaos_is_set_shown_and_cleared_from_the_cli_and_needs_the_token() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let fleet = booted();

    let set = fleet.json(
        &[
            "chaos",
            "set",
            "--target",
            "catalog-1",
            "--error-rate",
            "1",
            "--ttl",
            "30",
            "--seed",
            "5",
            "--json",
        ],
        0,
    );
    assert_eq!(set["seed"], 5);
    assert_eq!(set["faults"][0]["target"], "catalog-1");
    let shown = fleet.json(&["chaos", "show", "--json"], 0);
    assert_eq!(shown["faults"].as_array().unwrap().len(), 1);
    let out = fleet.run(&["chaos", "set", "--target", "nowhere"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not an upstream"));
    let cleared = fleet.json(&["chaos", "clear", "--json"], 0);
    assert_eq!(cleared["faults"].as_array().unwrap().len(), 0);

    // The admin API without the token, straight over HTTP.
    let status = fleet.json(&["status", "--json"], 0);
    let bff = status["services"]["bff"][0].as_str().unwrap().to_owned();
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let refused = client.get(format!("{bff}/admin/chaos")).send().unwrap();
    assert_eq!(refused.status(), 401);
}

#[test]
fn breaker_opens_fails_fast_keeps_reads_up_and_closes_after_a_crash() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let fleet = booted();

    let report = fleet.json(&["breaker", "--seed", "3", "--json"], 0);
    assert_eq!(report["verdict"], "pass", "{report:#}");
    assert_eq!(report["invariants"].as_array().unwrap().len(), 7);
    // Client errors pinned to the target counted nothing against it.
    let client = invariant(&report, "client errors never count")["observed"]
        .as_str()
        .unwrap();
    assert!(client.contains("0 failure(s) counted"), "{client}");
    // Reads are sequential while the errors are injected: the count is exact.
    let opened = invariant(&report, "the breaker opens within")["observed"]
        .as_str()
        .unwrap();
    assert!(opened.starts_with("open after 5 failures"), "{opened}");

    // The fleet is restored: the replica runs again and no fault is left.
    let status = fleet.json(&["status", "--json"], 0);
    let catalog2 = status["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "catalog-2")
        .unwrap();
    assert_eq!(catalog2["state"], "ready", "{status:#}");
    let chaos = fleet.json(&["chaos", "show", "--json"], 0);
    assert_eq!(chaos["faults"].as_array().unwrap().len(), 0);
}
