//! Self-contained HTML reports: one file per run, every asset inlined and a
//! Content-Security-Policy that lets no request leave the page. Each page
//! holds the run's JSON (`<script type="application/json" id="sf-run">`) and
//! its chart specs (`id="sf-charts"`), computed here from the exact HDR
//! histograms; [`CHART_JS`] draws them on canvases. Numbers shown in tables
//! carry `data-json`, the JSON pointer of the figure they show, so a test can
//! hold every one of them against the run's `--json`.

pub mod experiment;
pub mod load;
pub mod verify;

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};

use crate::run::{Invariant, Timeline, Verdict};

/// The chart code: plain JavaScript on `<canvas>`, no library. The lab page
/// embeds this same string.
pub const CHART_JS: &str = include_str!("assets/charts.js");
/// The pages' stylesheet.
pub const PAGE_CSS: &str = include_str!("assets/page.css");
/// Nothing may be fetched: no network, no other file; inline script and style only.
pub const CSP: &str =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:";

/// Counts what the policy blocked, on `<html data-blocked-requests>`; runs
/// before anything else on the page.
const GUARD_JS: &str = r#"document.addEventListener("securitypolicyviolation", () => { const r = document.documentElement; r.dataset.blockedRequests = String(Number(r.dataset.blockedRequests || 0) + 1); });"#;

/// What a page says about where and how the run was made.
#[derive(Debug, Clone, Serialize)]
pub struct About {
    pub fleet_profile: String,
    pub storefront_version: &'static str,
    pub generated_utc: String,
    pub command: String,
}

impl About {
    pub fn now(fleet_profile: &str) -> Self {
        Self {
            fleet_profile: fleet_profile.into(),
            storefront_version: env!("CARGO_PKG_VERSION"),
            generated_utc: chrono::Utc::now()
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
        }
    }
}

/// One page under construction: HTML body, chart specs, the run's JSON.
pub struct Page {
    title: String,
    body: String,
    charts: Vec<Value>,
    run: Value,
}

impl Page {
    pub fn new(title: impl Into<String>, run: Value) -> Self {
        Self {
            title: title.into(),
            body: String::new(),
            charts: Vec::new(),
            run,
        }
    }

    pub fn push(&mut self, html: &str) {
        self.body.push_str(html);
    }

    /// The heading: title, verdict badge, one line of summary.
    pub fn header(&mut self, verdict: Verdict, summary: &str) {
        let _ = write!(
            self.body,
            "<header><h1>{}</h1><span class=\"verdict {}\" data-json=\"/verdict\">{}</span><span class=\"sub\">{}</span></header>",
            esc(&self.title),
            label(verdict).to_lowercase(),
            label(verdict),
            esc(summary)
        );
    }

    /// A canvas for a chart of `kind` drawn from `spec`.
    pub fn chart(&mut self, kind: &str, mut spec: Value) {
        let id = format!("chart-{}", self.charts.len());
        let _ = write!(
            self.body,
            "<canvas id=\"{id}\" data-chart=\"{kind}\" role=\"img\" aria-label=\"{}\"></canvas>",
            esc(spec["title"].as_str().unwrap_or(kind))
        );
        spec["id"] = json!(id);
        spec["kind"] = json!(kind);
        self.charts.push(spec);
    }

    /// The invariant table under `heading`; `base` is the JSON pointer of the list.
    pub fn invariants(&mut self, heading: &str, list: &[Invariant], base: &str) {
        if list.is_empty() {
            return;
        }
        let _ = write!(
            self.body,
            "<h2>{}</h2><table><tr><th>invariant</th><th>verdict</th><th>expected</th><th>observed</th><th>evidence</th></tr>",
            esc(heading)
        );
        for (i, inv) in list.iter().enumerate() {
            let l = label(inv.verdict);
            let _ = write!(
                self.body,
                "<tr><td>{}</td><td class=\"{}\" data-json=\"{base}/{i}/verdict\">{l}</td><td>{}</td><td data-json=\"{base}/{i}/observed\">{}</td><td class=\"ev\">{}</td></tr>",
                esc(&inv.name),
                l.to_lowercase(),
                esc(&inv.expected),
                esc(&inv.observed),
                esc(&inv.evidence)
            );
        }
        self.body.push_str("</table>");
    }

    /// The per-second timeline, if the run recorded any second.
    pub fn timeline(&mut self, title: &str, t: &Timeline) {
        if t.seconds.is_empty() {
            return;
        }
        let s = &t.seconds;
        self.push("<h2>Timeline</h2>");
        self.chart(
            "timeline",
            json!({
                "title": title,
                "t": s.iter().map(|p| p.t_s).collect::<Vec<_>>(),
                "requests": s.iter().map(|p| p.requests).collect::<Vec<_>>(),
                "errors": s.iter().map(|p| p.errors).collect::<Vec<_>>(),
                "p99": s.iter().map(|p| p.p99_ms).collect::<Vec<_>>(),
                "p99c": s.iter().map(|p| p.p99_corrected_ms).collect::<Vec<_>>(),
                "marks": t.marks,
            }),
        );
    }

    /// Key-value facts: seed, parameters, fleet profile, versions.
    pub fn facts(&mut self, heading: &str, rows: &[(&str, String)]) {
        let _ = write!(self.body, "<h2>{}</h2><dl>", esc(heading));
        for (k, v) in rows.iter().filter(|(_, v)| !v.is_empty()) {
            let _ = write!(self.body, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
        }
        self.body.push_str("</dl>");
    }

    pub fn about(&mut self, about: &About, mut rows: Vec<(&str, String)>) {
        rows.extend([
            ("fleet profile", about.fleet_profile.clone()),
            ("storefront version", about.storefront_version.to_owned()),
            ("generated", about.generated_utc.clone()),
            ("command", about.command.clone()),
        ]);
        self.facts("Run", &rows);
    }

    /// The whole document.
    pub fn finish(mut self) -> Result<String> {
        self.push("<h2>Run JSON</h2><details><summary>the run's full <code>--json</code> document (also embedded in this page as <code>#sf-run</code>)</summary><pre id=\"sf-run-text\"></pre></details>");
        let run = script_json(&self.run)?;
        let charts = script_json(&self.charts)?;
        Ok(format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title}</title><script>{GUARD_JS}</script><style>{PAGE_CSS}</style></head>\n<body>\n{body}\n\
<script type=\"application/json\" id=\"sf-run\">{run}</script>\n\
<script type=\"application/json\" id=\"sf-charts\">{charts}</script>\n\
<script>\n{CHART_JS}\nSFCharts.renderAll(document);\n</script>\n</body></html>\n",
            title = esc(&self.title),
            body = self.body,
        ))
    }
}

/// JSON safe inside `<script>`: `<` never appears raw, so no `</script>`.
fn script_json<T: Serialize + ?Sized>(v: &T) -> Result<String> {
    Ok(serde_json::to_string(v)?.replace('<', "\\u003c"))
}

pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// One JSON-pointer segment (`/` and `~` escaped as RFC 6901 says).
pub fn ptr(segment: &str) -> String {
    esc(&segment.replace('~', "~0").replace('/', "~1"))
}

/// A numeric cell showing the JSON value at `pointer` with `decimals` places.
pub fn num(pointer: &str, v: f64, decimals: usize) -> String {
    format!("<td class=\"n\" data-json=\"{pointer}\">{v:.decimals$}</td>")
}

/// A count cell showing the JSON integer at `pointer`.
pub fn count(pointer: &str, v: u64) -> String {
    format!("<td class=\"n\" data-json=\"{pointer}\">{v}</td>")
}

pub fn label(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::Unknown => "UNKNOWN",
    }
}

/// The percentile distribution as HdrHistogram's plotter draws it: points
/// (1/(1−q), latency ms), five per halving of the distance to 100 %, from
/// the exact histogram. The last point (the maximum) sits at x = count: the
/// 1-in-count request.
pub fn percentile_points(h: &Histogram<u64>) -> Vec<[f64; 2]> {
    if h.is_empty() {
        return Vec::new();
    }
    let n = h.len() as f64;
    let x_max = n.max(2.0);
    let mut out: Vec<[f64; 2]> = Vec::new();
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        let x = if q >= 1.0 {
            x_max
        } else {
            (1.0 / (1.0 - q)).min(x_max)
        };
        let ms = h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0;
        match out.last_mut() {
            Some(last) if (last[0] - x).abs() < 1e-9 => last[1] = last[1].max(ms),
            _ => out.push([x, ms]),
        }
    }
    out
}

/// The percentile chart of one label: corrected and raw together.
pub fn percentile_spec(
    title: &str,
    corrected: Option<&Histogram<u64>>,
    raw: Option<&Histogram<u64>>,
) -> Value {
    let mut series = Vec::new();
    for (name, h) in [("corrected", corrected), ("raw", raw)] {
        if let Some(h) = h.filter(|h| !h.is_empty()) {
            series.push(json!({ "name": name, "points": percentile_points(h) }));
        }
    }
    json!({ "title": title, "series": series })
}

/// Writes a page, creating its directory.
pub fn write(path: &Path, html: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, html).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::summarize;

    fn hist(values_us: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = crate::run::hdr::histogram();
        for v in values_us {
            h.record(v).unwrap();
        }
        h
    }

    #[test]
    fn percentile_points_rise_along_a_log_axis_and_end_at_the_maximum() {
        let h = hist((1..=10_000).map(|i| i * 10));
        let p = percentile_points(&h);
        assert!(p.len() > 20 && p.len() < 200, "{}", p.len());
        assert!(
            p.windows(2)
                .all(|w| w[0][0] < w[1][0] && w[0][1] <= w[1][1]),
            "{p:?}"
        );
        assert!((p[0][0] - 1.0).abs() < 0.01, "{:?}", p[0]);
        let last = p.last().unwrap();
        assert_eq!(last[0], 10_000.0);
        assert_eq!(last[1], summarize(&h).max_ms);
        // Near x = 100 (the 99th percentile) the curve shows the p99.
        let at100 = p.iter().find(|q| q[0] >= 100.0).unwrap();
        assert!(
            (at100[1] - summarize(&h).p99_ms).abs() / summarize(&h).p99_ms < 0.01,
            "{at100:?}"
        );
    }

    #[test]
    fn an_empty_histogram_has_no_points_and_one_value_has_one() {
        assert!(percentile_points(&hist([])).is_empty());
        let h = hist([5_000, 5_000]);
        let p = percentile_points(&h);
        assert_eq!(p.last().unwrap()[1], summarize(&h).max_ms);
        assert!((p.last().unwrap()[1] - 5.0).abs() < 0.005);
    }

    #[test]
    fn json_in_a_script_block_cannot_close_it_and_text_is_escaped() {
        let s = script_json(&json!({"x": "</script><b>"})).unwrap();
        assert!(!s.contains('<'), "{s}");
        assert_eq!(
            serde_json::from_str::<Value>(&s).unwrap()["x"],
            "</script><b>"
        );
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(ptr("shop/t~1"), "shop~1t~01");
    }

    #[test]
    fn a_page_carries_the_policy_the_data_and_the_chart_code_and_nothing_external() {
        let mut p = Page::new("t <1>", json!({"verdict": "pass"}));
        p.header(Verdict::Pass, "ok");
        p.chart(
            "percentile",
            percentile_spec("x", Some(&hist([1_000])), None),
        );
        let html = p.finish().unwrap();
        assert!(html.contains(CSP));
        assert!(html.contains("id=\"sf-run\">{\"verdict\":\"pass\"}</script>"));
        assert!(html.contains("SFCharts.renderAll(document)"));
        assert!(html.contains("<h1>t &lt;1&gt;</h1>"));
        for external in ["http://", "https://", "src=", "href="] {
            assert!(!html.contains(external), "{external} in the page");
        }
    }
}
