// A real browser for the web monitor's tests (tests/monitor.test.ts), driven by playwright-core: Debian's chromium
// (/usr/bin/chromium, scripts/preflight.mjs installs it). Plain JavaScript run by Node whatever runner runs the test
// (playwright-core is not made for Deno or Bun): the test sends one JSON command a line on stdin, and this answers
// one JSON line on stdout, `{"ok":true,"value":...}` or `{"ok":false,"error":"..."}`. When stdin ends (the test is
// done, or died) the browser is closed and this exits.
//
//   {"op":"open","url":U,"width":W,"height":H}    a page of that size at U
//   {"op":"wait","selector":S,"text":RE}          waits until S is there (and its text matches RE); answers its text
//   {"op":"gone","selector":S}                    waits until nothing matches S
//   {"op":"changed","selector":S,"from":T}        waits until S's text is not T; answers the new text
//   {"op":"text","selector":S} / {"op":"count","selector":S} / {"op":"click","selector":S}
//   {"op":"errors"}                               the page's errors and console errors so far
//   {"op":"screenshot","path":P}
//
// Alone, for the docs: `node tests/helpers/browser.mjs screenshot <url> <file.png> [width height wait-ms]`.
import { createInterface } from "node:readline";
import process from "node:process";
import { chromium } from "playwright-core";

const TIMEOUT = 60_000;
const CHROMIUM = process.env.IPCKIT_CHROMIUM ?? "/usr/bin/chromium";

let browser;
let page;
const errors = [];

async function open(url, width = 1280, height = 800) {
  browser ??= await chromium.launch({ executablePath: CHROMIUM });
  page = await browser.newPage({ viewport: { width, height } });
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  await page.goto(url);
}

const ops = {
  open: (c) => open(c.url, c.width, c.height),
  async wait({ selector, text }) {
    const re = text === undefined ? undefined : new RegExp(text);
    await page.waitForFunction(
      ([s, source]) => {
        const e = document.querySelector(s);
        return e !== null && (source === undefined || new RegExp(source).test(e.textContent ?? ""));
      },
      [selector, re?.source],
      { timeout: TIMEOUT, polling: 100 },
    );
    return page.textContent(selector);
  },
  gone: ({ selector }) =>
    page.waitForFunction((s) => document.querySelector(s) === null, selector, { timeout: TIMEOUT, polling: 100 }),
  async changed({ selector, from }) {
    await page.waitForFunction(
      ([s, before]) => {
        const e = document.querySelector(s);
        return e !== null && e.textContent !== before;
      },
      [selector, from],
      { timeout: TIMEOUT, polling: 100 },
    );
    return page.textContent(selector);
  },
  text: ({ selector }) => page.evaluate((s) => document.querySelector(s)?.textContent ?? null, selector),
  count: ({ selector }) => page.evaluate((s) => document.querySelectorAll(s).length, selector),
  click: ({ selector }) => page.click(selector, { timeout: TIMEOUT }),
  errors: () => errors,
  screenshot: async ({ path }) => void (await page.screenshot({ path })),
};

async function serve() {
  const input = createInterface({ input: process.stdin });
  for await (const line of input) {
    if (line.trim() === "") continue;
    let answer;
    try {
      const command = JSON.parse(line);
      const op = ops[command.op];
      if (op === undefined) throw new Error(`unknown op ${command.op}`);
      answer = { ok: true, value: (await op(command)) ?? null };
    } catch (e) {
      answer = { ok: false, error: e instanceof Error ? e.message : String(e) };
    }
    process.stdout.write(`${JSON.stringify(answer)}\n`);
  }
}

try {
  const [mode, url, path, width, height, wait] = process.argv.slice(2);
  if (mode === "screenshot") {
    await open(url, Number(width ?? 1280), Number(height ?? 800));
    await page.waitForTimeout(Number(wait ?? 5000));
    await page.screenshot({ path });
    for (const e of errors) console.error(e);
  } else {
    await serve();
  }
} finally {
  await browser?.close();
}
