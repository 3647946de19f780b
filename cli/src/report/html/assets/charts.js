// storefront charts: HDR percentile distributions and per-second timelines,
// drawn on <canvas> with no library and nothing fetched. One module, embedded
// whole in every report page (and in the lab page): `SFCharts.renderAll()`
// reads the chart specs from <script type="application/json" id="sf-charts">.
// After drawing, each canvas carries data-drawn-pixels: how many pixels its
// data (not its axes) changed, so a test can tell a drawn chart from a blank one.
"use strict";
const SFCharts = (() => {
  const C = {
    corrected: "#c0392b", raw: "#2471a3", requests: "#5d8fc9", errors: "#c0392b",
    p99: "#6c3483", p99c: "#d68910", grid: "#e5e7eb", axis: "#6b7280", text: "#374151",
    mark: "rgba(214,137,16,0.18)",
  };
  const PAD = { l: 60, r: 64, t: 30, b: 42 };

  function setup(canvas) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 720, h = canvas.clientHeight || 280;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.font = "12px system-ui, sans-serif";
    ctx.lineJoin = "round";
    const plot = { x: PAD.l, y: PAD.t, w: w - PAD.l - PAD.r, h: h - PAD.t - PAD.b };
    return { canvas, ctx, w, h, plot };
  }

  function niceStep(range, n) {
    const raw = range / n, p = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * p;
  }

  function linTicks(max, n) {
    if (!(max > 0)) max = 1;
    const s = niceStep(max, n), top = Math.ceil(max / s - 1e-9) * s, ticks = [];
    for (let i = 0; i * s <= top + s / 2; i++) ticks.push(i * s);
    return { top, ticks };
  }

  function fmt(v) {
    const a = Math.abs(v);
    if (a === 0) return "0";
    if (a >= 10000) return (v / 1000).toFixed(0) + "k";
    if (a >= 1000) return (v / 1000).toFixed(1).replace(/\.0$/, "") + "k";
    if (a >= 10) return v.toFixed(0);
    if (a >= 1) return v.toFixed(1).replace(/\.0$/, "");
    return String(Number(v.toPrecision(2)));
  }

  function text(ctx, s, x, y, align, base, color) {
    ctx.fillStyle = color || C.text;
    ctx.textAlign = align;
    ctx.textBaseline = base;
    ctx.fillText(s, x, y);
  }

  function frame(g, title) {
    const { ctx, plot } = g;
    ctx.strokeStyle = C.axis;
    ctx.lineWidth = 1;
    ctx.strokeRect(plot.x + 0.5, plot.y + 0.5, plot.w, plot.h);
    if (title) text(ctx, title, plot.x, 6, "left", "top", C.text);
  }

  function legend(g, items) {
    const { ctx, plot } = g;
    let x = plot.x + plot.w;
    for (const it of items.slice().reverse()) {
      const wTxt = ctx.measureText(it.name).width;
      x -= wTxt;
      text(ctx, it.name, x, 12, "left", "middle", C.text);
      x -= 16;
      ctx.fillStyle = it.color;
      ctx.fillRect(x, 7, 11, 11);
      x -= 14;
    }
  }

  function yAxis(g, ticks, top, side, unit) {
    const { ctx, plot } = g;
    for (const v of ticks) {
      const y = plot.y + plot.h - (v / top) * plot.h;
      if (side === "left") {
        ctx.strokeStyle = C.grid;
        ctx.beginPath(); ctx.moveTo(plot.x, Math.round(y) + 0.5); ctx.lineTo(plot.x + plot.w, Math.round(y) + 0.5); ctx.stroke();
        text(ctx, fmt(v), plot.x - 6, y, "right", "middle", C.axis);
      } else {
        text(ctx, fmt(v), plot.x + plot.w + 6, y, "left", "middle", C.axis);
      }
    }
    ctx.save();
    const x = side === "left" ? 14 : g.w - 10;
    ctx.translate(x, plot.y + plot.h / 2);
    ctx.rotate(-Math.PI / 2);
    text(ctx, unit, 0, 0, "center", "middle", C.axis);
    ctx.restore();
  }

  // Runs `draw` and counts the device pixels it changed.
  function counted(g, draw) {
    const { canvas, ctx } = g;
    const before = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    draw();
    const after = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0;
    for (let i = 0; i < after.length; i += 4) {
      if (after[i] !== before[i] || after[i + 1] !== before[i + 1] || after[i + 2] !== before[i + 2] || after[i + 3] !== before[i + 3]) n++;
    }
    return n;
  }

  function line(ctx, pts, color, width) {
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.beginPath();
    pts.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.stroke();
    if (pts.length === 1) { ctx.fillStyle = color; ctx.fillRect(pts[0][0] - 2, pts[0][1] - 2, 4, 4); }
  }

  // Latency against 1/(1-q) on a log axis, as HdrHistogram's plotter draws it.
  // spec: {title, series: [{name, points: [[x, ms], ...]}]}
  function percentile(canvas, spec) {
    const g = setup(canvas), { ctx, plot } = g;
    const series = spec.series.filter((s) => s.points.length);
    let xmax = 10, ymax = 0;
    for (const s of series) for (const [x, y] of s.points) { xmax = Math.max(xmax, x); ymax = Math.max(ymax, y); }
    const decades = Math.max(1, Math.ceil(Math.log10(xmax) - 1e-9));
    const { top, ticks } = linTicks(ymax * 1.05, 5);
    const X = (x) => plot.x + (Math.log10(Math.max(1, x)) / decades) * plot.w;
    const Y = (y) => plot.y + plot.h - (y / top) * plot.h;
    yAxis(g, ticks, top, "left", "latency (ms)");
    for (let k = 0; k <= decades; k++) {
      const x = Math.round(X(Math.pow(10, k))) + 0.5;
      ctx.strokeStyle = C.grid;
      ctx.beginPath(); ctx.moveTo(x, plot.y); ctx.lineTo(x, plot.y + plot.h); ctx.stroke();
      const pct = 100 - 100 / Math.pow(10, k);
      text(ctx, pct.toFixed(Math.max(0, k - 2)) + "%", x, plot.y + plot.h + 6, "center", "top", C.axis);
    }
    text(ctx, "percentile (log scale of 1/(1−q))", plot.x + plot.w / 2, g.h - 4, "center", "bottom", C.axis);
    frame(g, spec.title);
    legend(g, series.map((s) => ({ name: s.name, color: C[s.name] || C.raw })));
    // The first series (corrected) wide underneath, the next (raw) narrow on
    // top: where the two coincide, both stay visible.
    return counted(g, () => {
      series.forEach((s, i) => line(ctx, s.points.map(([x, y]) => [X(x), Y(y)]), C[s.name] || C.raw, i === 0 && series.length > 1 ? 4 : 2));
    });
  }

  // Per second: requests (bars), errors (red bars), p99 (line, right axis).
  // spec: {title, t: [s], requests: [n], errors: [n], p99: [ms|null], p99c: [ms|null],
  //        marks: [{t_s, until_s, label}]}
  function timeline(canvas, spec) {
    const g = setup(canvas), { ctx, plot } = g;
    const n = spec.t.length, tmax = n ? spec.t[n - 1] + 1 : 1, t0 = n ? spec.t[0] : 0;
    const left = linTicks(Math.max(1, ...spec.requests), 5);
    const lat = [...spec.p99, ...(spec.p99c || [])].filter((v) => v !== null);
    const right = linTicks(Math.max(0.001, ...lat) * 1.05, 5);
    const span = Math.max(1, tmax - t0);
    const X = (t) => plot.x + ((t - t0) / span) * plot.w;
    const YL = (v) => plot.y + plot.h - (v / left.top) * plot.h;
    const YR = (v) => plot.y + plot.h - (v / right.top) * plot.h;
    yAxis(g, left.ticks, left.top, "left", "requests / s");
    yAxis(g, right.ticks, right.top, "right", "p99 (ms)");
    const step = niceStep(span, 8) >= 1 ? niceStep(span, 8) : 1;
    for (let t = Math.ceil(t0 / step) * step; t <= tmax; t += step) {
      text(ctx, fmt(t) + "s", X(t), plot.y + plot.h + 6, "center", "top", C.axis);
    }
    text(ctx, "seconds into the run", plot.x + plot.w / 2, g.h - 4, "center", "bottom", C.axis);
    frame(g, spec.title);
    const items = [{ name: "requests", color: C.requests }, { name: "errors", color: C.errors }, { name: "p99", color: C.p99 }];
    if ((spec.p99c || []).some((v) => v !== null)) items.push({ name: "p99 corrected", color: C.p99c });
    if ((spec.marks || []).length) items.push({ name: "fault", color: C.mark });
    legend(g, items);
    return counted(g, () => {
      for (const m of spec.marks || []) {
        const x0 = X(m.t_s), x1 = X(m.until_s === null || m.until_s === undefined ? m.t_s + 0.1 : m.until_s);
        ctx.fillStyle = C.mark;
        ctx.fillRect(x0, plot.y, Math.max(2, x1 - x0), plot.h);
        text(ctx, m.label, x0 + 3, plot.y + 4, "left", "top", C.p99c);
      }
      const bw = Math.max(1, (plot.w / span) * 0.8);
      spec.t.forEach((t, i) => {
        const x = X(t) + (plot.w / span) * 0.1;
        ctx.fillStyle = C.requests;
        ctx.fillRect(x, YL(spec.requests[i]), bw, plot.y + plot.h - YL(spec.requests[i]));
        if (spec.errors[i] > 0) {
          ctx.fillStyle = C.errors;
          ctx.fillRect(x, YL(spec.errors[i]), bw, plot.y + plot.h - YL(spec.errors[i]));
        }
      });
      // p99 as steps: each second's value spans its second.
      const pts = (vals) => spec.t.map((t, i) => [t, vals[i]]).filter(([, v]) => v !== null)
        .flatMap(([t, v]) => [[X(t), YR(v)], [X(t + 1), YR(v)]]);
      line(ctx, pts(spec.p99), C.p99, 2);
      if (spec.p99c) line(ctx, pts(spec.p99c), C.p99c, 2);
    });
  }

  const KINDS = { percentile, timeline };

  // Draws every chart of the page; records per-canvas drawn pixels, and on
  // <html>: charts drawn and any chart error.
  function renderAll(doc) {
    doc = doc || document;
    const root = doc.documentElement;
    const specs = JSON.parse(doc.getElementById("sf-charts").textContent);
    let drawn = 0;
    for (const spec of specs) {
      const canvas = doc.getElementById(spec.id);
      try {
        const px = KINDS[spec.kind](canvas, spec);
        canvas.dataset.drawnPixels = String(px);
        if (px > 0) drawn++;
      } catch (e) {
        canvas.dataset.error = String(e);
        root.dataset.chartErrors = (root.dataset.chartErrors || "") + spec.id + ": " + e + "; ";
      }
    }
    root.dataset.chartsDrawn = String(drawn);
    root.dataset.charts = String(specs.length);
    const run = doc.getElementById("sf-run"), pre = doc.getElementById("sf-run-text");
    if (run && pre) pre.textContent = JSON.stringify(JSON.parse(run.textContent), null, 2);
    root.dataset.resourceRequests = String(performance.getEntriesByType("resource").length);
  }

  return { percentile, timeline, renderAll, colors: C };
})();
