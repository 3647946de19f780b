//! Hostile input against a real catalog (issue 11): NUL bytes, numbers at
//! the edges of their types, and the lab behind its token. Each answer is a
//! 4xx problem and nothing is written.

mod common;

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use common::{spawn_app, spawn_app_with};

#[tokio::test]
async fn a_nul_byte_in_the_category_is_a_400_problem_not_a_500() {
    let Some(app) = spawn_app().await else { return };
    let reply = app.fetch("/products?category=%00").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.header("content-type"), "application/problem+json");
    assert_eq!(reply.body["type"], "/problems/nul-byte");
    let fine = app.fetch("/products?category=%2500").await;
    assert_eq!(fine.status, StatusCode::OK, "{}", fine.body);
    app.cleanup().await;
}

#[tokio::test]
async fn stock_and_price_beyond_their_bounds_are_422_and_change_nothing() {
    let Some(app) = spawn_app().await else { return };
    app.set_stock(3, 40).await;
    let etag = app.product(3).await.etag();
    for body in [
        json!({"stock": i32::MAX}),
        json!({"stock_delta": i32::MAX}),
        json!({"stock_delta": i32::MIN}),
        json!({"price_cents": i64::MAX}),
    ] {
        let reply = app.patch(3, Some(&etag), body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            reply.body
        );
        assert_eq!(reply.header("content-type"), "application/problem+json");
    }
    // Within bounds for the request, but the sum leaves `integer`: 422 too.
    app.set_stock(3, i32::MAX - 5).await;
    // The cache still holds the old version; a stale If-Match names the new one.
    let stale = app.patch(3, Some("\"1\""), json!({"stock_delta": 6})).await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.body
    );
    let etag = stale.body["current_etag"].as_str().unwrap().to_owned();
    let reply = app.patch(3, Some(&etag), json!({"stock_delta": 6})).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert_eq!(app.stock(3).await, i32::MAX - 5);
    app.cleanup().await;
}

#[tokio::test]
async fn a_release_onto_stock_near_i32_max_saturates_and_marks_the_reservation_released() {
    let Some(app) = spawn_app().await else { return };
    app.set_stock(4, 100).await;
    let id = Uuid::new_v4();
    let body = json!({"reservation_id": id, "items": [{"product_id": 4, "quantity": 60}]});
    let reserved = app.post("/reservations", body).await;
    assert_eq!(reserved.status, StatusCode::CREATED, "{}", reserved.body);
    // Stock raised behind the reservation's back, to just under the top.
    app.set_stock(4, i32::MAX - 10).await;

    let released = app.delete(&format!("/reservations/{id}")).await;

    assert_eq!(released.status, StatusCode::OK, "{}", released.body);
    assert_eq!(released.body["status"], "released");
    assert_eq!(app.stock(4).await, i32::MAX);
    let again = app.delete(&format!("/reservations/{id}")).await;
    assert_eq!(again.body["status"], "released", "{}", again.body);
    assert_eq!(app.stock(4).await, i32::MAX);
    app.cleanup().await;
}

#[tokio::test]
async fn absurd_quantities_and_product_ids_are_422_and_reserve_nothing() {
    let Some(app) = spawn_app().await else { return };
    app.set_stock(5, 10).await;
    for (product_id, quantity) in [(5, i32::MAX), (0, 1), (-1, 1), (i64::MAX, 1)] {
        let id = Uuid::new_v4();
        let body = json!({"reservation_id": id,
            "items": [{"product_id": product_id, "quantity": quantity}]});
        let reply = app.post("/reservations", body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{product_id}×{quantity}: {}",
            reply.body
        );
        let missing = app.delete(&format!("/reservations/{id}")).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);
    }
    assert_eq!(app.stock(5).await, 10);
    app.cleanup().await;
}

#[tokio::test]
async fn the_lab_blind_decrement_needs_the_lab_admin_token() {
    let Some(app) = spawn_app_with(&[("LAB_ENDPOINTS", "true")]).await else {
        return;
    };
    app.set_stock(6, 10).await;
    let path = "/lab/products/6/blind-decrement";
    let anonymous = app.post(path, json!({"by": 1})).await;
    assert_eq!(
        anonymous.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        anonymous.body
    );
    assert_eq!(anonymous.header("content-type"), "application/problem+json");
    assert_eq!(app.stock(6).await, 10);

    let wrong = app
        .send(
            app.http
                .post(app.url(path))
                .bearer_auth("guess")
                .json(&json!({"by": 1})),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.body);
    let allowed = app.post_lab(path, json!({"by": 1})).await;
    assert_eq!(allowed.status, StatusCode::OK, "{}", allowed.body);
    assert_eq!(app.stock(6).await, 9);
    app.cleanup().await;
}
