//! `POST /reservations` and `DELETE /reservations/{id}`: idempotent,
//! all-or-nothing, never overselling, against a real Postgres.

mod common;

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Barrier;
use uuid::Uuid;

use common::{TestApp, spawn_app};

fn reservation(id: Uuid, items: &[(i64, i32)]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(product_id, quantity)| json!({"product_id": product_id, "quantity": quantity}))
        .collect();
    json!({"reservation_id": id, "items": items})
}

async fn reserve(app: &TestApp, id: Uuid, items: &[(i64, i32)]) -> common::Reply {
    app.post("/reservations", reservation(id, items)).await
}

#[tokio::test]
async fn same_reservation_twice_decrements_once_and_answers_the_same() {
    let Some(app) = spawn_app().await else { return };
    app.set_stock(10, 50).await;
    app.set_stock(11, 50).await;
    let id = Uuid::new_v4();

    let first = reserve(&app, id, &[(11, 2), (10, 3)]).await;
    let second = reserve(&app, id, &[(10, 3), (11, 2)]).await;

    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(first.body, second.body);
    assert_eq!(first.body["status"], "reserved");
    assert_eq!(first.body["items"][0]["product_id"], 10);
    assert_eq!((app.stock(10).await, app.stock(11).await), (47, 48));
    app.cleanup().await;
}

#[tokio::test]
async fn reservation_with_a_short_item_is_409_and_reserves_nothing() {
    let Some(app) = spawn_app().await else { return };
    app.set_stock(20, 5).await;
    app.set_stock(21, 1).await;
    let id = Uuid::new_v4();

    let reply = reserve(&app, id, &[(20, 2), (21, 3)]).await;

    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert_eq!(reply.header("content-type"), "application/problem+json");
    assert_eq!(reply.body["product_id"], 21);
    assert_eq!(reply.body["available"], 1);
    assert!(
        reply.body["type"]
            .as_str()
            .unwrap()
            .ends_with("/out-of-stock")
    );
    assert_eq!((app.stock(20).await, app.stock(21).await), (5, 1));
    // Nothing was recorded either: the same id may try again later.
    app.set_stock(21, 3).await;
    assert_eq!(
        reserve(&app, id, &[(20, 2), (21, 3)]).await.status,
        StatusCode::CREATED
    );
    app.cleanup().await;
}

#[tokio::test]
async fn unknown_product_and_bad_items_are_refused() {
    let Some(app) = spawn_app().await else { return };
    let unknown = reserve(&app, Uuid::new_v4(), &[(999_999, 1)]).await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(unknown.body["product_id"], 999_999);
    for items in [&[][..], &[(1, 0)], &[(1, 1), (1, 1)]] {
        let reply = reserve(&app, Uuid::new_v4(), items).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{items:?}");
    }
    app.cleanup().await;
}

#[tokio::test]
async fn same_id_with_other_items_is_422() {
    let Some(app) = spawn_app().await else { return };
    app.set_stock(30, 50).await;
    let id = Uuid::new_v4();
    assert_eq!(
        reserve(&app, id, &[(30, 1)]).await.status,
        StatusCode::CREATED
    );
    let other = reserve(&app, id, &[(30, 2)]).await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        other.body["type"]
            .as_str()
            .unwrap()
            .ends_with("/reservation-mismatch")
    );
    assert_eq!(app.stock(30).await, 49);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reservations_never_oversell() {
    const BUYERS: usize = 30;
    let Some(app) = spawn_app().await else { return };
    app.set_stock(40, 10).await;
    let app = Arc::new(app);
    let barrier = Arc::new(Barrier::new(BUYERS));

    let buyers: Vec<_> = (0..BUYERS)
        .map(|_| {
            let (app, barrier) = (app.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                reserve(&app, Uuid::new_v4(), &[(40, 1)]).await.status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for buyer in buyers {
        statuses.push(buyer.await.unwrap());
    }

    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, refused), (10, 20), "{statuses:?}");
    assert_eq!(app.stock(40).await, 0);
    Arc::into_inner(app).unwrap().cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_multi_item_reservations_over_shared_products_take_all_or_nothing() {
    // Three pairs of products, each pair sharing one product with each
    // other pair: demand is twice the stock, so many are refused; none may
    // fail (a deadlock would be a 5xx), oversell or take half an order.
    const PAIRS: [[i64; 2]; 3] = [[20, 21], [21, 22], [20, 22]];
    const BUYERS: usize = 30;
    let Some(app) = spawn_app().await else { return };
    for product in [20, 21, 22] {
        app.set_stock(product, 10).await;
    }
    let app = Arc::new(app);
    let barrier = Arc::new(Barrier::new(BUYERS));
    let buyers: Vec<_> = (0..BUYERS)
        .map(|i| {
            let (app, barrier) = (app.clone(), barrier.clone());
            let pair = PAIRS[i % PAIRS.len()];
            tokio::spawn(async move {
                barrier.wait().await;
                let items = [(pair[0], 1), (pair[1], 1)];
                (pair, reserve(&app, Uuid::new_v4(), &items).await.status)
            })
        })
        .collect();
    let mut taken = std::collections::HashMap::<i64, i32>::new();
    let mut statuses = Vec::new();
    for buyer in buyers {
        let (pair, status) = buyer.await.unwrap();
        statuses.push(status);
        if status == StatusCode::CREATED {
            for product in pair {
                *taken.entry(product).or_default() += 1;
            }
        }
    }
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::CREATED || *s == StatusCode::CONFLICT),
        "{statuses:?}"
    );
    for product in [20, 21, 22] {
        let sold = taken.get(&product).copied().unwrap_or(0);
        assert!(sold <= 10, "product {product} oversold: {sold}");
        assert_eq!(app.stock(product).await, 10 - sold, "product {product}");
    }
    Arc::into_inner(app).unwrap().cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_of_one_reservation_take_stock_once() {
    const RETRIES: usize = 10;
    let Some(app) = spawn_app().await else { return };
    app.set_stock(41, 10).await;
    let app = Arc::new(app);
    let barrier = Arc::new(Barrier::new(RETRIES));
    let id = Uuid::new_v4();

    let retries: Vec<_> = (0..RETRIES)
        .map(|_| {
            let (app, barrier) = (app.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                reserve(&app, id, &[(41, 3)]).await.status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for retry in retries {
        statuses.push(retry.await.unwrap());
    }

    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let repeated = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!((created, repeated), (1, RETRIES - 1), "{statuses:?}");
    assert_eq!(app.stock(41).await, 7);
    Arc::into_inner(app).unwrap().cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn release_returns_stock_exactly_once() {
    let Some(app) = spawn_app().await else { return };
    app.set_stock(50, 10).await;
    let id = Uuid::new_v4();
    assert_eq!(
        reserve(&app, id, &[(50, 4)]).await.status,
        StatusCode::CREATED
    );
    assert_eq!(app.stock(50).await, 6);
    let app = Arc::new(app);
    let path = format!("/reservations/{id}");

    let releases: Vec<_> = (0..5)
        .map(|_| {
            let (app, path) = (app.clone(), path.clone());
            tokio::spawn(async move { app.delete(&path).await })
        })
        .collect();
    let mut replies = Vec::new();
    for release in releases {
        replies.push(release.await.unwrap());
    }

    assert!(
        replies.iter().all(|r| r.status == StatusCode::OK),
        "{replies:?}"
    );
    assert!(replies.iter().all(|r| r.body == replies[0].body));
    assert_eq!(replies[0].body["status"], "released");
    assert_eq!(app.stock(50).await, 10);
    let again = app.delete(&path).await;
    assert_eq!(
        (again.status, &again.body),
        (StatusCode::OK, &replies[0].body)
    );
    assert_eq!(app.stock(50).await, 10);
    Arc::into_inner(app).unwrap().cleanup().await;
}

#[tokio::test]
async fn released_reservation_id_cannot_reserve_again() {
    let Some(app) = spawn_app().await else { return };
    app.set_stock(60, 10).await;
    let id = Uuid::new_v4();
    assert_eq!(
        reserve(&app, id, &[(60, 1)]).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.delete(&format!("/reservations/{id}")).await.status,
        StatusCode::OK
    );

    let again = reserve(&app, id, &[(60, 1)]).await;

    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        again.body["type"]
            .as_str()
            .unwrap()
            .ends_with("/reservation-released")
    );
    assert_eq!(app.stock(60).await, 10);
    app.cleanup().await;
}

#[tokio::test]
async fn unknown_reservation_release_is_404() {
    let Some(app) = spawn_app().await else { return };
    let reply = app
        .delete(&format!("/reservations/{}", Uuid::new_v4()))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.header("content-type"), "application/problem+json");
    let bad = app.delete("/reservations/not-a-uuid").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    app.cleanup().await;
}

/// Sets a product's price straight in Postgres, arranging a test.
async fn set_price(app: &TestApp, id: i64, price_cents: i64) {
    let schema = app.schema();
    sqlx::query(&schema.sql("UPDATE {schema}.products SET price_cents = $2 WHERE id = $1"))
        .bind(id)
        .bind(price_cents)
        .execute(&schema.admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_reservation_answers_the_prices_its_stock_was_taken_at_and_a_retry_the_same() {
    let Some(app) = spawn_app().await else { return };
    app.set_stock(70, 50).await;
    app.set_stock(71, 50).await;
    set_price(&app, 70, 1250).await;
    set_price(&app, 71, 990).await;
    let id = Uuid::new_v4();
    let mut body = reservation(id, &[(71, 3), (70, 2)]);
    body["max_amount_cents"] = json!(5470);

    let first = app.post("/reservations", body.clone()).await;
    // A price change after the reservation changes neither its answer nor
    // what a retry (checkout after a crash) is told.
    set_price(&app, 70, 9999).await;
    let again = app.post("/reservations", body).await;
    let released = app.delete(&format!("/reservations/{id}")).await;

    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(
        first.body["items"],
        json!([
            {"product_id": 70, "quantity": 2, "price_cents": 1250},
            {"product_id": 71, "quantity": 3, "price_cents": 990},
        ])
    );
    assert_eq!(first.body["amount_cents"], 5470);
    assert_eq!((again.status, &again.body), (StatusCode::OK, &first.body));
    assert_eq!(released.status, StatusCode::OK, "{}", released.body);
    assert_eq!(released.body["items"], first.body["items"]);
    assert_eq!(released.body["amount_cents"], 5470);
    app.cleanup().await;
}

#[tokio::test]
async fn a_total_above_max_amount_cents_is_422_and_takes_nothing() {
    let Some(app) = spawn_app().await else { return };
    app.set_stock(72, 10).await;
    set_price(&app, 72, 1000).await;
    let id = Uuid::new_v4();
    let with_max = |max: i64| {
        let mut body = reservation(id, &[(72, 3)]);
        body["max_amount_cents"] = json!(max);
        body
    };

    let refused = app.post("/reservations", with_max(2999)).await;

    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert!(
        refused.body["type"]
            .as_str()
            .unwrap()
            .ends_with("/total-above-max"),
        "{}",
        refused.body
    );
    assert_eq!(refused.body["max_amount_cents"], 2999);
    assert_eq!(app.stock(72).await, 10);
    // Nothing was recorded: the same id within the limit reserves.
    let taken = app.post("/reservations", with_max(3000)).await;
    assert_eq!(taken.status, StatusCode::CREATED, "{}", taken.body);
    assert_eq!(app.stock(72).await, 7);
    // A short item is reported before the total.
    let short = reservation(Uuid::new_v4(), &[(72, 8)]);
    let mut short_and_dear = short.clone();
    short_and_dear["max_amount_cents"] = json!(1);
    let reply = app.post("/reservations", short_and_dear).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    app.cleanup().await;
}
