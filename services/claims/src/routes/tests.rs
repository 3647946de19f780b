//! The routes' refusals, in process: none of these requests reach the
//! database (the pool points nowhere), so they run without Postgres.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use secrecy::SecretString;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;

fn app(lab_endpoints: bool) -> Router {
    let url = SecretString::from("postgres://nobody:x@127.0.0.1:1/none");
    let pool = storefront_kit::db::connect_pg(&url, 1).unwrap();
    router(pool, lab_endpoints)
}

fn post(path: &str, key: Option<&str>, body: &str) -> Request<Body> {
    let mut request = Request::post(path).header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.body(Body::from(body.to_owned())).unwrap()
}

async fn problem(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn valid_body() -> String {
    json!({"order_id": "o", "customer_id": "c", "reason": "missing", "amount_cents": 0}).to_string()
}

#[tokio::test]
async fn missing_key_is_checked_before_the_body() {
    let response = app(false)
        .oneshot(post("/claims", None, "not even json"))
        .await
        .unwrap();
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["type"], error::KEY_MISSING_TYPE);
    assert!(body["detail"].as_str().unwrap().contains("Idempotency-Key"));
}

#[tokio::test]
async fn malformed_key_is_a_400() {
    let response = app(false)
        .oneshot(post("/claims", Some("no spaces please"), &valid_body()))
        .await
        .unwrap();
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["type"], error::KEY_MALFORMED_TYPE);
}

#[tokio::test]
async fn invalid_claim_is_a_422_with_field_errors() {
    let body =
        json!({"order_id": "o", "customer_id": "c", "reason": "missing", "amount_cents": -3});
    let response = app(false)
        .oneshot(post("/claims", Some("k-1"), &body.to_string()))
        .await
        .unwrap();
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["type"], error::INVALID_CLAIM_TYPE);
    assert_eq!(body["errors"][0]["field"], "amount_cents");
}

#[tokio::test]
async fn malformed_claim_id_is_a_400() {
    let request = Request::get("/claims/42").body(Body::empty()).unwrap();
    let (status, _) = problem(app(false).oneshot(request).await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn lab_route_exists_only_with_lab_endpoints() {
    let path = "/lab/claims/check-then-insert";
    let off = app(false)
        .oneshot(post(path, Some("k"), &valid_body()))
        .await
        .unwrap();
    assert_eq!(off.status(), StatusCode::NOT_FOUND);
    // On, it is routed: an invalid request gets the handler's own 400.
    let on = app(true).oneshot(post(path, None, "{}")).await.unwrap();
    assert_eq!(on.status(), StatusCode::BAD_REQUEST);
}
