//! `--infra external`: infrastructure someone else runs is bootstrapped,
//! and only our own services are ever stopped.

use crate::support::{self, Fleet, text};

#[test]
fn external_infra_is_bootstrapped_and_only_our_services_are_stopped() {
    support::require_service_binaries();
    // Someone else's infrastructure: an infra-only native fleet.
    let infra = Fleet::new("test-infra");
    infra.json(&["up", "--json"], 0);
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(infra.dir().join("fleet.json")).unwrap()).unwrap();
    let e = &rec["endpoints"];
    let s = |k: &str| e[k].as_str().unwrap().to_owned();

    let mut ext = Fleet::new("dev");
    ext.env = vec![
        ("STOREFRONT_POSTGRES_URL".into(), s("postgres_admin_url")),
        ("STOREFRONT_REDIS_URL".into(), s("redis_url")),
        ("STOREFRONT_AMQP_URL".into(), s("amqp_url")),
        ("STOREFRONT_VAULT_ADDR".into(), s("vault_addr")),
        ("STOREFRONT_VAULT_TOKEN".into(), s("vault_token")),
    ];
    let up = ext.json(&["up", "--infra", "external", "--json"], 0);
    assert_eq!(up["healthy"], true, "{up:#}");
    let pg = up["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "postgres")
        .unwrap();
    assert!(pg["pid"].is_null(), "external infra has no pid of ours");
    assert!(
        !pg["url"]
            .as_str()
            .unwrap()
            .contains(&s("postgres_admin_url")),
        "passwords are redacted"
    );
    // Redis's URL carries the admin's password now (Redis has ACLs): it is
    // shown redacted too, never as given.
    let redis = up["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "redis")
        .unwrap();
    let given = s("redis_url");
    let password = reqwest::Url::parse(&given)
        .unwrap()
        .password()
        .expect("the infra fleet's redis_url has the admin's password")
        .to_owned();
    assert!(
        !redis["url"].as_str().unwrap().contains(&password),
        "{redis:#}"
    );
    let url = up["services"]["catalog"][0].as_str().unwrap();
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    assert_eq!(
        client
            .get(format!("{url}/products/1"))
            .send()
            .unwrap()
            .status(),
        200
    );

    ext.json(&["down", "--json"], 0);
    ext.assert_nothing_left();
    // Their infrastructure is still running: we stopped only our services.
    assert_eq!(infra.json(&["status", "--json"], 0)["healthy"], true);
}

#[test]
fn external_infra_without_its_urls_names_the_variable() {
    let fleet = Fleet::new("dev");
    let out = fleet
        .cmd(&["up", "--infra", "external"])
        .env_remove("STOREFRONT_POSTGRES_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("STOREFRONT_POSTGRES_URL"),
        "{}",
        text(&out.stderr)
    );
}
