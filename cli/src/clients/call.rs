//! One way the typed clients send a request and read its answer: a 2xx
//! body parsed as the contract type, anything else an [`HttpError`] naming
//! the method, the URL and the status (and the problem's detail, when the
//! service sent one), so a caller can tell a 409 from a 503 by downcasting.

use anyhow::{Context, Result};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;

/// A request answered with a status other than 2xx.
#[derive(Debug, thiserror::Error)]
#[error("{method} {url}: {status}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
pub struct HttpError {
    pub method: Method,
    pub url: String,
    pub status: StatusCode,
    /// The problem+json `detail` (or `title`), else the body's start.
    pub detail: Option<String>,
}

/// Sends `req`; the 2xx answer's body as `T`.
pub async fn json<T: DeserializeOwned>(req: RequestBuilder) -> Result<T> {
    let (method, url, resp) = send(req).await?;
    resp.json::<T>()
        .await
        .with_context(|| format!("{method} {url}: the answer is not the expected JSON"))
}

/// Sends `req`; Ok on any 2xx, whatever its body (Vault's writes answer 204).
pub async fn ok(req: RequestBuilder) -> Result<()> {
    send(req).await.map(drop)
}

async fn send(req: RequestBuilder) -> Result<(Method, String, reqwest::Response)> {
    let (client, req) = req.build_split();
    let req = req.context("building the request")?;
    let (method, url) = (req.method().clone(), req.url().to_string());
    let resp = client
        .execute(req)
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = resp.status();
    if status.is_success() {
        return Ok((method, url, resp));
    }
    let body = resp.text().await.unwrap_or_default();
    Err(HttpError {
        method,
        url,
        status,
        detail: detail(&body),
    }
    .into())
}

/// What a refusal says: a problem's `detail` or `title`, else the body's
/// first 200 characters; None for an empty body.
fn detail(body: &str) -> Option<String> {
    let v: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let problem = v.as_ref().and_then(|v| {
        ["detail", "title"]
            .iter()
            .find_map(|k| v.get(*k)?.as_str().map(str::to_owned))
    });
    problem.or_else(|| {
        let b = body.trim();
        (!b.is_empty()).then(|| b.chars().take(200).collect())
    })
}

/// `base` and `path` joined with one slash.
pub fn url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_says_the_problem_detail_else_the_body() {
        assert_eq!(
            detail(r#"{"title":"Conflict","detail":"stale version"}"#).as_deref(),
            Some("stale version")
        );
        assert_eq!(
            detail(r#"{"title":"Conflict"}"#).as_deref(),
            Some("Conflict")
        );
        assert_eq!(
            detail("  upstream down \n").as_deref(),
            Some("upstream down")
        );
        assert_eq!(detail(""), None);
    }

    #[test]
    fn an_http_error_names_method_url_and_status() {
        let e = anyhow::Error::from(HttpError {
            method: Method::PATCH,
            url: "http://127.0.0.1:1/products/7".into(),
            status: StatusCode::PRECONDITION_FAILED,
            detail: Some("stale version".into()),
        });
        assert_eq!(
            e.to_string(),
            "PATCH http://127.0.0.1:1/products/7: 412 Precondition Failed: stale version"
        );
        // A caller tells a 412 from a 503 by the status it carries.
        let status = |e: &anyhow::Error| e.downcast_ref::<HttpError>().map(|h| h.status);
        assert_eq!(status(&e), Some(StatusCode::PRECONDITION_FAILED));
        assert_eq!(status(&anyhow::anyhow!("refused")), None);
    }

    #[test]
    fn urls_join_with_one_slash() {
        assert_eq!(url("http://h:1/", "/token"), "http://h:1/token");
        assert_eq!(url("http://h:1", "lab/lease"), "http://h:1/lab/lease");
    }
}
