//! `storefront dashboard` in a real browser: headless Chromium driven over
//! WebDriver (chromedriver, plain HTTP), against a real dev fleet. The page
//! shows every component ready; a race started from the page ends PASS with
//! the counts `race --json` gives for the same seed; a load run draws its
//! per-second chart, and the fleet view's history charts draw its traffic
//! from Prometheus; a catalog replica killed from the page shows dead
//! within 2 s and, after traffic, its breaker open; an order's story names
//! the trace of its POST /checkout, as checkout's log has it. Each view's screenshot
//! lands in target/dashboard-screenshots/. The fleet, the dashboard and
//! chromedriver are stopped by their guards' Drop, even when a step fails.

#[path = "dashboard/browser.rs"]
mod browser;
mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use browser::{Browser, Killed, poll};
use serde_json::{Value, json};
use support::Fleet;

/// Starts `storefront dashboard` on the fleet; returns it and its URL.
fn dashboard(fleet: &Fleet) -> (Killed, String) {
    let mut child = fleet
        .cmd(&["dashboard", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("dashboard: ")
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("/?token="),
        "{url}"
    );
    (Killed(child), url)
}

#[test]
fn the_lab_page_shows_the_fleet_runs_a_race_and_a_load_and_kills_a_replica() {
    support::require_service_binaries();
    let fleet = Fleet::new("dev");
    fleet.json(&["up", "--json"], 0);
    let (_dash, url) = dashboard(&fleet);

    // Without the token: refused, and so is an action from another origin.
    let plain = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    let root = url.split("/?").next().unwrap();
    let r = plain.get(format!("{root}/api/snapshot")).send().unwrap();
    assert_eq!(r.status(), 401);
    let token = url.split("token=").nth(1).unwrap();
    let r = plain
        .post(format!("{root}/api/control"))
        .header("x-dashboard-token", token)
        .header("origin", "http://evil.example")
        .json(&json!({"name": "catalog-1", "action": "kill"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    // DNS rebinding: the right token under another host name is refused.
    let r = plain
        .get(format!("{root}/api/snapshot?token={token}"))
        .header("host", "rebound.example")
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    // The pattern table's files are readable; nothing else is.
    let cookie = format!("sf_dashboard={token}");
    let code = |path: &str| {
        plain
            .get(format!("{root}/code/{path}"))
            .header("cookie", &cookie)
            .send()
            .unwrap()
    };
    let r = code("services/bff/src/breaker.rs");
    assert_eq!(r.status(), 200);
    assert!(r.text().unwrap().contains("pub struct Breaker"));
    assert_eq!(code("Cargo.toml").status(), 404);
    assert_eq!(code("services/bff/src/../../../Cargo.toml").status(), 404);

    let b = Browser::start();
    b.goto(&url);

    // Fleet: every component ready.
    let names = b.until(
        "every component card ready",
        Duration::from_secs(30),
        "const cards = [...document.querySelectorAll('#topology .card')];
         return document.documentElement.dataset.fleetReady === 'true' && cards.length > 0
           && cards.every(c => c.dataset.state === 'ready') && cards.map(c => c.dataset.component);",
    );
    let names: Vec<&str> = names
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for must in [
        "bff-1",
        "catalog-1",
        "catalog-2",
        "identity-1",
        "postgres",
        "redis",
        "rabbitmq",
        "vault",
    ] {
        assert!(
            names
                .iter()
                .any(|n| n == &must || n.starts_with(must.trim_end_matches("-1"))),
            "{must} not on the page: {names:?}"
        );
    }
    // The broker's queues (as checkout and payments read them), identity's lease.
    b.until(
        "the broker's queue depths and identity's lease show",
        Duration::from_secs(15),
        "const t = (n) => (document.querySelector(`#topology .card[data-component=\"${n}\"]`) || {}).textContent || '';
         return t('rabbitmq').includes('queue payments.commands:') && t('rabbitmq').includes('queue checkout.events:')
           && t('identity').includes('lease TTL') && t('checkout').includes('outbox backlog');",
    );
    b.screenshot("fleet");

    // Experiments: a race from the page, then the same race from the CLI.
    b.tab("experiments");
    b.js("document.querySelector('#exp-kind').value = 'race';
          document.querySelector('#exp-n').value = '10';
          document.querySelector('#exp-rounds').value = '2';
          document.querySelector('#exp-seed').value = '11';
          document.querySelector('#exp-start').click();");
    let page_run = b.until(
        "the race started from the page ends",
        Duration::from_secs(60),
        "const p = document.querySelector('#run-panel');
         return p.dataset.verdict && p.dataset.json ? JSON.parse(p.dataset.json) : null;",
    );
    assert_eq!(page_run["verdict"], "pass", "{page_run:#}");
    b.until(
        "the report is drawn in its frame",
        Duration::from_secs(10),
        "const f = document.querySelector('#run-panel iframe');
         const d = f && f.contentDocument; return d && d.documentElement.dataset.chartsDrawn;",
    );
    let shown = b.js("return document.querySelector('#run-panel iframe').contentDocument.querySelector('.verdict').textContent");
    assert_eq!(shown, "PASS");
    b.screenshot("experiment");
    let cli = fleet.json(
        &[
            "race", "--n", "10", "--rounds", "2", "--seed", "11", "--json",
        ],
        0,
    );
    assert_eq!(cli["verdict"], "pass");
    // The counts the seed fixes: every racing round's one winner and its
    // losers, every retried decrement's success, each invariant's verdict.
    // (How many 412s the retries meet on the way depends on timing.)
    let racing = "phase 1: racing decrement";
    assert_eq!(
        page_run["outcomes"][racing], cli["outcomes"][racing],
        "{page_run:#}\n{cli:#}"
    );
    let retried = "phase 2: retried decrement";
    assert_eq!(
        page_run["outcomes"][retried]["200"],
        cli["outcomes"][retried]["200"]
    );
    assert_eq!(page_run["outcomes"][racing]["200"], 2);
    let verdicts = |r: &Value| -> Vec<(String, String)> {
        r["invariants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["name"].to_string(), i["verdict"].to_string()))
            .collect()
    };
    assert_eq!(verdicts(&page_run), verdicts(&cli));
    assert_eq!(page_run["params"], cli["params"]);
    assert_eq!(page_run["seed"], 11);

    // Load: the per-second chart grows while it runs.
    b.tab("load");
    b.js("document.querySelector('#load-duration').value = '6s';
          document.querySelector('#load-form button[type=submit]').click();");
    b.until(
        "the load's chart draws seconds with requests",
        Duration::from_secs(40),
        "const c = document.querySelector('#load-chart');
         return Number(c.dataset.drawnPixels || 0) > 0 && Number(c.dataset.seconds || 0) >= 3;",
    );
    let load = b.until(
        "the load ends with its report",
        Duration::from_secs(60),
        "const p = document.querySelector('#load-panel');
         return p.dataset.verdict && p.dataset.json ? JSON.parse(p.dataset.json) : null;",
    );
    // The page shows the load's own verdict (its thresholds and invariants
    // judged the fleet, not the page), drawn by the report renderer.
    let requests: u64 = load["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["requests"].as_u64().unwrap())
        .sum();
    assert!(requests > 0, "{load:#}");
    let shown = b.until(
        "the load's report is drawn in its frame",
        Duration::from_secs(10),
        "const f = document.querySelector('#load-panel iframe');
         const d = f && f.contentDocument;
         return d && d.documentElement.dataset.chartsDrawn && d.querySelector('.verdict').textContent;",
    );
    assert_eq!(
        shown,
        load["verdict"].as_str().unwrap().to_uppercase(),
        "{load:#}"
    );
    b.screenshot("load");

    // History: the fleet view's charts from Prometheus (asked by the
    // dashboard, never by the page), drawn from the load's traffic.
    let prometheus = fleet.json(&["status", "--json"], 0)["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "prometheus")
        .map(|c| c["url"].as_str().unwrap().to_owned())
        .expect("the dev profile runs Prometheus (scripts/setup.sh installs it)");
    b.tab("fleet");
    let drawn = b.until(
        "the history charts draw the load's requests and p99 from Prometheus",
        Duration::from_secs(30),
        "const h = document.querySelector('#history');
         const c = (n) => document.querySelector('#history-' + n).dataset;
         if (!h.dataset.loaded || Number(c('requests').points || 0) < 2 || Number(c('p99_ms').points || 0) < 1) {
           document.querySelector('#history-refresh').click(); return false;
         }
         return {prometheus: h.dataset.prometheus, source: document.querySelector('#history-source').textContent,
                 series: Number(c('requests').series), points: Number(c('requests').points),
                 pixels: Number(c('requests').drawnPixels), p99_pixels: Number(c('p99_ms').drawnPixels)};",
    );
    assert_eq!(drawn["prometheus"], prometheus.as_str(), "{drawn:#}");
    assert!(
        drawn["source"].as_str().unwrap().contains(&prometheus),
        "{drawn:#}"
    );
    assert!(drawn["series"].as_u64().unwrap() >= 1, "{drawn:#}");
    assert!(drawn["pixels"].as_u64().unwrap() > 0, "{drawn:#}");
    assert!(drawn["p99_pixels"].as_u64().unwrap() > 0, "{drawn:#}");
    b.screenshot("history");

    // An order's story: a few orders through the saga, one picked on the page.
    let saga = fleet.json(&["saga", "--orders", "2", "--json"], 0);
    assert_eq!(saga["verdict"], "pass");
    b.tab("story");
    b.until(
        "the recent orders are listed",
        Duration::from_secs(10),
        "const s = document.querySelector('#story-recent');
         s.dispatchEvent(new Event('focus'));
         if (s.options.length < 2) return false;
         s.selectedIndex = 1; s.dispatchEvent(new Event('change'));
         document.querySelector('#story-form button').click(); return true;",
    );
    let story = b.until(
        "the order's timeline shows saga steps and bus messages",
        Duration::from_secs(10),
        "const rows = [...document.querySelectorAll('#story table tr')].map(r => r.textContent);
         return rows.some(r => r.includes('saga step')) && rows.some(r => r.includes('outbox: authorize_payment'))
           && rows.some(r => r.includes('payments took it')) && rows;",
    );
    assert!(
        story.as_array().unwrap().len() >= 8,
        "a completed order has more to tell: {story:#}"
    );
    // The story names the trace of the order's POST /checkout, and that
    // trace is in checkout's own log on that request's lines.
    let trace = b.until(
        "the story names its request's trace",
        Duration::from_secs(10),
        "const t = document.querySelector('#story .trace');
         return t && t.dataset.traceId && {id: t.dataset.traceId, text: t.textContent};",
    );
    let trace_id = trace["id"].as_str().unwrap();
    assert!(
        trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{trace:#}"
    );
    assert!(
        trace["text"]
            .as_str()
            .unwrap()
            .contains("POST /checkout → 20"),
        "{trace:#}"
    );
    // A service writes its log lines a few milliseconds after them.
    poll(
        Duration::from_secs(10),
        &format!("trace {trace_id} on a POST /checkout line of checkout.log"),
        || {
            let log = std::fs::read_to_string(fleet.dir().join("logs/checkout.log")).ok()?;
            log.lines()
                .any(|l| {
                    l.contains(trace_id)
                        && l.contains(r#""route":"/checkout""#)
                        && l.contains(r#""method":"POST""#)
                })
                .then_some(())
        },
    );
    b.screenshot("story");

    // Chaos: kill a catalog replica from the page.
    b.tab("chaos");
    b.js("document.querySelector('#controls [data-name=\"catalog-2\"][data-action=\"kill\"]').click()");
    let killed_at = Instant::now();
    b.until(
        "catalog-2 shows dead",
        Duration::from_secs(5),
        "const c = document.querySelector('#topology .card[data-component=\"catalog-2\"]');
         return c && c.dataset.state === 'dead';",
    );
    let took = killed_at.elapsed();
    assert!(took <= Duration::from_secs(2), "dead only after {took:?}");
    // Traffic through the BFF until its breaker for catalog-2 opens.
    let bff = fleet.json(&["status", "--json"], 1)["services"]["bff"][0]
        .as_str()
        .unwrap()
        .to_owned();
    poll(
        Duration::from_secs(30),
        "catalog-2's breaker shows open",
        || {
            for _ in 0..10 {
                let _ = plain.get(format!("{bff}/api/catalog/products")).send();
            }
            let v = b.js(
                "const c = document.querySelector('#topology .card[data-component=\"catalog-2\"]');
                      return c && c.dataset.breaker;",
            );
            (v == "open").then_some(())
        },
    );
    b.screenshot("chaos");

    // Pause and resume from the page: SIGSTOP shows as paused, SIGCONT as ready.
    for (action, state) in [("pause", "paused"), ("resume", "ready")] {
        b.js(&format!(
            "document.querySelector('#controls [data-name=\"claims\"][data-action=\"{action}\"]').click()"
        ));
        b.until(
            &format!("claims shows {state}"),
            Duration::from_secs(10),
            &format!(
                "const c = document.querySelector('#controls .card[data-component=\"claims\"]');
                 return c && c.dataset.state === '{state}';"
            ),
        );
    }
    drop(b);
    drop(_dash);
    drop(fleet);
}
