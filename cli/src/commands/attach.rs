//! `storefront attach`: record a fleet the CLI did not boot — compose's
//! `full` profile, a Kubernetes namespace reached through port-forwards, a
//! native fleet in another state directory — so that the experiments, `load`
//! and `status` run against it as against one `up` started.
//!
//! The record is an ordinary fleet.json with `infra: external` in which no
//! component has a pid or a port of ours: `down` then signals nothing, sweeps
//! nothing (no process carries this state directory's marker) and checks no
//! port, and simply forgets the record.

use anyhow::Result;
use reqwest::Url;

use crate::commands::Global;
use crate::exit::{self, Exit};
use crate::fleet::postgres::DATABASE;
use crate::fleet::state::{Component, ComponentKind, Endpoints};
use crate::fleet::{FleetProfile, FleetState, InfraMode, external, observe};
use crate::report::{self, fleet::FleetReport};

/// Services the CLI knows, in the order the fleet table lists them.
const SERVICES: &[&str] = &[
    "catalog", "claims", "bff", "identity", "payments", "checkout",
];

#[derive(Debug, Clone, Default, clap::Args)]
#[command(after_help = format!("{}\n\nExample (compose.yaml's `full` profile, published ports):\n  \
    STOREFRONT_POSTGRES_URL=postgres://storefront:storefront-dev@127.0.0.1:27100/storefront \\\n  \
    storefront --state-dir .storefront-compose attach --bff http://127.0.0.1:27113 \\\n    \
    --catalog http://127.0.0.1:27110,http://127.0.0.1:27111 --claims http://127.0.0.1:27112 \\\n    \
    --identity http://127.0.0.1:27114 --payments http://127.0.0.1:27115 --checkout http://127.0.0.1:27116\n\n\
    URLs holding passwords are best given through the environment (argv is public to local users).",
    exit::HELP))]
pub struct Args {
    /// The BFF's base URL(s), comma-separated.
    #[arg(long, env = "STOREFRONT_BFF_URLS", value_delimiter = ',')]
    pub bff: Vec<String>,
    /// Catalog replicas' base URLs, comma-separated (one per replica: the breaker experiment tells them apart).
    #[arg(long, env = "STOREFRONT_CATALOG_URLS", value_delimiter = ',')]
    pub catalog: Vec<String>,
    /// Claims' base URL(s).
    #[arg(long, env = "STOREFRONT_CLAIMS_URLS", value_delimiter = ',')]
    pub claims: Vec<String>,
    /// Identity's base URL(s).
    #[arg(long, env = "STOREFRONT_IDENTITY_URLS", value_delimiter = ',')]
    pub identity: Vec<String>,
    /// Payments' base URL(s).
    #[arg(long, env = "STOREFRONT_PAYMENTS_URLS", value_delimiter = ',')]
    pub payments: Vec<String>,
    /// Checkout's base URL(s).
    #[arg(long, env = "STOREFRONT_CHECKOUT_URLS", value_delimiter = ',')]
    pub checkout: Vec<String>,
    /// Postgres superuser URL (the experiments' ground truth); its database is set to `storefront`.
    #[arg(long, env = "STOREFRONT_POSTGRES_URL", hide_env_values = true)]
    pub postgres_admin_url: Option<String>,
    /// Redis URL with a user that may read every service's keys (rotate, flood).
    #[arg(long, env = "STOREFRONT_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// RabbitMQ URL.
    #[arg(long, env = "STOREFRONT_AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,
    /// Vault/OpenBao address (rotate reads identity's leases there).
    #[arg(long, env = "STOREFRONT_VAULT_ADDR")]
    pub vault_addr: Option<String>,
    /// Vault token for that address.
    #[arg(long, env = "STOREFRONT_VAULT_TOKEN", hide_env_values = true)]
    pub vault_token: Option<String>,
    /// Print the attached fleet as JSON (as `status --json`).
    #[arg(long)]
    pub json: bool,
}

impl Args {
    fn service_urls(&self, service: &str) -> &[String] {
        match service {
            "catalog" => &self.catalog,
            "claims" => &self.claims,
            "bff" => &self.bff,
            "identity" => &self.identity,
            "payments" => &self.payments,
            _ => &self.checkout,
        }
    }
}

/// A service base URL: http(s), a host, nothing after the path; no trailing slash.
fn service_url(service: &str, raw: &str) -> Result<String, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("--{service} {raw:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "--{service} {raw:?}: needs an http(s)://host:port URL"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "--{service} {raw:?}: a base URL has no query or fragment"
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// An infrastructure URL of one of `schemes`.
fn infra_url(flag: &str, raw: &str, schemes: &[&str]) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("--{flag}: {e}"))?;
    if !schemes.contains(&url.scheme()) || url.host_str().is_none() {
        return Err(format!(
            "--{flag}: needs a {}://host:port URL, got scheme `{}`",
            schemes.join("|"),
            url.scheme()
        ));
    }
    Ok(url)
}

/// The fleet record for what `args` names: pure, so tests can feed it
/// anything. No component gets a pid or a port: nothing here is ours to stop.
pub fn record(
    args: &Args,
    profile: &FleetProfile,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<FleetState, String> {
    let raw_pg = args
        .postgres_admin_url
        .as_deref()
        .ok_or("--postgres-admin-url (or STOREFRONT_POSTGRES_URL) is required: the experiments check the databases")?;
    let mut pg = infra_url("postgres-admin-url", raw_pg, &["postgres", "postgresql"])?;
    pg.set_path(&format!("/{DATABASE}"));
    let mut endpoints = Endpoints {
        postgres_admin_url: pg.to_string(),
        ..Default::default()
    };
    let mut components = vec![known("postgres", external::redact(pg.as_str()))];
    if let Some(raw) = &args.redis_url {
        endpoints.redis_url = infra_url("redis-url", raw, &["redis", "rediss"])?.to_string();
        components.push(known("redis", external::redact(&endpoints.redis_url)));
    }
    if let Some(raw) = &args.amqp_url {
        endpoints.amqp_url = infra_url("amqp-url", raw, &["amqp", "amqps"])?.to_string();
        components.push(known("rabbitmq", external::redact(&endpoints.amqp_url)));
    }
    if let Some(raw) = &args.vault_addr {
        let addr = service_url("vault-addr", raw)?;
        endpoints.vault_token = args.vault_token.clone().unwrap_or_default();
        components.push(known("vault", addr.clone()));
        endpoints.vault_addr = addr;
    }
    for svc in SERVICES {
        let urls = args
            .service_urls(svc)
            .iter()
            .filter(|u| !u.trim().is_empty())
            .map(|u| service_url(svc, u))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, url) in urls.iter().enumerate() {
            let name = match urls.len() {
                1 => (*svc).to_owned(),
                _ => format!("{svc}-{}", i + 1),
            };
            components.push(Component {
                kind: ComponentKind::Service,
                ..known(&name, url.clone())
            });
        }
        if !urls.is_empty() {
            endpoints.services.insert((*svc).to_owned(), urls);
        }
    }
    if endpoints.services.is_empty() {
        return Err("name at least one service URL (--bff, --catalog, …)".into());
    }
    Ok(FleetState {
        profile: profile.name.clone(),
        infra: InfraMode::External,
        ports: profile.ports(),
        lab_endpoints: profile.lab_endpoints,
        started_at: now,
        ready_at: Some(now),
        components,
        endpoints,
        compose_project: None,
    })
}

/// A component we only know the address of.
fn known(name: &str, url: String) -> Component {
    Component {
        name: name.to_owned(),
        kind: ComponentKind::Infra,
        pid: None,
        start_ticks: None,
        ports: Vec::new(),
        url,
        log: None,
        boot_ms: None,
        detail: Some(crate::fleet::observe::ATTACHED.into()),
    }
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let ctx = g.ctx()?;
    let state =
        record(&args, &ctx.profile, chrono::Utc::now()).map_err(|e| Exit::error(exit::USAGE, e))?;
    if let Some(old) = FleetState::load(&ctx.state_dir)?
        && old.components.iter().any(|c| c.pid.is_some())
    {
        return Err(Exit::error(
            exit::ERROR,
            format!(
                "{} records a fleet `up` started; `storefront down` it first, or attach into another --state-dir",
                ctx.state_dir.display()
            ),
        ));
    }
    ctx.ensure_dirs()?;
    state.save(&ctx.state_dir)?;
    let seen = observe::observe(&state).await;
    let rep = FleetReport::new(&state, &ctx.state_dir, seen);
    if args.json {
        report::json(&rep)?;
    } else {
        println!("{}", report::fleet::render(&rep.components));
        println!(
            "attached in {}: experiments, `load` and `status` use it; `down` forgets it and stops nothing{}",
            ctx.state_dir.display(),
            if rep.healthy {
                ""
            } else {
                " (NOT all ready yet)"
            }
        );
    }
    Ok(if rep.healthy { exit::OK } else { exit::FAILED })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> FleetProfile {
        FleetProfile::parse("name = \"dev\"\nport_base = 40000\n").unwrap()
    }

    fn args() -> Args {
        Args {
            bff: vec!["http://127.0.0.1:27113/".into()],
            catalog: vec![
                "http://127.0.0.1:27110".into(),
                "http://127.0.0.1:27111".into(),
            ],
            postgres_admin_url: Some("postgres://storefront:pw@127.0.0.1:27100/postgres".into()),
            redis_url: Some("redis://default:rpw@127.0.0.1:27101/".into()),
            ..Default::default()
        }
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }

    #[test]
    fn an_attached_fleet_has_no_pid_and_no_port_for_down_to_touch() {
        let s = record(&args(), &profile(), now()).unwrap();
        assert!(!s.components.is_empty());
        assert!(
            s.components
                .iter()
                .all(|c| c.pid.is_none() && c.start_ticks.is_none() && c.ports.is_empty())
        );
        assert_eq!(s.infra, InfraMode::External);
        assert!(s.ready_at.is_some() && s.compose_project.is_none());
    }

    #[test]
    fn replicas_are_numbered_and_a_single_instance_keeps_the_service_name() {
        let s = record(&args(), &profile(), now()).unwrap();
        let names: Vec<_> = s.components.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["postgres", "redis", "catalog-1", "catalog-2", "bff"],
            "{names:?}"
        );
        assert_eq!(
            s.endpoints.services["catalog"],
            ["http://127.0.0.1:27110", "http://127.0.0.1:27111"]
        );
        assert_eq!(
            s.endpoints.services["bff"],
            ["http://127.0.0.1:27113"],
            "no trailing slash: experiments append paths"
        );
    }

    #[test]
    fn the_ground_truth_url_points_at_the_storefront_database_and_tables_hide_passwords() {
        let s = record(&args(), &profile(), now()).unwrap();
        assert_eq!(
            s.endpoints.postgres_admin_url,
            "postgres://storefront:pw@127.0.0.1:27100/storefront"
        );
        assert!(
            s.components.iter().all(|c| !c.url.contains("pw@")),
            "{:?}",
            s.components
        );
    }

    #[test]
    fn bad_urls_and_missing_pieces_are_refused_with_the_flag_named() {
        type Change = fn(&mut Args);
        let cases: [(Change, &str); 7] = [
            ((|a| a.postgres_admin_url = None), "--postgres-admin-url"),
            (
                (|a| a.postgres_admin_url = Some("mysql://h:1/x".into())),
                "--postgres-admin-url",
            ),
            (
                (|a| a.catalog = vec!["127.0.0.1:27110".into()]),
                "--catalog",
            ),
            ((|a| a.bff = vec!["ftp://h:1".into()]), "--bff"),
            ((|a| a.bff = vec!["http://h:1/?x=1".into()]), "--bff"),
            ((|a| a.redis_url = Some("http://h:1".into())), "--redis-url"),
            (
                (|a| {
                    a.bff.clear();
                    a.catalog.clear();
                }),
                "at least one service",
            ),
        ];
        for (change, expect) in cases {
            let mut a = args();
            change(&mut a);
            let err = record(&a, &profile(), now()).unwrap_err();
            assert!(err.contains(expect), "{expect}: {err}");
        }
    }
}
