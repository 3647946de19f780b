//! The BFF's routes; the kit adds `/health`, `/ready`, `/metrics`.
//!
//! - `/api/{service}/{*rest}` ([`api`]): authenticated ([`auth`]), then the
//!   rate limit, per user else per address ([`limit`]), then the path
//!   parsed once from the raw URI ([`crate::path`]; an unroutable path is a
//!   4xx here, before any upstream is called), then authorized
//!   ([`authorize`], [`crate::policy`]: who may send what where), then
//!   forwarded to a replica of `service` ([`proxy`]). The parsed
//!   [`crate::path::Target`] travels in the request's extensions, so a step
//!   between the parse and the proxy (authorization) reasons about exactly
//!   what will be forwarded.
//! - `/api/session`: cookie sessions for browsers ([`session`]): sign in,
//!   who am I, sign out; behind the same authentication and rate limit.
//! - `/admin/*`: chaos, breakers and the live configuration, behind the
//!   admin bearer token ([`admin`]).
//!
//! Every route, and a path none matches, refuses an oversized header
//! block first, with 431 ([`headers`]).
//!
//! Each step is a function given the rest of the chain as `next` (a
//! [`Rest`]), which it runs at most once and whose response it may add
//! to. The proxied route calls its five steps directly, one inside the
//! next. As `axum` middleware, each step boxed the next one's future,
//! moved the request into it and cloned the inner service, on every
//! request: the framework's frames were about a tenth of the BFF's CPU
//! per proxied request (`perf`, `wrk -t2 -c64`). The session routes take
//! the first two steps as middleware.

mod admin;
pub mod auth;
mod authorize;
mod headers;
mod limit;
#[path = "../openapi.rs"]
mod openapi;
mod proxy;
pub mod session;

use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
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
    let proxied = Router::new().route("/api/{*rest}", any(api));
    let sessions = Router::new()
        .route(
            session::PATH,
            post(session::sign_in)
                .get(session::who_am_i)
                .delete(session::sign_out),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rate_limited,
        ))
        // Outermost: the rate limit is keyed by the verified user.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticated,
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
    // The header limit: as middleware around every route but the proxied
    // one (and around the fallback, so an unknown path gets it too); the
    // proxied route checks first thing itself, sparing its requests a
    // layer's boxing.
    let others = sessions
        .merge(admin)
        .merge(openapi::router())
        .fallback(not_found)
        .layer(axum::middleware::from_fn(headers::limit));
    proxied.merge(others).with_state(state)
}

/// What no route matched.
async fn not_found() -> axum::http::StatusCode {
    axum::http::StatusCode::NOT_FOUND
}

/// The rest of a chain after a step: runs once, with the request.
pub trait Rest {
    /// Its response, to come.
    type Answer: Future<Output = Response>;
    /// Runs the rest of the chain on `request`.
    fn run(self, request: Request) -> Self::Answer;
}

impl<F, A> Rest for F
where
    F: FnOnce(Request) -> A,
    A: Future<Output = Response>,
{
    type Answer = A;
    fn run(self, request: Request) -> A {
        self(request)
    }
}

/// `ANY /api/{service}/{*rest}`: the five steps, each calling the next.
/// The rate limit is keyed by the verified user, so it comes after
/// authentication; the policy decides on the parsed target, so
/// authorization comes after the parse.
async fn api(State(gw): State<AppState>, request: Request) -> Response {
    if let Some(refused) = headers::refusal(request.headers()) {
        return refused;
    }
    let gw = &*gw;
    auth::authenticate(gw, request, move |r| {
        limit::rate_limit(gw, r, move |r| {
            proxy::resolve(gw, r, move |r| {
                authorize::authorize(r, move |r| proxy::forward(gw, r))
            })
        })
    })
    .await
}

/// Authentication as middleware, for the session routes.
async fn authenticated(State(gw): State<AppState>, request: Request, next: Next) -> Response {
    auth::authenticate(&gw, request, |r| next.run(r)).await
}

/// The rate limit as middleware, for the session routes.
async fn rate_limited(State(gw): State<AppState>, request: Request, next: Next) -> Response {
    limit::rate_limit(&gw, request, |r| next.run(r)).await
}
