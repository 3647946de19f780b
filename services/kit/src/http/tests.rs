use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::Value;
use tower::ServiceExt;

use super::*;

fn routes() -> Router {
    Router::new()
        .route("/items/{id}", get(|| async { "item" }))
        .route("/echo", post(|body: String| async move { body }))
}

fn get_req(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

async fn json(response: Response) -> Value {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn text(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn incoming_request_id_is_echoed() {
    let request = Request::get("/items/1")
        .header("x-request-id", "abc-123")
        .body(Body::empty())
        .unwrap();
    let response = app("t", routes(), []).oneshot(request).await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
}

#[tokio::test]
async fn missing_request_id_is_generated_as_uuid_v4() {
    let response = app("t", routes(), [])
        .oneshot(get_req("/items/1"))
        .await
        .unwrap();
    let id = response.headers()["x-request-id"].to_str().unwrap();
    let parsed = uuid::Uuid::parse_str(id).unwrap();
    assert_eq!(parsed.get_version_num(), 4);
}

#[tokio::test]
async fn unmatched_route_still_gets_a_request_id() {
    let response = app("t", routes(), [])
        .oneshot(get_req("/nowhere"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn health_is_ok_and_names_the_service() {
    let response = app("catalog-1", routes(), [])
        .oneshot(get_req("/health"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        json(response).await,
        serde_json::json!({"status": "ok", "service": "catalog-1"})
    );
}

#[tokio::test]
async fn ready_is_200_when_every_check_passes() {
    let check = Check::new("always", || async { Ok::<(), String>(()) });
    let response = app("t", routes(), [check])
        .oneshot(get_req("/ready"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = json(response).await;
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["always"]["status"], "ok");
}

#[tokio::test]
async fn ready_is_503_with_each_result_when_a_check_fails() {
    let up = Check::new("up", || async { Ok::<(), String>(()) });
    let down = Check::new("postgres", || async {
        Err::<(), _>("connect postgres://catalog:pw@db:5432/storefront refused")
    });
    let response = app("t", routes(), [up, down])
        .oneshot(get_req("/ready"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = json(response).await;
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"]["up"]["status"], "ok");
    assert_eq!(body["checks"]["postgres"]["status"], "fail");
    assert!(!body.to_string().contains(":pw@"), "{body}");
}

#[tokio::test]
async fn metrics_are_labelled_by_matched_route_not_raw_path() {
    let app = app("t", routes(), []);
    let response = app.clone().oneshot(get_req("/items/424242")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let metrics = text(app.oneshot(get_req("/metrics")).await.unwrap()).await;
    let counter = metrics
        .lines()
        .find(|l| l.starts_with("http_requests_total") && l.contains(r#"route="/items/{id}""#))
        .unwrap_or_else(|| panic!("no counter for /items/{{id}} in:\n{metrics}"));
    assert!(counter.contains(r#"method="GET""#), "{counter}");
    assert!(counter.contains(r#"status="200""#), "{counter}");
    assert!(
        metrics.contains("http_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(!metrics.contains("424242"), "{metrics}");
}

#[tokio::test]
async fn oversized_body_is_rejected() {
    let body = "x".repeat(BODY_LIMIT_BYTES + 1);
    let request = Request::post("/echo")
        .header("content-length", body.len())
        .body(Body::from(body))
        .unwrap();
    let response = app("t", routes(), []).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}
