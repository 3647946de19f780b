//! The Lua bucket against the Rust bucket: the same cases, on a real Redis.

mod common;

use storefront_bff::bucket::{Policy, cases};
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
            limiter::Answer::Decided(d) => Some(d.allowed),
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
