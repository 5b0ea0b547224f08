/**
 * The named-object conformance suite: what every kind of named OS object promises, checked through its public API
 * and its named-object descriptor (`os/named.ts`), on this runtime and against a process of another runtime.
 *
 * For each fixture (`named_fixtures.ts`, one entry per kind):
 * - `create` makes the object: the descriptor finds it (with its file type where it has one) and lists it where the
 *   kind can be listed, and the owner record (kind, name, identity) is written;
 * - `create` of a name that exists rejects with `AlreadyExistsError`; `open` finds what `create` made and a missing
 *   name is a `NotFoundError`; `openOrCreate` creates, then opens the same object;
 * - `close()` releases a handle and keeps the name (or, for a listener's socket file, removes it with its record);
 *   `unlink()` removes the name and its record;
 * - the descriptor's `remove` removes the object (true), then finds nothing (false);
 * - permission bits: 0600 by default, 0644 when asked, as the OS reports them;
 * - bad names are a `TypeError`, `RangeError` or `IpcError` (from the API and from the descriptor), never a crash;
 * - an object that a process of another runtime made (`tests/helpers/resource_child.ts`) is opened here, found by
 *   the descriptor, and listed with that process as its live owner.
 * A case that cannot apply to a kind says why (its fixture holds the reason), never skipped silently. Every object a
 * case makes is removed in `finally`.
 *
 * A little over 400 lines: the fixture contract, the shared set-up (registry, child) and the ten cases read together.
 */
import { test } from "node:test";
import { mkdirSync } from "node:fs";
import assert from "node:assert/strict";
import {
  AlreadyExistsError,
  type Channel,
  type ChildProcess,
  IpcError,
  NotFoundError,
  pipe,
  resources,
  type RuntimeName,
} from "../../mod.ts";
import { native } from "../../ffi/native.ts";
import type { NamedKind } from "../../os/named.ts";
import { statPath } from "../../os/stat.ts";
import { runtime } from "../../runtimes/detect.ts";
import { runtimeArgv } from "../../runtimes/argv.ts";

const rt = await runtime();
const ffi = await native();

/** A handle on a named object, as a fixture hands it to the suite. */
export interface Handle {
  /**
   * The names the kind's descriptor knows the object by (a FIFO pair has two; a System V queue its id); none for a
   * handle that owns no name (a connection to a listener, the opening side of a FIFO pair).
   */
  readonly names: readonly string[];
  /** System V: the queue's key. */
  readonly key?: number;
  /** Releases this handle. */
  close(): Promise<void>;
  /** Removes the name, where the handle has an `unlink()` (or `remove()`). */
  unlink?(): Promise<void>;
}

/** What `tests/helpers/resource_child.ts` reports it made (see there). */
export interface ChildMade {
  readonly pid: number;
  readonly name: string;
  readonly fifo: string;
  readonly sock: string;
  readonly dgram: string;
  readonly id: number;
  readonly lock: string;
  readonly queue: string;
}

/** Options of a fixture's create and openOrCreate. */
export interface MakeOptions {
  mode?: number;
}

type Maybe<T> = T | string;

/** What the suite needs from a kind of named object. A string instead of a function says why the case cannot apply. */
export interface NamedFixture {
  readonly name: string;
  /** The kind's descriptor, or why it has none (an object ipckit keeps no record of). */
  readonly kind: NamedKind | string;
  /** An address (POSIX name, path or System V key) that nothing uses, for a case working in `dir`. */
  fresh(dir: string): string;
  readonly create: Maybe<(address: string, options?: MakeOptions) => Promise<Handle>>;
  readonly open: Maybe<(address: string) => Promise<Handle>>;
  readonly openOrCreate: Maybe<(address: string, options?: MakeOptions) => Promise<Handle>>;
  /** Whether `close()` removes the name (a listener's socket file), or keeps it. */
  readonly closeRemoves: boolean;
  /** Why handles have no `unlink()`, when they have none. */
  readonly noUnlink?: string;
  /** Why the object has no mode option, when it has none (then only the default is checked). */
  readonly noMode?: string;
  /** Why the descriptor's `remove` cannot be checked under an open handle here, when it cannot. */
  readonly noRemoveWhileOpen?: string;
  /** Addresses `create` and `open` must refuse with a TypeError, RangeError or IpcError. */
  readonly badNames: readonly unknown[];
  /** The address and descriptor names of the object the child made, or why the child makes none. */
  readonly fromChild: Maybe<(made: ChildMade) => { address: string; names: string[]; key?: number }>;
  /** Removes whatever may be left of a case's objects (after the handles' names are removed). */
  cleanup?(address: string): Promise<void>;
}

// ---- shared set-up: one registry directory, one scratch directory, one child of another runtime

let registry = "";
let scratch = "";
let child: { channel: Channel; process: ChildProcess; made: ChildMade } | undefined;
let childStart: Promise<ChildMade> | undefined;
const CHILD = rt.fromFileUrl(new URL("../helpers/resource_child.ts", import.meta.url));
const ROOT = rt.fromFileUrl(new URL("../../", import.meta.url));

/** The runtime after this one: the cross-runtime cases run against it. */
export function otherRuntime(): RuntimeName {
  const all: RuntimeName[] = ["deno", "bun", "node"];
  return all[(all.indexOf(rt.name) + 1) % all.length]!;
}

/**
 * Makes the shared registry and scratch directories (once, on first use). Set-up and tear-down are not `before` and
 * `after` hooks: Deno's node:test runs no `after` hook in a file where a test is skipped, and this suite skips cases
 * that cannot apply (with their reasons).
 */
async function setUp(): Promise<void> {
  if (scratch !== "") return;
  scratch = await rt.makeTempDir("ipckit-named-");
  registry = `${scratch}/registry`;
  mkdirSync(registry, { mode: 0o700 });
  resources.useRegistry(registry);
}

/** The last case of a file: stops the shared child (which removes what it made) and removes the directories. */
export function namedTearDown(): void {
  test("named objects: the child of another runtime removes what it made, and the scratch directory goes", async () => {
    resources.useRegistry(undefined);
    if (child !== undefined) {
      await child.channel.send(new TextEncoder().encode("stop")).catch(() => {});
      const timer = setTimeout(() => child!.process.kill("SIGKILL"), 30_000);
      const status = await child.process.exited;
      clearTimeout(timer);
      await child.channel.close().catch(() => {});
      assert.deepEqual(status, { code: 0, signal: null });
    }
    if (scratch !== "") await rt.removeDir(scratch);
  });
}

/** The objects a child of the other runtime made (started on first use, shared by every fixture). */
function childMade(): Promise<ChildMade> {
  return childStart ??= (async () => {
    await setUp();
    const { channel, child: process } = await pipe.spawn([
      ...runtimeArgv(otherRuntime(), CHILD),
      `named-${rt.pid}`,
      scratch,
    ], {
      cwd: ROOT,
      env: { IPCKIT_REGISTRY: registry },
    });
    try {
      const made = JSON.parse(new TextDecoder().decode(await channel.receive({ timeout: 60_000 })));
      assert.equal(made.ready, true);
      child = { channel, process, made };
      return made as ChildMade;
    } catch (e) {
      process.kill("SIGKILL");
      await channel.close().catch(() => {});
      throw e;
    }
  })();
}

// ---- helpers of the cases

/** The handles a case made; `finally` closes them and removes their names. */
class Made {
  readonly #handles: Handle[] = [];
  constructor(readonly fixture: NamedFixture, readonly address: string) {}
  async add(p: Promise<Handle>): Promise<Handle> {
    const h = await p;
    this.#handles.push(h);
    return h;
  }
  async cleanup(): Promise<void> {
    for (const h of this.#handles) await h.close().catch(() => {});
    const d = this.fixture.kind;
    for (const h of this.#handles) {
      for (const name of h.names) {
        try {
          if (typeof d !== "string") d.remove(ffi, name);
        } catch { /* gone already */ }
      }
    }
    await this.fixture.cleanup?.(this.address).catch(() => {});
  }
}

async function inCase(fixture: NamedFixture, fn: (made: Made, address: string) => Promise<void>): Promise<void> {
  await setUp();
  const address = fixture.fresh(scratch);
  const made = new Made(fixture, address);
  try {
    await fn(made, address);
  } finally {
    await made.cleanup();
  }
}

/** The records of `registry` for `names`, as `kind name`. */
async function recordsOf(kind: NamedKind, names: readonly string[]): Promise<string[]> {
  return (await resources.list({ dir: registry })).filter((r) => r.kind === kind.kind && names.includes(r.name)).map((
    r,
  ) => `${r.kind} ${r.name}`).sort();
}

/** The permission bits of the object: from its descriptor's look-up, or the file's. */
function modeOf(fixture: NamedFixture, h: Handle): number | undefined {
  const name = h.names[0]!;
  const found = typeof fixture.kind === "string" ? statPath(ffi, name) : fixture.kind.lookUp(ffi, name, h.key);
  return found.found === "object" ? found.mode : undefined;
}

function isCleanError(e: unknown): boolean {
  return e instanceof TypeError || e instanceof RangeError || e instanceof IpcError;
}

const someOf = <T>(f: Maybe<T>): T | undefined => (typeof f === "string" ? undefined : f);
/** The `skip` option of a case that needs `f`: false when there is one, else the fixture's reason. */
const needs = (...fs: Maybe<unknown>[]): string | false => fs.find((f) => typeof f === "string") as string ?? false;

/** The suite over one fixture. */
export function namedConformance(fixture: NamedFixture): void {
  const t = fixture.name;
  const d = typeof fixture.kind === "string" ? undefined : fixture.kind;
  const create = someOf(fixture.create);
  const open = someOf(fixture.open);
  const openOrCreate = someOf(fixture.openOrCreate);
  /** How the suite makes an object: create, or openOrCreate where there is no exclusive create. */
  const make = create ?? openOrCreate!;

  const found = d ? ", found by the descriptor, listed and recorded" : " (a file: no record)";
  test(`${t}: create makes the object${found}`, async () => {
    await inCase(fixture, async (made, address) => {
      const h = await made.add(make(address));
      assert.ok(h.names.length > 0);
      if (d === undefined) {
        for (const name of h.names) assert.equal(statPath(ffi, name).found, "object", name);
        return;
      }
      for (const name of h.names) {
        const found = d.lookUp(ffi, name, h.key);
        assert.equal(found.found, "object", `${name}: ${JSON.stringify(found)}`);
        if (d.fileType !== undefined && found.found === "object") assert.equal(found.type, d.fileType);
        assert.equal(d.exists(ffi, name, h.key), true);
      }
      if (d.list !== undefined) {
        // An empty list: the OS shows none of this kind here (/dev/mqueue not mounted); else it must hold the name.
        const listed = await d.list(rt);
        for (const name of h.names) assert.ok(listed.length === 0 || listed.includes(name), `${name} not listed`);
      }
      assert.deepEqual(await recordsOf(d!, h.names), h.names.map((n) => `${d.kind} ${n}`).sort());
      const [record] = (await resources.list({ dir: registry })).filter((r) =>
        r.kind === d.kind && r.name === h.names[0]
      );
      assert.equal(record?.object, "same", "the record's identity matches the object");
      assert.equal(record?.pid, rt.pid);
    });
  });

  test(
    `${t}: create refuses a name that exists with AlreadyExistsError`,
    { skip: needs(fixture.create) },
    () =>
      inCase(fixture, async (made, address) => {
        await made.add(create!(address));
        await assert.rejects(made.add(create!(address)), AlreadyExistsError);
      }),
  );

  test(`${t}: open finds the object create made; a missing name is NotFoundError`, {
    skip: needs(fixture.open),
  }, () =>
    inCase(fixture, async (made, address) => {
      await assert.rejects(made.add(open!(address)), NotFoundError);
      const first = await made.add(make(address));
      const second = await made.add(open!(address));
      // A connection owns no name (names: []); a handle on the object itself has the creator's names.
      if (second.names.length > 0) assert.deepEqual(second.names, first.names);
      if (d !== undefined && second.names.length > 0) {
        const a = d.lookUp(ffi, first.names[0]!, first.key), b = d.lookUp(ffi, second.names[0]!, second.key);
        assert.ok(a.found === "object" && b.found === "object");
        assert.equal(a.identity.ino, b.identity.ino);
      }
    }));

  test(`${t}: openOrCreate creates, then opens the same object`, {
    skip: needs(fixture.openOrCreate),
  }, () =>
    inCase(fixture, async (made, address) => {
      const first = await made.add(openOrCreate!(address));
      const second = await made.add(openOrCreate!(address));
      assert.deepEqual(second.names, first.names);
      const lookUp = (h: Handle) => d ? d.lookUp(ffi, h.names[0]!, h.key) : statPath(ffi, h.names[0]!);
      const a = lookUp(first), b = lookUp(second);
      assert.ok(a.found === "object" && b.found === "object");
      assert.deepEqual([a.identity.dev, a.identity.ino], [b.identity.dev, b.identity.ino]);
      if (d !== undefined) assert.equal((await recordsOf(d, first.names)).length, first.names.length);
    }));

  test(`${t}: close releases the handle; ${fixture.closeRemoves ? "it removes" : "the name stays"}`, () =>
    inCase(fixture, async (made, address) => {
      const h = await made.add(make(address));
      await h.close();
      await h.close(); // idempotent
      for (const name of h.names) {
        const found = d ? d.lookUp(ffi, name, h.key) : statPath(ffi, name);
        assert.equal(found.found, fixture.closeRemoves ? "none" : "object", name);
      }
      if (d !== undefined) {
        assert.equal((await recordsOf(d!, h.names)).length, fixture.closeRemoves ? 0 : h.names.length);
      }
    }));

  test(
    `${t}: unlink removes the name and its record`,
    { skip: fixture.noUnlink ?? false },
    () =>
      inCase(fixture, async (made, address) => {
        const h = await made.add(make(address));
        await h.unlink!();
        for (const name of h.names) assert.equal(d!.lookUp(ffi, name, h.key).found, "none", name);
        assert.deepEqual(await recordsOf(d!, h.names), []);
        if (d?.list !== undefined) {
          const listed = await d.list(rt);
          for (const name of h.names) assert.ok(!listed.includes(name), `${name} still listed`);
        }
        if (open !== undefined) await assert.rejects(open(address), NotFoundError);
      }),
  );

  test(
    `${t}: the descriptor removes the object, then finds nothing`,
    { skip: needs(fixture.kind, fixture.noRemoveWhileOpen ?? true) },
    () =>
      inCase(fixture, async (made, address) => {
        const h = await made.add(make(address));
        for (const name of h.names) {
          assert.equal(d!.remove(ffi, name), true, name);
          assert.equal(d!.exists(ffi, name, h.key), false, name);
          assert.equal(d!.remove(ffi, name), false, name);
        }
        await h.close(); // the handle still closes without its name
      }),
  );

  test(`${t}: mode 0600 by default${fixture.noMode ? "" : ", 0644 when asked"}`, async () => {
    await inCase(fixture, async (made, address) => {
      assert.equal(modeOf(fixture, await made.add(make(address))), 0o600);
    });
    if (fixture.noMode !== undefined) return;
    await inCase(fixture, async (made, address) => {
      assert.equal(modeOf(fixture, await made.add(make(address, { mode: 0o644 }))), 0o644);
    });
  });

  test(`${t}: bad names are a TypeError, RangeError or IpcError, from the API and the descriptor`, async () => {
    const calls: [string, ((a: string) => Promise<Handle>) | undefined][] = [
      ["create", create],
      ["open", open],
      ["openOrCreate", openOrCreate],
    ];
    for (const bad of fixture.badNames) {
      for (const [what, call] of calls) {
        if (call === undefined) continue;
        let handle: Handle | undefined;
        try {
          handle = await call(bad as string);
        } catch (e) {
          assert.ok(isCleanError(e), `${what}(${JSON.stringify(bad)}): ${e}`);
        }
        if (handle !== undefined) {
          await handle.close().catch(() => {});
          assert.fail(`${what}(${JSON.stringify(bad)}) succeeded`);
        }
      }
    }
    if (d === undefined) return;
    const badForDescriptor = {
      posix: ["", "jobs", "/a/b", "/", "/x\0y"],
      path: ["", "a\0b"],
      sysv: ["x", "-1", "1.5"],
    };
    for (const bad of [...badForDescriptor[d.naming], 42 as unknown as string]) {
      assert.throws(() => d.lookUp(ffi, bad), TypeError, `lookUp(${JSON.stringify(bad)})`);
      assert.throws(() => d.remove(ffi, bad), TypeError, `remove(${JSON.stringify(bad)})`);
    }
  });

  const fromChild = someOf(fixture.fromChild);
  test(`${t}: what a process of another runtime made is found, listed with its live owner, and opened here`, {
    skip: needs(fixture.fromChild, fixture.open),
  }, async () => {
    const theirs = fromChild!(await childMade());
    if (d !== undefined) {
      for (const name of theirs.names) assert.equal(d.lookUp(ffi, name, theirs.key).found, "object", name);
      const records = (await resources.list({ dir: registry })).filter((r) =>
        r.kind === d.kind && theirs.names.includes(r.name)
      );
      assert.equal(records.length, theirs.names.length);
      for (const r of records) {
        assert.equal(r.kind, d.kind);
        assert.equal(r.pid, (await childMade()).pid);
        assert.equal(r.runtime, otherRuntime());
        assert.equal(r.status, "alive");
        assert.equal(r.object, "same");
      }
    }
    const h = await open!(theirs.address);
    await h.close();
  });
}
