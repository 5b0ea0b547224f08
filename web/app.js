// The web monitor's page (served by cli/monitor.ts): samples arrive by Server-Sent Events (/events), one card per
// object with its numbers and a uPlot chart of the last minutes, the dead processes' leftovers with a clean button.
// Plain browser JavaScript, no build step; uPlot (the `uplot` package) is loaded before it as the global `uPlot`.
"use strict";

/** How far back the charts look, in seconds. */
const WINDOW = 5 * 60;
const TOKEN = document.querySelector('meta[name="ipckit-token"]').content;
const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed"];
/** The charted numbers per kind (the server sends them first: cli/monitor_sample.ts SERIES). */
let SERIES = { channel: ["msg/s", "MB/s"], pool: ["tasks/s", "queued", "running", "workers"], rpc: ["calls/s"] };

/** What each card shows besides the chart: [label, value of an object]. */
const NUMBERS = {
  channel: [
    ["msg/s", (o) => rate(o.series["msg/s"])],
    ["MB/s", (o) => o.series["MB/s"].toFixed(2)],
    ["sent", (o) => count(o.counters.messagesOut)],
    ["received", (o) => count(o.counters.messagesIn)],
    ["queued in", (o) => (o.queued === undefined || o.queued === null ? "-" : `${count(o.queued)} B`)],
  ],
  pool: [
    ["tasks/s", (o) => rate(o.series["tasks/s"])],
    ["queued", (o) => count(o.series.queued)],
    ["running", (o) => count(o.series.running)],
    ["workers", (o) => count(o.series.workers)],
    ["done", (o) => count(o.counters.done)],
    ["failed", (o) => count(o.counters.failed)],
  ],
  rpc: [
    ["calls/s", (o) => rate(o.series["calls/s"])],
    ["in flight", (o) => count(o.series["in flight"])],
    ["calls", (o) => count(o.counters.calls)],
    ["served", (o) => count(o.counters.served)],
    ["failed", (o) => count(o.counters.callsFailed + o.counters.servedFailed)],
  ],
  latency: [
    ["p50 us", (o) => time(o.series["p50 us"])],
    ["p99 us", (o) => time(o.series["p99 us"])],
    ["ops/s", (o) => rate(o.series["ops/s"])],
    ["count", (o) => count(o.counters.count)],
    ["failed", (o) => count(o.counters.failed)],
  ],
  lock: [
    ["acquired/s", (o) => rate(o.series["acquired/s"])],
    ["waiting", (o) => count(o.series.waiting)],
    ["holder", (o) => (o.counters.holder ? `thread ${o.counters.holder}` : "none here")],
    ["held for", (o) => (o.counters.heldSince ? age(o.counters.heldSince) : "-")],
    ["contended", (o) => count(o.counters.contended)],
    ["owner died", (o) => count(o.counters.ownerDied)],
    ["gave up", (o) => count(o.counters.gaveUp)],
    ["longest hold", (o) => time(o.counters.longestHoldUs)],
  ],
  semaphore: [
    ["acquired/s", (o) => rate(o.series["acquired/s"])],
    ["value", (o) => count(o.series.value)],
    ["waiting", (o) => count(o.series.waiting)],
    ["acquired", (o) => count(o.counters.acquired)],
    ["released", (o) => count(o.counters.released)],
    ["gave up", (o) => count(o.counters.gaveUp)],
  ],
  worker: [
    ["tasks/s", (o) => rate(o.series["tasks/s"])],
    ["running", (o) => count(o.series.running)],
    ["state", (o) => ["none", "starting", "ready", "draining", "stopping", "dead"][o.counters.state] ?? "?"],
    ["id", (o) => (o.counters.state ? String(o.counters.id) : "-")],
    ["done", (o) => count(o.counters.done)],
    ["restarts", (o) => count(o.counters.restarts)],
  ],
  nats: [
    ["connected", (o) => (o.series.connected ? "yes" : "no")],
    ["channels", (o) => count(o.series.channels)],
    ["disconnects", (o) => count(o.counters.disconnects)],
    ["reconnects", (o) => count(o.counters.reconnects)],
  ],
};
/** Kinds whose charted numbers share one scale (a latency's p50 and p99). */
const ONE_SCALE = new Set(["latency"]);

const numberFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const count = (x) => numberFormat.format(x);
const rate = (x) => (x < 10 && x > 0 ? x.toFixed(1) : numberFormat.format(x));
/** A time in microseconds, shortly ("-" when there is none: NaN arrives as null). */
function time(us) {
  if (us === null || us === undefined || Number.isNaN(us)) return "-";
  if (us < 10) return `${us.toFixed(1)} us`;
  if (us < 1000) return `${Math.round(us)} us`;
  if (us < 1e4) return `${(us / 1000).toFixed(1)} ms`;
  if (us < 1e6) return `${Math.round(us / 1000)} ms`;
  return `${(us / 1e6).toFixed(us < 1e7 ? 1 : 0)} s`;
}

/** How long ago `t` (ms since the epoch) was, shortly. */
function age(t, now = Date.now()) {
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}

/** A new element with attributes and children (strings become text: nothing from the server is parsed as HTML). */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

// ---- the objects, their history and their cards

/** key -> { object, t: seconds[], values: {series: number[]}, card, plot, numbers } */
const tracked = new Map();
let last = undefined;

/** Removes an object's card and chart (it is gone, or closed and hidden). */
function drop(entry) {
  entry.observer?.disconnect();
  entry.plot?.destroy();
  entry.card?.remove();
  entry.observer = entry.plot = entry.card = undefined;
}

function record(sample) {
  const t = sample.t / 1000;
  const seen = new Set();
  for (const o of sample.objects) {
    seen.add(o.key);
    let entry = tracked.get(o.key);
    if (!entry) {
      entry = { object: o, t: [], values: Object.fromEntries((SERIES[o.kind] ?? []).map((s) => [s, []])) };
      tracked.set(o.key, entry);
    }
    entry.object = o;
    entry.t.push(t);
    for (const s of SERIES[o.kind] ?? []) entry.values[s].push(o.series[s] ?? 0);
    while (entry.t.length > 0 && entry.t[0] < t - WINDOW) {
      entry.t.shift();
      for (const s of Object.values(entry.values)) s.shift();
    }
  }
  for (const [key, entry] of tracked) {
    if (seen.has(key)) continue;
    drop(entry);
    tracked.delete(key);
  }
  last = sample;
}

/** The top of a chart's scale: a little above `max`, rounded to 1, 2 or 5 times a power of ten. */
function ceiling(max) {
  if (!(max > 0)) return 1;
  const step = 10 ** Math.floor(Math.log10(max * 1.1));
  return [1, 2, 5, 10].map((m) => m * step).find((v) => v >= max * 1.1);
}

/** An axis label, shortly: 950, 12k, 3.4M, 0.25. */
function short(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toFixed(0)}k`;
  if (a >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return String(+v.toFixed(a < 1 ? 2 : 1));
}

const clock = (t) => new Date(t * 1000).toLocaleTimeString("en-GB");

function chartOptions(kind, width) {
  const names = SERIES[kind] ?? [];
  const one = ONE_SCALE.has(kind);
  const axis = { stroke: "#64748b", grid: { stroke: "#eef2f7" }, ticks: { show: false }, font: "11px sans-serif" };
  return {
    width,
    height: 120,
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
    scales: {
      x: { time: true },
      y: { range: (_u, _min, max) => [0, ceiling(max)] },
      y2: { range: (_u, _min, max) => [0, ceiling(max)] },
    },
    axes: [
      { ...axis, size: 22, space: 70, values: (_u, ticks) => ticks.map(clock) },
      { ...axis, scale: "y", size: 44, space: 24, values: (_u, ticks) => ticks.map(short) },
      {
        ...axis,
        scale: "y2",
        side: 1,
        size: 40,
        space: 24,
        grid: { show: false },
        values: (_u, ticks) => ticks.map(short),
        show: names.length > 1 && !one,
      },
    ],
    series: [
      {},
      ...names.map((label, i) => ({
        label,
        scale: i === 0 || one ? "y" : "y2",
        stroke: COLORS[i % COLORS.length],
        width: i === 0 ? 2 : 1.5,
        fill: i === 0 ? "rgba(37, 99, 235, 0.08)" : undefined,
        dash: i === 0 ? undefined : [4, 3],
        points: { show: false },
      })),
    ],
  };
}

function makeCard(entry) {
  const o = entry.object;
  const numbers = new Map();
  const list = el("dl", { class: "numbers" });
  const charted = SERIES[o.kind] ?? [];
  for (const [label] of NUMBERS[o.kind] ?? []) {
    const dd = el("dd", { "data-v": label });
    numbers.set(label, dd);
    const i = charted.indexOf(label);
    const dt = el("dt", i < 0 ? {} : { class: `series s${i % COLORS.length}` }, label);
    list.append(el("div", {}, dt, dd));
  }
  const chart = el("div", { class: "chart" });
  const card = el(
    "article",
    { class: "card", "data-key": o.key, "data-kind": o.kind, "data-pid": String(o.pid) },
    el("header", {}, el("span", { class: "name", title: o.name }, o.name), el("span", { class: "state" }, o.state)),
    el("div", { class: "meta" }, `pid ${o.pid} · ${o.runtime}`),
    list,
    chart,
  );
  entry.card = card;
  entry.numbers = numbers;
  entry.chart = chart;
  return card;
}

function showCard(entry, section) {
  if (!entry.card) section.querySelector(".cards").append(makeCard(entry));
  const o = entry.object;
  entry.card.dataset.state = o.state;
  entry.card.querySelector(".state").textContent = o.state;
  for (const [label, value] of NUMBERS[o.kind] ?? []) entry.numbers.get(label).textContent = value(o);
  const data = [entry.t, ...(SERIES[o.kind] ?? []).map((s) => entry.values[s])];
  if (!entry.plot) {
    const width = Math.max(200, entry.chart.clientWidth);
    entry.plot = new uPlot(chartOptions(o.kind, width), data, entry.chart);
    entry.observer = new ResizeObserver(() => {
      const w = Math.max(200, entry.chart.clientWidth);
      if (entry.plot && w !== entry.plot.width) entry.plot.setSize({ width: w, height: 120 });
    });
    entry.observer.observe(entry.chart);
  } else {
    entry.plot.setData(data);
  }
}

function render() {
  if (!last) return;
  const showClosed = document.getElementById("show-closed").checked;
  let closed = 0;
  const order = [...tracked.values()].sort((a, b) =>
    a.object.pid - b.object.pid || a.object.name.localeCompare(b.object.name)
  );
  const shown = { channel: 0, pool: 0, rpc: 0, latency: 0, lock: 0, semaphore: 0, nats: 0, worker: 0 };
  for (const entry of order) {
    const o = entry.object;
    if (o.state === "closed") closed++;
    const section = document.querySelector(`section.kind[data-kind="${o.kind}"]`);
    if (!section) continue;
    if (o.state === "closed" && !showClosed) {
      drop(entry);
      continue;
    }
    shown[o.kind]++;
    showCard(entry, section);
    section.querySelector(".cards").append(entry.card); // keeps the order
  }
  for (const section of document.querySelectorAll("section.kind")) {
    const n = shown[section.dataset.kind] ?? 0;
    section.querySelector(".count").textContent = n > 0 ? `(${n})` : "";
    section.querySelector(".empty").hidden = n > 0;
  }
  document.getElementById("closed-count").textContent = String(closed);
  const objects = last.objects.length;
  document.getElementById("summary").textContent = `${last.processes.length} processes · ${objects} objects · ` +
    new Date(last.t).toLocaleTimeString();
  renderProcesses(last);
  renderLeftovers(last);
  const unreadable = document.getElementById("unreadable");
  unreadable.hidden = last.unreadable.length === 0;
  unreadable.textContent = last.unreadable.map((u) => `${u.segment}: ${u.error}`).join("\n");
}

function renderProcesses(sample) {
  const rows = sample.processes.map((p) =>
    el(
      "tr",
      { "data-pid": String(p.pid) },
      el("td", {}, String(p.pid)),
      el("td", {}, p.runtime),
      el("td", {}, age(p.since, sample.t)),
      el("td", {}, String(p.objects)),
    )
  );
  document.getElementById("process-rows").replaceChildren(...rows);
}

function renderLeftovers(sample) {
  const section = document.getElementById("leftovers");
  section.hidden = sample.leftovers.length === 0 && document.getElementById("clean-result").textContent === "";
  const rows = sample.leftovers.map((r) =>
    el(
      "tr",
      { "data-pid": String(r.pid) },
      el("td", {}, String(r.pid)),
      el("td", {}, r.runtime),
      el("td", {}, r.kind),
      el("td", { class: "name" }, r.name),
      el("td", {}, age(r.created, sample.t)),
      el("td", {}, r.verified ? "yes" : "only with ipckit clean --force"),
    )
  );
  document.getElementById("leftover-rows").replaceChildren(...rows);
  document.getElementById("clean").disabled = sample.leftovers.length === 0;
}

// ---- the clean button: a confirmation, then POST /api/clean with this server's token

const dialog = document.getElementById("confirm");

document.getElementById("clean").addEventListener("click", () => {
  const items = last?.leftovers ?? [];
  const pids = new Set(items.map((r) => r.pid));
  document.getElementById("confirm-text").textContent =
    `${items.length} object(s) of ${pids.size} dead process(es) (pid ${[...pids].join(", ")}):`;
  document.getElementById("confirm-list").replaceChildren(
    ...items.map((r) => el("li", {}, `${r.kind} ${r.name} (pid ${r.pid}, ${r.runtime})`)),
  );
  dialog.showModal();
});

document.getElementById("confirm-cancel").addEventListener("click", () => dialog.close());

document.getElementById("confirm-clean").addEventListener("click", async () => {
  dialog.close();
  const result = document.getElementById("clean-result");
  result.textContent = "cleaning…";
  try {
    const response = await fetch("/api/clean", { method: "POST", headers: { "x-ipckit-token": TOKEN } });
    if (!response.ok) throw new Error(`${response.status} ${(await response.text()).trim()}`);
    const report = await response.json();
    const parts = [`removed ${report.removed.length} object(s)`];
    if (report.failed.length > 0) {
      parts.push(`could not remove ${report.failed.map((f) => `${f.kind} ${f.name}: ${f.error}`).join("; ")}`);
    }
    if (report.unverified.length > 0) {
      parts.push(`left ${report.unverified.length} that cannot be verified (ipckit clean --force)`);
    }
    result.textContent = parts.join(", ");
  } catch (e) {
    result.textContent = `clean failed: ${e.message}`;
  }
});

document.getElementById("show-closed").addEventListener("change", render);

// ---- the samples

const status = document.getElementById("status");
function setStatus(state, text) {
  status.dataset.state = state;
  status.textContent = text;
}

const events = new EventSource("/events");
events.addEventListener("series", (e) => (SERIES = JSON.parse(e.data)));
events.addEventListener("history", (e) => {
  for (const entry of tracked.values()) drop(entry);
  tracked.clear();
  for (const sample of JSON.parse(e.data)) record(sample);
  render();
  setStatus("live", "live");
});
events.addEventListener("message", (e) => {
  record(JSON.parse(e.data));
  render();
  setStatus("live", "live");
});
events.addEventListener("error", () => setStatus("lost", "reconnecting"));
