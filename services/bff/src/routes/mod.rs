//! The BFF's routes; the kit adds `/health`, `/ready`, `/metrics`.
//!
//! - `/api/{service}/{*rest}`: the rate limit, per user else per address
//!   ([`limit`]),
//!   then the path parsed once from the raw URI ([`crate::path`]; an
//!   unroutable path is a 4xx here, before any upstream is called), then
//!   authorized ([`authorize`], [`crate::policy`]: who may send what
//!   where), then forwarded to a replica of `service` ([`proxy`]). The parsed
//!   [`crate::path::Target`] travels in the request's extensions, so a layer
//!   added between the parse and the proxy (authentication, authorization)
//!   reasons about exactly what will be forwarded.
//! - `/api/session`: cookie sessions for browsers ([`session`]): sign in,
//!   who am I, sign out; behind the same authentication and rate limit.
//! - `/admin/*`: chaos, breakers and the live configuration, behind the
//!   admin bearer token ([`admin`]).
//!
//! Both refuse an oversized header block first, with 431 ([`headers`]).

mod admin;
pub mod auth;
mod authorize;
mod headers;
mod limit;
#[path = "../openapi.rs"]
mod openapi;
mod proxy;
pub mod session;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::{any, get, post};
use rand::rngs::StdRng;
use secrecy::SecretString;

use crate::breaker::BreakerConfig;
use crate::chaos::Chaos;
use crate::limiter::Limiter;
use crate::retry::{RetryBudget, RetryConfig};
use crate::upstream::Upstreams;

/// Everything the handlers share.
pub struct Gateway {
    /// Checks bearer tokens; `None` when no identity upstream is configured
    /// (a bearer token is then refused with 503: it cannot be checked).
    pub verifier: Option<crate::auth::Verifier>,
    /// The routed services and their replicas' breakers.
    pub upstreams: Upstreams,
    /// Pooled, no proxy: identity's JWKS and token calls, the OpenAPI fetch.
    pub client: reqwest::Client,
    /// Pooled: the proxied requests; timeouts are per attempt.
    pub proxy: crate::upstream::Client,
    /// The per-session token buckets.
    pub limiter: Limiter,
    /// Active faults.
    pub chaos: Mutex<Chaos>,
    /// Retries left, shared by all requests.
    pub budget: Mutex<RetryBudget>,
    /// Draws the backoff jitter.
    pub rng: Mutex<StdRng>,
    /// The retry settings.
    pub retry: RetryConfig,
    /// Reported by `GET /admin/config`.
    pub breaker: BreakerConfig,
    /// `BFF_ADMIN_TOKEN`; `None` refuses every admin request.
    pub admin_token: Option<SecretString>,
    /// Honour `X-Lab-Upstream` (pin a request to one instance), lab only.
    pub lab_endpoints: bool,
    /// Reported by `GET /admin/config`.
    pub redis_failure: crate::config::FailMode,
    /// Cookie sessions; `None` when no identity upstream is configured
    /// (sign-in then answers 503).
    pub sessions: Option<crate::session::Sessions>,
}

/// The handlers' state.
pub type AppState = Arc<Gateway>;

/// The BFF's routes.
pub fn router(state: AppState) -> Router {
    let proxied = Router::new()
        .route("/api/{*rest}", any(proxy::forward))
        // Inside the parse: the policy decides on the parsed target.
        .route_layer(axum::middleware::from_fn(authorize::authorize))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            proxy::resolve,
        ));
    let sessions = Router::new().route(
        session::PATH,
        post(session::sign_in)
            .get(session::who_am_i)
            .delete(session::sign_out),
    );
    let api = proxied
        .merge(sessions)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limit::rate_limit,
        ))
        // Outermost: the rate limit is keyed by the verified user.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    let admin = Router::new()
        .route(
            "/admin/chaos",
            get(admin::show_chaos)
                .put(admin::set_chaos)
                .delete(admin::clear_chaos),
        )
        .route("/admin/breakers", get(admin::breakers))
        .route("/admin/config", get(admin::config));
    api.merge(admin)
        .merge(openapi::router())
        .layer(axum::middleware::from_fn(headers::limit))
        .with_state(state)
}
