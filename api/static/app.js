// The MOH dashboard of covidtech (docs/dashboard.md). Plain JavaScript, no library, no CDN:
// charts are inline SVG drawn below. Every data call sends the MOH token as a bearer header;
// the live alert stream is read with fetch() and a stream reader (EventSource cannot send a
// header), so the token never appears in a URL.
"use strict";

(() => {
  const TZ = "Asia/Ho_Chi_Minh";
  const TOKEN_KEY = "covidtech.dashboard.token";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const REFRESH_AGGREGATES_MS = 30000;
  const REFRESH_LISTS_MS = 30000;
  const REFRESH_RATES_MS = 3000;
  const TREND_DAYS = 30;
  const ALERT_ROWS = 200; // rows drawn
  const MAX_ALERTS = 1000; // alerts kept

  // Short labels of GSO's six socio-economic regions (the full name is in the tooltip).
  const REGION_NAMES = {
    "Red River Delta": "Red River Delta",
    "Northern Midlands and Mountains": "Northern uplands",
    "North Central and Central Coast": "Central coast",
    "Central Highlands": "Central Highlands",
    "Southeast": "Southeast",
    "Mekong River Delta": "Mekong Delta",
  };

  const state = {
    token: null,
    band: "all",
    coverage: null, // /v1/dashboard/coverage-by-province
    series: null, // /v1/coverage/series
    doses: null, // /v1/doses/daily
    rates: null, // /v1/ops/rates
    turnaround: null, // /v1/testing/turnaround
    alerts: [], // newest first; live arrivals on top
    alertsMore: false,
    liveCount: 0,
    venues: new Map(), // venue_id -> name (null: unknown), read once per venue shown
    clusters: [],
    epi: {}, // /v1/epidemiology/{cases,rt,positivity,syndromic}, area VN
    chains: null, // /v1/provinces/{p}/chains of the chosen cluster
    chainVenue: null,
    stock: null, // /v1/vaccination/stock
    stopped: false,
  };

  // ---------------------------------------------------------------- small helpers

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs, parent, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (parent) parent.appendChild(node);
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  const intFmt = new Intl.NumberFormat("en-US");
  const dayFmt = new Intl.DateTimeFormat("en-GB", { timeZone: TZ, day: "numeric", month: "short" });
  const clockFmt = new Intl.DateTimeFormat("en-GB", {
    timeZone: TZ, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
  });
  const visitFmt = new Intl.DateTimeFormat("en-GB", {
    timeZone: TZ, day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit", hour12: false,
  });
  const longDayFmt = new Intl.DateTimeFormat("en-GB", {
    timeZone: "UTC", weekday: "short", day: "numeric", month: "long", year: "numeric",
  });

  function fmtInt(n) {
    return n === null || n === undefined ? "–" : intFmt.format(n);
  }

  // Per-hundred figures span 0.00003 (a small simulation) to 100+: keep two significant
  // digits below 1, never print exponents.
  function decimalsFor(v) {
    if (!v || !isFinite(v)) return 0;
    const a = Math.abs(v);
    if (a >= 10) return 1;
    if (a >= 1) return 2;
    return Math.min(8, 1 - Math.floor(Math.log10(a)));
  }

  function fmtPer100(v) {
    if (v === null || v === undefined) return "–";
    if (v === 0) return "0";
    return v.toFixed(decimalsFor(v));
  }

  function fmtRate(v) {
    if (v === null || v === undefined) return "–";
    return v >= 100 ? intFmt.format(Math.round(v)) : v.toFixed(1);
  }

  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const h = seconds / 3600;
    if (h >= 48) return (h / 24).toFixed(1) + " d";
    if (h >= 1) return h.toFixed(1) + " h";
    return Math.round(seconds / 60) + " min";
  }

  function per100(n, population) {
    return population > 0 ? (100 * n) / population : 0;
  }

  const partsFmt = new Intl.DateTimeFormat("en-US", {
    timeZone: TZ, year: "numeric", month: "2-digit", day: "2-digit",
  });

  // The local (ICT) day of a moment, as YYYY-MM-DD.
  function localDay(moment) {
    const parts = partsFmt.formatToParts(moment);
    const get = (t) => parts.find((p) => p.type === t).value;
    return `${get("year")}-${get("month")}-${get("day")}`;
  }

  function localToday() {
    return localDay(new Date());
  }

  function addDays(isoDay, n) {
    const d = new Date(isoDay + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() + n);
    return d.toISOString().slice(0, 10);
  }

  function dayLabel(isoDay) {
    return dayFmt.format(new Date(isoDay + "T12:00:00+07:00"));
  }

  const timeFmt = new Intl.DateTimeFormat("en-GB", {
    timeZone: TZ, hour: "2-digit", minute: "2-digit", hour12: false,
  });

  function shortId(id) {
    if (!id) return "–";
    return id.length > 10 ? id.slice(0, 4) + "…" + id.slice(-4) : id;
  }

  function provinceName(code) {
    const p = state.coverage && state.coverage.provinces.find((x) => x.province === code);
    return p ? p.name : code;
  }

  // Round numbers for an axis: 0 .. >= max in about `count` steps of 1, 2 or 5 x 10^k.
  function niceTicks(max, count) {
    if (!(max > 0)) return { step: 1, top: 1, ticks: [0, 1] };
    const raw = max / count;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const norm = raw / mag;
    const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
    const top = Math.ceil(max / step - 1e-9) * step;
    const ticks = [];
    for (let v = 0; v <= top + step / 2; v += step) ticks.push(v);
    return { step, top, ticks };
  }

  function tickLabel(v, step) {
    if (v === 0) return "0";
    const d = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
    return v >= 1000 ? intFmt.format(Math.round(v)) : v.toFixed(Math.min(8, d));
  }

  // ---------------------------------------------------------------- chart parts

  // An empty chart of `width` x `height` pixels in the svg element `host`.
  function frame(host, width, height) {
    clear(host);
    host.setAttribute("width", width);
    host.setAttribute("height", height);
    host.setAttribute("viewBox", `0 0 ${width} ${height}`);
  }

  // The left margin that fits the widest tick label of `axis`.
  function marginFor(axis) {
    return 12 + 6.2 * Math.max(...axis.ticks.map((t) => tickLabel(t, axis.step).length));
  }

  // A grid line from `left` to `right` at each tick of `axis` (`y` places a value), labelled
  // `gap` px left of `left`.
  function gridY(g, axis, y, left, right, gap = 6, dy = 4) {
    for (const t of axis.ticks) {
      svg("line", { x1: left, x2: right, y1: y(t), y2: y(t), class: "grid" }, g);
      svg("text", { x: left - gap, y: y(t) + dy, "text-anchor": "end", class: "tick" }, g, tickLabel(t, axis.step));
    }
  }

  // Day labels under a chart of `days` (ISO dates at x(i)), the last day always labelled.
  function dayTicks(g, days, x, plotW, height) {
    const every = Math.max(1, Math.ceil(days.length / Math.max(2, Math.floor(plotW / 70))));
    days.forEach((day, i) => {
      if ((days.length - 1 - i) % every === 0) {
        svg("text", { x: x(i), y: height - 6, "text-anchor": "middle", class: "tick" }, g, dayLabel(day));
      }
    });
  }

  // The path of a line through `points` ([x, y] pixels).
  function polyline(points) {
    return points.map(([px, py], i) => `${i ? "L" : "M"}${px.toFixed(1)},${py.toFixed(1)}`).join("");
  }

  // ---------------------------------------------------------------- token

  function decodeClaims(token) {
    try {
      const part = token.split(".")[1];
      const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
      const json = decodeURIComponent(
        Array.from(atob(b64 + "===".slice((b64.length + 3) % 4)))
          .map((c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0"))
          .join(""),
      );
      return JSON.parse(json);
    } catch (e) {
      return null;
    }
  }

  // The link of `covidtech demo` carries the token in the fragment, which browsers never send
  // to a server. Move it to this tab's storage and take it out of the address bar at once.
  function takeToken() {
    const hash = new URLSearchParams(location.hash.replace(/^#/, ""));
    const fromHash = hash.get("token");
    if (fromHash) {
      sessionStorage.setItem(TOKEN_KEY, fromHash.trim());
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function signIn(reason) {
    state.stopped = true;
    sessionStorage.removeItem(TOKEN_KEY);
    document.body.classList.add("signed-out");
    $("board").hidden = true;
    $("epi").hidden = true;
    $("signin").hidden = false;
    $("sign-out").hidden = true;
    $("who").textContent = "";
    if (reason) $("signin-reason").textContent = reason;
    setLive("off", "Live alerts: off");
  }

  class AuthError extends Error {}

  async function api(path, { aggregate = false } = {}) {
    const resp = await fetch(path, {
      headers: { Authorization: "Bearer " + state.token, Accept: "application/json" },
      // Aggregates are cacheable for a minute; revalidate (ETag, 304) so a refresh is fresh.
      cache: aggregate ? "no-cache" : "no-store",
    });
    if (resp.status === 401 || resp.status === 403) {
      let detail = "";
      try { detail = (await resp.json()).detail || ""; } catch (e) { /* not JSON */ }
      throw new AuthError(resp.status === 403
        ? "This dashboard needs a token with the moh scope. " + detail
        : "The token was refused (" + (detail || resp.status) + "). Sign in again.");
    }
    if (!resp.ok) {
      let detail = resp.statusText;
      try { detail = (await resp.json()).title || detail; } catch (e) { /* not JSON */ }
      throw new Error(`${resp.status} ${detail}`);
    }
    return resp.json();
  }

  function failed(panelId, err) {
    if (err instanceof AuthError) {
      signIn(err.message);
      return;
    }
    const panel = $(panelId);
    if (!panel) return;
    let note = panel.querySelector(".panel-error");
    if (!note) {
      note = el("div", { class: "panel-error", role: "status" });
      panel.appendChild(note);
    }
    note.textContent = "Could not load (" + err.message + "); retrying.";
  }

  function loaded(panelId) {
    const note = $(panelId) && $(panelId).querySelector(".panel-error");
    if (note) note.remove();
    $("updated").textContent = clockFmt.format(new Date());
  }

  // ---------------------------------------------------------------- KPIs

  function renderKpis() {
    const c = state.coverage;
    if (c) {
      const n = c.nation;
      $("kpi-first").textContent = fmtInt(n.people_vaccinated);
      $("kpi-first-note").textContent =
        fmtPer100(per100(n.people_vaccinated, n.population)) + " per 100 " +
        (c.age_band === "18+" ? "adults" : "people");
      $("kpi-full").textContent = fmtInt(n.people_fully_vaccinated);
      $("kpi-full-note").textContent =
        fmtPer100(per100(n.people_fully_vaccinated, n.population)) + " per 100 · " +
        (n.people_vaccinated ? Math.round((100 * n.people_fully_vaccinated) / n.people_vaccinated) : 0) +
        "% of first-dosed";
      $("kpi-doses").textContent = fmtInt(n.total_doses);
      $("as-of").textContent = longDayFmt.format(new Date(c.date + "T00:00:00Z"));
    }
    if (state.doses && state.doses.days.length) {
      const last = state.doses.days[state.doses.days.length - 1];
      const week = state.doses.days.slice(-7).reduce((s, d) => s + d.doses, 0);
      $("kpi-doses-note").textContent =
        fmtInt(last.doses) + " today · " + fmtInt(week) + " in 7 days";
    }
    const active = state.alerts.filter((a) => a.status === "ACTIVE");
    $("kpi-alerts").textContent = fmtInt(active.length) + (state.alertsMore ? "+" : "");
    const high = active.filter((a) => a.risk === "HIGH").length;
    $("kpi-alerts-note").textContent =
      fmtInt(high) + " high risk · " + fmtInt(state.liveCount) + " new since opened";
    const t = state.turnaround;
    if (t) {
      $("kpi-tat").textContent = fmtDuration(t.overall.p50);
      $("kpi-tat-note").textContent = t.overall.count
        ? "median · p90 " + fmtDuration(t.overall.p90) + " · " + fmtInt(t.overall.count) + " results, 7 d"
        : "no results in 7 days";
    }
    const r = state.rates;
    if (r) {
      $("kpi-ingest").textContent = fmtInt(r.appended);
      $("kpi-ingest-note").textContent =
        (r.ingest_per_second === null ? "measuring…" : fmtRate(r.ingest_per_second) + " /s now") +
        " · backlog " + fmtInt(r.lag);
    }
  }

  // ---------------------------------------------------------------- province bars

  // Horizontal bars, one row per area: first dose (light) with fully vaccinated inside (dark).
  function drawBars(host, rows, width, axisMax, kind) {
    const label = 112;
    const valueW = 58;
    const rowH = 18;
    const top = 22;
    const plotW = width - label - valueW;
    const height = top + Math.max(1, rows.length) * rowH + 4;
    frame(host, width, height);
    const axis = niceTicks(axisMax, Math.max(2, Math.floor(plotW / 60)));
    const x = (v) => label + (axis.top ? (v / axis.top) * plotW : 0);
    const g = svg("g", { class: "axis" }, host);
    for (const t of axis.ticks) {
      svg("line", { x1: x(t), x2: x(t), y1: top - 4, y2: height, class: "grid" }, g);
      svg("text", { x: x(t), y: top - 8, "text-anchor": "middle", class: "tick" }, g, tickLabel(t, axis.step));
    }
    rows.forEach((p, i) => {
      const y = top + i * rowH;
      const row = svg("g", { class: "row", [`data-${kind}`]: p.key }, host);
      svg("title", {}, row,
        `${p.name}${p.detail ? " (" + p.detail + ")" : ""}\n` +
        `At least one dose: ${fmtInt(p.people_vaccinated)} (${fmtPer100(p.first)} per 100)\n` +
        `Fully vaccinated: ${fmtInt(p.people_fully_vaccinated)} (${fmtPer100(p.full)} per 100)\n` +
        `Doses: ${fmtInt(p.total_doses)} · population ${fmtInt(p.population)}`);
      svg("text", { x: label - 6, y: y + rowH / 2 + 4, "text-anchor": "end", class: "label" }, row, p.name);
      svg("rect", {
        x: label, y: y + 3, width: Math.max(p.first > 0 ? 1 : 0, x(p.first) - label), height: rowH - 6,
        class: "bar-first", "data-value": p.first,
      }, row);
      svg("rect", {
        x: label, y: y + 6, width: Math.max(p.full > 0 ? 1 : 0, x(p.full) - label), height: rowH - 12,
        class: "bar-full", "data-value": p.full,
      }, row);
      svg("text", { x: x(p.first) + 4, y: y + rowH / 2 + 4, class: "value" }, row, fmtPer100(p.first));
    });
    if (!rows.length) {
      svg("text", { x: label, y: top + 12, class: "muted-text" }, host, "No doses recorded yet.");
    }
  }

  function withRates(p) {
    return {
      ...p,
      first: per100(p.people_vaccinated, p.population),
      full: per100(p.people_fully_vaccinated, p.population),
    };
  }

  const byCoverage = (a, b) => b.first - a.first || b.full - a.full || a.name.localeCompare(b.name, "vi");

  function renderProvinces() {
    const c = state.coverage;
    if (!c) return;
    const rows = c.provinces.map((p) => withRates({ ...p, key: p.province, detail: p.region }));
    const withData = rows.filter((p) => p.people_vaccinated > 0).sort(byCoverage);
    const without = rows.filter((p) => p.people_vaccinated === 0)
      .sort((a, b) => a.name.localeCompare(b.name, "vi"));

    // The six GSO regions: sums of their provinces' counts and populations.
    const regions = new Map();
    for (const p of c.provinces) {
      const r = regions.get(p.region) || {
        key: p.region, name: p.region, population: 0, people_vaccinated: 0,
        people_fully_vaccinated: 0, total_doses: 0, provinces: 0,
      };
      r.population += p.population;
      r.people_vaccinated += p.people_vaccinated;
      r.people_fully_vaccinated += p.people_fully_vaccinated;
      r.total_doses += p.total_doses;
      r.provinces += 1;
      regions.set(p.region, r);
    }
    const regionRows = [...regions.values()]
      .map((r) => withRates({ ...r, name: REGION_NAMES[r.name] || r.name, detail: `${r.name}, ${r.provinces} provinces` }))
      .sort(byCoverage);

    const width = Math.max(260, $("province-body").clientWidth - 4);
    const max = Math.max(0, ...withData.map((p) => p.first));
    drawBars($("province-bars"), withData, width, max, "province");
    drawBars($("region-bars"), regionRows, width, Math.max(0, ...regionRows.map((r) => r.first)), "region");

    const zero = $("province-zero");
    zero.hidden = without.length === 0;
    zero.querySelector("summary").textContent =
      `${without.length} ${without.length === 1 ? "province" : "provinces"} with no doses recorded`;
    zero.querySelector("p").textContent = without.map((p) => p.name).join(", ") + ".";
    $("province-count").textContent =
      `${withData.length} of ${rows.length} provinces with doses · ${c.age_band === "18+" ? "adults 18+" : "all ages"}`;
  }

  // ---------------------------------------------------------------- coverage over time

  function renderTrend() {
    const host = $("coverage-trend");
    const s = state.series;
    if (!s) return;
    const box = $("trend-body");
    const width = Math.max(320, box.clientWidth);
    const height = Math.max(160, box.clientHeight - 4);
    frame(host, width, height);
    $("trend-range").textContent = `${dayLabel(s.from)} – ${dayLabel(s.to)} · all ages`;

    const pts = s.points.map((p) => ({
      date: p.date,
      first: per100(p.people_vaccinated, p.population),
      full: per100(p.people_fully_vaccinated, p.population),
    }));
    const daily = new Map(((state.doses && state.doses.days) || []).map((d) => [d.date, d.doses]));
    const max = Math.max(0, ...pts.map((p) => p.first));
    const axis = niceTicks(max, 4);
    const left = marginFor(axis), right = 70, top = 10, gap = 16;
    const bottom = 22;
    const dosesH = Math.round((height - top - bottom - gap) * 0.26);
    const lineH = height - top - bottom - gap - dosesH;
    const plotW = width - left - right;
    const n = Math.max(1, pts.length - 1);
    const x = (i) => left + (i / n) * plotW;

    const y = (v) => top + lineH - (axis.top ? (v / axis.top) * lineH : 0);
    const g = svg("g", { class: "axis" }, host);
    gridY(g, axis, y, left, left + plotW);
    dayTicks(g, pts.map((p) => p.date), x, plotW, height);

    if (pts.length) {
      const line = (key) => polyline(pts.map((p, i) => [x(i), y(p[key])]));
      svg("path", {
        d: line("first") + `L${x(pts.length - 1).toFixed(1)},${y(0)}L${x(0).toFixed(1)},${y(0)}Z`,
        class: "area-first",
      }, host);
      svg("path", { d: line("first"), class: "line-first" }, host);
      svg("path", { d: line("full"), class: "line-full" }, host);
      const dots = svg("g", { class: "points" }, host);
      pts.forEach((p, i) => {
        const c1 = svg("circle", { cx: x(i), cy: y(p.first), r: 2.6, class: "pt pt-first", "data-value": p.first }, dots);
        svg("title", {}, c1, `${dayLabel(p.date)}: ${fmtPer100(p.first)} per 100 with at least one dose`);
        const c2 = svg("circle", { cx: x(i), cy: y(p.full), r: 2.2, class: "pt pt-full", "data-value": p.full }, dots);
        svg("title", {}, c2, `${dayLabel(p.date)}: ${fmtPer100(p.full)} per 100 fully vaccinated`);
      });
      const last = pts[pts.length - 1];
      const lx = x(pts.length - 1) + 6;
      let y1 = y(last.first) + 4, y2 = y(last.full) + 4;
      if (Math.abs(y2 - y1) < 12) y2 = y1 + 12;
      svg("text", { x: lx, y: y1, class: "end-label end-first" }, host, fmtPer100(last.first));
      svg("text", { x: lx, y: y2, class: "end-label end-full" }, host, fmtPer100(last.full));
    }

    // Doses per day, on their own axis below the lines (same days).
    const dTop = top + lineH + gap;
    const dMax = Math.max(0, ...pts.map((p) => daily.get(p.date) || 0));
    const dAxis = niceTicks(dMax, 2);
    const dy = (v) => dTop + dosesH - (dAxis.top ? (v / dAxis.top) * dosesH : 0);
    svg("line", { x1: left, x2: left + plotW, y1: dTop + dosesH, y2: dTop + dosesH, class: "baseline" }, g);
    svg("text", { x: left - 6, y: dTop + 8, "text-anchor": "end", class: "tick" }, g, tickLabel(dAxis.top, dAxis.step));
    svg("text", { x: left + plotW + 6, y: dTop + dosesH, class: "tick" }, g, "doses/day");
    const bw = Math.max(2, Math.min(14, plotW / Math.max(1, pts.length) - 2));
    const bars = svg("g", { class: "dose-bars" }, host);
    pts.forEach((p, i) => {
      const v = daily.get(p.date) || 0;
      if (!v) return;
      const r = svg("rect", { x: x(i) - bw / 2, y: dy(v), width: bw, height: dTop + dosesH - dy(v), class: "bar-doses" }, bars);
      svg("title", {}, r, `${dayLabel(p.date)}: ${fmtInt(v)} doses`);
    });
  }

  // ---------------------------------------------------------------- rates sparkline

  function renderRates() {
    const r = state.rates;
    if (!r) return;
    $("ops-ingest").textContent = fmtRate(r.ingest_per_second);
    $("ops-processed").textContent = fmtRate(r.processing_per_second);
    $("ops-lag").textContent = fmtInt(r.lag);
    const topics = $("ops-topics");
    clear(topics);
    for (const row of r.topics || []) {
      const li = topics.appendChild(el("li", { "data-topic": row.topic, "data-kind": row.kind, class: row.lag > 0 ? "behind" : "" }));
      li.appendChild(el("span", { class: "name" }, row.topic));
      li.appendChild(el("span", { class: "count" }, fmtInt(row.lag)));
    }
    const host = $("rates-spark");
    const box = $("ops-body");
    const width = Math.max(200, box.clientWidth);
    const height = Math.max(50, box.clientHeight - 2);
    frame(host, width, height);
    const samples = r.samples.slice(-90);
    if (samples.length < 2) {
      svg("text", { x: 4, y: height / 2, class: "muted-text" }, host, "Measuring… (a sample every few seconds)");
      return;
    }
    const max = Math.max(1, ...samples.map((s) => Math.max(s.ingest_per_second, s.processing_per_second)));
    const axis = niceTicks(max, 2);
    const left = 34, top = 4, bottom = 14;
    const w = width - left - 4, h = height - top - bottom;
    const t0 = Date.parse(samples[0].at), t1 = Date.parse(samples[samples.length - 1].at);
    const x = (s) => left + (t1 > t0 ? ((Date.parse(s.at) - t0) / (t1 - t0)) * w : 0);
    const y = (v) => top + h - (v / axis.top) * h;
    const g = svg("g", { class: "axis" }, host);
    gridY(g, axis, y, left, left + w, 4, 3);
    const mins = Math.max(1, Math.round((t1 - t0) / 60000));
    svg("text", { x: left, y: height - 2, class: "tick" }, g, `last ${mins} min`);
    svg("text", { x: left + w, y: height - 2, class: "tick", "text-anchor": "end" }, g, "now");
    const path = (key) => polyline(samples.map((s) => [x(s), y(s[key])]));
    svg("path", { d: path("ingest_per_second"), class: "line-ingest" }, host);
    svg("path", { d: path("processing_per_second"), class: "line-processed" }, host);
  }

  // ---------------------------------------------------------------- turnaround

  function renderTurnaround() {
    const t = state.turnaround;
    if (!t) return;
    const body = $("tat-body");
    clear(body);
    $("tat-range").textContent = `results ${dayLabel(t.from)} – ${dayLabel(t.to)}`;
    const o = t.overall;
    const figures = body.appendChild(el("div", { class: "figures tat-figures" }));
    for (const [label, v] of [["median", o.p50], ["p90", o.p90], ["p99", o.p99]]) {
      const f = figures.appendChild(el("div"));
      f.appendChild(el("span", { class: "fig-value" }, fmtDuration(v)));
      f.appendChild(el("span", { class: "fig-label" }, label));
    }
    const f = figures.appendChild(el("div"));
    f.appendChild(el("span", { class: "fig-value" + (t.pending_late.count ? " warn" : "") }, fmtInt(t.pending_late.count)));
    f.appendChild(el("span", { class: "fig-label" }, `pending > ${t.pending_late.hours} h`));

    const late = new Map(t.pending_late.by_province.map((p) => [p.province, p.count]));
    const codes = new Set([...t.by_province.map((p) => p.province), ...late.keys()]);
    const rows = [...codes].map((code) => {
      const st = t.by_province.find((p) => p.province === code) || { count: 0, p50: null, p90: null };
      return { code, st, late: late.get(code) || 0 };
    }).sort((a, b) => (b.st.p90 || 0) - (a.st.p90 || 0) || b.late - a.late);
    if (!rows.length) {
      body.appendChild(el("p", { class: "muted empty" }, "No results in these 7 days."));
      return;
    }
    // Per province: median (solid) to p90 (light), on one scale, so slow provinces stand out.
    const scale = Math.max(1, ...rows.map((r) => r.st.p90 || 0));
    const table = el("table", { class: "grid compact" });
    const head = el("tr");
    for (const h of ["Province", "n", "Median", "p90", "", "Late"]) {
      head.appendChild(el("th", h === "Province" || h === "" ? {} : { class: "num" }, h));
    }
    table.appendChild(el("thead")).appendChild(head);
    const tbody = table.appendChild(el("tbody"));
    for (const r of rows.slice(0, 12)) {
      const tr = tbody.appendChild(el("tr", { "data-province": r.code }));
      tr.appendChild(el("td", {}, provinceName(r.code)));
      tr.appendChild(el("td", { class: "num" }, fmtInt(r.st.count)));
      tr.appendChild(el("td", { class: "num" }, fmtDuration(r.st.p50)));
      tr.appendChild(el("td", { class: "num" }, fmtDuration(r.st.p90)));
      const cell = tr.appendChild(el("td", { class: "dist" }));
      const w = 56;
      const bar = svg("svg", { width: w, height: 10, viewBox: `0 0 ${w} 10` }, cell);
      svg("rect", { x: 0, y: 3, width: w, height: 4, rx: 2, class: "tat-track" }, bar);
      if (r.st.p90 !== null) svg("rect", { x: 0, y: 2, width: Math.max(2, (r.st.p90 / scale) * w), height: 6, rx: 2, class: "tat-p90" }, bar);
      if (r.st.p50 !== null) svg("rect", { x: 0, y: 2, width: Math.max(2, (r.st.p50 / scale) * w), height: 6, rx: 2, class: "tat-p50" }, bar);
      tr.appendChild(el("td", { class: "num" + (r.late ? " warn" : "") }, fmtInt(r.late)));
    }
    body.appendChild(table);
    body.appendChild(el("p", { class: "muted small note" },
      "Collection to result, nearest-rank percentiles; late = pending over " +
      `${t.pending_late.hours} h. Bar: median, then p90.`));
  }

  // ---------------------------------------------------------------- alerts

  function alertRow(a, today) {
    const fresh = a._arrived && Date.now() - a._arrived < 8000;
    const tr = el("tr", {
      "data-alert-id": a.alert_id,
      "data-case": a.case_person_id,
      "data-contact": a.contact_person_id,
      "data-live": a._live ? "true" : "false",
      class: [fresh ? "fresh" : "", a.status === "WITHDRAWN" ? "withdrawn" : ""].join(" ").trim(),
    });
    const start = new Date(a.contact_visit_start);
    const label = localDay(start) === today ? timeFmt.format(start) : visitFmt.format(start).replace(",", "");
    const when = el("td", { title: visitFmt.format(start) }, label);
    if (a._live) when.prepend(el("span", { class: "badge badge-new", title: "arrived since the page opened" }, "new"));
    tr.appendChild(when);
    tr.appendChild(el("td", {}, provinceName(a.province)));
    const venue = state.venues.get(a.venue_id);
    tr.appendChild(el("td", { class: "venue", title: venue ? `${venue} (${a.venue_id})` : a.venue_id }, venue || shortId(a.venue_id)));
    const risk = el("td");
    risk.appendChild(el("span", { class: "badge risk-" + a.risk.toLowerCase() }, a.status === "WITHDRAWN" ? "withdrawn" : a.risk.toLowerCase()));
    tr.appendChild(risk);
    const overlap = a.overlap_seconds > 0 && a.overlap_seconds < 60 ? "<1" : Math.round(a.overlap_seconds / 60);
    tr.appendChild(el("td", { class: "num" }, overlap + " min"));
    tr.appendChild(el("td", { class: "mono", title: a.contact_person_id }, shortId(a.contact_person_id)));
    tr.appendChild(el("td", { class: "mono", title: a.case_person_id }, shortId(a.case_person_id)));
    return tr;
  }

  // Rows are kept and reordered, not rebuilt: a storm of alerts stays cheap, and a new row's
  // highlight plays once.
  const alertRows = new Map(); // alert_id -> { signature, tr }

  function renderAlerts() {
    const body = $("alerts-body");
    const today = localToday();
    const shown = state.alerts.slice(0, ALERT_ROWS);
    const keep = new Set();
    let previous = null;
    for (const a of shown) {
      const signature = [a.version, a.status, a.risk, a.overlap_seconds, a._live,
        state.venues.get(a.venue_id), provinceName(a.province)].join("|");
      let row = alertRows.get(a.alert_id);
      if (!row || row.signature !== signature) {
        const tr = alertRow(a, today);
        if (row) row.tr.replaceWith(tr);
        row = { signature, tr };
        alertRows.set(a.alert_id, row);
      }
      keep.add(a.alert_id);
      const expected = previous ? previous.nextSibling : body.firstChild;
      if (expected !== row.tr) body.insertBefore(row.tr, expected);
      previous = row.tr;
    }
    for (const [id, row] of alertRows) {
      if (!keep.has(id)) {
        row.tr.remove();
        alertRows.delete(id);
      }
    }
    $("alerts-empty").hidden = state.alerts.length > 0;
    renderKpis();
    nameVenues(shown.map((a) => a.venue_id));
  }

  let alertsFrame = null;
  // Alerts may arrive by the hundred: draw at most a few times a second.
  function scheduleAlerts() {
    if (alertsFrame) return;
    alertsFrame = setTimeout(() => { alertsFrame = null; renderAlerts(); }, 200);
  }

  function upsertAlert(a, live) {
    const i = state.alerts.findIndex((x) => x.alert_id === a.alert_id);
    if (i >= 0) {
      const old = state.alerts[i];
      if ((old.version || 0) > (a.version || 0)) return;
      state.alerts.splice(i, 1);
    } else if (live) {
      state.liveCount += 1;
    }
    if (live) {
      state.alerts.unshift({ ...a, _live: true, _arrived: Date.now() });
      if (state.alerts.length > MAX_ALERTS) state.alerts.length = MAX_ALERTS;
    } else {
      state.alerts.push(a);
    }
  }

  // The stream: text/event-stream over fetch, resumed with Last-Event-ID after a drop.
  async function followAlerts() {
    let lastEventId = null;
    let retryMs = 3000;
    while (!state.stopped) {
      try {
        const headers = { Authorization: "Bearer " + state.token, Accept: "text/event-stream" };
        if (lastEventId) headers["Last-Event-ID"] = lastEventId;
        const resp = await fetch("/v1/alerts/stream", { headers, cache: "no-store" });
        if (resp.status === 401 || resp.status === 403) {
          signIn("The token was refused by the alert stream. Sign in again.");
          return;
        }
        if (resp.status === 400 && lastEventId) {
          // The position is no longer valid (e.g. the topic was recreated): start afresh.
          lastEventId = null;
          loadAlerts();
          continue;
        }
        if (!resp.ok || !resp.body) throw new Error("stream answered " + resp.status);
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        let pendingCr = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done || state.stopped) break;
          // Lines end in LF, CR or CRLF; a CR at the end of a chunk may be half of a CRLF.
          buffer += pendingCr + value;
          pendingCr = buffer.endsWith("\r") ? "\r" : "";
          if (pendingCr) buffer = buffer.slice(0, -1);
          buffer = buffer.replace(/\r\n?/g, "\n");
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            const ev = { data: [], event: "message", id: null };
            for (const line of block.split("\n")) {
              if (!line || line.startsWith(":")) {
                if (line === ": connected") setLive("on", "Live alerts: on");
                continue;
              }
              const colon = line.indexOf(":");
              const name = colon < 0 ? line : line.slice(0, colon);
              const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
              if (name === "data") ev.data.push(val);
              else if (name === "event") ev.event = val;
              else if (name === "id") ev.id = val;
              else if (name === "retry" && /^\d+$/.test(val)) retryMs = Number(val);
            }
            if (ev.id !== null) lastEventId = ev.id;
            if (ev.event === "alert" && ev.data.length) {
              upsertAlert(JSON.parse(ev.data.join("\n")), true);
              scheduleAlerts();
              scheduleClustersRefresh();
            }
          }
        }
      } catch (e) {
        // network drop or server restart: reconnect below
      }
      if (state.stopped) return;
      setLive("off", "Live alerts: reconnecting…");
      await new Promise((r) => setTimeout(r, retryMs));
    }
  }

  function setLive(kind, text) {
    const pill = $("live");
    pill.dataset.state = kind;
    pill.className = "pill " + (kind === "on" ? "pill-on" : "pill-off");
    pill.textContent = text;
  }

  // ---------------------------------------------------------------- clusters

  function renderClusters() {
    const list = $("clusters-list");
    clear(list);
    const rows = [...state.clusters].sort((a, b) => b.case_count - a.case_count ||
      String(b.last_window_start).localeCompare(String(a.last_window_start)));
    for (const c of rows) {
      const li = list.appendChild(el("li", { "data-venue": c.venue_id }));
      li.appendChild(el("span", { class: "count" }, c.case_count));
      const text = li.appendChild(el("div", { class: "what" }));
      text.appendChild(el("div", { class: "name" }, state.venues.get(c.venue_id) || shortId(c.venue_id)));
      const at = (t) => visitFmt.format(new Date(t)).replace(",", "");
      let span = "";
      if (c.first_window_start && c.last_window_start) {
        span = " · " + (c.first_window_start === c.last_window_start
          ? at(c.first_window_start)
          : `${at(c.first_window_start)} – ${at(c.last_window_start)}`);
      }
      text.appendChild(el("div", { class: "muted small", title: "first and last exposure window" }, provinceName(c.province) + span));
    }
    $("clusters-empty").hidden = rows.length > 0;
  }

  // ---------------------------------------------------------------- epidemic (area VN)

  // Days of a series answer for the nation: its rows of province "VN", oldest first.
  function nationRows(answer) {
    return answer ? answer.rows.filter((r) => r.province === "VN") : [];
  }

  // A chart of days: overlaid bars on the left axis (the first is the total), and a line on
  // the right axis with an optional interval band and reference line. Null values leave gaps.
  function drawDaily(hostId, boxId, rows, { bars, line }) {
    const host = $(hostId);
    const box = $(boxId);
    const width = Math.max(260, box.clientWidth);
    const height = Math.max(120, box.clientHeight - 4);
    frame(host, width, height);
    if (!rows.length) {
      svg("text", { x: 4, y: 20, class: "muted-text" }, host, "No data for these days.");
      return;
    }
    const axis = niceTicks(Math.max(0, ...rows.map((r) => r[bars[0].key])), 4);
    const values = rows.flatMap((r) => [r[line.key], line.upper ? r[line.upper] : null]).filter((v) => v !== null);
    const rAxis = niceTicks(Math.max(line.ref || 0, ...values), 4);
    const left = marginFor(axis), right = 40, top = 10, bottom = 22;
    const plotW = width - left - right, plotH = height - top - bottom;
    const slot = plotW / rows.length;
    const x = (i) => left + (i + 0.5) * slot;
    const y = (v) => top + plotH - (axis.top ? (v / axis.top) * plotH : 0);
    const ry = (v) => top + plotH - (rAxis.top ? (v / rAxis.top) * plotH : 0);
    const g = svg("g", { class: "axis" }, host);
    gridY(g, axis, y, left, left + plotW);
    for (const t of rAxis.ticks) {
      svg("text", { x: left + plotW + 6, y: ry(t) + 4, class: "tick " + line.tickCls }, g, line.fmt(t));
    }
    dayTicks(g, rows.map((r) => r.date), x, plotW, height);
    const bw = Math.max(1, Math.min(16, slot - 2));
    const barsG = svg("g", { class: "day-bars" }, host);
    for (const b of bars) {
      rows.forEach((r, i) => {
        const v = r[b.key] || 0;
        const rect = svg("rect", {
          x: x(i) - bw / 2, y: y(v), width: bw, height: y(0) - y(v), class: b.cls,
          "data-date": r.date, "data-value": v,
        }, barsG);
        svg("title", {}, rect, `${dayLabel(r.date)}: ${fmtInt(v)} ${b.label}`);
      });
    }
    if (line.ref) {
      svg("line", { x1: left, x2: left + plotW, y1: ry(line.ref), y2: ry(line.ref), class: "ref-line" }, host);
    }
    // Runs of consecutive days with a value: one path (and band) per run.
    const runs = [];
    let run = [];
    rows.forEach((r, i) => {
      if (r[line.key] === null || r[line.key] === undefined) {
        if (run.length) runs.push(run);
        run = [];
      } else {
        run.push(i);
      }
    });
    if (run.length) runs.push(run);
    for (const idx of runs) {
      const at = (key) => (i) => [x(i), ry(rows[i][key])];
      if (line.lower) {
        const band = [...idx.map(at(line.upper)), ...idx.slice().reverse().map(at(line.lower))];
        svg("path", { d: polyline(band) + "Z", class: line.band }, host);
      }
      svg("path", { d: polyline(idx.map(at(line.key))), class: line.cls }, host);
    }
    const dots = svg("g", { class: "points" }, host);
    rows.forEach((r, i) => {
      const v = r[line.key];
      if (v === null || v === undefined) return;
      const c = svg("circle", { cx: x(i), cy: ry(v), r: 2.4, class: line.pt, "data-date": r.date, "data-value": v }, dots);
      svg("title", {}, c, `${dayLabel(r.date)}: ${line.title(r)}`);
    });
  }

  const fmtShare = (v) => (v === null || v === undefined ? "–" : (100 * v).toFixed(v < 0.1 ? 1 : 0) + "%");

  function renderCases() {
    const cases = nationRows(state.epi.cases);
    const rt = new Map(nationRows(state.epi.rt).map((r) => [r.date, r]));
    if (!state.epi.cases) return;
    const rows = cases.map((c) => {
      const r = rt.get(c.date) || {};
      return { ...c, rt: r.rt ?? null, rt_lower: r.rt_lower ?? null, rt_upper: r.rt_upper ?? null, window_cases: r.window_cases ?? null };
    });
    $("cases-range").textContent = `${dayLabel(state.epi.cases.from)} – ${dayLabel(state.epi.cases.to)} · nation`;
    drawDaily("cases-chart", "cases-body", rows, {
      bars: [{ key: "by_sampling_date", cls: "bar-cases", label: "cases sampled" }],
      line: {
        key: "rt", lower: "rt_lower", upper: "rt_upper", ref: 1, cls: "line-rt", pt: "pt-rt", band: "rt-band", tickCls: "tick-rt",
        fmt: (t) => t.toFixed(t < 10 ? 1 : 0),
        title: (r) => `Rt ${r.rt.toFixed(2)} (95% ${r.rt_lower.toFixed(2)}–${r.rt_upper.toFixed(2)}), ${fmtInt(r.window_cases)} cases in the window`,
      },
    });
    const total = cases.reduce((s, c) => s + c.by_sampling_date, 0);
    const last = rows.filter((r) => r.rt !== null).pop();
    const m = state.epi.rt && state.epi.rt.method;
    $("cases-note").textContent = `${fmtInt(total)} cases in ${cases.length} days · ` + (last
      ? `Rt ${last.rt.toFixed(2)} (${last.rt_lower.toFixed(2)}–${last.rt_upper.toFixed(2)}) on ${dayLabel(last.date)}`
      : `Rt needs ${m ? m.min_cases : "more"} cases in ${m ? m.window_days : 7} days`) +
      " · the last days read low (results pending)";
  }

  function renderShare(kind) {
    const answer = state.epi[kind];
    if (!answer) return;
    const rows = nationRows(answer);
    const spec = kind === "positivity"
      ? { total: "tests", part: "positives", share: "positivity", partCls: "bar-positives", words: ["tests", "positive"] }
      : { total: "declarations", part: "symptomatic", share: "symptomatic_share", partCls: "bar-symptomatic", words: ["declarations", "with symptoms"] };
    drawDaily(`${kind}-chart`, `${kind}-body`, rows, {
      bars: [
        { key: spec.total, cls: "bar-total", label: spec.words[0] },
        { key: spec.part, cls: spec.partCls, label: spec.words[1] },
      ],
      line: {
        key: spec.share, cls: "line-share", pt: "pt-share", tickCls: "tick-share",
        fmt: (t) => fmtShare(t),
        title: (r) => `${fmtShare(r[spec.share])} (${fmtInt(r[spec.part])} of ${fmtInt(r[spec.total])})`,
      },
    });
    const total = rows.reduce((s, r) => s + r[spec.total], 0);
    const part = rows.reduce((s, r) => s + r[spec.part], 0);
    $(`${kind}-figure`).textContent =
      `${fmtInt(part)} of ${fmtInt(total)} ${spec.words[0]} · ${fmtShare(total ? part / total : null)} in ${rows.length} days`;
  }

  // ---------------------------------------------------------------- chains of one cluster

  // Cases in columns by generation (sampling order within a column), links as lines.
  function renderChains() {
    const host = $("chains-graph");
    const g = state.chains;
    clear(host);
    $("chains-empty").hidden = Boolean(g);
    if (!g) {
      host.setAttribute("height", 0);
      return;
    }
    const columns = [];
    for (const c of g.cases) (columns[c.generation] = columns[c.generation] || []).push(c);
    const colW = 110, rowH = 26, left = 30, top = 26;
    const deepest = Math.max(1, ...columns.map((c) => (c ? c.length : 0)));
    const width = Math.max($("chains-body").clientWidth - 4, left + columns.length * colW);
    const height = top + deepest * rowH + 6;
    frame(host, width, height);
    const at = new Map();
    columns.forEach((col, gen) => {
      const x = left + gen * colW;
      svg("text", { x, y: 12, "text-anchor": "middle", class: "gen-label" }, host, gen === 0 ? "source" : `gen ${gen}`);
      (col || []).forEach((c, i) => at.set(c.case_id, [x, top + i * rowH + rowH / 2]));
    });
    const edges = svg("g", { class: "links" }, host);
    for (const k of g.links) {
      const a = at.get(k.source_case_id), b = at.get(k.case_id);
      if (!a || !b) continue;
      const line = svg("line", {
        x1: a[0], y1: a[1], x2: b[0], y2: b[1], class: "chain-link",
        "data-source": k.source_case_id, "data-case": k.case_id,
      }, edges);
      svg("title", {}, line, `exposed ${visitFmt.format(new Date(k.exposure_at)).replace(",", "")}`);
    }
    const nodes = svg("g", { class: "nodes" }, host);
    for (const c of g.cases) {
      const [x, y] = at.get(c.case_id);
      const node = svg("g", { class: "node", "data-case": c.case_id, "data-generation": c.generation }, nodes);
      svg("circle", { cx: x, cy: y, r: 7, class: "chain-node" + (c.generation === 0 ? " root" : "") }, node);
      svg("text", { x: x + 10, y: y + 4, class: "value" }, node, dayLabel(c.sample_day));
      svg("title", {}, node, `case ${shortId(c.person_id)} · sampled ${visitFmt.format(new Date(c.collected_at)).replace(",", "")} · generation ${c.generation}`);
    }
    const venue = g.venues && g.venues[0];
    $("chains-note").textContent = `${fmtInt(g.cases.length)} cases, ${fmtInt(g.links.length)} links, ` +
      `${g.generations} generations` + (venue && venue.name ? ` · ${venue.name}` : "") +
      ` · sampled ${dayLabel(g.from)} – ${dayLabel(g.to)}` + (g.truncated ? " · truncated" : "");
  }

  // The cluster selector: clusters by size; the largest unless one was chosen.
  function renderChainChoices() {
    const select = $("chain-venue");
    const rows = [...state.clusters].sort((a, b) => b.case_count - a.case_count);
    const wanted = rows.some((c) => c.venue_id === state.chainVenue) ? state.chainVenue : (rows[0] || {}).venue_id;
    clear(select);
    for (const c of rows) {
      const o = el("option", { value: c.venue_id }, `${state.venues.get(c.venue_id) || shortId(c.venue_id)} (${c.case_count})`);
      select.appendChild(o);
    }
    if (wanted) select.value = wanted;
    return wanted ? rows.find((c) => c.venue_id === wanted) : null;
  }

  // ---------------------------------------------------------------- vaccine stock

  function renderStock() {
    const s = state.stock;
    if (!s) return;
    const body = $("stock-body");
    clear(body);
    const rows = [...s.items].sort((a, b) => (a.days_of_stock_left ?? 1e9) - (b.days_of_stock_left ?? 1e9) ||
      provinceName(a.province).localeCompare(provinceName(b.province), "vi") || a.vaccine.localeCompare(b.vaccine));
    for (const r of rows) {
      const tr = body.appendChild(el("tr", { "data-province": r.province, "data-vaccine": r.vaccine, "data-in-stock": r.in_stock }));
      tr.appendChild(el("td", {}, provinceName(r.province)));
      tr.appendChild(el("td", {}, r.vaccine));
      for (const k of ["allocated", "administered", "discarded"]) tr.appendChild(el("td", { class: "num" }, fmtInt(r[k])));
      tr.appendChild(el("td", { class: "num" + (r.in_stock < 0 ? " neg" : "") }, fmtInt(r.in_stock)));
      tr.appendChild(el("td", { class: "num" }, r.daily_rate ? r.daily_rate.toFixed(1) : "–"));
      const left = r.days_of_stock_left;
      tr.appendChild(el("td", { class: "num" + (left !== null && left < 7 ? " warn" : "") }, left === null ? "–" : left.toFixed(1)));
    }
    $("stock-empty").hidden = rows.length > 0;
    $("stock-total").textContent = `${fmtInt(s.total.in_stock)} doses in stock · ${fmtInt(s.total.allocated)} allocated`;
  }

  // ---------------------------------------------------------------- loading

  // Read and draw (`load`), then mark the panels `ids` as loaded; an error shows in the first.
  async function loading(ids, load) {
    try {
      await load();
      for (const id of ids) loaded(id);
    } catch (e) {
      failed(ids[0], e);
    }
  }

  function loadCoverage() {
    return loading(["panel-provinces", "panel-trend"], async () => {
      const today = localToday();
      const from = addDays(today, -(TREND_DAYS - 1));
      const q = (o) => new URLSearchParams(o).toString();
      const [coverage, series, doses] = await Promise.all([
        api("/v1/dashboard/coverage-by-province?" + q({ date: today, age_band: state.band }), { aggregate: true }),
        api("/v1/coverage/series?" + q({ area: "VN", from, to: today }), { aggregate: true }),
        api("/v1/doses/daily?" + q({ area: "VN", from, to: today }), { aggregate: true }),
      ]);
      Object.assign(state, { coverage, series, doses });
      renderProvinces();
      renderTrend();
      renderKpis();
    });
  }

  function loadEpidemic() {
    return loading(["panel-cases", "panel-positivity", "panel-syndromic"], async () => {
      const today = localToday();
      const q = new URLSearchParams({ area: "VN", from: addDays(today, -(TREND_DAYS - 1)), to: today }).toString();
      const [cases, rt, positivity, syndromic] = await Promise.all(
        ["cases", "rt", "positivity", "syndromic"].map((k) => api(`/v1/epidemiology/${k}?${q}`, { aggregate: true })),
      );
      state.epi = { cases, rt, positivity, syndromic };
      renderCases();
      renderShare("positivity");
      renderShare("syndromic");
    });
  }

  function loadStock() {
    return loading(["panel-stock"], async () => {
      state.stock = await api("/v1/vaccination/stock", { aggregate: true });
      renderStock();
    });
  }

  // The chains of the chosen cluster (audited: the answer names the cases).
  async function loadChains() {
    const cluster = renderChainChoices();
    if (!cluster) {
      state.chains = null;
      renderChains();
      return;
    }
    state.chainVenue = cluster.venue_id;
    try {
      const q = new URLSearchParams({ venue_id: cluster.venue_id }).toString();
      const chains = await api(`/v1/provinces/${encodeURIComponent(cluster.province)}/chains?${q}`);
      if (state.chainVenue !== cluster.venue_id) return; // another cluster was chosen meanwhile
      state.chains = chains;
      renderChains();
      loaded("panel-chains");
    } catch (e) {
      failed("panel-chains", e);
    }
  }

  function loadTurnaround() {
    return loading(["panel-tat"], async () => {
      state.turnaround = await api("/v1/testing/turnaround?area=VN", { aggregate: true });
      renderTurnaround();
      renderKpis();
    });
  }

  function loadRates() {
    return loading(["panel-ops"], async () => {
      state.rates = await api("/v1/ops/rates");
      renderRates();
      renderKpis();
    });
  }

  function loadAlerts() {
    return loading(["panel-alerts"], async () => {
      const page = await api("/v1/alerts?limit=100&status=ANY");
      const live = state.alerts.filter((a) => a._live);
      state.alerts = [...live];
      for (const a of page.items) upsertAlert(a, false);
      state.alertsMore = page.next_page_token !== null;
      renderAlerts();
    });
  }

  function loadClusters() {
    return loading(["panel-clusters"], async () => {
      const clusters = await api("/v1/clusters?limit=500");
      state.clusters = clusters.items;
      renderClusters();
      loadChains(); // not awaited: the chains panel shows its own state
      nameVenues(state.clusters.map((c) => c.venue_id));
    });
  }

  // Venue names for the alerts and clusters shown: one small read per venue, kept for the
  // session (a venue's exposure windows carry its name; they are not personal data).
  const naming = new Set();
  const unnamed = new Map(); // venue_id -> when a read of its name last failed
  async function nameVenues(ids) {
    const now = Date.now();
    const wanted = [...new Set(ids)].filter((id) => !state.venues.has(id) && !naming.has(id) &&
      !(now - (unnamed.get(id) || 0) < 60000));
    if (!wanted.length) return;
    wanted.forEach((id) => naming.add(id));
    const queue = [...wanted];
    let named = 0;
    const worker = async () => {
      while (queue.length && !state.stopped) {
        const id = queue.shift();
        try {
          const v = await api(`/v1/venues/${encodeURIComponent(id)}/exposure-windows`);
          state.venues.set(id, v.name || null);
          named += 1;
        } catch (e) {
          if (e instanceof AuthError) return failed("panel-alerts", e);
          unnamed.set(id, Date.now()); // shown by id; asked again in a minute
        } finally {
          naming.delete(id);
        }
      }
    };
    await Promise.all([worker(), worker(), worker()]);
    if (named) {
      scheduleAlerts();
      renderClusters();
      renderChainChoices();
    }
  }

  let clustersTimer = null;
  let clustersAskedAt = 0;
  // A new alert means a new case, which may have made a venue a cluster: read the clusters
  // again soon, but at most every 5 s (each read is audited: it names the cases).
  function scheduleClustersRefresh() {
    if (clustersTimer) return;
    const wait = Math.max(2000, clustersAskedAt + 5000 - Date.now());
    clustersTimer = setTimeout(() => {
      clustersTimer = null;
      clustersAskedAt = Date.now();
      loadClusters();
    }, wait);
  }

  function every(ms, fn) {
    const tick = async () => {
      if (state.stopped) return;
      if (!document.hidden) await fn();
      setTimeout(tick, ms);
    };
    setTimeout(tick, ms);
  }

  function start() {
    const claims = decodeClaims(state.token);
    if (!claims || !(claims.scopes || []).includes("moh")) {
      signIn("This dashboard needs a token with the moh scope.");
      return;
    }
    if (claims.exp && claims.exp * 1000 < Date.now()) {
      signIn("The token has expired. Ask for a new one.");
      return;
    }
    state.stopped = false;
    document.body.classList.remove("signed-out");
    $("signin").hidden = true;
    $("board").hidden = false;
    $("epi").hidden = false;
    $("sign-out").hidden = false;
    const expiry = claims.exp ? new Date(claims.exp * 1000) : null;
    const until = !expiry ? "" : " · token until " +
      (localDay(expiry) === localToday() ? timeFmt.format(expiry) : visitFmt.format(expiry));
    $("who").textContent = `${claims.sub}${until}`;
    // The four loads are independent; each panel shows its own error and retries.
    loadRates();
    loadCoverage();
    loadTurnaround();
    loadAlerts();
    loadClusters();
    loadEpidemic();
    loadStock();
    followAlerts();
    every(REFRESH_AGGREGATES_MS, () => Promise.all([loadCoverage(), loadTurnaround(), loadEpidemic(), loadStock()]));
    every(REFRESH_LISTS_MS, loadClusters);
    every(REFRESH_RATES_MS, loadRates);
  }

  function wire() {
    $("signin-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const token = $("signin-token").value.trim();
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      location.reload();
    });
    $("sign-out").addEventListener("click", () => signIn("Signed out."));
    for (const b of document.querySelectorAll(".toggle button")) {
      b.addEventListener("click", () => {
        state.band = b.dataset.band;
        for (const o of document.querySelectorAll(".toggle button")) {
          o.setAttribute("aria-pressed", String(o === b));
        }
        loadCoverage();
      });
    }
    // Charts are drawn to their box: draw again when a box changes size (window, layout).
    $("chain-venue").addEventListener("change", (e) => {
      state.chainVenue = e.target.value;
      loadChains();
    });
    const redraw = {
      "province-body": renderProvinces, "trend-body": renderTrend, "ops-body": renderRates, "tat-body": renderTurnaround,
      "cases-body": renderCases, "positivity-body": () => renderShare("positivity"),
      "syndromic-body": () => renderShare("syndromic"), "chains-body": renderChains,
    };
    const sizes = new Map();
    const observer = new ResizeObserver((entries) => {
      for (const entry of entries) {
        const { width, height } = entry.contentRect;
        const key = entry.target.id;
        const before = sizes.get(key);
        sizes.set(key, [width, height]);
        if (before && Math.abs(before[0] - width) < 1 && Math.abs(before[1] - height) < 1) continue;
        redraw[key]();
      }
    });
    for (const id of Object.keys(redraw)) observer.observe($(id));
  }

  // A new link (#token=...) opened in this tab replaces the token.
  window.addEventListener("hashchange", () => {
    if (new URLSearchParams(location.hash.replace(/^#/, "")).get("token")) {
      takeToken();
      location.reload();
    }
  });

  document.addEventListener("DOMContentLoaded", () => {
    wire();
    state.token = takeToken();
    if (!state.token) {
      signIn();
      return;
    }
    start();
  });
})();
