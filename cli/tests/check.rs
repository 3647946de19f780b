//! `storefront check` against a real fleet: after a saga run the shop
//! passes every invariant; a completed order's payment captured twice at
//! the provider, written by hand into Postgres, fails the check naming the
//! order, and putting it back passes again. A poison command that payments
//! dead-letters fails the check, and a check whose scope starts after it
//! (the message dated by its x-death time) does not count it.

mod support;

use serde_json::Value;
use support::Fleet;

const COMPLETED: &str = "completed orders took their stock once and were captured exactly once";
const MONEY: &str = "the sum captured equals the sum of completed order totals";
const DEAD_LETTERS: &str = "no unexplained dead letters";

fn verdict_of<'a>(report: &'a Value, name: &str) -> &'a Value {
    let inv = report["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no invariant {name}: {report:#}"));
    &inv["verdict"]
}

fn observed<'a>(report: &'a Value, name: &str) -> &'a str {
    let inv = report["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap();
    inv["observed"].as_str().unwrap()
}

/// Publishes a message payments can never handle (no message id, not
/// JSON) to its command queue: payments dead-letters it.
fn publish_poison(fleet: &Fleet) {
    let state: Value =
        serde_json::from_slice(&std::fs::read(fleet.dir().join("fleet.json")).unwrap()).unwrap();
    let url = state["endpoints"]["amqp_url"].as_str().unwrap().to_owned();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            use lapin::options::BasicPublishOptions;
            use lapin::{BasicProperties, Connection, ConnectionProperties};
            let c = Connection::connect(&url, ConnectionProperties::default())
                .await
                .unwrap();
            let channel = c.create_channel().await.unwrap();
            channel
                .basic_publish(
                    "".into(),
                    "payments.commands".into(),
                    BasicPublishOptions::default(),
                    b"not json",
                    BasicProperties::default(),
                )
                .await
                .unwrap()
                .await
                .unwrap();
            c.close(200, "OK".into()).await.ok();
        });
}

#[test]
fn check_passes_a_consistent_shop_and_fails_a_double_capture_or_a_new_dead_letter() {
    support::require_service_binaries();
    let fleet = Fleet::new("dev");
    fleet.json(&["up", "--json"], 0);
    let saga = fleet.json(
        &[
            "saga",
            "--json",
            "--seed",
            "5",
            "--orders",
            "10",
            "--fail-at",
            "mixed",
        ],
        0,
    );
    assert_eq!(saga["verdict"], "pass", "{saga:#}");

    let report = fleet.json(&["check", "--since", "10m", "--json"], 0);
    assert_eq!(report["verdict"], "pass", "{report:#}");
    assert_eq!(report["outcomes"]["orders"]["completed"], 2, "{report:#}");
    assert_eq!(verdict_of(&report, "one claim per Idempotency-Key"), "pass");

    // One completed order's provider captures it twice.
    let (_, order) = fleet.sql(
        "SELECT order_id::text FROM checkout.sagas WHERE state = 'completed' \
         ORDER BY order_id LIMIT 1",
    );
    let order = order.expect("a completed order");
    let corrupt = format!(
        "UPDATE payments.provider_intents SET captures = 2 WHERE payment_id = \
         (SELECT payment_id FROM payments.payments WHERE order_id = '{order}')"
    );
    assert_eq!(fleet.sql(&corrupt).0, 1);
    let report = fleet.json(&["check", "--since", "10m", "--json"], 1);
    assert_eq!(report["verdict"], "fail");
    assert_eq!(verdict_of(&report, COMPLETED), "fail");
    assert_eq!(verdict_of(&report, MONEY), "fail");
    let seen = observed(&report, COMPLETED);
    assert!(
        seen.contains(&order) && seen.contains("provider_captures: 2"),
        "{report:#}"
    );

    // Put back, it passes again: the check judged the data, not the clock.
    assert_eq!(
        fleet
            .sql(&corrupt.replace("captures = 2", "captures = 1"))
            .0,
        1
    );
    let report = fleet.json(&["check", "--since", "10m", "--json"], 0);
    assert_eq!(report["verdict"], "pass", "{report:#}");

    // A poison command: dead-lettered since the start, so unexplained.
    publish_poison(&fleet);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let report = loop {
        let out = fleet.run(&["check", "--since", "10m", "--json"]);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        if out.status.code() == Some(1) || std::time::Instant::now() >= deadline {
            break report;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(verdict_of(&report, DEAD_LETTERS), "fail", "{report:#}");
    assert!(
        observed(&report, DEAD_LETTERS)
            .contains("payments.commands.dlq: 1 dead-lettered since the start"),
        "{report:#}"
    );
    // Judged from a moment after it (x-death times are whole seconds), the
    // same message is not the scope's.
    let later = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let report = fleet.json(&["check", "--since", &later, "--json"], 0);
    assert!(
        observed(&report, DEAD_LETTERS).contains("1 dead-lettered before the start"),
        "{report:#}"
    );
}
