//! The catalog's read path over real HTTP against a real Postgres and
//! Redis; see `common` for the harness and what it needs.

mod common;

use reqwest::StatusCode;

use common::spawn_app;

#[tokio::test]
async fn ready_reports_postgres_and_redis_ok() {
    let Some(app) = spawn_app().await else { return };
    let (status, _, body) = app.get("/ready").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["checks"]["postgres"]["status"], "ok");
    assert_eq!(body["checks"]["redis"]["status"], "ok");
    app.cleanup().await;
}

#[tokio::test]
async fn pages_walk_the_whole_seeded_catalog_without_gaps_or_repeats() {
    let Some(app) = spawn_app().await else { return };
    let mut ids = Vec::new();
    let mut path = "/products?limit=50".to_owned();
    loop {
        let (status, _, body) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        ids.extend(
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_i64().unwrap()),
        );
        match body["next_after"].as_i64() {
            Some(after) => path = format!("/products?limit=50&after={after}"),
            None => break,
        }
    }
    assert!(ids.len() >= 120, "only {} products", ids.len());
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids not strictly increasing"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn category_filter_returns_only_that_category() {
    let Some(app) = spawn_app().await else { return };
    let (status, _, body) = app.get("/products?category=tea&limit=100").await;
    assert_eq!(status, StatusCode::OK);
    let items = body["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(items.iter().all(|p| p["category"] == "tea"));
    assert!(body["next_after"].is_null());
    app.cleanup().await;
}

#[tokio::test]
async fn product_by_id_has_the_documented_shape() {
    let Some(app) = spawn_app().await else { return };
    let (status, _, body) = app.get("/products/1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], 1);
    assert_eq!(body["sku"], "COF-0001");
    assert_eq!(body["currency"], "EUR");
    assert!(body["price_cents"].is_i64());
    assert!(body["stock"].is_i64());
    let updated_at = body["updated_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(updated_at).is_ok(),
        "{updated_at}"
    );
    assert!(body["version"].as_i64().unwrap() > 0);
    app.cleanup().await;
}

#[tokio::test]
async fn product_has_an_etag_naming_its_version_and_says_where_it_came_from() {
    let Some(app) = spawn_app().await else { return };
    let reply = app.product(2).await;
    assert_eq!(reply.status, StatusCode::OK);
    let version = reply.body["version"].as_i64().unwrap();
    assert_eq!(reply.etag(), format!("\"{version}\""));
    assert_eq!(reply.header("x-cache"), "db");
    app.cleanup().await;
}

#[tokio::test]
async fn if_none_match_with_the_current_etag_is_304() {
    let Some(app) = spawn_app().await else { return };
    let etag = app.product(3).await.etag();
    let reply = app
        .send(
            app.http
                .get(app.url("/products/3"))
                .header("if-none-match", &etag),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    assert_eq!(reply.etag(), etag);
    let other = app
        .send(
            app.http
                .get(app.url("/products/3"))
                .header("if-none-match", "\"1\""),
        )
        .await;
    assert_eq!(other.status, StatusCode::OK);
    app.cleanup().await;
}

#[tokio::test]
async fn list_items_carry_their_version_too() {
    let Some(app) = spawn_app().await else { return };
    let (status, _, body) = app.get("/products?limit=3").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["version"].is_i64())
    );
    app.cleanup().await;
}

#[tokio::test]
async fn unknown_product_is_a_404_problem() {
    let Some(app) = spawn_app().await else { return };
    let (status, content_type, body) = app.get("/products/999999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    assert_eq!(body["status"], 404);
    app.cleanup().await;
}

#[tokio::test]
async fn bad_parameters_are_400_problems() {
    let Some(app) = spawn_app().await else { return };
    for path in [
        "/products?limit=0",
        "/products?limit=101",
        "/products?limit=abc",
        "/products?after=x",
        "/products/abc",
    ] {
        let (status, content_type, body) = app.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(
            content_type.as_deref(),
            Some("application/problem+json"),
            "{path}"
        );
        assert_eq!(body["status"], 400, "{path}");
    }
    app.cleanup().await;
}
