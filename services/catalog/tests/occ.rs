//! `PATCH /products/{id}`: optimistic concurrency on the row's `xmin`,
//! against a real Postgres.

mod common;

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::Barrier;

use common::spawn_app;

/// Product 1 has plenty of seeded stock (20 or more).
const PRODUCT: i64 = 1;

#[tokio::test]
async fn etag_changes_after_a_patch_and_the_response_carries_the_new_one() {
    let Some(app) = spawn_app().await else { return };
    let before = app.product(PRODUCT).await;
    let stock = before.body["stock"].as_i64().unwrap();

    let patched = app
        .patch(PRODUCT, Some(&before.etag()), json!({"stock_delta": -2}))
        .await;

    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_ne!(patched.etag(), before.etag());
    let version = patched.body["version"].as_i64().unwrap();
    assert_eq!(patched.etag(), format!("\"{version}\""));
    assert_eq!(patched.body["stock"].as_i64().unwrap(), stock - 2);
    let after = app.product(PRODUCT).await;
    assert_eq!(after.etag(), patched.etag());
    assert_eq!(after.body["stock"].as_i64().unwrap(), stock - 2);
    app.cleanup().await;
}

#[tokio::test]
async fn price_and_absolute_stock_can_be_set_together() {
    let Some(app) = spawn_app().await else { return };
    let etag = app.product(PRODUCT).await.etag();
    let reply = app
        .patch(
            PRODUCT,
            Some(&etag),
            json!({"stock": 7, "price_cents": 1234}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["stock"], 7);
    assert_eq!(reply.body["price_cents"], 1234);
    assert_eq!(app.stock(PRODUCT).await, 7);
    app.cleanup().await;
}

#[tokio::test]
async fn stale_etag_is_412_with_the_current_etag() {
    let Some(app) = spawn_app().await else { return };
    let stale = app.product(PRODUCT).await.etag();
    let first = app
        .patch(PRODUCT, Some(&stale), json!({"stock_delta": 1}))
        .await;
    assert_eq!(first.status, StatusCode::OK);

    let second = app
        .patch(PRODUCT, Some(&stale), json!({"stock_delta": 1}))
        .await;

    assert_eq!(second.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(second.header("content-type"), "application/problem+json");
    assert_eq!(second.body["current_etag"], first.etag());
    assert_eq!(
        second.body["current_version"],
        first.body["version"].as_i64().unwrap()
    );
    app.cleanup().await;
}

#[tokio::test]
async fn patch_without_if_match_is_428() {
    let Some(app) = spawn_app().await else { return };
    let reply = app.patch(PRODUCT, None, json!({"stock_delta": 1})).await;
    assert_eq!(reply.status, StatusCode::PRECONDITION_REQUIRED);
    assert_eq!(reply.header("content-type"), "application/problem+json");
    assert_eq!(reply.body["status"], 428);
    app.cleanup().await;
}

#[tokio::test]
async fn malformed_if_match_and_bad_bodies_are_400() {
    let Some(app) = spawn_app().await else { return };
    let etag = app.product(PRODUCT).await.etag();
    for (if_match, body) in [
        ("123", json!({"stock_delta": 1})),
        ("W/\"123\"", json!({"stock_delta": 1})),
        ("*", json!({"stock_delta": 1})),
        (etag.as_str(), json!({"stock_delta": 1, "colour": "red"})),
        (etag.as_str(), json!({})),
        (etag.as_str(), json!({"stock": 1, "stock_delta": 1})),
        (etag.as_str(), json!({"stock_delta": "many"})),
    ] {
        let reply = app.patch(PRODUCT, Some(if_match), body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{if_match} {body}");
        assert_eq!(reply.header("content-type"), "application/problem+json");
    }
    assert_eq!(
        app.product(PRODUCT).await.etag(),
        etag,
        "nothing was written"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn negative_stock_is_422_and_nothing_is_stored() {
    let Some(app) = spawn_app().await else { return };
    let before = app.product(PRODUCT).await;
    let stock = app.stock(PRODUCT).await;

    let by_delta = app
        .patch(
            PRODUCT,
            Some(&before.etag()),
            json!({"stock_delta": -(stock + 1)}),
        )
        .await;
    let by_value = app
        .patch(PRODUCT, Some(&before.etag()), json!({"stock": -1}))
        .await;

    for reply in [&by_delta, &by_value] {
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            reply.body
        );
        let kind = reply.body["type"].as_str().unwrap();
        assert!(kind.ends_with("/negative-stock"), "{kind}");
        let text = reply.body.to_string();
        assert!(
            !text.contains("products_stock_check") && !text.contains("violates"),
            "{text}"
        );
    }
    assert_eq!(app.stock(PRODUCT).await, stock);
    assert_eq!(app.product(PRODUCT).await.etag(), before.etag());
    app.cleanup().await;
}

#[tokio::test]
async fn patch_of_a_missing_product_is_404() {
    let Some(app) = spawn_app().await else { return };
    let reply = app
        .patch(999_999, Some("\"1\""), json!({"stock_delta": 1}))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_patches_with_one_etag_have_exactly_one_winner() {
    const WRITERS: usize = 50;
    let Some(app) = spawn_app().await else { return };
    let app = Arc::new(app);
    let etag = app.product(PRODUCT).await.etag();
    let stock = app.stock(PRODUCT).await;
    let barrier = Arc::new(Barrier::new(WRITERS));

    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (app, barrier, etag) = (app.clone(), barrier.clone(), etag.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                app.patch(PRODUCT, Some(&etag), json!({"stock_delta": -1}))
                    .await
            })
        })
        .collect();
    let mut replies = Vec::new();
    for writer in writers {
        replies.push(writer.await.unwrap());
    }

    let winners: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .collect();
    let losers: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::PRECONDITION_FAILED)
        .collect();
    assert_eq!(winners.len(), 1, "{replies:?}");
    assert_eq!(losers.len(), WRITERS - 1, "{replies:?}");
    let winning_etag = winners[0].etag();
    assert!(
        losers
            .iter()
            .all(|r| r.body["current_etag"] == winning_etag)
    );
    assert_eq!(app.stock(PRODUCT).await, stock - 1);
    Arc::into_inner(app).unwrap().cleanup().await;
}
