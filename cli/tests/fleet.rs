//! `storefront up/status/logs/down` against real Postgres, Redis, RabbitMQ,
//! OpenBao and the catalog service, on a free port range.

mod support;

use std::time::Duration;

use support::{Fleet, text};

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
fn taken_port_is_named_and_nothing_starts() {
    let fleet = Fleet::new("dev");
    let holder = std::net::TcpListener::bind(("127.0.0.1", fleet.port_base + 1)).unwrap();
    let out = fleet.run(&["up"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{} (redis)", fleet.port_base + 1)),
        "{err}"
    );
    assert!(
        err.contains("--port-base"),
        "the error names the fix: {err}"
    );
    // The holder is ours, not the fleet's: only what `up` might have left counts.
    drop(holder);
    fleet.assert_nothing_left();
}

#[test]
fn missing_binary_is_named_with_the_fix_and_nothing_starts() {
    let mut fleet = Fleet::new("dev");
    fleet
        .env
        .push(("STOREFRONT_BAO".into(), "/nonexistent/bao".into()));
    let out = fleet.run(&["up"]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("bao not found at /nonexistent/bao"), "{err}");
    assert!(err.contains("scripts/setup.sh"), "{err}");
    fleet.assert_nothing_left();
}

#[test]
fn crashed_dependency_fails_up_with_its_log_and_stops_the_rest() {
    support::require_service_binaries();
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("broken.toml");
    // Postgres refuses to start on an invalid setting; everything else boots.
    std::fs::write(&profile, "port_base = 40000\n[postgres.settings]\nshared_buffers = \"lots\"\n[[services]]\nname = \"catalog\"\nneeds = [\"postgres\", \"redis\"]\nschema = \"catalog\"\n").unwrap();
    let fleet = Fleet::new(profile.to_str().unwrap());
    let out = fleet.run(&["up"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("postgres exited during start-up"), "{err}");
    assert!(
        err.contains("shared_buffers"),
        "the error shows postgres's own log: {err}"
    );
    assert!(
        err.contains("everything it had started was stopped"),
        "{err}"
    );
    fleet.assert_nothing_left();
    assert!(!fleet.dir().join("fleet.json").exists());
}

#[test]
fn bad_profile_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("typo.toml");
    std::fs::write(
        &profile,
        "port_base = 40000\n\n[[services]]\nname = \"catalog\"\nreplica = 2\n",
    )
    .unwrap();
    let fleet = Fleet::new(profile.to_str().unwrap());
    let out = fleet.run(&["status"]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("typo.toml"), "{err}");
    assert!(err.contains("line 5"), "{err}");
    assert!(err.contains("replica"), "{err}");
}

#[test]
fn help_documents_exit_codes() {
    let out = std::process::Command::new(support::storefront())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("Exit codes"));
    let bad = std::process::Command::new(support::storefront())
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(64));
}

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

#[test]
fn doctor_finds_every_program_and_names_the_fix_for_a_missing_one() {
    let fleet = Fleet::new("dev");
    let found = fleet.json(&["doctor", "--json"], 0);
    let checks: Vec<&str> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    for program in [
        "postgres",
        "redis-server",
        "rabbitmq-server",
        "epmd",
        "bao",
        "service catalog",
    ] {
        assert!(
            checks.contains(&program),
            "{program} not checked: {checks:?}"
        );
    }
    let mut broken = Fleet::new("dev");
    broken.env.push((
        "STOREFRONT_REDIS_SERVER".into(),
        "/nonexistent/redis-server".into(),
    ));
    let report = broken.json(&["doctor", "--json"], 1);
    let redis = report
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "redis-server")
        .unwrap();
    assert_eq!(redis["ok"], false);
    assert!(
        redis["fix"]
            .as_str()
            .unwrap()
            .contains("apt-get install redis-server"),
        "{redis:#}"
    );
}

/// Every string value in a JSON document (secrets.json's passwords and tokens).
fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// A Redis command's outcome: Ok, or the server's error text.
fn redis_try(url: &str, args: &[&str]) -> Result<redis::Value, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut c = client.get_connection().map_err(|e| e.to_string())?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    // Upper-cased: redis-rs spells the server's NOPERM as `NoPerm`.
    cmd.query(&mut c).map_err(|e| e.to_string().to_uppercase())
}

/// Issue 11 item 7: secrets readable by any local user. The Vault root token
/// was on `bao`'s argv and in its log, logs were 0644 in 0755 directories,
/// identity held the root token, and Redis had no authentication (a local
/// user deleted `identity:revoked:<jti>` and a revoked token worked again).
#[test]
fn fleet_secrets_stay_private_and_each_service_reaches_only_its_own() {
    support::require_service_binaries();
    let fleet = Fleet::new("dev");
    let up = fleet.json(&["up", "--json"], 0);
    assert_eq!(up["healthy"], true, "{up:#}");
    let dir = fleet.dir();
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("fleet.json")).unwrap()).unwrap();
    let secrets: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("secrets.json")).unwrap()).unwrap();
    let e = &rec["endpoints"];
    let root_token = secrets["vault_root_token"].as_str().unwrap();

    // Modes: the state directory admits only us (and, when we are root, the
    // `postgres` account, which must pass through to its data directory).
    {
        use std::os::unix::fs::MetadataExt;
        let state = std::fs::metadata(dir).unwrap();
        if nix::unistd::Uid::effective().is_root() {
            let pg = nix::unistd::User::from_name("postgres").unwrap().unwrap();
            assert_eq!(mode(dir), 0o710, "state dir as root");
            assert_eq!(
                state.gid(),
                pg.gid.as_raw(),
                "state dir group is postgres's"
            );
        } else {
            assert_eq!(mode(dir), 0o700, "state dir");
        }
    }
    for d in [
        "logs",
        "redis",
        "vault",
        "postgres",
        "rabbitmq",
        "rabbitmq/home",
        "rabbitmq/log",
        "rabbitmq/mnesia",
    ] {
        assert_eq!(mode(&dir.join(d)), 0o700, "{d}");
    }
    for f in [
        "fleet.json",
        "secrets.json",
        "redis/users.acl",
        "vault/bao.hcl",
    ] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    let logs: Vec<std::path::PathBuf> = std::fs::read_dir(dir.join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(logs.len() >= 12, "a log per component: {logs:?}");
    for log in &logs {
        assert_eq!(mode(log), 0o600, "{}", log.display());
    }

    // No secret on any fleet process's command line or in any log.
    let mut secret_values = Vec::new();
    strings(&secrets, &mut secret_values);
    strings(&e["service_vault_tokens"], &mut secret_values);
    assert!(secret_values.iter().any(|s| s == root_token));
    assert!(secret_values.len() >= 12, "{secret_values:?}");
    let pids = fleet.processes();
    assert!(pids.len() >= 12, "fleet processes: {pids:?}");
    for pid in pids {
        let argv = String::from_utf8_lossy(
            &std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default(),
        )
        .replace('\0', " ");
        for s in &secret_values {
            assert!(
                !argv.contains(s.as_str()),
                "a secret on pid {pid}'s argv: {argv}"
            );
        }
    }
    for log in &logs {
        let text = String::from_utf8_lossy(&std::fs::read(log).unwrap()).into_owned();
        for s in &secret_values {
            assert!(!text.contains(s.as_str()), "a secret in {}", log.display());
        }
    }

    // Vault: identity runs with a token of its own that reaches only its role.
    let identity_token = e["service_vault_tokens"]["identity"].as_str().unwrap();
    assert_ne!(identity_token, root_token);
    let identity_pid = rec["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "identity")
        .unwrap()["pid"]
        .as_i64()
        .unwrap();
    let environ = std::fs::read(format!("/proc/{identity_pid}/environ")).unwrap();
    let vault_token_var = format!("VAULT_TOKEN={identity_token}");
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|kv| kv == vault_token_var.as_bytes()),
        "identity runs with its own token"
    );
    let http = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let vault = e["vault_addr"].as_str().unwrap();
    let as_identity = |method: reqwest::Method, path: &str, body: Option<serde_json::Value>| {
        let mut r = http
            .request(method, format!("{vault}/v1/{path}"))
            .header("X-Vault-Token", identity_token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().unwrap()
    };
    for path in ["sys/mounts", "database/creds/catalog", "sys/policies/acl"] {
        assert_eq!(
            as_identity(reqwest::Method::GET, path, None).status(),
            403,
            "{path}"
        );
    }
    assert_eq!(
        as_identity(
            reqwest::Method::PUT,
            "sys/leases/revoke",
            Some(serde_json::json!({"lease_id": "database/creds/other/x"}))
        )
        .status(),
        403,
        "another role's lease"
    );
    let creds: serde_json::Value =
        as_identity(reqwest::Method::GET, "database/creds/identity", None)
            .error_for_status()
            .unwrap()
            .json()
            .unwrap();
    let lease = creds["lease_id"].as_str().unwrap();
    for op in ["renew", "revoke"] {
        let r = as_identity(
            reqwest::Method::PUT,
            &format!("sys/leases/{op}"),
            Some(serde_json::json!({"lease_id": lease})),
        );
        assert!(
            r.status().is_success(),
            "{op} its own lease: {}",
            r.status()
        );
    }
    assert_eq!(
        as_identity(reqwest::Method::GET, "auth/token/lookup-self", None).status(),
        200
    );
    // The root token is the one in secrets.json, and it works for the CLI.
    let root = http
        .get(format!("{vault}/v1/sys/mounts"))
        .header("X-Vault-Token", root_token)
        .send()
        .unwrap();
    assert_eq!(root.status(), 200);

    // Redis: each service's user works for what it does; none of it hits a
    // permission error (the BFF would fail open and nobody would notice).
    let admin = e["redis_url"].as_str().unwrap();
    let urls = &e["service_redis_urls"];
    redis_try(admin, &["ACL", "LOG", "RESET"]).unwrap();
    let catalog = rec["endpoints"]["services"]["catalog"].as_array().unwrap();
    let cache = |base: &serde_json::Value| {
        let r = http
            .get(format!("{}/products/2", base.as_str().unwrap()))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        r.headers()["x-cache"].to_str().unwrap().to_owned()
    };
    assert_eq!(cache(&catalog[0]), "db");
    assert_eq!(
        cache(&catalog[1]),
        "l2",
        "catalog-1 filled Redis with its own user (EVALSHA under the ACL)"
    );
    let bff = rec["endpoints"]["services"]["bff"][0].as_str().unwrap();
    let through = http
        .get(format!("{bff}/api/catalog/products/2"))
        .send()
        .unwrap();
    assert_eq!(through.status(), 200);
    assert!(
        through.headers().contains_key("ratelimit"),
        "the BFF's bucket script ran"
    );
    let denied = redis_try(admin, &["ACL", "LOG"]).unwrap();
    assert_eq!(
        denied,
        redis::Value::Array(vec![]),
        "no service was refused: {denied:?}"
    );

    // ...and cannot touch another's keys. The attack from the issue: delete
    // a revoked token's denylist entry.
    let key = "identity:revoked:00000000-0000-0000-0000-000000000001";
    redis_try(admin, &["SET", key, "someone"]).unwrap();
    let catalog_user = urls["catalog"].as_str().unwrap();
    let err = redis_try(catalog_user, &["DEL", key]).unwrap_err();
    assert!(err.contains("NOPERM"), "{err}");
    let bff_user = urls["bff"].as_str().unwrap();
    assert_eq!(
        redis_try(bff_user, &["EXISTS", key]).unwrap(),
        redis::Value::Int(1),
        "the BFF reads the denylist"
    );
    assert!(
        redis_try(bff_user, &["DEL", key])
            .unwrap_err()
            .contains("NOPERM")
    );
    let anonymous = format!("redis://127.0.0.1:{}/", fleet.port_base + 1);
    let err = redis_try(&anonymous, &["DEL", key]).unwrap_err();
    assert!(err.contains("NOAUTH"), "{err}");
    assert!(
        redis_try(catalog_user, &["FLUSHALL"])
            .unwrap_err()
            .contains("NOPERM")
    );
    assert_eq!(
        redis_try(admin, &["EXISTS", key]).unwrap(),
        redis::Value::Int(1),
        "the revoked token stays revoked"
    );

    fleet.json(&["down", "--json"], 0);
    fleet.assert_nothing_left();
}
