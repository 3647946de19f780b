//! Errors the framework answers on its own (404 for no route, 405, 413 from
//! the body limit, 503 from the request timeout, an extractor's plain-text
//! 415/422) come with an empty or `text/plain` body. [`problem_bodies`]
//! gives each of them the same `application/problem+json` body every
//! handler error has, so a client parses one shape for every 4xx/5xx.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::Problem;

/// Longest plain-text error body kept as the problem's `detail`; the
/// framework's own are a sentence.
const DETAIL_LIMIT: usize = 4096;

/// Rewrites a 4xx/5xx response whose body is empty or `text/plain` as a
/// problem of the same status; headers (`Allow`, `Retry-After`,
/// `x-request-id`) are kept. JSON bodies (problems, `/ready`'s 503) pass
/// untouched.
///
/// Use with `axum::middleware::map_response(problem_bodies)`; [`super::app`]
/// already does.
pub async fn problem_bodies(response: Response) -> Response {
    if !is_bare_error(&response) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let detail = axum::body::to_bytes(body, DETAIL_LIMIT)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let mut problem = Problem::new(parts.status);
    if let Some(detail) = detail.or_else(|| default_detail(parts.status)) {
        problem = problem.with_detail(detail);
    }
    let problem_body = problem.into_response().into_body();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::error::PROBLEM_JSON),
    );
    Response::from_parts(parts, problem_body)
}

/// An error status whose body is empty or plain text.
fn is_bare_error(response: &Response) -> bool {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return false;
    }
    match response.headers().get(header::CONTENT_TYPE) {
        None => true,
        Some(value) => value
            .to_str()
            .map(|v| v.to_ascii_lowercase().starts_with("text/plain"))
            .unwrap_or(false),
    }
}

/// A sentence for the framework's empty-bodied answers.
fn default_detail(status: StatusCode) -> Option<String> {
    let detail = match status {
        StatusCode::NOT_FOUND => "no route matches this path",
        StatusCode::METHOD_NOT_ALLOWED => "this route does not accept the method; see Allow",
        StatusCode::SERVICE_UNAVAILABLE => "the request did not finish in time; retry later",
        _ => return None,
    };
    Some(detail.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    async fn problem(response: Response) -> (StatusCode, Value) {
        let rewritten = problem_bodies(response).await;
        let status = rewritten.status();
        assert_eq!(
            rewritten.headers()[header::CONTENT_TYPE],
            crate::error::PROBLEM_JSON
        );
        let bytes = axum::body::to_bytes(rewritten.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn an_empty_error_becomes_a_problem_of_the_same_status() {
        let (status, body) = problem(StatusCode::NOT_FOUND.into_response()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["status"], 404);
        assert_eq!(body["title"], "Not Found");
    }

    #[tokio::test]
    async fn a_plain_text_error_keeps_its_text_as_detail() {
        let response = (StatusCode::UNPROCESSABLE_ENTITY, "missing field `sku`").into_response();
        let (_, body) = problem(response).await;
        assert_eq!(body["status"], 422);
        assert_eq!(body["detail"], "missing field `sku`");
    }

    #[tokio::test]
    async fn a_json_error_and_a_success_pass_untouched() {
        let ready = (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "not_ready"})),
        )
            .into_response();
        let out = problem_bodies(ready).await;
        assert_eq!(out.headers()[header::CONTENT_TYPE], "application/json");
        let ok = problem_bodies("fine".into_response()).await;
        assert!(
            ok.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
    }
}
