//! The HTML reports, opened in a real browser: headless Chromium loads the
//! page with the network unreachable (its own empty network namespace when
//! `unshare -n` works, and a proxy and resolver that go nowhere besides).
//! No request may leave the page, every chart must have drawn, and every
//! figure the page shows must equal the run's `--json`. Screenshots stay
//! under target/report-screens/ for CI to keep.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{Fleet, text};

const INSTALL: &str = "apt-get install -y chromium chromium-driver (scripts/setup.sh installs it)";

fn chromium() -> PathBuf {
    let found = ["chromium", "chromium-browser"].iter().find_map(|name| {
        let out = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| PathBuf::from(text(&out.stdout).trim()))
    });
    found.unwrap_or_else(|| {
        panic!("headless Chromium is needed to test the HTML reports and is missing: {INSTALL}")
    })
}

/// Runs Chromium on `page` with the network out of reach, with `extra`
/// flags (`--dump-dom`, `--screenshot=…`); its stdout.
fn browse(page: &Path, extra: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--proxy-server=127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--virtual-time-budget=5000",
        "--window-size=1200,3800",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--user-data-dir={}", profile.path().display()));
    args.extend(extra.iter().cloned());
    args.push(format!("file://{}", page.display()));
    let isolated = Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success());
    let mut cmd = if isolated {
        let mut c = Command::new("unshare");
        c.arg("-n").arg(chromium());
        c
    } else {
        Command::new(chromium())
    };
    let out = cmd.args(&args).output().expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed on {}: {}",
        page.display(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The value of attribute `name` on the first element whose opening tag
/// starts with `tag`.
fn attr(dom: &str, tag: &str, name: &str) -> Option<String> {
    let start = dom.find(tag)?;
    let open = &dom[start..start + dom[start..].find('>')?];
    let key = format!(" {name}=\"");
    let at = open.find(&key)? + key.len();
    Some(open[at..at + open[at..].find('"')?].to_owned())
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// Every `data-json="POINTER">TEXT<` in the page: the figure shown and
/// where in the run's JSON it comes from.
fn figures(dom: &str) -> Vec<(String, String)> {
    let key = "data-json=\"";
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(i) = rest.find(key) {
        rest = &rest[i + key.len()..];
        let end = rest.find('"').unwrap();
        let pointer = unescape(&rest[..end]);
        let after = &rest[end + 1..];
        let Some(body) = after.strip_prefix('>') else {
            panic!(
                "data-json is not its element's last attribute: {}",
                &after[..80.min(after.len())]
            );
        };
        out.push((pointer, unescape(&body[..body.find('<').unwrap()])));
    }
    out
}

/// Holds every figure the page shows against the JSON; returns how many.
fn assert_figures_match(dom: &str, json: &Value, only_under: &str) -> usize {
    let mut n = 0;
    for (pointer, shown) in figures(dom) {
        if !pointer.starts_with(only_under) {
            continue;
        }
        let v = json
            .pointer(&pointer)
            .unwrap_or_else(|| panic!("the page shows {pointer} = {shown}, which the JSON lacks"));
        let ok = match v {
            Value::Number(x) if x.is_u64() => shown == x.to_string(),
            Value::Number(x) => {
                let decimals = shown.split_once('.').map_or(0, |(_, d)| d.len());
                shown == format!("{:.decimals$}", x.as_f64().unwrap())
            }
            Value::String(s) => shown.eq_ignore_ascii_case(s),
            other => shown == other.to_string().as_str(),
        };
        assert!(ok, "{pointer}: the page shows `{shown}`, the JSON has {v}");
        n += 1;
    }
    n
}

/// The run's JSON embedded in the page.
fn embedded(dom: &str, id: &str) -> Value {
    let key = format!("id=\"{id}\">");
    let at = dom
        .find(&key)
        .unwrap_or_else(|| panic!("no #{id} in the page"))
        + key.len();
    let body = &dom[at..at + dom[at..].find("</script>").unwrap()];
    serde_json::from_str(body).unwrap_or_else(|e| panic!("#{id} is not JSON: {e}"))
}

/// Opens `page` and checks it whole: offline, every chart drawn, figures
/// equal to `json` (those under `only_under`); screenshot to `shot`.
fn check_page(page: &Path, json: &Value, only_under: &str, shot: &Path) -> String {
    let dom = browse(page, &["--dump-dom".into()]);
    let root = &dom[dom.find("<html").expect("a document")..];
    assert_eq!(
        attr(root, "<html", "data-blocked-requests"),
        None,
        "a request was attempted"
    );
    assert_eq!(
        attr(root, "<html", "data-resource-requests").as_deref(),
        Some("0")
    );
    assert_eq!(attr(root, "<html", "data-chart-errors"), None);
    let charts: usize = attr(root, "<html", "data-charts").unwrap().parse().unwrap();
    assert!(
        charts >= 2,
        "a percentile plot and a timeline at least: {charts}"
    );
    assert_eq!(
        attr(root, "<html", "data-charts-drawn").unwrap(),
        charts.to_string()
    );
    let pixels: Vec<u64> = root
        .match_indices("data-drawn-pixels=\"")
        .map(|(i, k)| {
            let s = &root[i + k.len()..];
            s[..s.find('"').unwrap()].parse().unwrap()
        })
        .collect();
    assert_eq!(pixels.len(), charts);
    assert!(
        pixels.iter().all(|p| *p > 100),
        "a chart drew (almost) nothing: {pixels:?}"
    );
    let n = assert_figures_match(root, json, only_under);
    assert!(n >= 10, "only {n} figures checked");

    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(shot);
    browse(page, &[format!("--screenshot={}", shot.display())]);
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let bytes = &buf[..info.buffer_size()];
    let px = info.color_type.samples();
    let inked = bytes
        .chunks(px)
        .filter(|p| p[..3].iter().any(|c| *c < 200))
        .count();
    assert!(
        inked > 20_000,
        "the screenshot {} is (nearly) blank: {inked} dark pixels",
        shot.display()
    );
    dom
}

fn screens() -> PathBuf {
    support::storefront()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("report-screens")
}

#[test]
fn load_and_experiment_pages_draw_offline_and_show_exactly_the_json() {
    chromium();
    support::require_service_binaries();
    let fleet = Fleet::new("dev");
    fleet.json(&["up", "--json"], 0);
    let out = tempfile::tempdir().unwrap();
    let page = |name: &str| out.path().join(name);
    let hdr = out.path().join("hdr");

    let load_page = page("load.html");
    let load = fleet.json(
        &[
            "load",
            "--profile",
            "smoke",
            "--duration",
            "3s",
            "--json",
            "--html",
            load_page.to_str().unwrap(),
            "--hdr-out",
            hdr.to_str().unwrap(),
        ],
        0,
    );
    let dom = check_page(&load_page, &load, "/", &screens().join("load.png"));
    assert_eq!(
        embedded(&dom, "sf-run"),
        load,
        "the page's data is the run's JSON"
    );
    // The timeline adds up to the exact counts.
    for t in load["transactions"].as_array().unwrap() {
        let per_second: u64 = t["timeline"]["seconds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["requests"].as_u64().unwrap())
            .sum();
        assert_eq!(per_second, t["requests"].as_u64().unwrap(), "{}", t["name"]);
    }

    let race_page = page("race.html");
    let race = fleet.json(
        &[
            "race",
            "--n",
            "10",
            "--json",
            "--html",
            race_page.to_str().unwrap(),
        ],
        0,
    );
    let dom = check_page(&race_page, &race, "/", &screens().join("experiment.png"));
    assert_eq!(embedded(&dom, "sf-run"), race);

    // Interval logs rendered as a page: its transaction figures equal `report merge --json`.
    let log = std::fs::read_dir(&hdr)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let merged_page = page("merged.html");
    let ran = fleet.run(&[
        "report",
        "html",
        log.to_str().unwrap(),
        "--out",
        merged_page.to_str().unwrap(),
    ]);
    assert!(ran.status.success(), "{}", text(&ran.stderr));
    let merged = fleet.json(&["report", "merge", log.to_str().unwrap(), "--json"], 0);
    check_page(
        &merged_page,
        &merged,
        "/transactions",
        &screens().join("merged.png"),
    );
}

#[test]
fn the_offline_and_drawn_checks_can_fail() {
    chromium();
    // A page of our own making with one empty chart and one outside request:
    // the browser must report both.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.html");
    let specs = r#"[{"id":"chart-0","kind":"percentile","title":"empty","series":[]},{"id":"chart-1","kind":"percentile","title":"one","series":[{"name":"raw","points":[[1,1],[10,2],[100,5]]}]}]"#;
    let page = format!(
        "<!doctype html><html><head><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:\"><script>document.addEventListener('securitypolicyviolation', () => {{ const r = document.documentElement; r.dataset.blockedRequests = String(Number(r.dataset.blockedRequests || 0) + 1); }});</script></head><body><canvas id=\"chart-0\"></canvas><canvas id=\"chart-1\"></canvas><img src=\"http://127.0.0.1:9/x.png\"><script type=\"application/json\" id=\"sf-charts\">{specs}</script><script>{}\nSFCharts.renderAll(document);</script></body></html>",
        chart_js()
    );
    std::fs::write(&p, page).unwrap();
    let dom = browse(&p, &["--dump-dom".into()]);
    let root = &dom[dom.find("<html").unwrap()..];
    assert_eq!(
        attr(root, "<html", "data-blocked-requests").as_deref(),
        Some("1")
    );
    assert_eq!(attr(root, "<html", "data-charts").as_deref(), Some("2"));
    assert_eq!(
        attr(root, "<html", "data-charts-drawn").as_deref(),
        Some("1")
    );
    assert_eq!(
        attr(root, "<canvas id=\"chart-0\"", "data-drawn-pixels").as_deref(),
        Some("0")
    );
}

/// The chart module as the pages embed it (the same file).
fn chart_js() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/report/html/assets/charts.js"),
    )
    .unwrap()
}

#[test]
fn a_figure_that_differs_from_the_json_is_caught() {
    let json = serde_json::json!({"transactions": [{"requests": 12, "rps": 12.3456}]});
    let good = "<td data-json=\"/transactions/0/requests\">12</td><td data-json=\"/transactions/0/rps\">12.35</td>";
    assert_eq!(assert_figures_match(good, &json, "/"), 2);
    let bad = "<td data-json=\"/transactions/0/rps\">12.34</td>";
    assert!(std::panic::catch_unwind(|| assert_figures_match(bad, &json, "/")).is_err());
}
