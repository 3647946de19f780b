//! The dashboard's routes: the page and its assets, the event stream, and
//! the actions. Every route is behind [`super::guard`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::Stream;
use serde::Deserialize;
use serde_json::{Value, json};

use super::App;
use super::runs;
use crate::clients::bff_admin::BffAdmin as Gateway;
use crate::fleet::control::{self, How};

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// The page's policy: its own scripts, styles and streams only; run reports
/// framed from this server; nothing may frame the page.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src data:; frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

type Shared = Arc<App>;

pub fn router(app: Shared) -> Router {
    Router::new()
        .route("/", get(index))
        .route(
            "/assets/app.js",
            get(|| async { asset(APP_JS, "text/javascript") }),
        )
        .route(
            "/assets/charts.js",
            get(|| async { asset(crate::report::html::CHART_JS, "text/javascript") }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset(APP_CSS, "text/css") }),
        )
        .route(
            "/assets/report.css",
            get(|| async { asset(crate::report::html::PAGE_CSS, "text/css") }),
        )
        .route("/api/events", get(events))
        .route("/api/snapshot", get(snapshot))
        .route("/api/patterns", get(patterns))
        .route("/api/run", get(run_state).post(run_start))
        .route("/api/run/stop", post(run_stop))
        .route("/api/run/report", get(run_report))
        .route("/api/run/json", get(run_json))
        .route("/api/control", post(control_action))
        .route("/api/chaos", post(chaos_set))
        .route("/api/chaos/clear", post(chaos_clear))
        .route("/api/history", get(history))
        .route("/api/orders", get(orders))
        .route("/api/orders/{id}", get(order_story))
        .route("/code/{*path}", get(code))
        .layer(middleware::from_fn_with_state(app.clone(), guarded))
        .with_state(app)
}

/// A refusal or a failed action, as problem+json.
fn problem(status: StatusCode, detail: impl std::fmt::Display) -> Response {
    let mut r = (
        status,
        Json(json!({"title": status.canonical_reason(), "status": status.as_u16(), "detail": detail.to_string()})),
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    r
}

async fn guarded(State(app): State<Shared>, req: Request, next: Next) -> Response {
    let query_token = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(str::to_owned)
    });
    if let Err(refusal) = app
        .guard
        .check(req.method(), req.headers(), query_token.as_deref())
    {
        let status = StatusCode::from_u16(refusal.status()).expect("static status");
        return problem(status, refusal.message());
    }
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(PAGE_CSP));
    if query_token.is_some()
        && let Ok(v) = HeaderValue::from_str(&app.guard.set_cookie())
    {
        h.insert(header::SET_COOKIE, v);
    }
    r
}

fn asset(body: &'static str, mime: &'static str) -> impl IntoResponse + use<> {
    ([(header::CONTENT_TYPE, mime)], body)
}

async fn index(State(app): State<Shared>) -> impl IntoResponse {
    let page = INDEX
        .replace("{{TOKEN}}", app.guard.token())
        .replace(
            "{{STATE_DIR}}",
            &crate::report::html::esc(&app.ctx.state_dir.display().to_string()),
        )
        .replace("{{EXPERIMENTS}}", &runs::EXPERIMENTS.join(" "));
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page)
}

async fn snapshot(State(app): State<Shared>) -> Json<Value> {
    Json(app.snapshot.borrow().clone())
}

async fn patterns(State(app): State<Shared>) -> Json<Value> {
    Json(json!(app.patterns))
}

/// Every fleet snapshot as it is taken (`fleet`), and the run's progress:
/// its state and the stderr lines this stream has not sent yet (`run`).
async fn events(State(app): State<Shared>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    struct S {
        app: Shared,
        rx: tokio::sync::watch::Receiver<Value>,
        sent: Option<(u64, usize)>,
        first: bool,
    }
    let rx = app.snapshot.clone();
    let s = S {
        app,
        rx,
        sent: None,
        first: true,
    };
    let stream = futures::stream::unfold(s, |mut s| async move {
        let mut out = Vec::new();
        if !s.first {
            let _ = tokio::time::timeout(Duration::from_millis(500), s.rx.changed()).await;
        }
        s.first = false;
        let fleet = s.rx.borrow_and_update().clone();
        if !fleet.is_null() {
            out.push(Event::default().event("fleet").data(fleet.to_string()));
        }
        if let Some(run) = s.app.runs.current() {
            let from = match s.sent {
                Some((id, n)) if id == run.id => n,
                _ => 0,
            };
            let new = run.lines.get(from..).unwrap_or_default().to_vec();
            s.sent = Some((run.id, run.lines.len()));
            let mut v = json!(run);
            v["lines"] = json!(new);
            v["from"] = json!(from);
            out.push(Event::default().event("run").data(v.to_string()));
        }
        Some((futures::stream::iter(out.into_iter().map(Ok)), s))
    });
    use futures::StreamExt;
    Sse::new(stream.flatten()).keep_alive(KeepAlive::default())
}

async fn run_state(State(app): State<Shared>) -> Json<Value> {
    Json(json!(app.runs.current()))
}

async fn run_start(State(app): State<Shared>, Json(req): Json<runs::Request>) -> Response {
    let out = app.ctx.state_dir.join("dashboard");
    match app.runs.start(&app.fleet, &req, &out) {
        Ok(id) => (StatusCode::ACCEPTED, Json(json!({"id": id}))).into_response(),
        Err(e) if format!("{e}").contains("a run is going") => problem(StatusCode::CONFLICT, e),
        Err(e) => problem(StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}")),
    }
}

async fn run_stop(State(app): State<Shared>) -> Response {
    match app.runs.stop() {
        Ok(()) => Json(json!({"stopping": true})).into_response(),
        Err(e) => problem(StatusCode::CONFLICT, e),
    }
}

async fn run_report(State(app): State<Shared>) -> Response {
    let Some(run) = app.runs.current().filter(|r| r.has_report) else {
        return problem(StatusCode::NOT_FOUND, "no run has written a report yet");
    };
    match tokio::fs::read_to_string(&run.html).await {
        Ok(html) => {
            // The report's own policy, and framed by this page only.
            let csp = format!("{}; frame-ancestors 'self'", crate::report::html::CSP);
            let mut r =
                ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
            if let Ok(v) = HeaderValue::from_str(&csp) {
                r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
            }
            r
        }
        Err(e) => problem(
            StatusCode::NOT_FOUND,
            format!("{}: {e}", run.html.display()),
        ),
    }
}

async fn run_json(State(app): State<Shared>) -> Response {
    match app.runs.current().and_then(|r| r.json) {
        Some(j) => ([(header::CONTENT_TYPE, "application/json")], j).into_response(),
        None => problem(StatusCode::NOT_FOUND, "no run has printed its JSON yet"),
    }
}

#[derive(Debug, Deserialize)]
struct ControlReq {
    name: String,
    /// kill | stop | start | restart | pause | resume
    action: String,
}

async fn control_action(State(app): State<Shared>, Json(req): Json<ControlReq>) -> Response {
    let ctx = (*app.ctx).clone();
    let name = req.name.clone();
    let stop = |how: How| {
        let (ctx, name) = (ctx.clone(), name.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                control::stop(&ctx, &name, how).map(|s| format!("{s:?}").to_lowercase())
            })
            .await
            .map_err(anyhow::Error::from)?
        }
    };
    let outcome: anyhow::Result<String> = match req.action.as_str() {
        "kill" => stop(How::Crash).await,
        "stop" => stop(How::Graceful).await,
        "start" => control::start_detailed(&ctx, &name)
            .await
            .map(|s| format!("ready in {} ms", s.took_ms)),
        "restart" => match stop(How::Graceful).await {
            Ok(_) => control::start_detailed(&ctx, &name)
                .await
                .map(|s| format!("restarted, ready in {} ms", s.took_ms)),
            Err(e) => Err(e),
        },
        "pause" => control::pause(&ctx, &name, false).map(|g| format!("process group {g} stopped")),
        "resume" => {
            control::pause(&ctx, &name, true).map(|g| format!("process group {g} continued"))
        }
        other => {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("unknown action `{other}`: kill, stop, start, restart, pause or resume"),
            );
        }
    };
    app.look_now.notify_one();
    match outcome {
        Ok(o) => {
            Json(json!({"name": req.name, "action": req.action, "outcome": o})).into_response()
        }
        Err(e) => problem(StatusCode::CONFLICT, format!("{e:#}")),
    }
}

#[derive(Debug, Deserialize)]
struct FaultReq {
    target: String,
    #[serde(default)]
    latency_ms: u64,
    #[serde(default)]
    jitter_ms: u64,
    #[serde(default)]
    error_rate: f64,
    #[serde(default = "default_status")]
    error_status: u16,
    #[serde(default)]
    abort_rate: f64,
    #[serde(default = "default_ttl")]
    ttl_secs: u64,
    seed: Option<u64>,
}

fn default_status() -> u16 {
    503
}

fn default_ttl() -> u64 {
    60
}

async fn chaos_set(State(app): State<Shared>, Json(f): Json<FaultReq>) -> Response {
    let mut body = json!({"faults": [{
        "target": f.target, "latency_ms": f.latency_ms, "jitter_ms": f.jitter_ms,
        "error_rate": f.error_rate, "error_status": f.error_status,
        "abort_rate": f.abort_rate, "ttl_secs": f.ttl_secs,
    }]});
    if let Some(seed) = f.seed {
        body["seed"] = json!(seed);
    }
    gateway(&app, |gw| async move { gw.set_chaos(body).await }).await
}

async fn chaos_clear(State(app): State<Shared>) -> Response {
    gateway(&app, |gw| async move { gw.clear_chaos().await }).await
}

async fn gateway<F, Fut>(app: &App, f: F) -> Response
where
    F: FnOnce(Gateway) -> Fut,
    Fut: Future<Output = anyhow::Result<Value>>,
{
    let gw = match Gateway::connect(&app.ctx) {
        Ok(g) => g,
        Err(e) => return problem(StatusCode::CONFLICT, format!("{e:#}")),
    };
    match f(gw).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            let status = e
                .downcast_ref::<crate::clients::bff_admin::AdminRefused>()
                .and_then(|r| StatusCode::from_u16(r.status).ok())
                .filter(|s| s.is_client_error())
                .unwrap_or(StatusCode::BAD_GATEWAY);
            problem(status, format!("{e:#}"))
        }
    }
}

fn admin_url(app: &App) -> Result<String, Box<Response>> {
    match crate::fleet::FleetState::load(&app.ctx.state_dir) {
        Ok(Some(s)) => Ok(s.endpoints.postgres_admin_url),
        Ok(None) => Err(Box::new(problem(StatusCode::CONFLICT, "no fleet is up"))),
        Err(e) => Err(Box::new(problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{e:#}"),
        ))),
    }
}

#[derive(Debug, Deserialize)]
struct HistoryReq {
    #[serde(default = "default_minutes")]
    minutes: u64,
}

fn default_minutes() -> u64 {
    super::history::WINDOWS[0]
}

/// The metrics history from the fleet's Prometheus, asked by this server
/// (the page never talks to Prometheus itself).
async fn history(
    State(app): State<Shared>,
    axum::extract::Query(q): axum::extract::Query<HistoryReq>,
) -> Response {
    if !super::history::WINDOWS.contains(&q.minutes) {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "minutes={}: the history covers {:?} minutes",
                q.minutes,
                super::history::WINDOWS
            ),
        );
    }
    let state = match crate::fleet::FleetState::load(&app.ctx.state_dir) {
        Ok(Some(s)) => s,
        Ok(None) => return problem(StatusCode::CONFLICT, "no fleet is up"),
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    };
    let base = crate::fleet::prometheus::url_of(&state);
    match super::history::fetch(&app.http, base, q.minutes).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => problem(StatusCode::BAD_GATEWAY, format!("{e:#}")),
    }
}

async fn orders(State(app): State<Shared>) -> Response {
    let url = match admin_url(&app) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    match super::story::recent(&url).await {
        Ok(o) => Json(json!(o)).into_response(),
        Err(e) => problem(StatusCode::BAD_GATEWAY, format!("{e:#}")),
    }
}

async fn order_story(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    let Ok(order) = id.parse::<uuid::Uuid>() else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("`{id}` is not an order id (a UUID)"),
        );
    };
    let url = match admin_url(&app) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    match super::story::timeline(&url, order).await {
        Ok(steps) => {
            let trace = match super::story::trace(&url, order).await {
                Some(id) => {
                    let logs = checkout_logs(&app);
                    let tid = id.clone();
                    let request = tokio::task::spawn_blocking(move || {
                        super::story::checkout_request(&logs, &tid)
                    })
                    .await
                    .ok()
                    .flatten();
                    json!({"trace_id": id, "request": request})
                }
                None => Value::Null,
            };
            Json(json!({"order_id": order, "steps": steps, "trace": trace})).into_response()
        }
        Err(e) => problem(StatusCode::BAD_GATEWAY, format!("{e:#}")),
    }
}

/// Checkout's instances' log files, as the fleet recorded them.
fn checkout_logs(app: &App) -> Vec<std::path::PathBuf> {
    let Ok(Some(state)) = crate::fleet::FleetState::load(&app.ctx.state_dir) else {
        return Vec::new();
    };
    state
        .components
        .into_iter()
        .filter(|c| c.name == "checkout" || c.name.starts_with("checkout-"))
        .filter_map(|c| c.log)
        .collect()
}

/// A file the README's pattern table names, as text.
async fn code(State(app): State<Shared>, Path(path): Path<String>) -> Response {
    if !super::patterns::listed(&app.patterns, &path) {
        return problem(
            StatusCode::NOT_FOUND,
            "only files the README's pattern table names are shown",
        );
    }
    let full = app.ctx.root.join(&path);
    let body = if full.is_dir() {
        match std::fs::read_dir(&full) {
            Ok(d) => {
                let mut names: Vec<String> = d
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                format!("{path}\n\n{}\n", names.join("\n"))
            }
            Err(e) => return problem(StatusCode::NOT_FOUND, e),
        }
    } else {
        match tokio::fs::read_to_string(&full).await {
            Ok(t) => t,
            Err(e) => return problem(StatusCode::NOT_FOUND, format!("{path}: {e}")),
        }
    };
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}
