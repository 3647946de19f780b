//! The identity service on a real fleet: its Postgres login comes from
//! OpenBao's database engine, rotates under `storefront rotate`'s load
//! without a failed request, and the control arm (naive rotation) is caught;
//! a login that stops working on an idle service is replaced.
//! One fleet for the whole file: the phases run in order on it.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Fleet, text};

fn invariant<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no invariant {name:?} in {report:#}"))
}

/// The lab admin token of a profile: its bff's `BFF_ADMIN_TOKEN`, which the
/// fleet gives every service as `LAB_ADMIN_TOKEN`.
fn lab_admin_token(profile: &str) -> String {
    let path = format!("{}/../profiles/{profile}.toml", env!("CARGO_MANIFEST_DIR"));
    let profile: toml::Value = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    profile["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"].as_str() == Some("bff"))
        .and_then(|s| s["env"]["BFF_ADMIN_TOKEN"].as_str())
        .unwrap_or_else(|| panic!("{path}: the bff sets no BFF_ADMIN_TOKEN"))
        .to_owned()
}

/// Logins of the identity service that exist in Postgres right now.
fn dynamic_roles(admin_url: &str) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pg = sqlx::PgPool::connect(admin_url).await.unwrap();
        let roles = sqlx::query_scalar(
            "SELECT rolname::text FROM pg_roles WHERE rolname LIKE 'v-%-identity-%' ORDER BY 1",
        )
        .fetch_all(&pg)
        .await
        .unwrap();
        pg.close().await;
        roles
    })
}

#[test]
fn vault_logins_rotate_under_load_without_a_failed_request_and_naive_rotation_is_caught() {
    support::require_service_binaries();
    let fleet = Fleet::new("dev");
    let up = fleet.json(&["up", "--json"], 0);
    assert_eq!(up["healthy"], true, "{up:#}");
    let state: Value =
        serde_json::from_slice(&std::fs::read(fleet.dir().join("fleet.json")).unwrap()).unwrap();
    let admin_url = state["endpoints"]["postgres_admin_url"].as_str().unwrap();
    let db_url = state["endpoints"]["service_database_urls"]["identity"]
        .as_str()
        .unwrap();
    assert!(
        !db_url.contains('@'),
        "identity's DATABASE_URL carries no credentials: {db_url}"
    );

    // Phase 1: the login is Vault's, and a graceful restart revokes it.
    let before = dynamic_roles(admin_url);
    assert_eq!(before.len(), 1, "one Vault login at boot: {before:?}");
    let restart = fleet.run(&["restart", "identity"]);
    assert!(restart.status.success(), "{}", text(&restart.stderr));
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let roles = dynamic_roles(admin_url);
        if !roles.contains(&before[0]) || Instant::now() > deadline {
            break roles;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        !after.contains(&before[0]) && after.len() == 1,
        "the stopped instance revoked its lease and the new one has its own: {before:?} → {after:?}"
    );

    // Phase 2: rotation under load, with a lease revoked mid-run.
    let out = fleet.run(&[
        "rotate",
        "--duration",
        "12s",
        "--rps",
        "30",
        "--ttl",
        "4s",
        "--seed",
        "8",
        "--json",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["verdict"], "pass");
    for name in [
        "zero failed requests",
        "the logins rotated at least as often as max_ttl forces",
        "a lease revoked in Vault mid-load is replaced without a restart",
        "every superseded role is gone from pg_roles and holds no connection",
        "a revoked jti is rejected",
        "a reused refresh token revokes its family",
        "an expired access token is rejected",
    ] {
        assert_eq!(
            invariant(&report, name)["verdict"],
            "pass",
            "{name}: {report:#}"
        );
    }
    let windows = report["latencies"].as_object().unwrap();
    assert!(
        windows.keys().any(|k| k.contains("rotation windows"))
            && windows.keys().any(|k| k.contains("steady windows")),
        "{windows:#?}"
    );

    // Phase 3: the control arm must be caught by the same checks.
    let out = fleet.run(&[
        "rotate",
        "--control",
        "--duration",
        "6s",
        "--rps",
        "40",
        "--ttl",
        "4s",
        "--json",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    assert_eq!(
        invariant(&report, "zero failed requests")["verdict"],
        "fail",
        "{report:#}"
    );
    // The run restored identity: back to careful rotation, one login left.
    let http = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    let lease_url = format!(
        "{}/lab/lease",
        state["endpoints"]["services"]["identity"][0]
            .as_str()
            .unwrap()
    );
    let lease: Value = http
        .get(&lease_url)
        .bearer_auth(lab_admin_token("dev"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(lease["naive"], false, "{lease:#}");
    // Anonymous callers may not read the lease (its id revokes identity's
    // database access) nor switch the rotation mode.
    let anonymous = http.get(&lease_url).send().unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let switch = http
        .put(lease_url.replace("/lab/lease", "/lab/rotation-mode"))
        .json(&serde_json::json!({"naive": true}))
        .send()
        .unwrap();
    assert_eq!(switch.status().as_u16(), 401);

    // Phase 4: the login stops working while nobody sends identity a
    // request, as when Postgres crashes before the commit that created the
    // role reached the WAL (the dev profile runs synchronous_commit = off).
    // Its readiness probe alone must get it fresh credentials.
    let lost = dynamic_roles(admin_url);
    assert_eq!(lost.len(), 1, "one login before the loss: {lost:?}");
    fleet.sql(&format!(
        r#"ALTER ROLE "{}" PASSWORD 'lost-in-the-crash'"#,
        lost[0]
    ));
    fleet.sql(&format!(
        "SELECT count(pg_terminate_backend(pid))::text FROM pg_stat_activity WHERE usename = '{}'",
        lost[0]
    ));
    let ready_url = lease_url.replace("/lab/lease", "/ready");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let last = match http.get(&ready_url).send() {
            Ok(r) if r.status().is_success() => break,
            Ok(r) => r.text().unwrap_or_default(),
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "identity never ready again after its login stopped working: {last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let roles = dynamic_roles(admin_url);
    assert!(
        roles.iter().any(|r| r != &lost[0]),
        "ready again on a new login: {lost:?} → {roles:?}"
    );

    let down = fleet.json(&["down", "--json"], 0);
    assert!(down["stopped"].as_array().is_some(), "{down:#}");
    fleet.assert_nothing_left();
}
