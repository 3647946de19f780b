//! RFC 9457 problem details: every 4xx/5xx body from a storefront service
//! has the same machine-readable shape, so clients (the BFF, the CLI's
//! experiments) branch on `status` and `type` rather than on prose.
//!
//! Services keep their own `thiserror` enum per handler and map each variant
//! to a [`Problem`] in one `match`.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

/// The media type RFC 9457 registers for problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Members the RFC defines; extension members may not shadow them.
const RESERVED: [&str; 5] = ["type", "title", "status", "detail", "instance"];

/// An `application/problem+json` response.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Problem {
    /// A URI naming the problem kind; `about:blank` means "see `status`".
    #[serde(rename = "type")]
    kind: String,
    /// A short summary that doesn't change between occurrences.
    title: String,
    /// The HTTP status, repeated in the body for clients that lose headers.
    status: u16,
    /// This occurrence, in words for a human. Never database text on a 5xx.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    /// Extension members, e.g. `{"param": "limit"}`.
    #[serde(flatten)]
    extensions: Map<String, Value>,
}

impl Problem {
    /// A problem whose title is the status's reason phrase.
    pub fn new(status: StatusCode) -> Self {
        Self {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: None,
            extensions: Map::new(),
        }
    }

    /// 400: the request itself is wrong.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST).with_detail(detail)
    }

    /// 404: the addressed resource doesn't exist.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND).with_detail(detail)
    }

    /// 409: the request conflicts with current state (unique violations).
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT).with_detail(detail)
    }

    /// 500 for an unexpected error. The error is logged here, with its
    /// chain, and the client gets a fixed sentence: database messages name
    /// tables, constraints and sometimes values, none of which are the
    /// client's business.
    pub fn internal(error: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %error, chain = %ErrorChain(error), "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR)
            .with_detail("the server failed to handle this request; the cause has been logged")
    }

    /// 503: a dependency is down; the client may retry.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE).with_detail(detail)
    }

    /// Names the problem kind with a URI (e.g. `/problems/out-of-stock`).
    pub fn with_type(mut self, uri: impl Into<String>) -> Self {
        self.kind = uri.into();
        self
    }

    /// Replaces the title.
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// Describes this occurrence.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds an extension member. Names the RFC reserves are ignored (with a
    /// debug assertion), since a duplicate key would make invalid JSON.
    pub fn with_member(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        let name = name.into();
        debug_assert!(!RESERVED.contains(&name.as_str()), "reserved member {name}");
        if !RESERVED.contains(&name.as_str()) {
            self.extensions.insert(name, value.into());
        }
        self
    }

    /// The HTTP status this problem is sent with.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, axum::Json(self)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

/// axum's extractor rejections become problems, so a malformed query or
/// path parameter gets the same body shape as any other 400.
macro_rules! from_rejection {
    ($($rejection:ty),*) => {$(
        impl From<$rejection> for Problem {
            fn from(rejection: $rejection) -> Self {
                Self::new(rejection.status()).with_detail(rejection.body_text())
            }
        }
    )*};
}
from_rejection!(QueryRejection, PathRejection, JsonRejection);

/// Displays an error and its `source()` chain on one line, for logs.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn problem_renders_rfc9457_members_and_media_type() {
        let response = Problem::not_found("no product 7")
            .with_member("id", 7)
            .into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = body_json(response).await;
        assert_eq!(
            body,
            serde_json::json!({
                "type": "about:blank",
                "title": "Not Found",
                "status": 404,
                "detail": "no product 7",
                "id": 7
            })
        );
    }

    #[tokio::test]
    async fn internal_problem_does_not_leak_the_error_text() {
        let error = std::io::Error::other("relation \"products\" does not exist");
        let body = body_json(Problem::internal(&error).into_response()).await;
        assert_eq!(body["status"], 500);
        assert!(!body.to_string().contains("products"), "{body}");
    }

    #[test]
    fn detail_is_omitted_when_absent() {
        let json = serde_json::to_value(Problem::new(StatusCode::CONFLICT)).unwrap();
        assert!(json.get("detail").is_none());
        assert_eq!(json["title"], "Conflict");
    }
}
