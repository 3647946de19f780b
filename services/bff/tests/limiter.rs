//! The Lua bucket against the Rust bucket: the same cases, on a real Redis.

mod common;

use storefront_bff::bucket::Policy;

/// The bucket's test vectors, shared with its unit tests.
#[path = "../src/bucket_cases.rs"]
mod cases;
use storefront_bff::limiter;

async fn redis() -> Option<redis::aio::ConnectionManager> {
    let url = common::redis_url()?;
    Some(storefront_kit::db::connect_redis(&url).unwrap())
}

#[tokio::test]
async fn the_lua_bucket_agrees_with_the_rust_bucket_on_every_case() {
    let Some(mut conn) = redis().await else {
        return;
    };
    for case in cases::all() {
        let key = format!("test:lua:{}", uuid::Uuid::new_v4().simple());
        let mut rust_state = None;
        for (i, (now, allowed, retry)) in case.steps.iter().enumerate() {
            let lua = limiter::take(&mut conn, &key, case.policy, Some(*now))
                .await
                .unwrap();
            let (next, rust) = case.policy.take(rust_state, *now);
            rust_state = Some(next);
            assert_eq!(lua, rust, "{}: step {i}: Lua vs Rust", case.name);
            assert_eq!(
                (lua.allowed, lua.retry_after_us),
                (*allowed, *retry),
                "{}: step {i}",
                case.name
            );
        }
        let _: () = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn redis_time_is_the_clock_when_none_is_given_and_idle_keys_expire() {
    let Some(mut conn) = redis().await else {
        return;
    };
    let key = format!("test:lua:{}", uuid::Uuid::new_v4().simple());
    let policy = Policy::new(2, 1000).unwrap();
    let first = limiter::take(&mut conn, &key, policy, None).await.unwrap();
    assert!(first.allowed);
    assert_eq!(first.full_after_us, 1000);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=1001).contains(&ttl), "ttl {ttl} ms");
}

#[tokio::test]
async fn a_batch_decides_as_one_call_per_request_would_in_arrival_order() {
    let Some(mut conn) = redis().await else {
        return;
    };
    let policy = Policy::new(3, 10).unwrap();
    let a = format!("test:lua:{}", uuid::Uuid::new_v4().simple());
    let b = format!("test:lua:{}", uuid::Uuid::new_v4().simple());
    // Two buckets interleaved, more requests than either holds, at two
    // instants: the second batch finds what the first left, refilled.
    let order = [&a, &b, &a, &a, &b, &a, &a];
    let checks: Vec<limiter::Check> = order
        .iter()
        .map(|k| limiter::Check {
            bucket: (*k).clone(),
            denylist: None,
            lease: 0,
        })
        .collect();
    let mut rust = std::collections::HashMap::new();
    for now in [cases::T0, cases::T0 + 150_000] {
        let lua = limiter::take_batch(&mut conn, policy, Some(now), &checks)
            .await
            .unwrap();
        for (i, (key, answer)) in order.iter().zip(&lua).enumerate() {
            let (next, d) = policy.take(rust.get(*key).copied(), now);
            rust.insert((*key).clone(), next);
            assert_eq!(*answer, limiter::Answer::Decided(d), "request {i} at {now}");
        }
    }
    let _: () = redis::cmd("DEL")
        .arg(&a)
        .arg(&b)
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_revoked_token_takes_no_token_and_its_batch_is_still_decided() {
    let Some(mut conn) = redis().await else {
        return;
    };
    let policy = Policy::new(2, 1).unwrap();
    let bucket = format!("test:lua:{}", uuid::Uuid::new_v4().simple());
    let revoked = format!("test:revoked:{}", uuid::Uuid::new_v4().simple());
    let fine = format!("test:revoked:{}", uuid::Uuid::new_v4().simple());
    let _: () = redis::cmd("SET")
        .arg(&revoked)
        .arg("1")
        .arg("EX")
        .arg(60)
        .query_async(&mut conn)
        .await
        .unwrap();
    let check = |deny: &str| limiter::Check {
        bucket: bucket.clone(),
        denylist: Some(deny.to_owned()),
        lease: 0,
    };
    let got = limiter::take_batch(
        &mut conn,
        policy,
        Some(cases::T0),
        &[
            check(&revoked),
            check(&fine),
            check(&revoked),
            check(&fine),
            check(&fine),
        ],
    )
    .await
    .unwrap();
    let allowed: Vec<Option<bool>> = got
        .iter()
        .map(|a| match a {
            limiter::Answer::Revoked => None,
            limiter::Answer::Decided(d) | limiter::Answer::Leased(d, _) => Some(d.allowed),
        })
        .collect();
    // The two revoked requests took nothing: the bucket's two tokens went
    // to the first two others, the third found it empty.
    assert_eq!(allowed, [None, Some(true), None, Some(true), Some(false)]);
    let _: () = redis::cmd("DEL")
        .arg(&bucket)
        .arg(&revoked)
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// The BFF's Redis user in the fleet may write only its buckets and may
/// only read the denylist (`cli/src/fleet/redis_acl.rs`: `~bff:rl:*`,
/// `%R~identity:revoked:*`, the service command set). A script that named
/// the denylist key among its KEYS was refused (`NoPerm`: Redis checks a
/// script's KEYS for write access), and every bearer request got a 503.
/// Here a user with the same kind of rules runs a batch with a revoked
/// and a clean token.
#[tokio::test]
async fn a_user_that_may_only_read_the_denylist_can_run_the_batch() {
    let Some(url) = common::redis_url() else {
        return;
    };
    let mut admin = storefront_kit::db::connect_redis(&url).unwrap();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (user, password) = (format!("test-bff-{id}"), format!("pw-{id}"));
    let buckets = format!("test:acl:{id}:rl");
    let denylist = format!("test:acl:{id}:revoked");
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg(format!(">{password}"))
        .arg("resetkeys")
        .arg("resetchannels")
        .arg(format!("~{buckets}:*"))
        .arg(format!("%R~{denylist}:*"))
        .arg("-@all")
        .arg("+@read")
        .arg("+@write")
        .arg("+@transaction")
        .arg("+@connection")
        .arg("+eval")
        .arg("+evalsha")
        .arg("+eval_ro")
        .arg("+evalsha_ro")
        .arg("+script|load")
        .arg("+script|exists")
        .arg("+time")
        .arg("-@admin")
        .arg("-@dangerous")
        .query_async(&mut admin)
        .await
        .unwrap();
    let revoked = format!("{denylist}:jti-1");
    let _: () = redis::cmd("SET")
        .arg(&revoked)
        .arg("1")
        .arg("EX")
        .arg(60)
        .query_async(&mut admin)
        .await
        .unwrap();

    use redis::IntoConnectionInfo as _;
    let admin_info = url.as_str().into_connection_info().unwrap();
    let settings = admin_info
        .redis_settings()
        .clone()
        .set_username(&user)
        .set_password(&password);
    let client = redis::Client::open(admin_info.set_redis_settings(settings)).unwrap();
    // The rules bite: this user cannot write the denylist.
    let mut plain = client.get_multiplexed_async_connection().await.unwrap();
    let write: redis::RedisResult<()> = redis::cmd("SET")
        .arg(format!("{denylist}:x"))
        .arg("1")
        .query_async(&mut plain)
        .await;
    assert!(
        write.is_err(),
        "the denylist must be read-only to this user"
    );

    let mut conn = redis::aio::ConnectionManager::new(client).await.unwrap();
    let policy = Policy::new(5, 1).unwrap();
    let bucket = format!("{buckets}:session");
    let got = limiter::take_batch(
        &mut conn,
        policy,
        Some(cases::T0),
        &[
            limiter::Check {
                bucket: bucket.clone(),
                denylist: Some(revoked.clone()),
                lease: 0,
            },
            limiter::Check {
                bucket: bucket.clone(),
                denylist: Some(format!("{denylist}:jti-2")),
                lease: 0,
            },
            // A lease gives back what it does not use, with a script of
            // its own: it must run under the same rules.
            limiter::Check {
                bucket: bucket.clone(),
                denylist: None,
                lease: 0,
            },
        ],
    )
    .await;
    let returned = limiter::give_back(&mut conn, &bucket, policy, 1).await;
    let _: () = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async(&mut admin)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&bucket)
        .arg(&revoked)
        .query_async(&mut admin)
        .await
        .unwrap();
    let got = got.expect("the bucket script runs under the BFF's ACL");
    returned.expect("the give-back script runs under the BFF's ACL");
    assert!(matches!(got[0], limiter::Answer::Revoked), "{got:?}");
    assert!(
        matches!(&got[1], limiter::Answer::Decided(d) if d.allowed),
        "{got:?}"
    );
}

/// Deletes a test's bucket.
async fn del(conn: &mut redis::aio::ConnectionManager, key: &str) {
    let _: () = redis::cmd("DEL").arg(key).query_async(conn).await.unwrap();
}

/// The level of `key`'s bucket in whole tokens (no key: full).
async fn level(conn: &mut redis::aio::ConnectionManager, key: &str, policy: Policy) -> i64 {
    let level: Option<i64> = redis::cmd("HGET")
        .arg(key)
        .arg("level")
        .query_async(conn)
        .await
        .unwrap();
    level.map_or(i64::from(policy.capacity), |l| l / 1_000_000)
}

#[tokio::test]
async fn leases_come_out_of_the_top_half_of_a_bucket_only() {
    let Some(mut conn) = redis().await else {
        return;
    };
    let policy = Policy::new(100, 1).unwrap();
    let key = format!("test:lua:{}", uuid::Uuid::new_v4().simple());
    let leased = |lease| limiter::Check {
        bucket: key.clone(),
        denylist: None,
        lease,
    };
    let mut got = Vec::new();
    // At one instant: 100 tokens. Each call takes one and leases 10 while
    // at least 50 stay: 100 → 89 → 78 → 67 → 56, then 55 and no lease.
    for _ in 0..6 {
        let answer = limiter::take_batch(&mut conn, policy, Some(cases::T0), &[leased(10)])
            .await
            .unwrap();
        got.push(match answer[0] {
            limiter::Answer::Leased(d, n) => (d.allowed, n),
            limiter::Answer::Decided(d) => (d.allowed, 0),
            limiter::Answer::Revoked => (false, 99),
        });
    }
    let left = level(&mut conn, &key, policy).await;
    del(&mut conn, &key).await;
    assert_eq!(
        got,
        [
            (true, 10),
            (true, 10),
            (true, 10),
            (true, 10),
            (true, 0),
            (true, 0)
        ]
    );
    assert_eq!(left, 100 - 6 - 40, "every leased token left the bucket");
}

#[tokio::test]
async fn a_lease_given_back_refills_its_bucket_up_to_capacity_only() {
    let Some(mut conn) = redis().await else {
        return;
    };
    let policy = Policy::new(100, 1).unwrap();
    let key = format!("test:lua:{}", uuid::Uuid::new_v4().simple());
    // No key: a full bucket, which stays full.
    let full = limiter::give_back(&mut conn, &key, policy, 5)
        .await
        .unwrap();
    assert_eq!(full, 100 * 1_000_000);
    let check = limiter::Check {
        bucket: key.clone(),
        denylist: None,
        lease: 30,
    };
    let answer = limiter::take_batch(&mut conn, policy, None, &[check])
        .await
        .unwrap();
    assert!(
        matches!(answer[0], limiter::Answer::Leased(_, 30)),
        "{answer:?}"
    );
    let before = level(&mut conn, &key, policy).await;
    let after = limiter::give_back(&mut conn, &key, policy, 20)
        .await
        .unwrap();
    let after = after / 1_000_000;
    // 69 left (plus at most a token refilled meanwhile), 20 back.
    assert!((69..=70).contains(&before), "{before}");
    assert!(
        (before + 20..=before + 21).contains(&after),
        "{before} → {after}"
    );
    // More than room: capped at capacity, and a full bucket has no key.
    let capped = limiter::give_back(&mut conn, &key, policy, 50)
        .await
        .unwrap();
    let exists: bool = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    del(&mut conn, &key).await;
    assert_eq!(capped, 100 * 1_000_000);
    assert!(!exists);
}

fn config(prefix: &str, policy: Policy, lease: u32) -> storefront_bff::config::LimitConfig {
    storefront_bff::config::LimitConfig {
        policy,
        on_redis_failure: storefront_bff::config::FailMode::Closed,
        redis_timeout: std::time::Duration::from_secs(2),
        key_prefix: prefix.to_owned(),
        lease,
    }
}

/// Two BFF instances leasing on one bucket admit, together, exactly what
/// the bucket holds: not a token more (leased tokens left the bucket), and
/// not one less (a lease held by one is drawn by its next requests).
#[tokio::test]
async fn two_instances_with_leases_admit_exactly_the_bucket() {
    let Some(conn) = redis().await else {
        return;
    };
    let mut admin = conn.clone();
    // Refill 1/s: the run takes well under a second per refilled token
    // it could add, and the bound allows for the ones it does.
    let policy = Policy::new(200, 1).unwrap();
    let prefix = format!("test:lease:{}", uuid::Uuid::new_v4().simple());
    let a = limiter::Limiter::new(conn.clone(), config(&prefix, policy, 10));
    let b = limiter::Limiter::new(conn.clone(), config(&prefix, policy, 10));
    let started = std::time::Instant::now();
    let key = format!("{prefix}:addr:127.0.0.9");
    let mut allowed = 0u64;
    let mut after_first = 0;
    for i in 0..600 {
        let limiter = if i % 2 == 0 { &a } else { &b };
        match limiter.check("addr:127.0.0.9", None).await {
            limiter::Verdict::Allowed(_) => allowed += 1,
            limiter::Verdict::Denied(_) => {}
            other => panic!("request {i}: {other:?}"),
        }
        if i == 0 {
            after_first = level(&mut admin, &key, policy).await;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    del(&mut admin, &key).await;
    let refilled = (secs * f64::from(policy.refill_per_sec)).floor() as u64;
    assert_eq!(after_first, 189, "the first request took 1 and leased 10");
    assert!(
        (200..=200 + refilled + 1).contains(&allowed),
        "{allowed} allowed in {secs:.2} s from a bucket of 200 refilling 1/s"
    );
}

/// A lease nobody draws on goes back to its bucket on its own.
#[tokio::test]
async fn an_idle_lease_goes_back_to_its_bucket() {
    let Some(conn) = redis().await else {
        return;
    };
    let mut admin = conn.clone();
    let policy = Policy::new(1000, 1).unwrap();
    let prefix = format!("test:lease:{}", uuid::Uuid::new_v4().simple());
    let limiter = limiter::Limiter::new(conn.clone(), config(&prefix, policy, 50));
    let verdict = limiter.check("addr:127.0.0.9", None).await;
    assert!(
        matches!(verdict, limiter::Verdict::Allowed(_)),
        "{verdict:?}"
    );
    let key = format!("{prefix}:addr:127.0.0.9");
    let leased = level(&mut admin, &key, policy).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut back = leased;
    while back < 999 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        back = level(&mut admin, &key, policy).await;
    }
    del(&mut admin, &key).await;
    assert!(
        (948..=950).contains(&leased),
        "one taken, 50 leased: {leased}"
    );
    assert!(back >= 999, "the 50 unused tokens came back: {back}");
}
