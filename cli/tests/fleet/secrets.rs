//! Secrets stay private: file modes, nothing secret on argv or in logs, and
//! each service reaching only its own Redis keys.

use std::time::Duration;

use crate::support::{self, Fleet};

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
