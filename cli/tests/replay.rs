//! `storefront replay` against a real fleet: the ON CONFLICT path passes,
//! and the check-then-insert control arm is caught.

mod support;

use support::Fleet;

#[test]
fn replay_passes_on_conflict_and_catches_check_then_insert() {
    support::require_service_binaries();
    let fleet = Fleet::new("dev");
    fleet.json(&["up", "--json"], 0);

    let ok = fleet.json(
        &[
            "replay", "--n", "20", "--keys", "5", "--seed", "7", "--json",
        ],
        0,
    );
    assert_eq!(ok["verdict"], "pass", "{ok:#}");
    assert_eq!(
        ok["outcomes"]["concurrent identical POSTs"]["201 created"],
        5
    );
    assert_eq!(
        ok["outcomes"]["concurrent identical POSTs"]["201 replayed"],
        95
    );
    assert_eq!(ok["outcomes"]["same key, different body"]["422"], 5);

    // The naive path: the checker must see what it does. Several rounds
    // make a race that loses every time practically impossible to miss.
    let bad = fleet.json(
        &[
            "replay",
            "--control",
            "--n",
            "20",
            "--keys",
            "10",
            "--seed",
            "7",
            "--json",
        ],
        1,
    );
    assert_eq!(bad["verdict"], "fail", "{bad:#}");
    let rows = bad["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "exactly one row per key in Postgres")
        .unwrap();
    assert_eq!(
        rows["verdict"], "fail",
        "duplicates in lab_claims are counted: {rows:#}"
    );
}

#[test]
fn replay_without_a_fleet_is_unknown_and_says_how_to_start_one() {
    let fleet = Fleet::new("dev");
    let out = fleet.run(&["replay"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(support::text(&out.stderr).contains("storefront up"));
}
