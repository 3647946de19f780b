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
