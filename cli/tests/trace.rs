//! Observability on a real dev fleet (issue 14): Prometheus, started by
//! `up`, reports every service instance up; one checkout through the BFF,
//! sent with a W3C `traceparent`, leaves JSON log lines with that trace id
//! in the BFF, checkout, a catalog replica and payments (HTTP hops and the
//! outbox → RabbitMQ hop); `down` leaves nothing running, Prometheus
//! included.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Fleet;

/// The trace the test's checkout belongs to.
const TRACE: &str = "5ca1ab1e0ddba11c0ffee0123456789a";

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Polls `check` every 200 ms until it answers `Some`, or panics with
/// `what` and the last answer after `limit`.
fn poll<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => panic!("{what}: {last}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Service jobs whose every target Prometheus scraped successfully.
fn up_in_prometheus(http: &reqwest::blocking::Client, base: &str) -> Result<Vec<String>, String> {
    let answer: Value = http
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", "up")])
        .send()
        .and_then(|r| r.json())
        .map_err(|e| e.to_string())?;
    let series = answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let down: Vec<&Value> = series.iter().filter(|s| s["value"][1] != "1").collect();
    if series.len() < 7 || !down.is_empty() {
        return Err(format!("{} series, not up: {down:?}", series.len()));
    }
    let mut up: Vec<String> = series
        .iter()
        .map(|s| s["metric"]["component"].as_str().unwrap_or("?").to_owned())
        .collect();
    up.sort();
    Ok(up)
}

/// Log files of the fleet holding a line whose `trace_id` is [`TRACE`].
fn traced_logs(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir.join("logs")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let traced = text
            .lines()
            .any(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["trace_id"] == TRACE));
        if traced {
            found.push(path.file_stem().unwrap().to_string_lossy().into_owned());
        }
    }
    found.sort();
    found
}

#[test]
fn prometheus_sees_every_service_and_one_checkout_shares_its_trace_across_four_services() {
    support::require_service_binaries();
    let fleet = Fleet::new("dev");
    let state = fleet.json(&["up", "--json"], 0);
    let http = client();

    let fleet_json: Value =
        serde_json::from_slice(&std::fs::read(fleet.dir().join("fleet.json")).unwrap()).unwrap();
    let prometheus = fleet_json["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "prometheus")
        .unwrap_or_else(|| {
            panic!("no prometheus component (is it installed? scripts/setup.sh): {state:#}")
        });
    let prom_url = prometheus["url"].as_str().unwrap().to_owned();
    let up = poll(
        Duration::from_secs(30),
        "every service up in Prometheus",
        || up_in_prometheus(&http, &prom_url),
    );
    assert_eq!(
        up,
        [
            "bff",
            "catalog-1",
            "catalog-2",
            "checkout",
            "claims",
            "identity",
            "payments"
        ]
    );

    // A customer's checkout through the BFF, in our trace.
    let bff = fleet_json["endpoints"]["services"]["bff"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let token: Value = http
        .post(format!("{bff}/api/identity/token"))
        .json(&json!({"grant_type": "password", "username": "alice", "password": "alice-password"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let bearer = format!(
        "Bearer {}",
        token["access_token"].as_str().expect("a token")
    );
    let products: Value = http
        .get(format!("{bff}/api/catalog/products"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let listed = products
        .as_array()
        .or_else(|| products["items"].as_array())
        .unwrap_or_else(|| panic!("a product list: {products}"));
    let in_stock = listed
        .iter()
        .find(|p| p["stock"].as_i64().unwrap_or(0) > 0)
        .unwrap_or_else(|| panic!("a product in stock: {products}"));
    let response = http
        .post(format!("{bff}/api/checkout/checkout"))
        .header("authorization", &bearer)
        .header("idempotency-key", format!("trace-test-{TRACE}"))
        .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .json(&json!({
            "items": [{"product_id": in_stock["id"], "quantity": 1}],
            "card_number": "4242424242424242",
            "provider": "stripe",
        }))
        .send()
        .unwrap();
    let status = response.status();
    assert_eq!(status, 202, "{}", response.text().unwrap_or_default());

    let logs = poll(
        Duration::from_secs(20),
        "the trace in bff, checkout, a catalog replica and payments",
        || {
            let logs = traced_logs(fleet.dir());
            let has = |name: &str| logs.iter().any(|l| l.starts_with(name));
            if ["bff", "checkout", "catalog", "payments"]
                .iter()
                .all(|s| has(s))
            {
                Ok(logs)
            } else {
                Err(format!("trace {TRACE} found only in {logs:?}"))
            }
        },
    );
    assert!(
        !logs.iter().any(|l| l == "claims"),
        "claims took no part: {logs:?}"
    );

    fleet.json(&["down", "--purge", "--json"], 0);
    fleet.assert_nothing_left();
}
