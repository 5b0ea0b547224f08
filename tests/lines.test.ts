import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { encodeLine, LineDecoder, MessageTooLargeError, tcp, unix } from "../mod.ts";
import { runtime } from "../runtimes/detect.ts";

const LONG = { timeout: 120_000 };
const utf8 = new TextEncoder();
const text = new TextDecoder();
const SEED = Date.now() ^ 0x11e5;

function decodeAll(chunks: Uint8Array[], max = 1 << 20): string[] {
  const out: string[] = [];
  const d = new LineDecoder(max, (line) => out.push(text.decode(line)));
  for (const c of chunks) d.push(c, false);
  d.finish();
  return out;
}

test("lines: any split of the stream gives the same messages (property)", () => {
  const line = fc.string({ minLength: 1, maxLength: 40 }).filter((s) => !/[\n\r]/.test(s));
  fc.assert(
    fc.property(fc.array(line, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 10 }), (lines, cuts) => {
      const bytes = utf8.encode(lines.map((l) => l + "\n").join(""));
      const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      const chunks: Uint8Array[] = [];
      let from = 0;
      for (const c of [...at, bytes.length]) {
        chunks.push(bytes.slice(from, c));
        from = c;
      }
      assert.deepEqual(decodeAll(chunks), lines);
    }),
    { numRuns: 200, seed: SEED, verbose: true },
  );
});

test("lines: CRLF ends, blank lines and a last line without its newline", () => {
  assert.deepEqual(decodeAll([utf8.encode("a\r\n\n\r\nb\nc")]), ["a", "b", "c"]);
  assert.deepEqual(decodeAll([utf8.encode("a\r"), utf8.encode("\nb\r")]), ["a", "b"]);
  assert.deepEqual(decodeAll([]), []);
});

test("lines: a line past maxMessage is MessageTooLargeError, also when it arrives in pieces", () => {
  assert.deepEqual(decodeAll([utf8.encode("12345\n")], 5), ["12345"]);
  assert.deepEqual(decodeAll([utf8.encode("12345\r\n")], 5), ["12345"]);
  assert.throws(() => decodeAll([utf8.encode("123456\n")], 5), MessageTooLargeError);
  assert.throws(() => decodeAll([utf8.encode("123"), utf8.encode("456"), utf8.encode("7\n")], 5), MessageTooLargeError);
  assert.throws(() => decodeAll([utf8.encode("123456")], 5), MessageTooLargeError); // unterminated, at EOF
});

test("lines: encodeLine appends a newline and refuses a message that holds one", () => {
  assert.deepEqual([...encodeLine(utf8.encode("ab"), "x")], [0x61, 0x62, 0x0a]);
  assert.throws(() => encodeLine(utf8.encode("a\nb"), "x"), /contains a newline byte/);
});

test('lines: a Unix socket channel with framing "lines" talks to a plain node:net peer', LONG, async () => {
  const net = await import("node:net");
  const rt = await runtime();
  const dir = await rt.makeTempDir("ipckit-test-");
  const listener = await unix.listen(`${dir}/l.sock`, { framing: "lines", maxMessage: 64 });
  const socket = net.connect(`${dir}/l.sock`);
  try {
    const channel = await listener.accept();
    socket.write("hello\r\nworld\n");
    assert.equal(text.decode(await channel.receive({ timeout: 30_000 })), "hello");
    assert.equal(text.decode(await channel.receive({ timeout: 30_000 })), "world");
    const echoed = new Promise<string>((resolve) => {
      let got = "";
      socket.setEncoding("utf8");
      socket.on("data", (c: string) => {
        got += c;
        if (got.endsWith("\n")) resolve(got);
      });
    });
    await assert.rejects(channel.send(utf8.encode("no\nnewlines")), TypeError);
    await channel.send(utf8.encode("back"));
    assert.equal(await echoed, "back\n"); // the refused message wrote nothing
    socket.write("x".repeat(100) + "\n");
    await assert.rejects(channel.receive({ timeout: 30_000 }), MessageTooLargeError);
    await channel.close();
  } finally {
    socket.destroy();
    await listener.close();
    await rt.removeDir(dir);
  }
});

test('lines: two ipckit ends over TCP with framing "lines"', LONG, async () => {
  const listener = await tcp.listen({ port: 0, framing: "lines" });
  const [a, b] = await Promise.all([tcp.connect({ port: listener.port, framing: "lines" }), listener.accept()]);
  try {
    for (let i = 0; i < 100; i++) await a.send(utf8.encode(`{"n":${i}}`));
    for (let i = 0; i < 100; i++) {
      assert.deepEqual(JSON.parse(text.decode(await b.receive({ timeout: 30_000 }))), { n: i });
    }
  } finally {
    await Promise.all([a.close(), b.close()]);
    await listener.close();
  }
});

test("lines: an unknown framing is a RangeError before anything is opened", async () => {
  await assert.rejects(tcp.listen({ port: 0, framing: "xml" as never }), RangeError);
  await assert.rejects(unix.connect("/nonexistent/ipckit.sock", { framing: "json" as never }), RangeError);
});
