// storefront lab page: plain JavaScript, nothing fetched but this server's
// own API. The fleet arrives over one event stream (`fleet` once per look,
// `run` with a run's new stderr lines); actions are POSTs carrying the
// token header. Charts are the reports' own (SFCharts, charts.js).
"use strict";
const TOKEN = document.querySelector('meta[name="sf-token"]').content;
const EXPERIMENTS = document.querySelector('meta[name="sf-experiments"]').content.split(" ");
const $ = (s) => document.querySelector(s);
const el = (tag, attrs, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else if (v !== null && v !== undefined) e.setAttribute(k, v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k.nodeType ? k : String(k));
  return e;
};
// replaceChildren with nested arrays and nulls flattened away.
const put = (node, ...kids) => node.replaceChildren(...kids.flat(3).filter((k) => k !== null && k !== undefined));
const fmt = (v, d) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));

async function api(method, path, body) {
  const r = await fetch(path, {
    method, credentials: "same-origin",
    headers: Object.assign({ "X-Dashboard-Token": TOKEN }, body ? { "Content-Type": "application/json" } : {}),
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  let v; try { v = JSON.parse(text); } catch { v = text; }
  if (!r.ok) throw new Error((v && v.detail) || text || r.status);
  return v;
}

function say(target, text, err) {
  const t = typeof target === "string" ? $(target) : target;
  t.replaceChildren(el("p", { class: err ? "msg err" : "msg" }, text));
}

// ---- tabs
for (const b of document.querySelectorAll("#tabs button")) {
  b.addEventListener("click", () => {
    document.querySelectorAll("#tabs button").forEach((x) => x.classList.toggle("on", x === b));
    document.querySelectorAll(".view").forEach((v) => v.classList.toggle("on", v.id === "view-" + b.dataset.view));
    drawCharts();
  });
}

// ---- live series: the BFF's traffic per second
const series = new Map(); // second -> {requests, errors, p99, faults}
let lastFleet = null;

function record(fleet) {
  const sec = Math.floor(fleet.t_ms / 1000);
  const edge = fleet.components.filter((c) => c.service === "bff").map((c) => (fleet.instances[c.name] || {}).rates).filter(Boolean);
  const s = series.get(sec) || { requests: 0, errors: 0, p99: null, faults: new Set() };
  for (const r of edge) {
    s.requests += r.requests; s.errors += r.errors;
    if (r.p99_ms !== null) s.p99 = Math.max(s.p99 || 0, r.p99_ms);
  }
  for (const f of (fleet.chaos && fleet.chaos.faults) || []) s.faults.add("fault " + f.target);
  for (const c of fleet.components) if (c.state === "dead" || c.state === "paused") s.faults.add(c.name + " " + c.state);
  series.set(sec, s);
  for (const k of series.keys()) if (k < sec - 600) series.delete(k);
}

function spec(title, from, to) {
  const t = [], requests = [], errors = [], p99 = [], marks = [];
  let open = null;
  for (let sec = from; sec <= to; sec++) {
    const s = series.get(sec) || { requests: 0, errors: 0, p99: null, faults: new Set() };
    t.push(sec - from); requests.push(s.requests); errors.push(s.errors); p99.push(s.p99);
    const label = [...s.faults].join(", ");
    if (label && (!open || open.label !== label)) { if (open) marks.push(open); open = { t_s: sec - from, until_s: sec - from + 1, label }; }
    else if (label) open.until_s = sec - from + 1;
    else if (open) { marks.push(open); open = null; }
  }
  if (open) marks.push(open);
  return { title, t, requests, errors, p99, marks };
}

let loadWindow = null; // [first second, last second] of the load run
function drawCharts() {
  if (!lastFleet) return;
  const now = Math.floor(lastFleet.t_ms / 1000);
  const chaos = $("#chaos-chart");
  if (chaos.offsetParent) chaos.dataset.drawnPixels = SFCharts.timeline(chaos, spec("BFF: requests, errors, p99 per second (last 60 s)", now - 59, now));
  const load = $("#load-chart");
  if (load.offsetParent && loadWindow) {
    const [a, b] = loadWindow;
    load.dataset.drawnPixels = SFCharts.timeline(load, spec("load through the BFF, per second", a, b || now));
    load.dataset.seconds = String((b || now) - a + 1);
  }
}

// ---- fleet view
let patterns = [];
function patternList(service) {
  const rows = patterns.filter((p) => p.services.includes(service));
  if (!rows.length) return null;
  const d = el("details", { "data-service": service }, el("summary", {}, `${service}: ${rows.length} patterns`),
    el("ul", {}, rows.map((p) => el("li", {}, p.pattern, " ",
      p.files.map((f) => (f.includes("*") || f.includes("{")) ? el("code", {}, f) : el("a", { href: "/code/" + f, target: "_blank", rel: "noopener" }, el("code", {}, f))).flatMap((x, i) => (i ? [" ", x] : [x]))))));
  d.open = !!openDetails[service];
  d.addEventListener("toggle", () => { openDetails[service] = d.open; });
  return d;
}
const openDetails = {};

function card(c, fleet) {
  const inst = fleet.instances[c.name] || {};
  const r = inst.rates;
  const br = (fleet.breakers || []).find((b) => b.instance === c.name);
  const figs = [];
  if (c.kind === "service") {
    figs.push(r ? `${fmt(r.rps, 1)} req/s · ${fmt(r.err_rps, 1)} 5xx/s · p50 ${fmt(r.p50_ms, 0)} ms · p99 ${fmt(r.p99_ms, 0)} ms` : inst.scraped === false ? "no /metrics" : "measuring…");
    if (inst.lease_ttl_s !== null && inst.lease_ttl_s !== undefined) figs.push(`lease TTL ${fmt(inst.lease_ttl_s, 0)} s · rotations ${fmt(inst.rotations || 0, 0)}`);
    if (inst.outbox_depth !== null && inst.outbox_depth !== undefined) figs.push(`outbox backlog ${fmt(inst.outbox_depth, 0)} (oldest ${fmt(inst.outbox_oldest_s, 1)} s)`);
  } else {
    figs.push(c.url);
    if (c.name === "rabbitmq") for (const [q, d] of Object.entries(fleet.queues || {})) figs.push(`queue ${q}: ${fmt(d.ready, 0)} ready · ${fmt(d.dead_lettered, 0)} dead-lettered`);
  }
  return el("div", { class: "card", "data-component": c.name, "data-state": c.state, "data-breaker": br ? br.state : null },
    el("span", { class: "name" }, c.name),
    br ? el("span", { class: "breaker " + br.state, title: "the BFF's breaker for this instance" }, "breaker " + br.state.replace("_", "-")) : null,
    el("span", { class: "state" }, c.state),
    figs.map((f) => el("div", { class: "figs" }, f)));
}

function renderFleet(fleet) {
  const comps = fleet.components;
  const services = comps.filter((c) => c.kind === "service");
  const ready = comps.filter((c) => c.state === "ready").length;
  $("#fleet-line").textContent = `profile ${fleet.profile} · ${ready}/${comps.length} ready · ${new Date(fleet.t_ms).toLocaleTimeString()}`;
  document.documentElement.dataset.fleetReady = String(ready === comps.length);
  const edge = $("#col-edge"), svc = $("#col-services"), infra = $("#col-infra");
  put(edge, el("h3", {}, "edge"), services.filter((c) => c.service === "bff").map((c) => card(c, fleet)), patternList("bff"));
  const groups = new Map();
  for (const c of services.filter((c) => c.service !== "bff")) { if (!groups.has(c.service)) groups.set(c.service, []); groups.get(c.service).push(c); }
  put(svc, el("h3", {}, "services"), [...groups].map(([name, cs]) =>
    el("div", { class: "group" }, cs.map((c) => card(c, fleet)), patternList(name))));
  put(infra, el("h3", {}, "infrastructure"), comps.filter((c) => c.kind === "infra").map((c) => card(c, fleet)));

  // Controls (chaos view).
  put($("#controls"), comps.map((c) => el("div", { class: "card", "data-component": c.name, "data-state": c.state },
    el("span", { class: "name" }, c.name),
    ((br) => br ? el("span", { class: "breaker " + br.state }, "breaker " + br.state.replace("_", "-")) : null)((fleet.breakers || []).find((b) => b.instance === c.name)),
    el("span", { class: "ctl" }, ["kill", "restart", "pause", "resume"].map((a) =>
      el("button", { type: "button", "data-action": a, "data-name": c.name, onclick: () => act(c.name, a) }, a))),
    el("span", { class: "state" }, c.state))));
  const faults = (fleet.chaos && fleet.chaos.faults) || [];
  put($("#chaos-active"), faults.length
    ? el("table", {}, el("tr", {}, ["target", "latency", "error rate", "abort rate", "expires in"].map((h) => el("th", {}, h))),
      faults.map((f) => el("tr", {}, el("td", {}, f.target), el("td", {}, `${f.latency_ms} ms + 0..${f.jitter_ms}`), el("td", {}, `${f.error_rate} → ${f.error_status}`), el("td", {}, f.abort_rate), el("td", {}, `${fmt(f.expires_in_secs, 0)} s`))))
    : el("p", { class: "msg" }, fleet.bff_admin ? "no active faults" : "the BFF's admin API is off in this profile"));
}

async function act(name, action) {
  say("#chaos-active", `${action} ${name}…`);
  try { const r = await api("POST", "/api/control", { name, action }); say("#chaos-active", `${name}: ${action}: ${r.outcome}`); }
  catch (e) { say("#chaos-active", `${name}: ${action} failed: ${e.message}`, true); }
}

// ---- runs (experiments and loads)
let runLines = [], runId = null;
function renderRun(run) {
  if (run.id !== runId) { runId = run.id; runLines = []; }
  runLines = runLines.slice(0, run.from).concat(run.lines);
  const target = run.kind === "load" ? $("#load-panel") : $("#run-panel");
  const other = run.kind === "load" ? $("#run-panel") : $("#load-panel");
  if (other.dataset.runId === String(run.id)) other.replaceChildren();
  if (run.kind === "load" && lastFleet) {
    const now = Math.floor(lastFleet.t_ms / 1000);
    if (!loadWindow || loadWindow.id !== run.id) { loadWindow = [now - Math.ceil(run.took_ms / 1000), null]; loadWindow.id = run.id; }
    if (!run.running && loadWindow[1] === null) loadWindow[1] = now;
  }
  const status = run.running ? `running ${fmt(run.took_ms / 1000, 1)} s` : `exit ${run.exit_code} after ${fmt(run.took_ms / 1000, 1)} s`;
  const done = !run.running && target.dataset.done === String(run.id);
  target.dataset.runId = String(run.id);
  if (done) { target.querySelector("pre.log").textContent = runLines.join("\n"); return; }
  const kids = [
    el("p", {}, el("b", {}, `run ${run.id}: ${run.kind}`), " · ", el("span", { class: "run-status" }, status), " · ", el("code", {}, "storefront " + run.argv.join(" "))),
    el("pre", { class: "log" }, runLines.join("\n") || "(no progress lines yet)"),
  ];
  target.replaceChildren(...kids);
  if (!run.running) {
    target.dataset.done = String(run.id);
    target.dataset.exitCode = String(run.exit_code);
    const links = el("p", {}, el("a", { href: "/api/run/json", target: "_blank" }, "the run's --json"), " · ", run.has_report ? el("a", { href: "/api/run/report", target: "_blank" }, "the report alone") : "no report was written");
    target.append(links);
    if (run.has_report) target.append(el("iframe", { class: "report", src: "/api/run/report?run=" + run.id, title: "the run's report" }));
    api("GET", "/api/run/json").then((j) => { target.dataset.verdict = j.verdict; target.dataset.json = JSON.stringify(j); }).catch(() => { target.dataset.verdict = "none"; });
  }
}

$("#exp-kind").replaceChildren(...EXPERIMENTS.map((x) => el("option", { value: x }, x)));
$("#exp-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const params = {};
  const n = $("#exp-n").value, rounds = $("#exp-rounds").value, seed = $("#exp-seed").value;
  if (n) params.n = Number(n);
  if (rounds) params.rounds = Number(rounds);
  if (seed) params.seed = Number(seed);
  if ($("#exp-control").checked) params.control = true;
  for (const kv of $("#exp-extra").value.split(/\s+/).filter(Boolean)) {
    const [k, v] = kv.split("=");
    params[k] = v === undefined ? true : v;
  }
  try { await api("POST", "/api/run", { kind: $("#exp-kind").value, params }); say("#run-panel", "started…"); }
  catch (e) { say("#run-panel", e.message, true); }
});
$("#exp-stop").addEventListener("click", () => api("POST", "/api/run/stop").catch((e) => say("#run-panel", e.message, true)));
$("#load-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const params = { profile: $("#load-profile").value, duration: $("#load-duration").value };
  if ($("#load-users").value) params.users = Number($("#load-users").value);
  if ($("#load-rate").value) params.rate = Number($("#load-rate").value);
  try { await api("POST", "/api/run", { kind: "load", params }); say("#load-panel", "started…"); }
  catch (e) { say("#load-panel", e.message, true); }
});

// ---- chaos
$("#chaos-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    await api("POST", "/api/chaos", {
      target: $("#chaos-target").value, latency_ms: Number($("#chaos-latency").value),
      error_rate: Number($("#chaos-error").value), abort_rate: Number($("#chaos-abort").value), ttl_secs: Number($("#chaos-ttl").value),
    });
  } catch (e) { say("#chaos-active", e.message, true); }
});
$("#chaos-clear").addEventListener("click", () => api("POST", "/api/chaos/clear").catch((e) => say("#chaos-active", e.message, true)));

// ---- an order's story
async function loadOrders() {
  try {
    const orders = await api("GET", "/api/orders");
    $("#story-recent").replaceChildren(el("option", { value: "" }, orders.length ? "recent orders…" : "no orders yet"),
      ...orders.map((o) => el("option", { value: o.order_id }, `${o.created_at.slice(11, 19)} ${o.state} ${o.order_id.slice(0, 8)}`)));
  } catch (e) { say("#story", e.message, true); }
}
$("#story-recent").addEventListener("focus", loadOrders);
$("#story-recent").addEventListener("change", () => { $("#story-id").value = $("#story-recent").value; });
$("#story-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const s = await api("GET", "/api/orders/" + encodeURIComponent($("#story-id").value.trim()));
    const t0 = s.steps.length ? Date.parse(s.steps[0].at) : 0;
    const tr = s.trace, rq = tr && tr.request;
    const trace = tr
      ? el("p", { class: "trace", "data-trace-id": tr.trace_id }, "trace ", el("code", {}, tr.trace_id),
        rq ? ` · POST /checkout → ${rq.status} in ${rq.latency} · request ${rq.request_id} (checkout's log)` : " · its request line is not in checkout's log")
      : el("p", { class: "msg trace" }, "no trace context was stored with this order");
    $("#story").replaceChildren(trace, s.steps.length ? el("table", { class: "story" },
      el("tr", {}, ["+ms", "service", "what", "detail"].map((h) => el("th", {}, h))),
      s.steps.map((x) => el("tr", {}, el("td", { class: "n" }, String(Date.parse(x.at) - t0)), el("td", {}, x.service), el("td", {}, x.what), el("td", {}, x.detail))))
      : el("p", { class: "msg" }, "no rows for this order"));
  } catch (e) { say("#story", e.message, true); }
});

// ---- metrics history: the fleet's Prometheus, asked through this server
const HIST_COLORS = ["#2471a3", "#c0392b", "#1e8449", "#6c3483", "#d68910", "#117a65", "#7f8c8d", "#a04000"];
const histColor = (service) => {
  const order = ["bff", "catalog", "claims", "identity", "payments", "checkout"];
  const i = order.indexOf(service);
  return HIST_COLORS[(i < 0 ? order.length + service.length : i) % HIST_COLORS.length];
};
// One line per service over [start, end] (unix s); data-series and
// data-points say what was drawn, data-drawn-pixels how many pixels it changed.
function drawLines(canvas, lines, start, end) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 420, h = canvas.clientHeight || 230;
  canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.font = "12px system-ui, sans-serif";
  const P = { x: 48, y: 26, w: w - 60, h: h - 50 };
  let max = 0;
  for (const l of lines) for (const [, v] of l.points) max = Math.max(max, v);
  const top = max > 0 ? max * 1.1 : 1;
  const X = (t) => P.x + ((t - start) / Math.max(1, end - start)) * P.w;
  const Y = (v) => P.y + P.h - (v / top) * P.h;
  ctx.strokeStyle = "#6b7280"; ctx.lineWidth = 1;
  ctx.strokeRect(P.x + 0.5, P.y + 0.5, P.w, P.h);
  ctx.fillStyle = "#374151"; ctx.textBaseline = "top"; ctx.textAlign = "left";
  ctx.fillText(canvas.dataset.title, P.x, 6);
  ctx.fillStyle = "#6b7280"; ctx.textAlign = "right"; ctx.textBaseline = "middle";
  for (const f of [0, 0.5, 1]) ctx.fillText(fmt(top * f, top * f >= 10 ? 0 : 2), P.x - 4, Y(top * f));
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  const mins = (end - start) / 60;
  for (const f of [0, 0.5, 1]) ctx.fillText(f === 1 ? "now" : `-${fmt(mins * (1 - f), 0)} min`, P.x + f * P.w, P.y + P.h + 4);
  let x = P.x + P.w;
  ctx.textAlign = "right";
  for (const l of lines.slice().reverse()) {
    ctx.fillStyle = "#374151"; ctx.textBaseline = "middle"; ctx.fillText(l.service, x, 12);
    x -= ctx.measureText(l.service).width + 4;
    ctx.fillStyle = histColor(l.service); ctx.fillRect(x - 10, 7, 10, 10);
    x -= 16;
  }
  if (!lines.length) { ctx.fillStyle = "#6b7280"; ctx.textAlign = "center"; ctx.textBaseline = "middle"; ctx.fillText("none in this window", P.x + P.w / 2, P.y + P.h / 2); }
  const before = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let points = 0;
  for (const l of lines) {
    ctx.strokeStyle = histColor(l.service); ctx.lineWidth = 2; ctx.beginPath();
    l.points.forEach(([t, v], i) => (i ? ctx.lineTo(X(t), Y(v)) : ctx.moveTo(X(t), Y(v))));
    ctx.stroke();
    if (l.points.length === 1) { ctx.fillStyle = histColor(l.service); ctx.fillRect(X(l.points[0][0]) - 2, Y(l.points[0][1]) - 2, 4, 4); }
    points += l.points.length;
  }
  const after = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let changed = 0;
  for (let i = 0; i < after.length; i += 4) if (after[i] !== before[i] || after[i + 1] !== before[i + 1] || after[i + 2] !== before[i + 2] || after[i + 3] !== before[i + 3]) changed++;
  canvas.dataset.series = String(lines.length);
  canvas.dataset.points = String(points);
  canvas.dataset.drawnPixels = String(changed);
}
let histBusy = false;
async function loadHistory() {
  if (histBusy || !$("#view-fleet").classList.contains("on")) return;
  histBusy = true;
  try {
    const h = await api("GET", "/api/history?minutes=" + encodeURIComponent($("#history-minutes").value));
    const box = $("#history");
    box.dataset.prometheus = h.prometheus || "";
    if (!h.prometheus) {
      box.hidden = true;
      $("#history-source").textContent = "no Prometheus in this fleet";
      say("#history-note", h.note);
      return;
    }
    box.hidden = false;
    put($("#history-source"), "per service, from Prometheus at ", el("code", {}, h.prometheus),
      ` (${h.targets_up}/${h.targets} targets up; asked by this server, one point per ${h.step_s} s)`);
    $("#history-note").replaceChildren();
    for (const [name, chart] of Object.entries(h.charts)) {
      const c = $("#history-" + name);
      if (c) { c.title = chart.promql; drawLines(c, chart.lines, h.start, h.end); }
    }
    box.dataset.loaded = String(Number(box.dataset.loaded || 0) + 1);
  } catch (e) { say("#history-note", "history: " + e.message, true); }
  finally { histBusy = false; }
}
$("#history-minutes").addEventListener("change", loadHistory);
$("#history-refresh").addEventListener("click", loadHistory);
document.querySelector('#tabs button[data-view="fleet"]').addEventListener("click", loadHistory);
setInterval(loadHistory, 5000);
loadHistory();

// ---- the stream
api("GET", "/api/patterns").then((p) => {
  patterns = p;
  // The rest of the table: what is not a fleet service (kit, the CLI, ...).
  const fleetServices = new Set(["bff", "catalog", "claims", "identity", "payments", "checkout"]);
  const others = [...new Set(p.flatMap((x) => x.services))].filter((s) => !fleetServices.has(s));
  put($("#patterns"), others.map((s) => { const d = patternList(s); if (d) d.open = true; return d; }));
}).catch(() => {});
loadOrders();
const events = new EventSource("/api/events");
events.addEventListener("fleet", (m) => {
  const fleet = JSON.parse(m.data);
  if (!fleet.up) { $("#fleet-line").textContent = fleet.why; return; }
  lastFleet = fleet;
  record(fleet);
  renderFleet(fleet);
  drawCharts();
  document.documentElement.dataset.ticks = String(Number(document.documentElement.dataset.ticks || 0) + 1);
});
events.addEventListener("run", (m) => renderRun(JSON.parse(m.data)));
events.addEventListener("error", () => { $("#fleet-line").textContent = "disconnected: is `storefront dashboard` still running?"; });
