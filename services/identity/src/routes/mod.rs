//! The identity service's routes; the kit adds `/health`, `/ready`, `/metrics`.
//!
//! | route | what |
//! | --- | --- |
//! | `POST /token` | password grant or refresh-token rotation |
//! | `POST /revoke` | denylist an access token's `jti`, or end a refresh family |
//! | `GET /userinfo` | the bearer's profile (validates the token, checks the denylist) |
//! | `GET /.well-known/jwks.json` | the public signing keys |
//! | `/lab/…` | lease introspection and rotation controls (`LAB_ENDPOINTS` only; the kit requires `LAB_ADMIN_TOKEN`) |

mod error;
mod jwks;
mod lab;
#[path = "../openapi.rs"]
mod openapi;
mod revoke;
mod token;
mod userinfo;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post, put};
use redis::aio::ConnectionManager;

use crate::db::Db;
use crate::password::PasswordChecker;
use crate::throttle::Limits;
use crate::tokens::Minter;
pub use error::{IdentityError, Rejected};
pub use lab::digest as lab_token_digest;

/// What every handler needs.
#[derive(Clone)]
pub struct AppState {
    /// Postgres behind rotating credentials.
    pub db: Db,
    /// The denylist.
    pub redis: ConnectionManager,
    /// Signs and verifies access tokens.
    pub minter: Arc<Minter>,
    /// Lifetime of issued access tokens.
    pub access_ttl: Duration,
    /// Lifetime of each issued refresh token.
    pub refresh_ttl: Duration,
    /// Whether lab-only parameters (a custom access-token lifetime) are accepted.
    pub lab_endpoints: bool,
    /// SHA-256 of `LAB_ADMIN_TOKEN`: the lab-only `access_ttl_secs` needs the
    /// token itself as a bearer token (`None`: it is always refused). The
    /// kit's lab gate guards the `/lab/…` routes with the same token.
    pub lab_token_digest: Option<Arc<[u8; 32]>>,
    /// Bounded Argon2 verification.
    pub passwords: PasswordChecker,
    /// The guessing throttle's limits.
    pub login_limits: Limits,
    /// Prefix of the throttle's Redis keys.
    pub throttle_prefix: Arc<str>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Arc<[IpAddr]>,
}

/// The routes, with lab routes only when `LAB_ENDPOINTS` is on.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/token", post(token::token))
        .route("/revoke", post(revoke::revoke))
        .route("/userinfo", get(userinfo::userinfo))
        .route("/.well-known/jwks.json", get(jwks::jwks));
    if state.lab_endpoints {
        router = router
            .route("/lab/lease", get(lab::lease))
            .route("/lab/rotate", post(lab::rotate))
            .route("/lab/rotation-mode", put(lab::rotation_mode));
    }
    router
        .with_state(state)
        .merge(storefront_kit::openapi::router::<openapi::ApiDoc>())
}
