//! OpenAPI documents: each service derives its own from its handlers with
//! utoipa and serves it at `GET /openapi.json`; the BFF merges them.
//!
//! What lives here is what every document shares: the one [`Problem`]
//! schema every 4xx/5xx body has, the route that serves a document, and
//! the merge that puts a service's paths under a prefix.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Map, Value};
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
use utoipa::openapi::{OpenApi, RefOr};

use crate::Problem;

pub mod problems;

pub use problems::{BodyNotJson, BodyWrongShape, DatabaseUnavailable, IdNotUuid, StoreUnavailable};

/// Where a service serves its own document.
pub const PATH: &str = "/openapi.json";

impl utoipa::PartialSchema for Problem {
    fn schema() -> RefOr<Schema> {
        let text = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(description))
        };
        ObjectBuilder::new()
            .description(Some(
                "RFC 9457 problem details; extension members (e.g. `param`) may follow",
            ))
            .property(
                "type",
                text("A URI naming the problem kind; `about:blank` means see `status`"),
            )
            .required("type")
            .property("title", text("A short summary of the kind"))
            .required("title")
            .property(
                "status",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(400))
                    .maximum(Some(599)),
            )
            .required("status")
            .property("detail", text("This occurrence, for a human"))
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .into()
    }
}

impl utoipa::ToSchema for Problem {}

/// A router serving `D`'s document at [`PATH`], rendered once: every
/// service merges `router::<ApiDoc>()` into its routes.
pub fn router<D: utoipa::OpenApi>() -> Router {
    let json = D::openapi()
        .to_json()
        .unwrap_or_else(|error| format!(r#"{{"error":"{error}"}}"#));
    Router::new().route(
        PATH,
        get(move || {
            let json = json.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], json).into_response() }
        }),
    )
}

/// The paths `doc` documents, sorted: what a service's test compares with
/// the routes it means to publish.
pub fn documented_paths(doc: &OpenApi) -> Vec<String> {
    let mut paths: Vec<String> = doc.paths.paths.keys().cloned().collect();
    paths.sort_unstable();
    paths
}

/// The schema `$ref` of the `application/problem+json` body documented for
/// `status` on `method path` (`None` when there is none): a test checks
/// that an error response points at the shared [`Problem`].
pub fn problem_ref(doc: &OpenApi, path: &str, method: &str, status: &str) -> Option<String> {
    let doc = serde_json::to_value(doc).ok()?;
    doc.get("paths")?
        .get(path)?
        .get(method)?
        .get("responses")?
        .get(status)?
        .get("content")?
        .get("application/problem+json")?
        .get("schema")?
        .get("$ref")?
        .as_str()
        .map(str::to_owned)
}

/// Adds `doc`'s paths to `into` under `prefix` (e.g. `/api/catalog`), with
/// its component schemas renamed `<name>.<Schema>` so two services' types
/// of the same name stay apart. Both documents are JSON values: the BFF
/// fetches its upstreams' documents rather than linking their crates.
pub fn merge_prefixed(into: &mut Value, name: &str, prefix: &str, mut doc: Value) {
    rename_refs(&mut doc, name);
    let Some(root) = ensure_object(into) else {
        return;
    };
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        let merged = object_member(root, "paths");
        for (path, item) in std::mem::take(paths) {
            merged.insert(format!("{prefix}{path}"), item);
        }
    }
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        let components = object_member(root, "components");
        let merged = object_member(components, "schemas");
        for (schema, body) in std::mem::take(schemas) {
            merged.insert(format!("{name}.{schema}"), body);
        }
    }
}

fn ensure_object(value: &mut Value) -> Option<&mut Map<String, Value>> {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    value.as_object_mut()
}

fn object_member<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("just made an object")
}

/// Rewrites every `$ref` to a component schema to its prefixed name.
fn rename_refs(value: &mut Value, name: &str) {
    const SCHEMAS: &str = "#/components/schemas/";
    match value {
        Value::Object(map) => {
            for (key, member) in map.iter_mut() {
                match member {
                    Value::String(target) if key == "$ref" && target.starts_with(SCHEMAS) => {
                        *target = format!("{SCHEMAS}{name}.{}", &target[SCHEMAS.len()..]);
                    }
                    _ => rename_refs(member, name),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| rename_refs(item, name)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use utoipa::PartialSchema;

    use super::*;

    #[test]
    fn problem_schema_requires_the_rfc_members_and_allows_extensions() {
        let schema = serde_json::to_value(Problem::schema()).unwrap();
        assert_eq!(schema["required"], json!(["type", "title", "status"]));
        assert_eq!(schema["additionalProperties"], json!(true));
        let rendered = serde_json::to_value(Problem::not_found("x").with_member("id", 1)).unwrap();
        for member in ["type", "title", "status"] {
            assert!(rendered.get(member).is_some(), "{member}");
        }
    }

    #[test]
    fn paths_come_sorted_and_a_problem_ref_is_found_only_where_documented() {
        let doc: OpenApi = serde_json::from_value(json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": {
                "/b": {"get": {"responses": {
                    "404": {"description": "gone", "content": {"application/problem+json":
                        {"schema": {"$ref": "#/components/schemas/Problem"}}}},
                    "500": {"description": "plain", "content": {"application/json":
                        {"schema": {"$ref": "#/components/schemas/Problem"}}}}
                }}},
                "/a": {"get": {"responses": {"200": {"description": "ok"}}}}
            }
        }))
        .unwrap();
        assert_eq!(documented_paths(&doc), ["/a", "/b"]);
        assert_eq!(
            problem_ref(&doc, "/b", "get", "404").as_deref(),
            Some("#/components/schemas/Problem")
        );
        assert_eq!(problem_ref(&doc, "/b", "get", "500"), None);
        assert_eq!(problem_ref(&doc, "/a", "get", "200"), None);
        assert_eq!(problem_ref(&doc, "/c", "get", "404"), None);
    }

    #[tokio::test]
    async fn the_router_serves_the_document_as_json() {
        use tower::ServiceExt;

        #[derive(utoipa::OpenApi)]
        #[openapi(info(title = "t"), components(schemas(Problem)))]
        struct Doc;
        let response = router::<Doc>()
            .oneshot(
                axum::http::Request::get(PATH)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), axum::http::StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(doc["info"]["title"], "t");
        assert!(doc["components"]["schemas"]["Problem"].is_object());
    }

    #[test]
    fn merge_puts_paths_under_the_prefix_and_renames_schemas_and_refs() {
        let upstream = json!({
            "paths": {"/products/{id}": {"get": {"responses": {"404": {"content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
            }}}}}},
            "components": {"schemas": {"Problem": {"type": "object"}}}
        });
        let mut merged = json!({"openapi": "3.1.0", "paths": {"/api/session": {}}});
        merge_prefixed(&mut merged, "catalog", "/api/catalog", upstream);
        assert!(merged["paths"]["/api/session"].is_object());
        let op = &merged["paths"]["/api/catalog/products/{id}"]["get"];
        assert_eq!(
            op["responses"]["404"]["content"]["application/problem+json"]["schema"]["$ref"],
            "#/components/schemas/catalog.Problem"
        );
        assert!(merged["components"]["schemas"]["catalog.Problem"].is_object());
        assert!(merged["paths"].get("/products/{id}").is_none());
    }
}
