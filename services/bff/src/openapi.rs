//! `GET /api/openapi.json`: the API a browser or client sees through the
//! BFF, one document.
//!
//! The BFF links no service crate, so it fetches each routed service's own
//! document (`GET /openapi.json`, first instance that answers, a short
//! timeout) at request time and puts its paths under `/api/<service>`,
//! beside the BFF's own `/api/session` routes (derived here from their
//! handlers). What the edge itself may answer on any routed operation
//! (401, 403, 413, 429, 502-504) is added to each operation, since a
//! service's document can't know it. A service whose document can't be
//! fetched is left out and named in the description, rather than failing
//! the whole document.
//!
//! Declared inside `routes` (as `routes::openapi`) so it can name the
//! handlers of the route modules.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};
use utoipa::OpenApi;

use super::{AppState, session};

/// Where the merged document is served.
pub const PATH: &str = "/api/openapi.json";
/// How long one upstream document may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// The BFF's own operations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "storefront (through the BFF)",
        description = "Every routed service's public API under /api/<service>, and cookie \
            sessions at /api/session. Reads are public; checkout and claims need a customer, \
            catalog writes a staff role (a bearer token or a cookie session; unsafe methods \
            on a cookie session need its CSRF token). The probes, the services' lab endpoints \
            (never routed) and the BFF's /admin routes (admin token) are not documented here."
    ),
    paths(session::sign_in, session::who_am_i, session::sign_out)
)]
pub struct ApiDoc;

/// A session as the browser sees it (never the tokens).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// The user's id.
    user: uuid::Uuid,
    /// For display.
    name: String,
    /// e.g. `customer`, `staff`.
    roles: Vec<String>,
    /// Only in the sign-in's answer: send it as `X-CSRF-Token` on unsafe methods.
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<String>,
}

/// `GET /api/openapi.json`.
pub fn router() -> axum::Router<AppState> {
    axum::Router::new().route(PATH, get(merged))
}

async fn merged(State(gw): State<AppState>) -> Json<Value> {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
    let mut missing = Vec::new();
    for service in &gw.upstreams.services {
        let mut fetched = None;
        for instance in &service.instances {
            let url = format!("{}{}", instance.base, storefront_kit::openapi::PATH);
            if let Some(upstream) = fetch(&gw.client, &url).await {
                fetched = Some(upstream);
                break;
            }
        }
        match fetched {
            Some(mut upstream) => {
                add_edge_responses(&mut upstream);
                let prefix = format!("/api/{}", service.name);
                storefront_kit::openapi::merge_prefixed(&mut doc, &service.name, &prefix, upstream);
            }
            None => missing.push(service.name.clone()),
        }
    }
    if !missing.is_empty() {
        tracing::warn!(?missing, "upstream OpenAPI documents unavailable");
        if let Some(description) = doc.pointer_mut("/info/description") {
            let text = description.as_str().unwrap_or_default();
            *description = json!(format!(
                "{text} Left out (their documents could not be fetched): {}.",
                missing.join(", ")
            ));
        }
    }
    Json(doc)
}

async fn fetch(client: &reqwest::Client, url: &str) -> Option<Value> {
    let response = client.get(url).timeout(FETCH_TIMEOUT).send().await.ok()?;
    if !response.status().is_success() {
        tracing::warn!(url, status = %response.status(), "upstream OpenAPI document refused");
        return None;
    }
    response
        .json::<Value>()
        .await
        .ok()
        .filter(|doc| doc["paths"].is_object())
}

/// What the BFF may answer on any operation it routes, whatever the service
/// says: its own problem+json, under the upstream's `Problem` schema name
/// (every service document has it; the merge renames it with the rest).
const EDGE_RESPONSES: [(&str, &str); 7] = [
    (
        "401",
        "A bearer token or session is invalid, or the route needs one",
    ),
    (
        "403",
        "The caller lacks the role, or a cookie session's CSRF token is missing",
    ),
    ("413", "The body is larger than the BFF accepts"),
    (
        "429",
        "The caller's rate limit is spent (Retry-After says when)",
    ),
    ("502", "The service answered unusably"),
    ("503", "The service is unavailable or its breakers are open"),
    ("504", "The service did not answer in time"),
];

/// Adds [`EDGE_RESPONSES`] to every operation of a service's document
/// (a response the service documents itself is kept as it is), and drops
/// the `X-User-Id` parameter: the BFF strips any client copy and sets it
/// from the verified caller.
fn add_edge_responses(doc: &mut Value) {
    let problem =
        json!({"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}});
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            if !matches!(
                method.as_str(),
                "get" | "put" | "post" | "delete" | "patch" | "head" | "options"
            ) {
                continue;
            }
            if let Some(parameters) = operation
                .get_mut("parameters")
                .and_then(Value::as_array_mut)
            {
                parameters.retain(|p| {
                    !p["name"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case("x-user-id"))
                });
            }
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            for (status, description) in EDGE_RESPONSES {
                responses
                    .entry(status)
                    .or_insert_with(|| json!({"description": description, "content": problem}));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_routes_are_documented() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let session = &doc["paths"]["/api/session"];
        for method in ["get", "post", "delete"] {
            assert!(session[method]["responses"].is_object(), "{method}");
        }
    }

    #[test]
    fn edge_responses_are_added_without_replacing_the_services_own() {
        let mut doc = json!({"paths": {"/products/{id}": {
            "parameters": [],
            "get": {
                "parameters": [{"name": "id", "in": "path"}, {"name": "X-User-Id", "in": "header"}],
                "responses": {"503": {"description": "the database is down"}}
            }
        }}});
        add_edge_responses(&mut doc);
        let op = &doc["paths"]["/products/{id}"]["get"];
        assert_eq!(
            op["responses"]["503"]["description"],
            "the database is down"
        );
        assert_eq!(
            op["responses"]["429"]["content"]["application/problem+json"]["schema"]["$ref"],
            "#/components/schemas/Problem"
        );
        assert_eq!(op["parameters"], json!([{"name": "id", "in": "path"}]));
    }
}
