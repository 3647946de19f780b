//! The running fleet as experiments see it: its services' URLs and direct
//! connections to the ground truth (Postgres as superuser).

use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::exit::{self, Exit};
use crate::fleet::{Ctx, FleetState, observe};

/// Half the services' header-read timeout (the kit's `CLIENT_IDLE_TIMEOUT`).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Lab {
    pub state: FleetState,
    /// Superuser pool on the storefront database, for ground truth.
    pub pg: PgPool,
    /// Client for the services: no proxy, pooled, generous timeout.
    pub http: reqwest::Client,
}

impl Lab {
    /// Connects to the fleet recorded in the state dir; `unknown` (exit 2)
    /// when there is none or it isn't healthy, saying how to start it.
    pub async fn connect(ctx: &Ctx) -> Result<Self> {
        let Some(state) = FleetState::load(&ctx.state_dir)? else {
            return Err(Exit::error(
                exit::UNKNOWN,
                format!(
                    "no fleet is up in {}: start one with `storefront up` (nothing was judged)",
                    ctx.state_dir.display()
                ),
            ));
        };
        let seen = observe::observe(&state).await;
        let bad: Vec<String> = seen
            .iter()
            .filter(|c| c.state != "ready")
            .map(|c| format!("{} ({})", c.name, c.state))
            .collect();
        if !bad.is_empty() {
            return Err(Exit::error(
                exit::UNKNOWN,
                format!(
                    "the fleet is not healthy: {}; see `storefront status` (nothing was judged)",
                    bad.join(", ")
                ),
            ));
        }
        let pg = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&state.endpoints.postgres_admin_url)
            .await
            .context("ground truth: cannot connect to Postgres as superuser")?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(256)
            // Services close a keep-alive connection idle for 10 s (their
            // header-read timeout); dropping ours at 5 s means a request is
            // never written into a socket the server is closing.
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self { state, pg, http })
    }

    /// Base URLs of a service's instances.
    pub fn urls(&self, service: &str) -> Result<&[String]> {
        self.state
            .endpoints
            .services
            .get(service)
            .map(Vec::as_slice)
            .filter(|u| !u.is_empty())
            .with_context(|| {
                format!(
                    "the fleet's profile `{}` runs no `{service}` service",
                    self.state.profile
                )
            })
    }
}
