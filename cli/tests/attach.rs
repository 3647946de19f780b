//! `storefront attach` and `bootstrap --infra external` against real fleets:
//! a fleet the CLI did not boot is driven like its own, and forgetting it
//! stops nothing; containers' database passwords are the ones they are told.

mod support;

use std::time::Duration;

use support::{Fleet, text};

/// `endpoints.<key>` of a fleet's fleet.json.
fn endpoint(fleet: &Fleet, key: &str) -> String {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fleet.dir().join("fleet.json")).unwrap()).unwrap();
    state["endpoints"][key].as_str().unwrap().to_owned()
}

fn urls(up: &serde_json::Value, service: &str) -> String {
    up["services"][service]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn an_attached_fleet_passes_race_and_down_on_it_stops_nothing() {
    support::require_service_binaries();
    let origin = Fleet::new("dev");
    let up = origin.json(&["up", "--json"], 0);
    let pids: Vec<i64> = up["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["pid"].as_i64().unwrap())
        .collect();

    // Infrastructure through the environment, services through flags.
    let mut attached = Fleet::new("dev");
    for (var, key) in [
        ("STOREFRONT_POSTGRES_URL", "postgres_admin_url"),
        ("STOREFRONT_REDIS_URL", "redis_url"),
        ("STOREFRONT_AMQP_URL", "amqp_url"),
        ("STOREFRONT_VAULT_ADDR", "vault_addr"),
        ("STOREFRONT_VAULT_TOKEN", "vault_token"),
    ] {
        attached.env.push((var.into(), endpoint(&origin, key)));
    }
    let mut args = vec!["attach".to_owned(), "--json".to_owned()];
    for svc in [
        "bff", "catalog", "claims", "identity", "payments", "checkout",
    ] {
        args.extend([format!("--{svc}"), urls(&up, svc)]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let rec = attached.json(&args, 0);
    assert_eq!(rec["healthy"], true, "{rec:#}");
    assert_eq!(rec["infra"], "external");
    let comps = rec["components"].as_array().unwrap();
    assert!(comps.iter().all(|c| c["pid"].is_null()), "{rec:#}");
    let names: Vec<&str> = comps.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for n in [
        "postgres",
        "redis",
        "rabbitmq",
        "vault",
        "catalog-1",
        "catalog-2",
        "bff",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }

    // The experiment runs on the attached record as on the fleet's own.
    let race = attached.json(&["race", "--n", "10", "--seed", "5", "--json"], 0);
    assert_eq!(race["verdict"], "pass", "{race:#}");
    assert_eq!(race["outcomes"]["phase 1: racing decrement"]["200"], 1);
    assert_eq!(race["outcomes"]["phase 1: racing decrement"]["412"], 9);

    // A record `up` wrote is not overwritten by an attach.
    let admin = endpoint(&origin, "postgres_admin_url");
    let clash = origin.run(&[&args[..], &["--postgres-admin-url", &admin]].concat());
    assert_eq!(clash.status.code(), Some(3), "{}", text(&clash.stderr));

    // `down` on the attached record forgets it and stops nothing.
    let down = attached.json(&["down", "--json"], 0);
    assert_eq!(down["stopped"], serde_json::json!([]), "{down:#}");
    let st = attached.run(&["status"]);
    assert_eq!(
        st.status.code(),
        Some(2),
        "the record is gone: {}",
        text(&st.stderr)
    );
    for pid in &pids {
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} of the origin fleet is gone"
        );
    }
    let status = origin.json(&["status", "--json"], 0);
    assert_eq!(status["healthy"], true, "{status:#}");
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for url in urls(&up, "catalog").split(',') {
        let r = client.get(format!("{url}/ready")).send().unwrap();
        assert!(r.status().is_success(), "{url}: {}", r.status());
    }
    origin.json(&["down", "--json"], 0);
    origin.assert_nothing_left();
}

#[test]
fn bootstrap_external_gives_static_services_the_database_passwords_it_is_told() {
    let infra = Fleet::new("test-infra");
    infra.json(&["up", "--json"], 0);
    let admin = endpoint(&infra, "postgres_admin_url");

    let mut init = Fleet::new("dev");
    for (var, key) in [
        ("STOREFRONT_POSTGRES_URL", "postgres_admin_url"),
        ("STOREFRONT_REDIS_URL", "redis_url"),
        ("STOREFRONT_AMQP_URL", "amqp_url"),
        ("STOREFRONT_VAULT_ADDR", "vault_addr"),
        ("STOREFRONT_VAULT_TOKEN", "vault_token"),
    ] {
        init.env.push((var.into(), endpoint(&infra, key)));
    }
    init.env.push((
        "STOREFRONT_CLAIMS_DB_PASSWORD".into(),
        "told-claims-pw".into(),
    ));
    init.env.push((
        "STOREFRONT_CATALOG_DB_PASSWORD".into(),
        "told-catalog-pw".into(),
    ));
    let out = init.run(&["bootstrap", "--infra", "external"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // The containers' DATABASE_URLs carry these passwords: they must log in.
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (role, pw) in [("claims", "told-claims-pw"), ("catalog", "told-catalog-pw")] {
        let mut url = reqwest::Url::parse(&admin).unwrap();
        url.set_username(role).unwrap();
        url.set_password(Some(pw)).unwrap();
        let who: String = rt
            .block_on(async {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(url.as_str()).await?;
                sqlx::query_scalar("SELECT current_user::text")
                    .fetch_one(&mut c)
                    .await
            })
            .unwrap_or_else(|e| panic!("{role} cannot log in with the password it was told: {e}"));
        assert_eq!(who, role);
    }
}
