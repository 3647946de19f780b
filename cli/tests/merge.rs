//! Several load machines, shown on one: N `storefront load` processes at
//! once against one fleet, each with its own seed and a share of the rate,
//! each writing an HDR interval log; `report merge` of the logs must give
//! exactly the sum of what each process reported about itself.

mod support;

use std::collections::BTreeMap;
use std::process::Stdio;

use serde_json::Value;
use support::{Fleet, text};

/// Reads only: a product that exists (200) and one that doesn't (404), so
/// the exact counts have two statuses to add up. No think time, no
/// invariants: three of these may run at once on one fleet.
const READS: &str = r#"
description = "two reads, for the merge test"
users = 1
ramp = 1
duration = "2s"

[vars]
product_id = { from = "catalog.products" }

[[scenarios]]
name = "reader"

[[scenarios.transactions]]
name = "product"
service = "catalog"
method = "GET"
path = "/products/{product_id}"
success = [200]

[[scenarios.transactions]]
name = "missing"
service = "catalog"
method = "GET"
path = "/products/2147483000"
success = [404]
"#;

const WORKERS: u64 = 3;
/// Scenario passes per second, all workers together (each runs a third).
const TOTAL_RATE: u64 = 60;

fn outcomes(v: &Value) -> BTreeMap<String, u64> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
        .collect()
}

#[test]
fn three_load_processes_at_once_merge_to_exactly_the_sum_of_their_own_counts() {
    support::require_service_binaries();
    let fleet = Fleet::new("dev");
    fleet.json(&["up", "--json"], 0);
    let profile_dir = tempfile::tempdir().unwrap();
    let profile = profile_dir.path().join("reads.toml");
    std::fs::write(&profile, READS).unwrap();
    let logs = tempfile::tempdir().unwrap();

    // All three start before any is waited for.
    let share = (TOTAL_RATE / WORKERS).to_string();
    let workers: Vec<_> = (0..WORKERS)
        .map(|i| {
            let seed = (100 + i).to_string();
            fleet
                .cmd(&[
                    "load",
                    "--profile",
                    profile.to_str().unwrap(),
                    "--via",
                    "direct",
                    "--rate",
                    &share,
                    "--seed",
                    &seed,
                    "--hdr-out",
                    logs.path().to_str().unwrap(),
                    "--json",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a load worker")
        })
        .collect();
    let reports: Vec<Value> = workers
        .into_iter()
        .map(|w| {
            let out = w.wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();

    // What the three said about themselves, added up.
    let mut requests: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_tx: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut seeds = Vec::new();
    for r in &reports {
        seeds.push(r["seed"].as_u64().unwrap());
        for t in r["transactions"].as_array().unwrap() {
            let name = t["name"].as_str().unwrap().to_owned();
            *requests.entry(name.clone()).or_default() += t["requests"].as_u64().unwrap();
            *errors.entry(name.clone()).or_default() += t["errors"].as_u64().unwrap();
            for (k, n) in outcomes(&t["outcomes"]) {
                *by_tx.entry(name.clone()).or_default().entry(k).or_default() += n;
            }
        }
    }
    assert_eq!(seeds, vec![100, 101, 102]);
    let sent: u64 = requests.values().sum();
    // 60 passes/s × 2 s × 2 requests, give or take the open model's edges.
    assert!(
        (200..=260).contains(&sent),
        "{sent} requests in {reports:#?}"
    );
    assert!(by_tx["reader/missing"]["404"] > 0, "{by_tx:#?}");

    let files: Vec<String> = std::fs::read_dir(logs.path())
        .unwrap()
        .map(|e| e.unwrap().path().to_str().unwrap().to_owned())
        .collect();
    assert_eq!(files.len(), WORKERS as usize, "{files:?}");
    let mut args = vec!["report", "merge", "--json"];
    args.extend(files.iter().map(String::as_str));
    let merged = fleet.json(&args, 0);

    assert_eq!(merged["uncounted"].as_array().unwrap().len(), 0);
    for t in merged["transactions"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        assert_eq!(t["requests"].as_u64().unwrap(), requests[name], "{name}");
        assert_eq!(t["errors"].as_u64().unwrap(), errors[name], "{name}");
        assert_eq!(outcomes(&t["outcomes"]), by_tx[name], "{name}");
    }
    assert_eq!(
        merged["transactions"].as_array().unwrap().len(),
        by_tx.len()
    );
    let mut all: BTreeMap<String, u64> = BTreeMap::new();
    for (k, n) in by_tx.values().flatten() {
        *all.entry(k.clone()).or_default() += n;
    }
    assert_eq!(outcomes(&merged["totals"]["outcomes"]), all);
    assert_eq!(merged["totals"]["requests"].as_u64().unwrap(), sent);
    assert_eq!(
        merged["totals"]["errors"].as_u64().unwrap(),
        errors.values().sum::<u64>()
    );

    // The text report prints the same exact totals.
    let mut args = vec!["report", "merge"];
    args.extend(files.iter().map(String::as_str));
    let out = fleet.run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let each: Vec<String> = all.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let line = format!("exact outcome totals: {}", each.join(", "));
    assert!(text(&out.stdout).contains(&line), "{}", text(&out.stdout));
}
