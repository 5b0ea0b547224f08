/**
 * The benchmark chart: a standalone SVG (no fonts, scripts or images fetched from anywhere) drawn from a
 * {@linkcode BenchReport} with Vega-Lite, compiled to Vega and rendered headless by `View#toSVG()` (no canvas, no
 * browser), which works the same on Deno, Bun and Node. Panels, top to bottom: the round-trip latency distribution
 * per transport and runtime pair (p50, p99, p99.9, max on a log axis, floors included as their own rows), then one
 * panel of one-way throughput per message size (M msg/s for small messages, GB/s for large ones).
 *
 * @example
 * ```ts
 * import { renderChart } from "./chart.ts";
 * import { machineInfo } from "./report.ts";
 *
 * const svg = await renderChart({
 *   date: "2026-12-06",
 *   machine: await machineInfo(),
 *   runtimes: { node: "20.19.0" },
 *   latency: [{ transport: "shm", pair: "node-node", p50: 0.83, p99: 2.1, p999: 40, max: 460, count: 100000 }],
 *   throughput: [],
 * });
 * console.log(svg.startsWith("<svg")); // true
 * ```
 *
 * @module
 */
import * as vega from "vega";
import * as vl from "vega-lite";
import { type BenchReport, checkReport } from "./report.ts";

/** Width of each panel's plot area in pixels: with its labels, the chart stays under ~900 px. */
const PLOT_WIDTH = 520;
const ROW_HEIGHT = 20;
/** Row labels longer than this (in pixels) are cut with an ellipsis. */
const LABEL_LIMIT = 320;
/** Sizes at or above this are charted in GB/s, below it in M msg/s. */
const BIG_MESSAGE = 4096;
const FONT = "DejaVu Sans, Helvetica, Arial, sans-serif";
const STATS = ["p50", "p99", "p99.9", "max"] as const;

/**
 * Draws `report` as a standalone SVG document (starts with `<svg`).
 *
 * @throws {TypeError} when the report is empty or malformed (see `checkReport` in `report.ts`).
 * @example
 * ```ts
 * const svg = await renderChart(report);
 * await Deno.writeTextFile("bench.svg", svg); // or node:fs writeFile
 * ```
 */
export async function renderChart(report: BenchReport): Promise<string> {
  checkReport(report);
  const spec = chartSpec(report);
  const compiled = vl.compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none", logLevel: vega.Warn });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** `64 B`, `1 KiB`, `64 KiB`, `1 MiB`. */
function sizeText(bytes: number): string {
  if (bytes >= 1 << 20 && bytes % (1 << 20) === 0) return `${bytes / (1 << 20)} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} B`;
}

/** Three significant digits at most: `0.183`, `2.1`, `460`. */
function figure(us: number): string {
  return us >= 100 ? us.toFixed(0) : String(Number(us.toPrecision(3)));
}

/** A row's label: what and between whom (`shm (trySend) · node-bun`). */
function label(transport: string, pair: string, api?: string): string {
  return `${transport}${api === undefined ? "" : ` (${api})`} · ${pair}`;
}

/** Floors (transport names ending in "(floor)") are drawn in their own colour. */
const kind = (transport: string) => (/floor/i.test(transport) ? "floor" : "ipckit");

/** The Vega-Lite specification of the whole chart. */
function chartSpec(report: BenchReport): vl.TopLevelSpec {
  const m = report.machine;
  const versions = Object.entries(report.runtimes).map(([name, v]) => `${name} ${v}`).join(" · ");
  const panels: Record<string, unknown>[] = [];
  if (report.latency.length > 0) panels.push(latencyPanel(report));
  const sizes = [...new Set(report.throughput.map((t) => t.size))].sort((a, b) => a - b);
  for (const size of sizes) panels.push(throughputPanel(report, size, String.fromCharCode(97 + panels.length)));
  return {
    background: "white",
    padding: 16,
    title: {
      text: `ipckit shared-memory benchmark, ${report.date}`,
      subtitle: [
        `${m.cpu} · ${m.cores} cores · ${m.memoryGiB} GiB · Linux ${m.kernel}`,
        ...(versions === "" ? [] : [versions]),
        ...(report.notes ?? []),
      ],
      anchor: "start",
      fontSize: 18,
      subtitleFontSize: 12,
      subtitleColor: "#444",
      offset: 16,
    },
    vconcat: panels,
    spacing: 36,
    resolve: { scale: { color: "independent", y: "independent" } },
    config: {
      font: FONT,
      axis: { labelFontSize: 11, titleFontSize: 12, gridColor: "#e6e6e6" },
      legend: { orient: "top", labelFontSize: 11, titleFontSize: 11 },
      view: { stroke: "#ccc" },
    },
    // The panels are plain data: Vega-Lite's own types for layered specs are generic enough to fight every literal
    // here, and the compiler checks the specification when it runs (a test renders every panel).
  } as unknown as vl.TopLevelSpec;
}

/** Panel (a): one row per transport and pair, a line from p50 to the largest figure, a mark per percentile. */
function latencyPanel(report: BenchReport): Record<string, unknown> {
  const points: Record<string, unknown>[] = [];
  const spans: Record<string, unknown>[] = [];
  const order: string[] = [];
  for (const row of report.latency) {
    const name = label(row.transport, row.pair);
    order.push(name);
    const figures = [row.p50, row.p99, row.p999, row.max];
    let hi = row.p50;
    figures.forEach((us, i) => {
      if (us === undefined) return;
      points.push({ label: name, stat: STATS[i], us });
      hi = Math.max(hi, us);
    });
    spans.push({ label: name, lo: row.p50, hi, kind: kind(row.transport), p50: `p50 ${figure(row.p50)} µs` });
  }
  // Log-axis room right of the largest figure for the p50 text written there.
  const top = Math.max(...spans.map((s) => s.hi as number)) * 8;
  const x = { field: "lo", type: "quantitative", scale: { type: "log", domainMax: top } };
  const y = {
    field: "label",
    type: "nominal",
    sort: order,
    title: null,
    axis: { labelLimit: LABEL_LIMIT },
  };
  return {
    title: { text: "(a) 8-byte round trip: latency distribution", anchor: "start", fontSize: 14 },
    width: PLOT_WIDTH,
    height: { step: ROW_HEIGHT },
    layer: [
      {
        data: { values: spans },
        mark: { type: "rule", strokeWidth: 2 },
        encoding: {
          y,
          x,
          x2: { field: "hi" },
          color: {
            field: "kind",
            type: "nominal",
            scale: { domain: ["ipckit", "floor"], range: ["#9ab", "#d62728"] },
            legend: null,
          },
        },
      },
      {
        data: { values: points },
        mark: { type: "point", filled: true, size: 60, opacity: 0.95 },
        encoding: {
          y,
          x: {
            field: "us",
            type: "quantitative",
            scale: { type: "log", domainMax: top },
            axis: { title: "round trip (µs, log scale)", format: "~g", tickCount: 8 },
          },
          color: {
            field: "stat",
            type: "nominal",
            title: "percentile",
            scale: { domain: [...STATS], range: ["#1f77b4", "#ff7f0e", "#9467bd", "#7f7f7f"] },
          },
          shape: {
            field: "stat",
            type: "nominal",
            scale: { domain: [...STATS], range: ["circle", "diamond", "triangle-up", "square"] },
            legend: null,
          },
        },
      },
      {
        // The p50, the figure a reader compares first, readable without the axis.
        data: { values: spans },
        mark: { type: "text", align: "left", dx: 9, fontSize: 10, color: "#333" },
        encoding: { y, x: { field: "hi", type: "quantitative" }, text: { field: "p50" } },
      },
    ],
    resolve: { scale: { color: "independent" } },
  };
}

/** Panels (b): one-way throughput of one message size, a bar per transport/API and pair, the value at its end. */
function throughputPanel(report: BenchReport, size: number, letter: string): Record<string, unknown> {
  const big = size >= BIG_MESSAGE;
  const unit = big ? "GB/s" : "M msg/s";
  const values = report.throughput.filter((t) => t.size === size).map((t) => ({
    label: label(t.transport, t.pair, t.api),
    value: big ? t.bytesPerSec / 1e9 : t.msgsPerSec / 1e6,
    kind: kind(t.transport),
  }));
  const y = {
    field: "label",
    type: "nominal",
    sort: values.map((v) => v.label),
    title: null,
    axis: { labelLimit: LABEL_LIMIT },
  };
  // Room past the longest bar for its value.
  const top = Math.max(...values.map((v) => v.value)) * 1.1;
  const x = {
    field: "value",
    type: "quantitative",
    axis: { title: `${sizeText(size)} one way (${unit})`, tickCount: 6 },
    scale: { zero: true, domainMax: top },
  };
  return {
    title: { text: `(${letter}) ${sizeText(size)} messages: one-way throughput`, anchor: "start", fontSize: 14 },
    width: PLOT_WIDTH,
    height: { step: ROW_HEIGHT },
    data: { values },
    layer: [
      {
        mark: { type: "bar", height: { band: 0.7 } },
        encoding: {
          y,
          x,
          color: {
            field: "kind",
            type: "nominal",
            title: null,
            scale: { domain: ["ipckit", "floor"], range: ["#4c78a8", "#d62728"] },
          },
        },
      },
      {
        mark: { type: "text", align: "left", dx: 4, fontSize: 11 },
        encoding: { y, x, text: { field: "value", type: "quantitative", format: big ? ".2f" : ".1f" } },
      },
    ],
  };
}
