//! The invalidation subscriber survives losing its connection. A test
//! binary of its own: it kills every pub/sub client of the test Redis,
//! which would disturb the L1 of other tests' apps running beside it.

mod common;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use common::spawn_app_with;
use storefront_kit::testing::eventually;

const LONG_L1: (&str, &str) = ("CACHE_L1_TTL_MS", "600000");

#[tokio::test]
async fn subscriber_reconnects_after_its_connection_is_killed_and_clears_l1() {
    let Some(a) = spawn_app_with(&[LONG_L1]).await else {
        return;
    };
    let b = a.spawn_sibling(&[LONG_L1]).await;
    b.product(9).await;
    assert_eq!(b.product(9).await.header("x-cache"), "l1");
    let reconnects = b.counter("catalog_invalidation_reconnects_total").await;

    let redis = redis::Client::open(a.env.infra.redis_url()).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        killed >= 2,
        "expected both replicas' subscribers, killed {killed}"
    );

    let resubscribed = eventually(Duration::from_secs(10), || async {
        let now = b.counter("catalog_invalidation_reconnects_total").await;
        (now >= reconnects + 2.0).then_some(())
    })
    .await;
    assert!(resubscribed.is_some(), "the subscribers did not come back");
    assert_ne!(
        b.product(9).await.header("x-cache"),
        "l1",
        "L1 must be cleared on resubscription"
    );

    // And invalidations flow again over the new subscription.
    b.product(9).await;
    let etag = a.product(9).await.etag();
    let patched = a.patch(9, Some(&etag), json!({"stock_delta": 1})).await;
    assert_eq!(patched.status, StatusCode::OK);
    let seen = eventually(Duration::from_secs(2), || async {
        (b.product(9).await.etag() == patched.etag()).then_some(())
    })
    .await;
    assert!(
        seen.is_some(),
        "B missed the invalidation after reconnecting"
    );
    b.cleanup().await;
    a.cleanup().await;
}
