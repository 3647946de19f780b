//! `storefront outbox` against a real fleet: payments' outbox loses and
//! invents nothing while payments is SIGKILLed and RabbitMQ frozen
//! mid-publish; the naive dual write (`--control`) under the same faults is
//! caught inventing or losing events (exit 1).

mod support;

use serde_json::Value;
use support::Fleet;

/// A measurement of the report, as a number.
fn measured(report: &Value, name: &str) -> u64 {
    report["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m[0] == name)
        .and_then(|m| m[1].as_str()?.parse().ok())
        .unwrap_or_else(|| panic!("no measurement {name:?}: {report:#}"))
}

fn verdict_of<'a>(report: &'a Value, starts: &str) -> &'a str {
    report["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"].as_str().unwrap().starts_with(starts))
        .and_then(|i| i["verdict"].as_str())
        .unwrap_or_else(|| panic!("no invariant {starts:?}: {report:#}"))
}

#[test]
fn the_outbox_survives_a_kill_and_a_frozen_broker_and_the_naive_dual_write_does_not() {
    support::require_service_binaries();
    let fleet = Fleet::new("dev");
    fleet.json(&["up", "--json"], 0);

    let outbox = fleet.json(&["outbox", "--json", "--ops", "12"], 0);
    assert_eq!(outbox["verdict"], "pass", "{outbox:#}");
    assert_eq!(measured(&outbox, "lost events"), 0);
    assert_eq!(measured(&outbox, "phantom events"), 0);
    assert!(measured(&outbox, "transactions held open when payments was killed") >= 1);

    let control = fleet.json(&["outbox", "--json", "--ops", "12", "--control"], 1);
    assert_eq!(control["verdict"], "fail", "{control:#}");
    let broken = measured(&control, "lost events") + measured(&control, "phantom events");
    assert!(broken >= 1, "{control:#}");
    assert!(
        verdict_of(&control, "no lost event") == "fail"
            || verdict_of(&control, "no phantom event") == "fail",
        "{control:#}"
    );
    // The faults landed at their moments in the control arm too.
    assert_eq!(verdict_of(&control, "payments was SIGKILLed"), "pass");
    assert_eq!(verdict_of(&control, "RabbitMQ was frozen"), "pass");
}
