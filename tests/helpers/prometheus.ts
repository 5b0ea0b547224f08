/**
 * A strict parser of Prometheus's text format (0.0.4), for the tests of `stats.prometheusText` (`stats.test.ts`) and
 * of the web monitor's `/metrics` (`monitor.test.ts`): every line is a HELP, a TYPE or a sample under its family's
 * TYPE, with well-formed labels; anything else fails the test.
 */
import assert from "node:assert/strict";

/** A metric family: its type and its samples. */
export interface Family {
  type: string;
  /** `name`: the sample's own name (a histogram's end in _bucket, _sum or _count). */
  samples: { name: string; labels: Record<string, string>; value: number }[];
}

/** Parses Prometheus text (format 0.0.4) strictly: the families (TYPE) and their samples with labels. */
export function parsePrometheus(
  text: string,
): Map<string, Family> {
  const families = new Map<string, Family>();
  let current: string | undefined;
  for (const line of text.split("\n")) {
    if (line === "") continue;
    if (line.startsWith("# HELP ")) continue;
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$/.exec(line);
    if (type) {
      assert.ok(!families.has(type[1]!), `one TYPE line per family: ${type[1]}`);
      families.set(type[1]!, { type: type[2]!, samples: [] });
      current = type[1];
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(sample, `a sample line: ${JSON.stringify(line)}`);
    // A histogram's samples are <family>_bucket (with le), <family>_sum and <family>_count.
    const own = families.get(current!)?.type === "histogram"
      ? [`${current}_bucket`, `${current}_sum`, `${current}_count`]
      : [current];
    assert.ok(own.includes(sample[1]), `a sample under its own TYPE: ${line}`);
    const labels: Record<string, string> = {};
    const body = sample[2] ?? "";
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(?:,|$)/y;
    let at = 0;
    while (at < body.length) {
      re.lastIndex = at;
      const m = re.exec(body);
      assert.ok(m, `labels: ${body}`);
      labels[m[1]!] = m[2]!.replace(/\\([\\"n])/g, (_, c: string) => (c === "n" ? "\n" : c));
      at = re.lastIndex;
    }
    const value = sample[3] === "+Inf" ? Infinity : sample[3] === "-Inf" ? -Infinity : Number(sample[3]);
    assert.ok(sample[3] === "NaN" || !Number.isNaN(value), `a number: ${line}`);
    families.get(current!)!.samples.push({ name: sample[1]!, labels, value });
  }
  return families;
}
