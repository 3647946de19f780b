use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use futures::StreamExt;
use serde_json::Value;
use tower::ServiceExt;

use super::*;

fn routes() -> Router {
    Router::new()
        .route("/items/{id}", get(|| async { "item" }))
        .route("/echo", post(|body: String| async move { body }))
}

/// A service's common configuration, with the lab token `lab-token`.
fn common(name: &str) -> CommonConfig {
    let vars = crate::Vars::from_pairs([
        ("SERVICE_NAME", name),
        ("BIND_ADDR", "127.0.0.1:0"),
        ("LAB_ADMIN_TOKEN", "lab-token"),
    ]);
    CommonConfig::from_vars(&vars).unwrap()
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
    let response = app(&common("t"), routes(), [])
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
}

#[tokio::test]
async fn missing_request_id_is_generated_as_uuid_v4() {
    let response = app(&common("t"), routes(), [])
        .oneshot(get_req("/items/1"))
        .await
        .unwrap();
    let id = response.headers()["x-request-id"].to_str().unwrap();
    let parsed = uuid::Uuid::parse_str(id).unwrap();
    assert_eq!(parsed.get_version_num(), 4);
}

#[tokio::test]
async fn unmatched_route_still_gets_a_request_id() {
    let response = app(&common("t"), routes(), [])
        .oneshot(get_req("/nowhere"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn health_is_ok_and_names_the_service() {
    let response = app(&common("catalog-1"), routes(), [])
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
    let response = app(&common("t"), routes(), [check])
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
    let response = app(&common("t"), routes(), [up, down])
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
    let app = app(&common("t"), routes(), []);
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
    let response = app(&common("t"), routes(), [])
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

/// Routes that count how often a handler ran, to prove a refusal came first.
fn counting_routes(calls: Arc<std::sync::atomic::AtomicUsize>) -> Router {
    let on_get = calls.clone();
    Router::new()
        .route(
            "/products",
            get(move || {
                on_get.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { "listed" }
            }),
        )
        .route(
            "/echo",
            post(move |body: axum::body::Bytes| {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move { body }
            }),
        )
        .route("/lab/poke", post(|| async { "poked" }))
}

fn post_json(uri: &str, body: &'static str) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

/// Asserts a problem+json body of `status` and returns it.
async fn problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        crate::error::PROBLEM_JSON
    );
    let body = json(response).await;
    assert_eq!(body["status"], status.as_u16());
    body
}

#[tokio::test]
async fn a_percent_encoded_nul_in_the_query_is_refused_before_the_handler_runs() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = app(&common("t"), counting_routes(calls.clone()), []);
    let response = app
        .oneshot(get_req("/products?category=%00"))
        .await
        .unwrap();
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["type"], NUL_PROBLEM_TYPE);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_nul_escape_in_a_json_body_is_refused_before_the_handler_runs() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = app(&common("t"), counting_routes(calls.clone()), []);
    let response = app
        .oneshot(post_json("/echo", r#"{"order_id":"o-1\u0000"}"#))
        .await
        .unwrap();
    problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_clean_json_body_reaches_the_handler_byte_for_byte() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = app(&common("t"), counting_routes(calls.clone()), []);
    let sent = "{ \"note\" : \"\\\\u0000 is fine\",\n \"n\": 1 }";
    let response = app.oneshot(post_json("/echo", sent)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, sent);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_body_that_stops_arriving_gets_408_problem() {
    let deadlines = Deadlines {
        body_read: Duration::from_millis(200),
        request: REQUEST_TIMEOUT,
    };
    let app = app_with("t", lab::LabGate::new(None), deadlines, routes(), []);
    let first = futures::stream::once(async {
        Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"{\"a\":"))
    });
    let stalled = first.chain(futures::stream::pending());
    let request = Request::post("/echo")
        .body(Body::from_stream(stalled))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), app.oneshot(request))
        .await
        .expect("no answer within 10 s")
        .unwrap();
    problem(response, StatusCode::REQUEST_TIMEOUT).await;
}

#[tokio::test]
async fn an_oversized_chunked_body_gets_413_problem() {
    let chunks = (0..=BODY_LIMIT_BYTES / 65536)
        .map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'x'; 65536])));
    let request = Request::post("/echo")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    let response = app(&common("t"), routes(), [])
        .oneshot(request)
        .await
        .unwrap();
    problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
}

#[tokio::test]
async fn framework_errors_404_405_413_are_problem_json() {
    let app = app(&common("t"), routes(), []);
    problem(
        app.clone().oneshot(get_req("/nowhere")).await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    let wrong_method = app.clone().oneshot(get_req("/echo")).await.unwrap();
    assert!(wrong_method.headers().contains_key("allow"));
    problem(wrong_method, StatusCode::METHOD_NOT_ALLOWED).await;
    let body = "x".repeat(BODY_LIMIT_BYTES + 1);
    let too_big = Request::post("/echo")
        .header("content-length", body.len())
        .body(Body::from(body))
        .unwrap();
    problem(
        app.oneshot(too_big).await.unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
}

fn lab_post(token: Option<&str>) -> Request<Body> {
    let mut request = Request::post("/lab/poke");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn lab_routes_need_the_lab_admin_token() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = app(&common("t"), counting_routes(calls), []);
    let anonymous = app.clone().oneshot(lab_post(None)).await.unwrap();
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    problem(anonymous, StatusCode::UNAUTHORIZED).await;
    problem(
        app.clone().oneshot(lab_post(Some("guess"))).await.unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let allowed = app.oneshot(lab_post(Some("lab-token"))).await.unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(text(allowed).await, "poked");
}

#[tokio::test]
async fn lab_routes_are_closed_when_no_token_is_configured() {
    let vars = crate::Vars::from_pairs([("SERVICE_NAME", "t"), ("BIND_ADDR", "127.0.0.1:0")]);
    let config = CommonConfig::from_vars(&vars).unwrap();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = app(&config, counting_routes(calls), []);
    problem(
        app.clone().oneshot(lab_post(Some(""))).await.unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        app.oneshot(lab_post(Some("lab-token"))).await.unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn a_lab_path_with_no_route_is_an_ordinary_404() {
    let response = app(&common("t"), routes(), [])
        .oneshot(lab_post(None))
        .await
        .unwrap();
    problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn a_request_past_its_deadline_gets_503_problem() {
    let deadlines = Deadlines {
        body_read: BODY_READ_TIMEOUT,
        request: Duration::from_millis(200),
    };
    let stuck = Router::new().route("/stuck", get(std::future::pending::<&str>));
    let app = app_with("t", lab::LabGate::new(None), deadlines, stuck, []);
    let response = tokio::time::timeout(Duration::from_secs(10), app.oneshot(get_req("/stuck")))
        .await
        .expect("no answer within 10 s")
        .unwrap();
    problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
}

#[tokio::test]
async fn a_nul_in_a_json_body_sent_as_text_is_refused_too() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = app(&common("t"), counting_routes(calls.clone()), []);
    let request = Request::post("/echo")
        .header("content-type", "text/plain")
        .body(Body::from(r#"{"id":"evt_1","type":"x\u0000"}"#))
        .unwrap();
    problem(
        app.clone().oneshot(request).await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    let plain = Request::post("/echo")
        .header("content-type", "text/plain")
        .body(Body::from("not json \\u0000"))
        .unwrap();
    assert_eq!(app.oneshot(plain).await.unwrap().status(), StatusCode::OK);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// A route that reports the `traceparent` its outbound calls would carry.
fn outbound_probe() -> Router {
    Router::new().route(
        "/outbound",
        get(|| async {
            tracing::info!("calling downstream");
            crate::telemetry::trace_headers()
                .get(crate::telemetry::TRACEPARENT)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        }),
    )
}

#[tokio::test(flavor = "current_thread")]
async fn a_traceparent_received_at_the_edge_continues_on_outbound_calls_and_in_the_logs() {
    let (_guard, lines) = crate::telemetry::tests::capture();
    let request = Request::get("/outbound")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(Body::empty())
        .unwrap();
    let response = app(&common("t"), outbound_probe(), [])
        .oneshot(request)
        .await
        .unwrap();
    let sent = text(response).await;
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.len(), 4, "outbound traceparent: {sent:?}");
    assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
    assert_ne!(
        parts[2], "00f067aa0ba902b7",
        "the edge's own span is the parent"
    );
    let lines = lines.json();
    let line = lines
        .iter()
        .find(|l| l["fields"]["message"] == "calling downstream")
        .expect("the handler's log line");
    assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(line["span_id"], parts[2]);
    assert_eq!(line["span"]["route"], "/outbound", "{line}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_request_without_traceparent_starts_a_trace_of_its_own() {
    let (_guard, _lines) = crate::telemetry::tests::capture();
    let sent = |response: Response| async { text(response).await };
    let first = sent(
        app(&common("t"), outbound_probe(), [])
            .oneshot(get_req("/outbound"))
            .await
            .unwrap(),
    )
    .await;
    let second = sent(
        app(&common("t"), outbound_probe(), [])
            .oneshot(get_req("/outbound"))
            .await
            .unwrap(),
    )
    .await;
    let trace = |s: &str| s.split('-').nth(1).map(str::to_owned);
    assert!(trace(&first).is_some_and(|t| t.len() == 32), "{first:?}");
    assert_ne!(
        trace(&first),
        trace(&second),
        "each request is its own trace"
    );
}

#[test]
fn an_origin_form_target_is_logged_as_uri_display_writes_it() {
    for target in [
        "/",
        "/products/1",
        "/a?b=c&d",
        "/?",
        "/x?",
        "/%41?q=%20",
        "/a//b",
    ] {
        let uri: axum::http::Uri = target.parse().unwrap();
        assert_eq!(
            super::origin_form(&uri),
            Some(uri.to_string().as_str()),
            "{target}"
        );
    }
    for other in ["http://h:1/p?q", "h:1", "*", "http://h"] {
        let uri: axum::http::Uri = other.parse().unwrap();
        assert_eq!(super::origin_form(&uri), None, "{other}");
    }
}
