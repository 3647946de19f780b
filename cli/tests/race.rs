//! `storefront race` against a real fleet: OCC passes, the blind control arm
//! is caught.

mod support;

use support::Fleet;

#[test]
fn race_reports_exactly_one_winner_and_the_control_arm_fails() {
    support::require_service_binaries();
    let fleet = Fleet::new("dev");
    fleet.json(&["up", "--json"], 0);

    let ok = fleet.json(
        &[
            "race", "--n", "20", "--rounds", "2", "--seed", "3", "--json",
        ],
        0,
    );
    assert_eq!(ok["verdict"], "pass", "{ok:#}");
    assert_eq!(ok["outcomes"]["phase 1: racing decrement"]["200"], 2);
    assert_eq!(ok["outcomes"]["phase 1: racing decrement"]["412"], 38);
    assert_eq!(ok["outcomes"]["phase 2: retried decrement"]["200"], 40);
    assert!(
        ok["latencies"]["replica convergence"]["count"].as_u64() == Some(2),
        "{ok:#}"
    );

    let bad = fleet.json(
        &[
            "race",
            "--control",
            "--n",
            "20",
            "--rounds",
            "2",
            "--seed",
            "3",
            "--json",
        ],
        1,
    );
    assert_eq!(bad["verdict"], "fail");
    let inv = |name: &str| {
        bad["invariants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .unwrap()["verdict"]
            .clone()
    };
    // Without a precondition every blind write "wins": deterministic.
    assert_eq!(inv("exactly one 2xx per round"), "fail");
    assert_eq!(bad["outcomes"]["phase 1: racing decrement"]["200"], 40);
}
