import { runtime, unix } from "./mod.ts";
import type { ByteStream } from "./mod.ts";
const rt = await runtime();
const dir = await rt.makeTempDir("ipckit-b-");
const l = await unix.listen(`${dir}/s`);
const [a, b] = await Promise.all([unix.connect(`${dir}/s`), l.accept()]);
const style = rt.args()[0] ?? "forawait";
if (style === "forawait") {
  (async () => {
    for await (const m of b) await b.send(m);
  })();
} else {(async () => {
    for (;;) {
      const m = await b.receive();
      b.send(m);
    }
  })().catch(() => {});}
const ping = new Uint8Array(8);
const N = 20000;
const framed: number[] = [], raw: number[] = [];
let wake: () => void = () => {};
const got = new Promise<void>((r) => {
  rt.listenUnix(`${dir}/r`, (s) => {
    s.start({ data: (c) => void s.write(c.slice()), end() {} });
    r();
  });
});
await new Promise((r) => setTimeout(r, 50));
const s1: ByteStream = await rt.connectUnix(`${dir}/r`);
await got;
s1.start({ data: () => wake(), end() {} });
for (let r = 0; r < 6; r++) {
  let t0 = performance.now();
  for (let i = 0; i < N; i++) {
    await a.send(ping);
    await a.receive();
  }
  framed.push((performance.now() - t0) * 1000 / N);
  t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const p = new Promise<void>((r) => (wake = r));
    s1.write(ping.slice());
    await p;
  }
  raw.push((performance.now() - t0) * 1000 / N);
}
const med = (x: number[]) => x.sort((a, b) => a - b)[x.length >> 1]!.toFixed(2);
console.log(rt.name, style, "framed", med(framed), "raw", med(raw));
await rt.removeDir(dir);
rt.exit(0);
