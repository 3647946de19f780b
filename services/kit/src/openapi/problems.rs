//! The problem answers many routes document word for word, as types a
//! `#[utoipa::path]` lists beside its own tuples:
//! `responses((status = 200, ...), DatabaseUnavailable)`. Each renders the
//! same response a tuple `(status = 503, description = "...", body =
//! Problem, content_type = "application/problem+json")` would.
//!
//! A document still gets the `Problem` schema component from its tuples
//! that name `body = Problem` (or from `components(schemas(Problem))`).

use std::collections::BTreeMap;

use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};

/// The one problem response: `description`, with an
/// `application/problem+json` body of the shared `Problem` schema.
fn problem_answer(status: u16, description: &str) -> BTreeMap<String, RefOr<Response>> {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .build();
    let response = ResponseBuilder::new()
        .description(description)
        .content("application/problem+json", content)
        .build();
    BTreeMap::from([(status.to_string(), RefOr::T(response))])
}

macro_rules! problem_answers {
    ($($(#[$doc:meta])* $name:ident = $status:literal, $description:literal;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                problem_answer($status, $description)
            }
        }
    )*};
}

problem_answers! {
    /// 400: the `{id}` path segment is not a UUID.
    IdNotUuid = 400, "The id is not a UUID";
    /// 415: the request body is not declared as JSON.
    BodyNotJson = 415, "The body is not declared as JSON";
    /// 422: the body is JSON but not of the shape the route takes.
    BodyWrongShape = 422, "The body is JSON of the wrong shape";
    /// 503: the service's database is unavailable.
    DatabaseUnavailable = 503, "The database is unavailable";
    /// 503: one of the service's stores (database, Redis) is unavailable.
    StoreUnavailable = 503, "A store is unavailable";
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use utoipa::IntoResponses;

    use super::*;
    use crate::Problem;

    /// A route documenting 503 as a tuple, the way routes did before.
    #[utoipa::path(get, path = "/tuple", responses(
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
    #[allow(dead_code)]
    async fn tuple() {}

    /// The same route documenting 503 with the shared type.
    #[utoipa::path(get, path = "/typed", responses(DatabaseUnavailable))]
    #[allow(dead_code)]
    async fn typed() {}

    #[derive(utoipa::OpenApi)]
    #[openapi(paths(tuple, typed))]
    struct Doc;

    #[test]
    fn a_shared_answer_renders_exactly_as_the_tuple_it_replaces() {
        let doc = serde_json::to_value(<Doc as utoipa::OpenApi>::openapi()).unwrap();
        let tuple = &doc["paths"]["/tuple"]["get"]["responses"];
        let typed = &doc["paths"]["/typed"]["get"]["responses"];
        assert!(tuple["503"].is_object(), "{doc}");
        assert_eq!(tuple, typed);
    }

    #[test]
    fn each_answer_is_one_problem_json_response_under_its_status() {
        let cases: [(BTreeMap<String, RefOr<Response>>, &str); 5] = [
            (IdNotUuid::responses(), "400"),
            (BodyNotJson::responses(), "415"),
            (BodyWrongShape::responses(), "422"),
            (DatabaseUnavailable::responses(), "503"),
            (StoreUnavailable::responses(), "503"),
        ];
        for (responses, status) in cases {
            let rendered: Value = serde_json::to_value(&responses).unwrap();
            assert_eq!(rendered.as_object().unwrap().len(), 1, "{rendered}");
            assert_eq!(
                rendered[status]["content"]["application/problem+json"]["schema"],
                json!({"$ref": "#/components/schemas/Problem"}),
                "{rendered}"
            );
            assert!(
                rendered[status]["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty())
            );
        }
    }
}
