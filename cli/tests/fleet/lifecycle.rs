//! The whole life of a dev fleet: `up`, serving, `status`, `logs`, a crashed
//! instance brought back, `down` leaving nothing behind.

use std::time::Duration;

use crate::support::{self, Fleet, text};

#[test]
fn fleet_boots_serves_products_and_down_leaves_nothing() {
    support::require_service_binaries();
    let fleet = Fleet::new("dev");

    let up = fleet.json(&["up", "--json"], 0);
    assert_eq!(up["healthy"], true, "{up:#}");
    let comps = up["components"].as_array().unwrap();
    let names: Vec<&str> = comps.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for n in [
        "postgres",
        "redis",
        "epmd",
        "rabbitmq",
        "vault",
        "catalog-1",
        "catalog-2",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    assert!(comps.iter().all(|c| c["state"] == "ready"), "{up:#}");
    let pids: Vec<i64> = comps.iter().map(|c| c["pid"].as_i64().unwrap()).collect();

    // Products through HTTP, from each replica.
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for url in up["services"]["catalog"].as_array().unwrap() {
        let page: serde_json::Value = client
            .get(format!("{}/products?limit=5", url.as_str().unwrap()))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 5, "{page:#}");
        let next = page["next_after"]
            .as_i64()
            .expect("more than 5 products are seeded");
        let page2: serde_json::Value = client
            .get(format!(
                "{}/products?limit=5&after={next}",
                url.as_str().unwrap()
            ))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert!(
            page2["items"][0]["id"].as_i64().unwrap() > next,
            "keyset pagination moves forward"
        );
        let id = items[0]["id"].as_i64().unwrap();
        let one: serde_json::Value = client
            .get(format!("{}/products/{id}", url.as_str().unwrap()))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(one["sku"], items[0]["sku"]);
        let missing = client
            .get(format!("{}/products/999999999", url.as_str().unwrap()))
            .send()
            .unwrap();
        assert_eq!(missing.status(), 404);
    }

    // `up` on a running fleet reports it and changes nothing.
    let again = fleet.json(&["up", "--json"], 0);
    let pids_again: Vec<i64> = again["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(pids, pids_again, "second `up` must not restart anything");

    let status = fleet.json(&["status", "--json"], 0);
    assert_eq!(status["healthy"], true);
    let logs = fleet.run(&["logs", "postgres", "-n", "3"]);
    assert!(logs.status.success(), "{}", text(&logs.stderr));

    let down = fleet.json(&["down", "--json"], 0);
    assert!(down["stopped"].as_array().unwrap().len() >= 7, "{down:#}");
    fleet.assert_nothing_left();
    assert!(!fleet.dir().join("fleet.json").exists());
    let status = fleet.run(&["status"]);
    assert_eq!(
        status.status.code(),
        Some(2),
        "status with no fleet is `unknown`"
    );
}

#[test]
fn a_crashed_service_instance_restarts_and_the_fleet_is_whole_again() {
    support::require_service_binaries();
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("one.toml");
    std::fs::write(&profile, "port_base = 40000\n[[services]]\nname = \"catalog\"\nneeds = [\"postgres\", \"redis\"]\nschema = \"catalog\"\n").unwrap();
    let fleet = Fleet::new(profile.to_str().unwrap());
    let up = fleet.json(&["up", "--json"], 0);
    let pid = |v: &serde_json::Value| {
        v["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "catalog")
            .unwrap()["pid"]
            .as_i64()
    };
    let before = pid(&up);
    let out = fleet.run(&["restart", "catalog", "--crash"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status = fleet.json(&["status", "--json"], 0);
    assert_eq!(status["healthy"], true);
    assert_ne!(pid(&status), before, "a new process serves");
    let bad = fleet.run(&["restart", "catalogue"]);
    assert_eq!(bad.status.code(), Some(3));
    let err = text(&bad.stderr);
    assert!(
        err.contains("no component `catalogue`") && err.contains("postgres, "),
        "an unknown name is refused with the names there are: {err}"
    );
    let bad = fleet.run(&["restart", "redis", "--mode", "immediate"]);
    assert_eq!(bad.status.code(), Some(3));
    assert!(
        text(&bad.stderr).contains("only postgres"),
        "{}",
        text(&bad.stderr)
    );
}
