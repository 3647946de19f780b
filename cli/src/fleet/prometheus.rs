//! Prometheus beside the native fleet (profile `prometheus = true`): `up`
//! writes `prometheus/prometheus.yml` under the state directory, scraping
//! every service instance's `/metrics`, and runs Debian's `prometheus` on
//! loopback with its TSDB under the state directory and a short retention,
//! recorded in fleet.json like any other component (so `status`, `stop`,
//! `start` and `down` know it). Its URL is printed for Grafana users, and
//! [`query`] / [`query_range`] read its HTTP API for the dashboard.
//!
//! It is an observer, not a dependency: a missing binary or a Prometheus
//! that won't start is reported and the fleet comes up without it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::infra::Boot;
use super::process;
use super::ready::{self, Watch};
use super::state::{ComponentKind, FleetState};
use super::{Ctx, profile::FleetProfile};

/// The component's name in fleet.json, `status` and `logs`.
pub const NAME: &str = "prometheus";
/// How often every target is scraped: often enough for per-second charts
/// of a short experiment, cheap for a dozen targets.
pub const SCRAPE_INTERVAL: &str = "2s";
/// A lab fleet's history is for the session, not the month.
pub const RETENTION: &str = "6h";

/// The binary: `PROMETHEUS` if set, else `prometheus` on the PATH, else
/// Debian's `/usr/bin/prometheus`.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PROMETHEUS") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("prometheus"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let debian = PathBuf::from("/usr/bin/prometheus");
        debian.is_file().then_some(debian)
    })
}

/// Where its config and data live.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("prometheus")
}

/// Its base URL on loopback.
pub fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// The recorded Prometheus's URL, if this fleet runs one.
pub fn url_of(state: &FleetState) -> Option<&str> {
    state
        .components
        .iter()
        .find(|c| c.name == NAME)
        .map(|c| c.url.as_str())
}

/// prometheus.yml for `profile`: one job per service, one target per
/// instance, labelled with the instance's component name (`catalog-1`)
/// so a chart can say which replica.
pub fn config(profile: &FleetProfile) -> String {
    let mut y = format!(
        "# Written by `storefront up`; rewritten on every start.\n\
         global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  scrape_timeout: 1s\n  \
         evaluation_interval: {SCRAPE_INTERVAL}\nscrape_configs:\n"
    );
    for service in &profile.services {
        let _ = write!(
            y,
            "  - job_name: {}\n    metrics_path: /metrics\n    static_configs:\n",
            service.name
        );
        for (_, instance, port) in profile
            .instances()
            .into_iter()
            .filter(|(s, ..)| s.name == service.name)
        {
            let _ = write!(
                y,
                "      - targets: ['127.0.0.1:{port}']\n        labels: {{component: '{instance}'}}\n"
            );
        }
    }
    y
}

/// Writes the config and returns the command that runs Prometheus on
/// loopback with its data under the state directory.
pub fn command(ctx: &Ctx, bin: &Path, port: u16) -> Result<Command> {
    let dir = dir(&ctx.state_dir);
    super::private_dir(&dir.join("data"))?;
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config(&ctx.profile))
        .with_context(|| format!("failed to write {}", config_path.display()))?;
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--storage.tsdb.retention.time={RETENTION}"))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        // Debian's defaults point the console templates at /etc; none are used.
        .arg("--web.console.templates=")
        .arg("--web.console.libraries=");
    Ok(cmd)
}

/// Ready once `/-/ready` answers 200 (its TSDB is open).
pub async fn check(client: &reqwest::Client, base: &str) -> Result<()> {
    ready::http_ok(client, &format!("{base}/-/ready")).await
}

/// `up`'s step: start it, record it, wait until ready. Never fails the
/// fleet: what went wrong is shown on the progress line and on stderr, and
/// a Prometheus that didn't come up is stopped and forgotten.
pub async fn boot(b: &Boot<'_>) {
    let step = b.progress.component(NAME);
    let Some(bin) = binary() else {
        let msg = "not installed (run scripts/setup.sh, which installs Debian's `prometheus`); the fleet runs without it";
        step.done(msg);
        eprintln!("prometheus: {msg}");
        return;
    };
    let run = async {
        step.stage("starting");
        let port = b.ctx.profile.ports().prometheus;
        let log = b.ctx.log_path(NAME);
        let t = Instant::now();
        let sp = process::spawn(command(b.ctx, &bin, port)?, &log, &b.ctx.state_dir)?;
        let base = url(port);
        b.record.spawned(
            NAME,
            ComponentKind::Infra,
            sp,
            vec![port],
            base.clone(),
            &log,
        )?;
        let w = Watch {
            what: NAME,
            pid: Some((sp.pid, sp.start_ticks)),
            log: Some(&log),
        };
        ready::poll(w, b.deadline, || check(b.client, &base)).await?;
        let took = t.elapsed();
        b.record
            .ready(NAME, took, Some(format!("scrapes every {SCRAPE_INTERVAL}")))?;
        anyhow::Ok(took)
    };
    if let Err(e) = super::infra::finish(&step, run.await) {
        eprintln!("prometheus: did not start, the fleet runs without it: {e:#}");
        let state = b.record.snapshot();
        if let Some(c) = state.components.iter().find(|c| c.name == NAME)
            && let Some(pid) = c.pid
        {
            process::stop(
                pid,
                c.start_ticks,
                nix::sys::signal::Signal::SIGTERM,
                Duration::from_secs(5),
            );
        }
        b.record
            .update(|s| s.components.retain(|c| c.name != NAME))
            .ok();
    }
}

// The query half below (Series, Range, query, query_range) is for
// `storefront dashboard`'s history charts (cli/src/dashboard/history.rs).

/// One time series: its labels and `(unix seconds, value)` points, one for
/// an instant query.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(f64, f64)>,
}

/// The window and resolution of a range query.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub start: chrono::DateTime<chrono::Utc>,
    pub end: chrono::DateTime<chrono::Utc>,
    pub step: Duration,
}

impl Range {
    /// The last `span` up to now, one point per `step`.
    pub fn last(span: Duration, step: Duration) -> Self {
        let end = chrono::Utc::now();
        let start = end - chrono::Duration::from_std(span).unwrap_or_default();
        Self { start, end, step }
    }
}

/// An instant query (`/api/v1/query`): each series' current value.
pub async fn query(client: &reqwest::Client, base: &str, promql: &str) -> Result<Vec<Series>> {
    let body = client
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", promql)])
        .send()
        .await
        .with_context(|| format!("cannot reach Prometheus at {base}"))?
        .bytes()
        .await?;
    parse(&body)
}

/// A range query (`/api/v1/query_range`): each series over `range`.
pub async fn query_range(
    client: &reqwest::Client,
    base: &str,
    promql: &str,
    range: Range,
) -> Result<Vec<Series>> {
    let seconds =
        |t: chrono::DateTime<chrono::Utc>| format!("{:.3}", t.timestamp_millis() as f64 / 1000.0);
    let body = client
        .get(format!("{base}/api/v1/query_range"))
        .query(&[
            ("query", promql.to_owned()),
            ("start", seconds(range.start)),
            ("end", seconds(range.end)),
            ("step", format!("{}", range.step.as_secs_f64().max(0.001))),
        ])
        .send()
        .await
        .with_context(|| format!("cannot reach Prometheus at {base}"))?
        .bytes()
        .await?;
    parse(&body)
}

/// Prometheus's answer envelope.
#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct Raw {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    value: Option<(f64, String)>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// Parses a `/api/v1/query` or `/query_range` answer (vector, matrix or
/// scalar) into series; an error answer becomes its message.
pub fn parse(body: &[u8]) -> Result<Vec<Series>> {
    let answer: Answer = serde_json::from_slice(body)
        .context("Prometheus answered something that isn't its JSON")?;
    if answer.status != "success" {
        bail!(
            "Prometheus refused the query: {}",
            answer.error.unwrap_or(answer.status)
        );
    }
    let Some(data) = answer.data else {
        return Ok(Vec::new());
    };
    let number = |(t, v): (f64, String)| -> Result<(f64, f64)> {
        // "NaN", "+Inf" and "-Inf" parse as f64 too.
        Ok((t, v.parse().with_context(|| format!("sample value {v:?}"))?))
    };
    match data.result_type.as_str() {
        "vector" | "matrix" => {
            let raws: Vec<Raw> = serde_json::from_value(data.result)?;
            raws.into_iter()
                .map(|r| {
                    let points = r
                        .value
                        .into_iter()
                        .chain(r.values)
                        .map(number)
                        .collect::<Result<_>>()?;
                    Ok(Series {
                        labels: r.metric,
                        points,
                    })
                })
                .collect()
        }
        "scalar" => {
            let point: (f64, String) = serde_json::from_value(data.result)?;
            Ok(vec![Series {
                labels: BTreeMap::new(),
                points: vec![number(point)?],
            }])
        }
        other => bail!("Prometheus answered a {other} result, which storefront doesn't read"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: &str = r#"
port_base = 40000
prometheus = true
[[services]]
name = "catalog"
replicas = 2
[[services]]
name = "bff"
"#;

    #[test]
    fn the_config_scrapes_every_instance_under_its_service_job() {
        let profile = FleetProfile::parse(PROFILE).unwrap();
        let y = config(&profile);
        assert!(y.contains("- job_name: catalog\n"), "{y}");
        assert!(y.contains("- job_name: bff\n"), "{y}");
        assert!(y.contains("'127.0.0.1:40010'"), "{y}");
        assert!(y.contains("component: 'catalog-1'"), "{y}");
        assert!(y.contains("'127.0.0.1:40011'"), "{y}");
        assert!(y.contains("component: 'catalog-2'"), "{y}");
        assert!(y.contains("'127.0.0.1:40012'"), "{y}");
        assert!(y.contains("component: 'bff'"), "{y}");
        assert_eq!(y.matches("targets:").count(), 3, "{y}");
    }

    #[test]
    fn prometheus_takes_its_own_port_after_vault_inside_the_infra_block() {
        let ports = FleetProfile::parse(PROFILE).unwrap().ports();
        assert_eq!(ports.prometheus, ports.vault + 1);
        assert!(ports.prometheus < ports.services_from);
    }

    #[test]
    fn an_instant_vector_answer_becomes_one_point_per_series() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"up","job":"catalog","component":"catalog-1"},"value":[1700000000.5,"1"]},
            {"metric":{"__name__":"up","job":"bff","component":"bff"},"value":[1700000000.5,"0"]}]}}"#;
        let series = parse(body).unwrap();
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].labels["component"], "catalog-1");
        assert_eq!(series[0].points, vec![(1700000000.5, 1.0)]);
        assert_eq!(series[1].points, vec![(1700000000.5, 0.0)]);
    }

    #[test]
    fn a_matrix_answer_keeps_every_point_and_reads_nan() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"job":"catalog"},"values":[[1,"0.5"],[3,"NaN"],[5,"2"]]}]}}"#;
        let series = parse(body).unwrap();
        assert_eq!(series[0].points.len(), 3);
        assert_eq!(series[0].points[0], (1.0, 0.5));
        assert!(series[0].points[1].1.is_nan());
    }

    #[test]
    fn an_error_answer_is_an_error_naming_prometheus_reason() {
        let body = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        let err = parse(body).unwrap_err().to_string();
        assert!(err.contains("parse error at char 3"), "{err}");
        assert!(parse(b"<html>").is_err());
    }
}
