// sipguard operator console: the live view, the upstreams table, the copy button.
// Data goes into the page with textContent and createElement only (never innerHTML), and
// every request stays on this origin (Content-Security-Policy: default-src 'self').
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const POLL_MS = 2000;
  const COLORS = ["#2b6cb0", "#c53030", "#2f855a", "#b7791f", "#6b46c1", "#2c7a7b", "#97266d", "#4a5568"];

  function el(name, attrs, ...children) {
    const node = document.createElement(name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  function fmt(value) {
    if (typeof value !== "number" || !isFinite(value)) return String(value);
    return Number.isInteger(value) ? value.toLocaleString("en-US")
      : value.toLocaleString("en-US", { maximumFractionDigits: 2 });
  }

  function replace(id, ...nodes) {
    const box = document.getElementById(id);
    if (box) box.replaceChildren(...nodes);
  }

  function pairs(rows, empty) {
    if (!rows.length) return el("p", { class: "muted" }, empty || "none yet");
    const table = el("table", { class: "data" });
    for (const [k, v] of rows) table.append(el("tr", {}, el("th", {}, k || "(none)"), el("td", {}, fmt(v))));
    return table;
  }

  function sorted(obj) {
    return Object.entries(obj || {}).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]);
  }

  // A line per key over time, as SVG (no library: a few polylines and labels).
  function chart(id, series, key) {
    const box = document.getElementById(id);
    if (!box) return;
    const W = 560, H = 160, L = 40, B = 18;
    const keys = [...new Set(series.flatMap((s) => Object.keys(s[key] || {})))].sort();
    const max = Math.max(1, ...series.flatMap((s) => Object.values(s[key] || {})));
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("class", "plot");
    const line = (x1, y1, x2, y2, cls) => {
      const l = document.createElementNS(SVG, "line");
      for (const [a, v] of Object.entries({ x1, y1, x2, y2, class: cls })) l.setAttribute(a, v);
      svg.append(l);
    };
    const text = (x, y, s, cls) => {
      const t = document.createElementNS(SVG, "text");
      t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("class", cls || "axis");
      t.textContent = s;
      svg.append(t);
    };
    line(L, H - B, W, H - B, "axis"); line(L, 0, L, H - B, "axis");
    text(2, 10, fmt(max) + "/s"); text(2, H - B, "0");
    const n = Math.max(series.length - 1, 1);
    keys.forEach((k, i) => {
      const pts = series.map((s, j) => {
        const x = L + (W - L) * (j / n);
        const y = (H - B) - (H - B - 4) * ((s[key] || {})[k] || 0) / max;
        return `${x.toFixed(1)},${y.toFixed(1)}`;
      });
      const p = document.createElementNS(SVG, "polyline");
      p.setAttribute("points", pts.join(" "));
      p.setAttribute("fill", "none");
      p.setAttribute("stroke", COLORS[i % COLORS.length]);
      p.setAttribute("stroke-width", "2");
      svg.append(p);
    });
    if (series.length) {
      const span = Math.round(series[series.length - 1].t - series[0].t);
      text(L, H - 2, `last ${span} s`);
    }
    const legend = el("div", { class: "legend" });
    keys.forEach((k, i) => {
      const last = series.length ? (series[series.length - 1][key] || {})[k] || 0 : 0;
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = COLORS[i % COLORS.length];
      legend.append(el("span", { class: "item" }, swatch, `${k || "(none)"} ${fmt(last)}/s`));
    });
    box.replaceChildren(svg, legend);
  }

  function renderNow(doc) {
    chart("chart-action", doc.series, "action");
    chart("chart-verstat", doc.series, "verstat");
    replace("totals", pairs(sorted(doc.totals.action)), pairs(sorted(doc.totals.verstat)));
    replace("attest", pairs(sorted(doc.totals.attest)));
    replace("rules", pairs(doc.rules, "no rule has decided a call yet"));
    replace("rejects", pairs(doc.rejects_by_trunk, "no rejects"));
    const st = doc.store;
    replace("store", el("p", { class: st.healthy ? "ok" : "error" }, st.healthy ? "answers" : "FAILING"),
      pairs(sorted(st.requests)), pairs(sorted(st.errors), "no errors"));
    const x = doc.x5u;
    replace("x5u", pairs(sorted(x.fetches), "no downloads"), pairs(sorted(x.cache), "no lookups"),
      el("p", { class: x.breakers_open.length ? "error" : "muted" },
        x.breakers_open.length ? "open breakers: " + x.breakers_open.join(", ") : "no open breaker"));
    const g = doc.gauges;
    replace("service", pairs([["workers", doc.workers], ["pending decisions", g.pending || 0],
      ["shedding", g.shedding ? "yes" : "no"], ["records queued", g.records_queue || 0],
      ["record write errors", g.records_errors || 0], ["memory MB", Math.round((g.memory_bytes || 0) / 1048576)]]));
    const total = Object.values(doc.totals.action || {}).reduce((a, b) => a + b, 0);
    replace("updated", `updated ${new Date(doc.time * 1000).toISOString()} · ${fmt(total)} calls since start`);
    document.body.dataset.calls = String(total);
  }

  async function poll() {
    try {
      const resp = await fetch("/console/api/now", { credentials: "same-origin", cache: "no-store" });
      if (resp.status === 401) { location.assign("/console/login?next=/console/now"); return; }
      if (resp.ok) renderNow(await resp.json());
      else replace("updated", `the service answered ${resp.status}`);
    } catch (err) {
      replace("updated", "cannot reach the service; retrying");
    }
    setTimeout(poll, POLL_MS);
  }

  // The /upstreams answer as tables. When the answer carries the measures of
  // records/measures.py, the table shows the ones an operator reads first (shares as
  // percentages) and each row keeps every other measure under "all measures"; any other
  // answer is shown as it comes (columns from the keys present). Numbers formatted, nested
  // values written out, never as markup.
  const FIRST = ["trunk", "spc", "calls", "score", "attest", "verified_share", "failed_share", "unsigned_share",
                 "invalid_share", "unallocated_share", "dno_share", "a_bad", "other_spc_complete_share", "rmd",
                 "implementation"];

  function text(key, value) {
    if (value === null || value === undefined) return "";
    if (typeof value === "object") {
      return Object.entries(value).map(([k, x]) =>
        typeof x === "object" && x !== null ? `${k} (${text(k, x)})` : `${k} ${fmt(x)}`).join(", ");
    }
    if (typeof value === "number" && key.endsWith("_share")) {
      return (100 * value).toLocaleString("en-US", { maximumFractionDigits: 1 }) + " %";
    }
    return fmt(value);
  }

  function genericTable(rows, extra) {
    const keys = [];
    for (const r of rows) for (const k of Object.keys(r)) if (!keys.includes(k)) keys.push(k);
    const first = FIRST.filter((k) => keys.includes(k));
    const curated = first.length > 4;
    const cols = curated ? first : keys;
    const table = el("table", { class: "data" });
    const heads = cols.map((c) => el("th", {}, c.replace(/_share$/, " %")));
    if (curated) heads.push(el("th", {}, "all measures"));
    if (extra) heads.push(...extra.heads.map((h) => el("th", {}, h)));
    table.append(el("thead", {}, el("tr", {}, ...heads)));
    const body = el("tbody");
    for (const r of rows) {
      const cells = cols.map((c) => el("td", { class: typeof r[c] === "number" ? "num" : "" }, text(c, r[c])));
      if (curated) {
        const list = el("dl", {});
        for (const k of keys) if (!first.includes(k)) list.append(el("dt", {}, k), el("dd", {}, text(k, r[k])));
        cells.push(el("td", {}, el("details", {}, el("summary", {}, "more"), list)));
      }
      if (extra) cells.push(...extra.cells(r));
      body.append(el("tr", {}, ...cells));
    }
    table.append(body);
    return table;
  }

  // One run of points: a line, or a dot when the run is one point (a lone bucket with calls).
  function trace(points, color, width) {
    if (points.length === 1) {
      const [x, y] = points[0].split(",");
      const c = document.createElementNS(SVG, "circle");
      for (const [a, v] of Object.entries({ cx: x, cy: y, r: width + 1, fill: color })) c.setAttribute(a, v);
      return c;
    }
    const p = document.createElementNS(SVG, "polyline");
    p.setAttribute("points", points.join(" "));
    p.setAttribute("fill", "none");
    p.setAttribute("stroke", color);
    p.setAttribute("stroke-width", String(width));
    return p;
  }

  // A small line of one series (null: no call in that bucket, a gap), as SVG.
  function spark(values, label) {
    const W = 120, H = 26;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("class", "spark");
    const nums = values.filter((v) => typeof v === "number");
    const max = Math.max(1e-9, ...nums);
    const n = Math.max(values.length - 1, 1);
    let run = [];
    const flush = () => {
      if (run.length) svg.append(trace(run, COLORS[0], 1.5));
      run = [];
    };
    values.forEach((v, i) => {
      if (typeof v !== "number") { flush(); return; }
      run.push(`${(W * i / n).toFixed(1)},${(H - 2 - (H - 4) * v / max).toFixed(1)}`);
    });
    flush();
    const title = document.createElementNS(SVG, "title");
    title.textContent = label;
    svg.append(title);
    return svg;
  }

  // Lines over time buckets, one per key of ``lines`` (values may be null: gaps), as SVG.
  function plot(title, starts, lines, unit) {
    const W = 560, H = 160, L = 48, B = 18;
    const keys = Object.keys(lines);
    const nums = keys.flatMap((k) => lines[k].filter((v) => typeof v === "number"));
    const max = Math.max(unit === "%" ? 0.01 : 1, ...nums);
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("class", "plot");
    const label = (x, y, s) => {
      const t = document.createElementNS(SVG, "text");
      t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("class", "axis");
      t.textContent = s;
      svg.append(t);
    };
    for (const [x1, y1, x2, y2] of [[L, 0, L, H - B], [L, H - B, W, H - B]]) {
      const l = document.createElementNS(SVG, "line");
      for (const [a, v] of Object.entries({ x1, y1, x2, y2, class: "axis" })) l.setAttribute(a, v);
      svg.append(l);
    }
    label(2, 10, unit === "%" ? `${(100 * max).toFixed(1)} %` : fmt(max));
    label(2, H - B, "0");
    if (starts.length) { label(L, H - 2, starts[0].slice(5, 16).replace("T", " ")); label(W - 90, H - 2, "now (UTC)"); }
    const n = Math.max(starts.length - 1, 1);
    const legend = el("div", { class: "legend" });
    keys.forEach((k, i) => {
      let run = [];
      const flush = () => {
        if (run.length) svg.append(trace(run, COLORS[i % COLORS.length], 2));
        run = [];
      };
      lines[k].forEach((v, j) => {
        if (typeof v !== "number") { flush(); return; }
        run.push(`${(L + (W - L) * j / n).toFixed(1)},${((H - B) - (H - B - 4) * v / max).toFixed(1)}`);
      });
      flush();
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = COLORS[i % COLORS.length];      // CSSOM, allowed by the CSP
      legend.append(el("span", { class: "item" }, swatch, k));
    });
    return el("section", { class: "card chart" }, el("h2", {}, title), svg, legend);
  }

  async function getJson(url) {
    const resp = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (!resp.ok) throw new Error(`the service answered ${resp.status} for ${url}`);
    return resp.json();
  }

  async function upstreams(box) {
    let resp;
    try {
      resp = await fetch(box.dataset.source, { credentials: "same-origin", cache: "no-store" });
    } catch (err) {
      box.replaceChildren(el("p", { class: "error" }, "cannot reach the service"));
      return;
    }
    if (resp.status === 404) {
      box.replaceChildren(el("p", { class: "muted", id: "no-data" }, "no data: this sipguard does not serve /upstreams"));
      return;
    }
    if (!resp.ok) {
      box.replaceChildren(el("p", { class: "error" }, `the service answered ${resp.status}`));
      return;
    }
    const doc = await resp.json();
    let series = null;
    if (box.dataset.series) {
      try { series = await getJson(box.dataset.series); } catch (err) { series = null; }
    }
    const perTrunk = {
      heads: ["calls, 24 h", "unsigned, 24 h"],
      cells: (r) => {
        const s = series && typeof r.trunk === "string" ? series.trunks[r.trunk] : null;
        if (!s) return [el("td", {}, ""), el("td", {}, "")];
        return [el("td", {}, spark(s.calls, "calls per hour")), el("td", {}, spark(s.unsigned, "unsigned share per hour"))];
      },
    };
    const parts = [el("p", { class: "muted" }, `from ${doc.since} to ${doc.until}`)];
    for (const [key, title] of [["upstreams", "Upstreams"], ["signers", "Signers"]]) {
      const rows = Array.isArray(doc[key]) ? doc[key] : [];
      const table = rows.length ? genericTable(rows, key === "upstreams" && series ? perTrunk : null) : null;
      if (table && key === "upstreams") {       // each trunk's name opens its page
        for (const cell of table.querySelectorAll("tbody tr td:first-child")) {
          const name = cell.textContent;
          const link = el("a", { href: "/console/upstreams?trunk=" + encodeURIComponent(name) }, name);
          cell.replaceChildren(link);
        }
      }
      parts.push(el("h2", {}, title), table || el("p", { class: "muted" }, "no data"));
    }
    box.replaceChildren(...parts);
  }

  async function upstream(box) {
    const trunk = box.dataset.trunk;
    const parts = [];
    try {
      const doc = await getJson(box.dataset.source);
      const row = (doc.upstreams || []).find((r) => r.trunk === trunk);
      if (row) {
        const list = el("dl", { class: "measures" });
        for (const [k, v] of Object.entries(row)) list.append(el("dt", {}, k), el("dd", {}, text(k, v)));
        parts.push(el("h2", {}, `Last 7 days (${doc.since} to ${doc.until})`), list);
      } else {
        parts.push(el("p", { class: "muted", id: "no-data" }, "no call from this upstream in the last 7 days"));
      }
      for (const [url, span] of [[box.dataset.series, "24 hours, per hour"], [box.dataset.seriesWeek, "7 days, per 6 hours"]]) {
        const s = await getJson(url);
        const t = s.trunks[trunk];
        if (!t) continue;
        parts.push(plot(`Calls, last ${span}`, s.starts, { calls: t.calls }, ""),
                   plot(`Shares, last ${span}`, s.starts,
                        { unsigned: t.unsigned, failed: t.failed, invalid: t.invalid, dno: t.dno }, "%"));
      }
    } catch (err) {
      parts.push(el("p", { class: "error" }, String(err.message || err)));
    }
    box.replaceChildren(...parts);
  }

  function copyButtons() {
    for (const button of document.querySelectorAll("button[data-copy]")) {
      button.addEventListener("click", async () => {
        const source = document.getElementById(button.dataset.copy);
        if (!source) return;
        try {
          await navigator.clipboard.writeText(source.textContent);
        } catch (err) {   // not a secure context (plain http beyond localhost): select it instead
          const range = document.createRange();
          range.selectNodeContents(source);
          const sel = window.getSelection();
          sel.removeAllRanges();
          sel.addRange(range);
          document.execCommand("copy");
        }
        button.textContent = "Copied";
      });
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    copyButtons();
    if (document.body.dataset.page === "now") poll();
    const box = document.getElementById("upstreams");
    if (box) upstreams(box);
    const one = document.getElementById("upstream");
    if (one) upstream(one);
  });
})();
