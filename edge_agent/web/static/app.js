// axedge status page: polls /api/status and renders it. No framework, no build step, no CDN.
// Device-supplied strings (names, units, JSON) are only ever set as textContent.
"use strict";
(function () {
  const POLL_MS = 1000;
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  let last = null; // {received, t} for the rate
  let filter = "";

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  const fmtInt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
  function fmtValue(v) {
    if (v === null || v === undefined) return "–";
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return a !== 0 && (a >= 1e7 || a < 1e-3) ? v.toExponential(4) : String(Number(v.toPrecision(6)));
  }
  function fmtTime(ms) {
    if (!ms) return "–";
    return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }
  function fmtAge(ms, now) {
    if (!ms) return "–";
    const s = Math.max(0, (now - ms) / 1000);
    return s < 60 ? s.toFixed(1) + " s ago" : s < 3600 ? (s / 60).toFixed(1) + " min ago" : (s / 3600).toFixed(1) + " h ago";
  }
  function fmtUptime(s) {
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return h ? `${h} h ${m} min` : m ? `${m} min ${Math.floor(s % 60)} s` : `${Math.floor(s)} s`;
  }

  function sparkline(points) {
    const w = 120, h = 24;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("width", w);
    svg.setAttribute("height", h);
    svg.setAttribute("class", "spark");
    const pts = points.filter((p) => p[1] !== null);
    svg.setAttribute("data-points", String(pts.length));
    if (pts.length < 2) return svg;
    const t0 = pts[0][0], t1 = pts[pts.length - 1][0];
    let lo = Infinity, hi = -Infinity;
    for (const p of pts) { lo = Math.min(lo, p[1]); hi = Math.max(hi, p[1]); }
    const dt = t1 - t0 || 1, dv = hi - lo || 1;
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", pts.map((p) =>
      `${(((p[0] - t0) / dt) * (w - 2) + 1).toFixed(1)},${(h - 2 - ((p[1] - lo) / dv) * (h - 4)).toFixed(1)}`).join(" "));
    svg.appendChild(line);
    return svg;
  }

  function fill(tbody, rows) {
    const frag = document.createDocumentFragment();
    rows.forEach((r) => frag.appendChild(r));
    tbody.replaceChildren(frag);
  }

  function renderConnectors(list) {
    fill($("connectors").tBodies[0], list.map((c) => {
      const tr = el("tr", { "data-id": c.id, "data-state": c.state });
      tr.appendChild(el("td", {}, c.id));
      tr.appendChild(el("td", {}, "")).appendChild(el("span", { class: "pill " + c.state }, c.state));
      tr.appendChild(el("td", { class: "units" }, Object.entries(c.units).map(([u, s]) => `${u}: ${s}`).join(", ")));
      tr.appendChild(el("td", { class: "num received" }, fmtInt(c.received)));
      const errs = Object.entries(c.errors).map(([k, v]) => `${k}: ${v}`).join(", ");
      tr.appendChild(el("td", { class: "num errors" + (c.errors_total ? " warn" : ""), title: errs }, fmtInt(c.errors_total)));
      tr.appendChild(el("td", { class: "num gaps" }, fmtInt(c.gaps)));
      tr.appendChild(el("td", { class: "num dropped" + (c.dropped ? " warn" : "") }, fmtInt(c.dropped)));
      tr.appendChild(el("td", { class: "num" }, fmtInt(c.quarantined)));
      return tr;
    }));
  }

  function renderSinks(list) {
    fill($("sinks").tBodies[0], list.map((s) => {
      const tr = el("tr", { "data-id": s.id, "data-state": s.state });
      tr.appendChild(el("td", {}, s.id));
      tr.appendChild(el("td", {}, "")).appendChild(el("span", { class: "pill " + s.state }, s.state));
      tr.appendChild(el("td", { class: "num committed" }, fmtInt(s.committed)));
      tr.appendChild(el("td", { class: "num" }, fmtInt(s.files)));
      const pct = (s.buffer.fill * 100).toFixed(1) + " %";
      const td = el("td", { class: "fill", "data-fill": String(s.buffer.fill) });
      const bar = el("div", { class: "bar" });
      const inner = el("div", { class: "bar-inner" + (s.buffer.fill > 0.8 ? " warn" : "") });
      inner.style.width = Math.min(100, s.buffer.fill * 100).toFixed(1) + "%";
      bar.appendChild(inner);
      td.appendChild(bar);
      td.appendChild(el("span", { class: "muted" }, ` ${pct} of ${(s.buffer.max_bytes / 1048576).toFixed(0)} MiB`));
      tr.appendChild(td);
      tr.appendChild(el("td", { class: "num buffer-rows" }, fmtInt(s.buffer.rows)));
      tr.appendChild(el("td", { class: "num" }, fmtInt(s.errors_total)));
      tr.appendChild(el("td", { class: "num" }, fmtInt(s.dropped)));
      return tr;
    }));
  }

  function renderProcessors(list) {
    $("no-processors").hidden = list.length > 0;
    $("processors").hidden = list.length === 0;
    fill($("processors").tBodies[0], list.map((p) => {
      const tr = el("tr", { "data-id": p.id, "data-state": p.state });
      tr.appendChild(el("td", {}, p.id));
      tr.appendChild(el("td", {}, "")).appendChild(el("span", { class: "pill " + (p.state === "running" ? "connected" : "starting") }, p.state));
      tr.appendChild(el("td", { class: "num" }, fmtInt(p.windows_scored)));
      tr.appendChild(el("td", { class: "num" }, fmtInt(p.anomalous_windows)));
      tr.appendChild(el("td", { class: "num" }, fmtInt(p.events)));
      tr.appendChild(el("td", { class: "num" }, p.latency_ms_p50 === null ? "–" : p.latency_ms_p50 + " ms"));
      tr.appendChild(el("td", { class: "muted note" }, p.last_error || ""));
      return tr;
    }));
  }

  function renderEvents(events, nowMs) {
    const tl = $("timeline");
    tl.replaceChildren();
    $("timeline-from").textContent = events.length ? fmtTime(Math.min(...events.map((e) => e.start_ns / 1e6), nowMs - 15 * 60e3)) : "";
    $("no-events").hidden = events.length > 0;
    $("events").hidden = events.length === 0;
    if (events.length) {
      const t0 = Math.min(...events.map((e) => e.start_ns / 1e6), nowMs - 15 * 60e3);
      const span = nowMs - t0 || 1;
      for (const e of events) {
        const s = e.start_ns / 1e6, en = Math.max(e.end_ns / 1e6, s + span / 400);
        const m = el("div", { class: "mark", title: `${e.model}: peak ${Number(e.peak_score).toFixed(3)} at ${fmtTime(e.peak_ns / 1e6)}` });
        m.style.left = (((s - t0) / span) * 100).toFixed(2) + "%";
        m.style.width = Math.max(0.4, ((en - s) / span) * 100).toFixed(2) + "%";
        tl.appendChild(m);
      }
    }
    fill($("events").tBodies[0], events.slice().reverse().map((e) => {
      const tr = el("tr", { class: "event" });
      tr.appendChild(el("td", {}, fmtTime(e.start_ns / 1e6)));
      tr.appendChild(el("td", {}, fmtTime(e.end_ns / 1e6)));
      tr.appendChild(el("td", {}, e.model));
      tr.appendChild(el("td", { class: "num score" }, Number(e.peak_score).toFixed(3)));
      tr.appendChild(el("td", { class: "num" }, Number(e.threshold).toFixed(3)));
      tr.appendChild(el("td", {}, (e.top_signals || []).map((t) => `${t.signal} (${Math.round(t.share * 100)} %)`).join(", ")));
      return tr;
    }));
  }

  function renderSignals(list, total, nowMs) {
    $("signal-count").textContent = total > list.length ? `(${list.length} of ${total})` : `(${total})`;
    fill($("signals").tBodies[0], list.map((s) => {
      const tr = el("tr", { "data-key": s.key, "data-severity": s.severity });
      const name = el("td", { class: "key" });
      name.appendChild(el("span", { class: "asset" }, s.asset + "/"));
      name.appendChild(el("b", {}, s.name));
      tr.appendChild(name);
      const shown = s.value !== null ? fmtValue(s.value) : s.text !== null ? s.text : "–";
      tr.appendChild(el("td", { class: "num value", "data-value": s.value === null ? "" : String(s.value), title: s.text || "" }, shown));
      tr.appendChild(el("td", { class: "unit" }, s.unit || ""));
      tr.appendChild(el("td", {}, "")).appendChild(el("span", { class: "q " + s.severity, title: s.quality === null ? "" : "0x" + s.quality.toString(16).padStart(8, "0") }, s.quality_name));
      tr.appendChild(el("td", { class: "age", title: fmtTime(s.time_ns && s.time_ns / 1e6) }, fmtAge(s.time_ns && s.time_ns / 1e6, nowMs)));
      tr.appendChild(el("td", {}, "")).appendChild(sparkline(s.history));
      return tr;
    }));
  }

  function render(st) {
    const a = st.agent;
    $("agent-id").textContent = a.id;
    $("version").textContent = a.version;
    const pill = $("agent-status");
    pill.textContent = a.status;
    pill.className = "pill " + (a.status === "ok" ? "connected" : "failing");
    $("uptime").textContent = fmtUptime(a.uptime_secs);
    if (last && a.uptime_secs > last.t) $("rate").textContent = fmtInt(Math.round((a.received - last.received) / (a.uptime_secs - last.t)));
    last = { received: a.received, t: a.uptime_secs };
    $("received").textContent = fmtInt(a.received);
    $("committed").textContent = fmtInt(a.committed);
    $("dropped").textContent = fmtInt(a.dropped);
    $("errors").textContent = fmtInt(a.errors);
    renderConnectors(st.connectors);
    renderSinks(st.sinks);
    renderProcessors(st.processors);
    renderEvents(st.events, a.now_ms);
    renderSignals(st.signals, st.signals_total, a.now_ms);
    document.body.setAttribute("data-updated", String(a.now_ms));
  }

  async function poll() {
    try {
      const r = await fetch("/api/status?q=" + encodeURIComponent(filter), { credentials: "same-origin", cache: "no-store" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      render(await r.json());
      $("stale").hidden = true;
    } catch (err) {
      $("stale").hidden = false;
      $("stale").textContent = "agent not answering (" + err.message + ") – showing the last data received";
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  $("filter").addEventListener("input", (ev) => { filter = ev.target.value.trim(); });
  poll();
})();
