//! Redis users for a native fleet: Redis reads them from an ACL file under
//! the state directory (mode 0600, never on argv). `default` is off, so an
//! unauthenticated connection can do nothing; the CLI and the services'
//! tests use an admin user; each service that needs Redis gets a user of
//! its own, limited to its own keys and channels, so one service (or a
//! local user holding its password) cannot, say, delete identity's revoked
//! tokens and bring a revoked token back to life.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::profile::{Dependency, FleetProfile, ServiceSpec};

/// The admin user: every key, channel and command.
pub const ADMIN_USER: &str = "admin";

/// Commands every service user gets: data reads and writes, transactions,
/// connection housekeeping (AUTH, PING, SELECT), Lua scripts the way
/// redis-rs runs them (EVALSHA, then SCRIPT LOAD on NOSCRIPT) and TIME,
/// which the BFF's bucket script reads. Nothing administrative or
/// dangerous (FLUSHALL, KEYS, CONFIG, CLIENT KILL, SCRIPT FLUSH, ...).
const SERVICE_COMMANDS: &str = "-@all +@read +@write +@transaction +@connection \
     +eval +evalsha +eval_ro +evalsha_ro +script|load +script|exists +time \
     -@admin -@dangerous";

/// Redis's readiness probe: a `PING` as `url`'s user answered `PONG`.
pub async fn ping(url: &str) -> Result<()> {
    let client = redis::Client::open(url)?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let pong: String = redis::cmd("PING").query_async(&mut con).await?;
    if pong == "PONG" {
        Ok(())
    } else {
        bail!("PING answered {pong}")
    }
}

/// One Redis user: who, and which keys and channels it may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclUser {
    pub name: String,
    /// Key patterns it may read and write (`~pattern`).
    pub keys: Vec<String>,
    /// Key patterns it may only read (`%R~pattern`).
    pub read_keys: Vec<String>,
    /// Pub/sub channel patterns (`&pattern`); none means no pub/sub at all.
    pub channels: Vec<String>,
}

impl AclUser {
    /// The ACL rules after `user <name> on #<hash>`.
    pub fn rules(&self) -> String {
        let mut r = vec!["resetkeys".to_owned(), "resetchannels".to_owned()];
        r.extend(self.keys.iter().map(|k| format!("~{k}")));
        r.extend(self.read_keys.iter().map(|k| format!("%R~{k}")));
        r.extend(self.channels.iter().map(|c| format!("&{c}")));
        r.push(SERVICE_COMMANDS.to_owned());
        if !self.channels.is_empty() {
            r.push("+@pubsub -@admin -@dangerous".to_owned());
        }
        r.join(" ")
    }
}

/// A `*_KEY_PREFIX` from the service's profile env, or its default.
fn prefix<'a>(spec: &'a ServiceSpec, var: &str, default: &'a str) -> &'a str {
    spec.env.get(var).map_or(default, String::as_str)
}

/// The user of one service. Every service may use keys and channels named
/// `<service>:*`; the ones below also follow the prefixes their profile
/// entry configures (catalog's `CACHE_KEY_PREFIX` for its cache keys and
/// its invalidation channel, bff's `RATE_LIMIT_KEY_PREFIX` for its
/// buckets, identity's `LOGIN_THROTTLE_KEY_PREFIX` for its login-attempt
/// counters), and the BFF may read identity's revoked-jti denylist, whose
/// key format is the contract in services/identity/src/denylist.rs.
pub fn service_user(spec: &ServiceSpec) -> AclUser {
    let own = format!("{}:*", spec.name);
    let mut user = AclUser {
        name: spec.name.clone(),
        keys: vec![own],
        read_keys: Vec::new(),
        channels: Vec::new(),
    };
    // A pattern another already covers (`identity:login-attempts:*` under
    // `identity:*`) is left out.
    let mut add_key = |k: String| {
        let covered = user
            .keys
            .iter()
            .any(|have| have.strip_suffix('*').is_some_and(|p| k.starts_with(p)));
        if !covered {
            user.keys.push(k);
        }
    };
    match spec.name.as_str() {
        "catalog" => {
            let p = prefix(spec, "CACHE_KEY_PREFIX", "catalog");
            add_key(format!("{p}:*"));
            user.channels.push(format!("{p}:*"));
        }
        "bff" => {
            add_key(format!(
                "{}:*",
                prefix(spec, "RATE_LIMIT_KEY_PREFIX", "bff:rl")
            ));
            user.read_keys.push("identity:revoked:*".into());
        }
        "identity" => add_key(format!(
            "{}*",
            prefix(
                spec,
                "LOGIN_THROTTLE_KEY_PREFIX",
                "identity:login-attempts:"
            )
        )),
        _ => {}
    }
    user
}

/// A user for every service of the profile that needs Redis.
pub fn service_users(profile: &FleetProfile) -> Vec<AclUser> {
    profile
        .services
        .iter()
        .filter(|s| s.needs.contains(&Dependency::Redis))
        .map(service_user)
        .collect()
}

/// The ACL file: `default` off, the admin, then the services' users, each
/// with the password `password(name)`. The file holds the passwords as
/// secrets.json does, so it gets the same mode (0600).
pub fn acl_file(users: &[AclUser], password: impl Fn(&str) -> String) -> String {
    let mut out = String::from("user default off resetkeys resetchannels -@all\n");
    out.push_str(&format!(
        "user {ADMIN_USER} on >{} ~* &* +@all\n",
        password(ADMIN_USER)
    ));
    for u in users {
        out.push_str(&format!(
            "user {} on >{} {}\n",
            u.name,
            password(&u.name),
            u.rules()
        ));
    }
    out
}

/// Where the native fleet's ACL file lives.
pub fn acl_path(redis_dir: &Path) -> PathBuf {
    redis_dir.join("users.acl")
}

/// `redis://user:password@127.0.0.1:port/`.
pub fn url(user: &str, password: &str, port: u16) -> String {
    format!("redis://{user}:{password}@127.0.0.1:{port}/")
}

/// Every service user's URL, for fleet.json (`service_redis_urls`).
pub fn service_urls(
    profile: &FleetProfile,
    port: u16,
    password: impl Fn(&str) -> String,
) -> BTreeMap<String, String> {
    service_users(profile)
        .into_iter()
        .map(|u| {
            let url = url(&u.name, &password(&u.name), port);
            (u.name, url)
        })
        .collect()
}

/// Writes the ACL file, mode 0600.
pub fn write(path: &Path, text: &str) -> Result<()> {
    super::state::write_private(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(text: &str) -> FleetProfile {
        FleetProfile::parse(&format!("port_base = 40000\n{text}")).unwrap()
    }

    #[test]
    fn only_services_that_need_redis_get_a_user() {
        let p = profile(
            "[[services]]\nname = \"catalog\"\nneeds = [\"redis\"]\n\
             [[services]]\nname = \"claims\"\nneeds = [\"postgres\"]\n",
        );
        let names: Vec<String> = service_users(&p).into_iter().map(|u| u.name).collect();
        assert_eq!(names, ["catalog"]);
    }

    #[test]
    fn catalog_keys_and_channel_follow_its_cache_prefix() {
        let p = profile(
            "[[services]]\nname = \"catalog\"\nneeds = [\"redis\"]\n\
             env = { CACHE_KEY_PREFIX = \"cat2\" }\n",
        );
        let u = &service_users(&p)[0];
        assert_eq!(u.keys, ["catalog:*", "cat2:*"]);
        assert_eq!(u.channels, ["cat2:*"]);
        assert!(u.rules().contains("+@pubsub"), "{}", u.rules());
    }

    #[test]
    fn bff_reads_but_cannot_write_the_denylist_and_has_no_pubsub() {
        let p = profile("[[services]]\nname = \"bff\"\nneeds = [\"redis\"]\n");
        let u = &service_users(&p)[0];
        assert_eq!(u.keys, ["bff:*"], "bff:rl:* lies under bff:*");
        let rules = u.rules();
        assert!(rules.contains("%R~identity:revoked:*"), "{rules}");
        assert!(!rules.contains("~identity:*"), "{rules}");
        assert!(!rules.contains("@pubsub"), "{rules}");
        assert!(rules.contains("+time"), "the bucket script reads TIME");
    }

    #[test]
    fn acl_file_turns_default_off_and_ends_every_service_user_without_admin_commands() {
        let p = profile(
            "[[services]]\nname = \"identity\"\nneeds = [\"redis\"]\n\
             [[services]]\nname = \"catalog\"\nneeds = [\"redis\"]\n",
        );
        let text = acl_file(&service_users(&p), |u| format!("pw-{u}"));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("user default off"), "{text}");
        assert!(lines[1].starts_with("user admin on >pw-admin ~* &* +@all"));
        let identity = lines.iter().find(|l| l.contains("user identity")).unwrap();
        assert!(
            identity.starts_with("user identity on >pw-identity "),
            "{identity}"
        );
        assert!(identity.contains(" ~identity:* "), "{identity}");
        assert!(
            identity.ends_with("-@admin -@dangerous"),
            "the last word on a service user removes admin commands: {identity}"
        );
        assert!(!identity.contains('&'), "identity has no channels");
    }

    #[test]
    fn identity_keys_follow_its_login_throttle_prefix_only_when_moved() {
        let p = profile("[[services]]\nname = \"identity\"\nneeds = [\"redis\"]\n");
        assert_eq!(
            service_users(&p)[0].keys,
            ["identity:*"],
            "the default prefix lies under identity:*"
        );
        let p = profile(
            "[[services]]\nname = \"identity\"\nneeds = [\"redis\"]\n\
             env = { LOGIN_THROTTLE_KEY_PREFIX = \"throttle:\" }\n",
        );
        assert_eq!(service_users(&p)[0].keys, ["identity:*", "throttle:*"]);
    }

    #[test]
    fn service_urls_carry_user_and_password() {
        let p = profile("[[services]]\nname = \"identity\"\nneeds = [\"redis\"]\n");
        let urls = service_urls(&p, 40001, |u| format!("pw-{u}"));
        assert_eq!(
            urls["identity"],
            "redis://identity:pw-identity@127.0.0.1:40001/"
        );
    }
}
