//! Applies [`crate::policy`] to a parsed, authenticated request: after
//! [`super::proxy::resolve`] (the [`Target`] is in the extensions) and so
//! after [`super::auth::authenticate`] (the [`Caller`], if any, too).

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use storefront_kit::Problem;

use super::Rest;
use super::auth::{Caller, challenge};
use crate::path::Target;
use crate::policy::{self, Decision};

/// Counter of requests refused by the policy, labelled `decision`.
pub const REFUSED_METRIC: &str = "bff_authorization_refused_total";

/// The step: `next` (the forward) is called only if the policy allows.
pub async fn authorize(request: Request, next: impl Rest) -> Response {
    let Some(target) = request.extensions().get::<Target>() else {
        // Only reachable if the layers are misordered: refuse, never pass.
        tracing::error!("authorization ran before the path was parsed");
        return Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
            .with_detail("the request could not be authorized")
            .into_response();
    };
    let caller = request.extensions().get::<Caller>().map(|c| &c.0);
    let first = Some(target.first.as_str());
    let decision = policy::decide(&target.service, request.method(), first, caller);
    let refused = match decision {
        Decision::Allow => return next.run(request).await,
        Decision::Unauthenticated { needs } => challenge(
            Problem::new(StatusCode::UNAUTHORIZED)
                .with_detail(format!("sign in: this needs the `{needs}` role")),
        ),
        Decision::Forbidden { needs } => Problem::new(StatusCode::FORBIDDEN)
            .with_detail(format!("this needs the `{needs}` role"))
            .into_response(),
        Decision::NoRule => Problem::new(StatusCode::FORBIDDEN)
            .with_detail(format!("{} is not open to clients", target.service))
            .into_response(),
    };
    let label = match decision {
        Decision::Unauthenticated { .. } => "unauthenticated",
        Decision::Forbidden { .. } => "forbidden",
        _ => "no_rule",
    };
    metrics::counter!(REFUSED_METRIC, "decision" => label).increment(1);
    refused
}
