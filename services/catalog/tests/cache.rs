//! The two-level cache across two replicas on one schema and one Redis,
//! and the lab endpoints.

mod common;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use storefront_catalog::cache::{L2Lookup, ProductCache};
use storefront_catalog::config::CacheConfig;
use storefront_catalog::store::Product;
use uuid::Uuid;

use common::{spawn_app, spawn_app_with, test_urls};
use storefront_kit::testing::eventually;

/// Long enough that only an invalidation, never expiry, can explain a
/// fresh read within the tests' deadlines.
const LONG_L1: (&str, &str) = ("CACHE_L1_TTL_MS", "600000");
/// How long a write may take to show on the other replica.
const PROPAGATION: Duration = Duration::from_secs(2);

#[tokio::test]
async fn reads_come_from_db_then_l1_and_a_sibling_finds_l2() {
    let Some(a) = spawn_app_with(&[LONG_L1]).await else {
        return;
    };
    let b = a.spawn_sibling(&[LONG_L1]).await;

    assert_eq!(a.product(5).await.header("x-cache"), "db");
    assert_eq!(a.product(5).await.header("x-cache"), "l1");
    assert_eq!(b.product(5).await.header("x-cache"), "l2");
    assert_eq!(b.product(5).await.header("x-cache"), "l1");
    assert!(a.counter("catalog_cache_hits_total").await >= 3.0);
    b.cleanup().await;
    a.cleanup().await;
}

#[tokio::test]
async fn patch_through_one_replica_is_visible_through_the_other_within_a_bound() {
    let Some(a) = spawn_app_with(&[LONG_L1]).await else {
        return;
    };
    let b = a.spawn_sibling(&[LONG_L1]).await;
    let before = b.product(7).await;
    assert_eq!(b.product(7).await.header("x-cache"), "l1");

    let patched = a.patch(7, Some(&before.etag()), json!({"stock": 3})).await;
    assert_eq!(patched.status, StatusCode::OK);

    let seen = eventually(PROPAGATION, || async {
        let reply = b.product(7).await;
        (reply.etag() == patched.etag()).then_some(reply)
    })
    .await
    .expect("replica B still serves the old version");
    assert_eq!(seen.body["stock"], 3);
    assert_ne!(
        seen.header("x-cache"),
        "l1",
        "B's L1 should have been evicted"
    );
    b.cleanup().await;
    a.cleanup().await;
}

#[tokio::test]
async fn reservations_and_releases_invalidate_cached_stock() {
    let Some(a) = spawn_app_with(&[LONG_L1]).await else {
        return;
    };
    let b = a.spawn_sibling(&[LONG_L1]).await;
    a.set_stock(12, 9).await;
    assert_eq!(b.product(12).await.body["stock"], 9);
    let id = Uuid::new_v4();
    let reservation = json!({"reservation_id": id, "items": [{"product_id": 12, "quantity": 4}]});

    assert_eq!(
        a.post("/reservations", reservation).await.status,
        StatusCode::CREATED
    );
    let reserved = eventually(PROPAGATION, || async {
        (b.product(12).await.body["stock"] == 5).then_some(())
    })
    .await;
    assert!(reserved.is_some(), "B never saw the reservation");

    assert_eq!(
        a.delete(&format!("/reservations/{id}")).await.status,
        StatusCode::OK
    );
    let released = eventually(PROPAGATION, || async {
        (b.product(12).await.body["stock"] == 9).then_some(())
    })
    .await;
    assert!(released.is_some(), "B never saw the release");
    b.cleanup().await;
    a.cleanup().await;
}

/// The race the stamps close: a reader misses L2, a writer invalidates,
/// and the reader's fill (of what may be the old row) must be refused.
#[tokio::test]
async fn l2_fill_is_refused_once_an_invalidation_got_there_first() {
    let Some((_, redis_url)) = test_urls() else {
        return;
    };
    let redis = storefront_kit::db::connect_redis(&redis_url).unwrap();
    let config = CacheConfig {
        l1_ttl: Duration::from_secs(60),
        l2_ttl_secs: 60,
        key_prefix: format!("test_{}", Uuid::new_v4().simple()),
    };
    let cache = ProductCache::new(&config, redis);
    let product = Product {
        id: 1,
        sku: "COF-0001".into(),
        name: "n".into(),
        description: "d".into(),
        category: "coffee".into(),
        price_cents: 100,
        currency: "EUR".into(),
        stock: 5,
        updated_at: chrono::DateTime::UNIX_EPOCH,
        version: 100,
    };

    let L2Lookup::Miss { stamp } = cache.l2_lookup(1).await.unwrap() else {
        panic!("fresh prefix should miss");
    };
    cache.invalidate(&[1]).await;
    assert!(!cache.l2_fill(&product, &stamp).await.unwrap());
    let L2Lookup::Miss { stamp } = cache.l2_lookup(1).await.unwrap() else {
        panic!("refused fill must leave L2 empty");
    };
    assert!(cache.l2_fill(&product, &stamp).await.unwrap());
    assert_eq!(cache.l2_lookup(1).await.unwrap(), L2Lookup::Hit(product));
}

#[tokio::test]
async fn lab_endpoint_is_404_when_lab_endpoints_is_off() {
    let Some(app) = spawn_app().await else { return };
    let reply = app
        .post("/lab/products/1/blind-decrement", json!({"by": 1}))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    app.cleanup().await;
}

#[tokio::test]
async fn blind_decrement_writes_what_it_computed_and_refuses_negative_results() {
    let Some(app) = spawn_app_with(&[("LAB_ENDPOINTS", "true")]).await else {
        return;
    };
    app.set_stock(8, 5).await;
    let cached = app.product(8).await;

    let reply = app
        .post_lab("/lab/products/8/blind-decrement", json!({"by": 2}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, json!({"stock_before": 5, "stock_after": 3}));
    assert_eq!(app.stock(8).await, 3);
    let after = app.product(8).await;
    assert_eq!(after.body["stock"], 3, "the write invalidated the cache");
    assert_ne!(after.etag(), cached.etag());

    let refused = app
        .post_lab("/lab/products/8/blind-decrement", json!({"by": 4}))
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body["type"]
            .as_str()
            .unwrap()
            .ends_with("/negative-stock")
    );
    assert_eq!(app.stock(8).await, 3);
    app.cleanup().await;
}
