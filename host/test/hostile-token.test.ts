/**
 * Battery H-TOKEN (issue 12, §0.9): a plugin's auth token is not readable by
 * another process of the same user, and a plugin's server serves only its
 * host's connection. Real host, real plugin processes, real sockets.
 *
 * The attack this closes: a neighbour plugin read another plugin's token in
 * /proc/<pid>/environ, used it to take that plugin's identity seed, and opened
 * its own Deliver stream on that plugin's socket, which stalled it for 34 s.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { ENV, MAGIC_COOKIE_VALUE, PROTOCOL_VERSION, PluginService, PlugwireError, TOKEN_LINE_PREFIX, serviceDefinition } from "@plugwire/proto";
import { pluginSchema } from "../src/cli/config-schema.js";
import { resolvePluginConfig } from "../src/config.js";
import { createRunDir, removeRunDir } from "../src/launch/rundir.js";
import { launchPlugin, type PluginProcess } from "../src/launch/spawn.js";
import { dialPlugin } from "../src/transport/dial.js";
import { ProbeDriver } from "./fixtures/probe-client.js";
import { alive, example, fixture, nodePlugin, testHost, type TestHost } from "./helpers.js";

/**
 * Whether a polyglot example is built. Without `scripts/setup-polyglot.sh`
 * (a plain `npm ci && npm test`) its cases are skipped with a note; under CI,
 * which builds them, a missing one fails.
 */
function polyglotBuilt(command: string, t: { diagnostic(message: string): void }): boolean {
  if (existsSync(command)) return true;
  assert.ok(!process.env.CI, `${command} is missing: run scripts/setup-polyglot.sh`);
  t.diagnostic(`skipped: ${command} is not built (run scripts/setup-polyglot.sh)`);
  return false;
}

const TIMEOUT_MS = 60_000;
const here = new URL(".", import.meta.url).pathname;
const repo = join(here, "..", "..", "..");

interface Environ {
  [key: string]: string;
}

function environOf(pid: number): Environ {
  const env: Environ = {};
  for (const entry of readFileSync(`/proc/${pid}/environ`, "latin1").split("\0")) {
    const eq = entry.indexOf("=");
    if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return env;
}

function pidOf(t: TestHost, name: string): number {
  const pid = t.host.status().find((s) => s.name === name)?.pid;
  assert.ok(pid !== undefined && alive(pid), `plugin '${name}' runs`);
  return pid;
}

/** What the thief fixture reports (fixtures/hostile-token-thief.ts). */
interface Loot {
  environReadable: boolean;
  stdin: string;
  tokensFound: string[];
  tokenInEnviron?: boolean;
  tokenSource?: string | null;
  noToken?: { code: string; message: string };
  wrongToken?: { code: string; message: string };
  wrongDeliver?: { code: string; message: string };
  stolenDescribe?: { code: string; message: string };
  stolenDeliver?: { code: string; message: string };
  stolenCheck?: { code: string; message: string };
}

const NO_TOKEN = /^plugin 'victim' refused Describe: the call carried no valid plugwire auth token \(send 'authorization: Bearer <PLUGWIRE_AUTH_TOKEN>'\)$/;
const SECOND_CONNECTION = (method: string): RegExp =>
  new RegExp(
    `^plugin 'victim' refused ${method}: it serves one connection, its host's, and another connection is already the host's; ` +
      `only the host that started this plugin may call it \\(docs/protocol\\.md §6\\)$`,
  );

/** The victim still serves its host: a command is dispatched, handled and acked, and its answer arrives. */
async function victimServes(probe: ProbeDriver): Promise<void> {
  const info = await probe.askJson<{ name: string }>("victim", { op: "info" });
  assert.equal(info.name, "victim");
}

describe("H-TOKEN: the auth token (default tokenVia: stdin)", () => {
  let t: TestHost;
  let probe: ProbeDriver;

  before(async () => {
    t = testHost([
      nodePlugin("victim", fixture("probe"), { args: ["victim"], capabilities: ["control", "identity"] }),
      nodePlugin("thief", fixture("hostile-token-thief"), { capabilities: ["control"] }),
    ]);
    probe = new ProbeDriver(t);
    await t.host.start();
  });
  after(async () => {
    await t?.close();
  });

  test("H-TOKEN-01: a plugin started by the host -> no token in its /proc/<pid>/environ or cmdline, only PLUGWIRE_AUTH_TOKEN_SOURCE=stdin", { timeout: TIMEOUT_MS }, async () => {
    for (const name of ["victim", "thief"]) {
      const env = environOf(pidOf(t, name));
      assert.equal(env[ENV.authToken], undefined, `${name}'s environment has no ${ENV.authToken}`);
      assert.equal(env[ENV.authTokenSource], "stdin", name);
      assert.equal(env[ENV.pluginName], name, "the rest of the launch environment is there");
    }
    // The token itself, which only the host and the plugin know, is in neither
    // environ nor cmdline: a launch run the same way with a token the test chose.
    const runDir = createRunDir();
    const token = `tok-${randomBytes(18).toString("base64url")}`;
    let proc: PluginProcess | undefined;
    try {
      proc = await launchPlugin(
        { name: "echo", command: process.execPath, args: [example("echo")] },
        {
          runDir,
          hostAddress: `unix://${join(runDir, "host.sock")}`,
          token,
          instanceId: "echo-t1",
          handshakeTimeoutMs: 20_000,
          maxLogLineBytes: 16 * 1024,
          maxLogLinesPerSecond: 1000,
          stderrTailLines: 20,
          logger: pino({ level: "silent" }),
        },
      );
      for (const file of ["environ", "cmdline"]) {
        assert.ok(!readFileSync(`/proc/${proc.pid}/${file}`, "latin1").includes(token), `the token is not in /proc/<pid>/${file}`);
      }
      // And the plugin got it: the host's calls with it are served.
      const conn = dialPlugin(proc.handshake, token, "echo");
      try {
        assert.equal((await conn.plugin.describe({ protocolVersion: PROTOCOL_VERSION }, { deadlineMs: 10_000 })).name, "echo");
      } finally {
        conn.close();
      }
    } finally {
      proc?.signalGroup("SIGKILL", true);
      await proc?.exited;
      removeRunDir(runDir);
    }
    await victimServes(probe);
  });

  test("H-TOKEN-02: a neighbour plugin reads the victim's /proc environ, opens its stdin, scans every process -> finds no token", { timeout: TIMEOUT_MS }, async () => {
    const victimPid = pidOf(t, "victim");
    const loot = await probe.askJson<Loot>("thief", { op: "steal", pid: victimPid }, "steal");
    assert.equal(loot.environReadable, true, "the same user can read the environment (the reason the token left it)");
    assert.equal(loot.tokenInEnviron, false);
    assert.equal(loot.tokenSource, "stdin");
    // stdin is a socketpair: /proc/<pid>/fd/0 cannot be opened, so the token line cannot be read or replayed.
    assert.equal(loot.stdin, "ENXIO");
    // (Other hosts of this user, such as tests run alongside, may run legacy plugins; this host's have none.)
    const ours = t.host.status().map((s) => String(s.pid));
    assert.deepEqual(loot.tokensFound.filter((pid) => ours.includes(pid)), [], "no plugin of this host has a PLUGWIRE_AUTH_TOKEN in its environment");
    // The test can check the same from outside the host: opening the victim's stdin fails.
    assert.throws(() => closeSync(openSync(`/proc/${victimPid}/fd/0`, "r")), { code: "ENXIO" });
    await victimServes(probe);
  });

  test("H-TOKEN-03: a stranger calls the victim's socket with no token and a made-up one (Describe, Deliver) -> UNAUTHENTICATED, the victim keeps serving its host", { timeout: TIMEOUT_MS }, async () => {
    const loot = await probe.askJson<Loot>("thief", { op: "steal", pid: pidOf(t, "victim") }, "steal");
    assert.equal(loot.noToken?.code, "UNAUTHENTICATED");
    assert.equal(loot.wrongToken?.code, "UNAUTHENTICATED");
    assert.equal(loot.wrongDeliver?.code, "UNAUTHENTICATED");
    // Without the token the message says so (the connection is then closed, since the host's is open).
    for (const e of [loot.noToken!, loot.wrongToken!]) assert.match(e.message, NO_TOKEN);
    assert.match(loot.wrongDeliver!.message, /^plugin 'victim' refused Deliver: the call carried no valid plugwire auth token/);
    // No stolen token, so nothing was tried with one.
    assert.equal(loot.stolenDeliver, undefined);
    await victimServes(probe);
    // Payloads keep flowing to the victim: a burst is handled in order and acked.
    const before = await probe.askJson<{ count: number }>("victim", { op: "count" });
    for (let i = 1; i <= 50; i++) await t.host.dispatch(new Uint8Array(32).fill(9), "victim.data", new TextEncoder().encode(String(before.count + i)));
    const counted = await probe.askJson<{ count: number; ordered: boolean }>("victim", { op: "count" });
    assert.equal(counted.count, before.count + 50);
    assert.equal(counted.ordered, true);
  });
});

describe("H-TOKEN: the legacy tokenVia: env", () => {
  let t: TestHost;
  let probe: ProbeDriver;

  before(async () => {
    t = testHost([
      nodePlugin("victim", fixture("probe"), { args: ["victim"], capabilities: ["control", "identity"], tokenVia: "env" }),
      nodePlugin("thief", fixture("hostile-token-thief"), { capabilities: ["control"] }),
    ]);
    probe = new ProbeDriver(t);
    await t.host.start();
  });
  after(async () => {
    await t?.close();
  });

  test("H-TOKEN-04: tokenVia: env -> the plugin gets PLUGWIRE_AUTH_TOKEN (readable in environ, as documented) and serves its host", { timeout: TIMEOUT_MS }, async () => {
    const env = environOf(pidOf(t, "victim"));
    assert.equal(env[ENV.authTokenSource], "env");
    assert.ok(env[ENV.authToken] && env[ENV.authToken]!.length >= 32, "the legacy variable carries the token");
    const info = await probe.askJson<{ env: { token?: string } }>("victim", { op: "info" });
    assert.equal(info.env.token, env[ENV.authToken], "the plugin itself reads it from its environment");
    await victimServes(probe);
    // Its neighbour, under the default, has no token in its environment.
    assert.equal(environOf(pidOf(t, "thief"))[ENV.authToken], undefined);
  });

  test("H-TOKEN-05: a neighbour steals the legacy token from environ and calls Describe, opens Deliver, calls Health -> each refused (second connection), the victim is not stalled", { timeout: TIMEOUT_MS }, async () => {
    const victimPid = pidOf(t, "victim");
    const loot = await probe.askJson<Loot>("thief", { op: "steal", pid: victimPid }, "steal");
    assert.equal(loot.tokenInEnviron, true);
    const ours = t.host.status().map((s) => String(s.pid));
    assert.deepEqual(loot.tokensFound.filter((pid) => ours.includes(pid)), [String(victimPid)], "of this host's plugins, only the legacy one has its token in reach");
    assert.equal(loot.stolenDescribe?.code, "UNAUTHENTICATED");
    assert.match(loot.stolenDescribe!.message, SECOND_CONNECTION("Describe"));
    assert.equal(loot.stolenDeliver?.code, "UNAUTHENTICATED", "the Deliver stream of the probe's attack is refused, not held open");
    assert.match(loot.stolenDeliver!.message, SECOND_CONNECTION("Deliver"));
    assert.equal(loot.stolenCheck?.code, "unauthenticated");
    assert.match(loot.stolenCheck!.message, SECOND_CONNECTION("Check"));
    // The victim was not stalled: it answers at once, and its payloads flow.
    await victimServes(probe);
    const before = await probe.askJson<{ count: number }>("victim", { op: "count" });
    await t.host.dispatch(new Uint8Array(32).fill(9), "victim.data", new TextEncoder().encode(String(before.count + 1)));
    assert.equal((await probe.askJson<{ count: number }>("victim", { op: "count" })).count, before.count + 1);
    assert.equal(t.host.status().find((s) => s.name === "victim")?.pid, victimPid, "the victim was not restarted");
  });
});

/** Runs a plugin by hand with a host's environment and stdin held open; `line` is written on stdin (null: nothing), `close` ends stdin. */
function runByHand(
  command: string[],
  options: { line: string | null; close: boolean },
): Promise<{ code: number | null; stderr: string; ms: number }> {
  const dir = mkdtempSync(join(tmpdir(), "pwt-tok-"));
  const started = performance.now();
  const child = spawn(command[0]!, command.slice(1), {
    env: {
      PATH: process.env.PATH ?? "",
      [ENV.magicCookie]: MAGIC_COOKIE_VALUE,
      [ENV.protocolVersions]: "1",
      [ENV.socketDir]: dir,
      [ENV.hostAddress]: `unix://${join(dir, "host.sock")}`,
      [ENV.authTokenSource]: "stdin",
      [ENV.instanceId]: "tok-1",
      [ENV.pluginName]: "tok",
    },
    stdio: ["pipe", "pipe", "pipe"],
  });
  child.stdin.on("error", () => undefined);
  if (options.line !== null) child.stdin.write(options.line);
  if (options.close) child.stdin.end();
  let stderr = "";
  let stdout = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  // Bounded: a plugin that serves without its token is killed and fails the test.
  const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  return new Promise((resolve) => {
    child.on("close", (code) => {
      clearTimeout(killer);
      child.stdin.destroy();
      rmSync(dir, { recursive: true, force: true });
      assert.equal(stdout, "", "no handshake line: it never listened");
      resolve({ code, stderr, ms: performance.now() - started });
    });
  });
}

const POLYGLOT: Array<{ name: string; command: string[] }> = [
  { name: "TypeScript SDK (echo)", command: [process.execPath, example("echo")] },
  { name: "Python SDK (counter.py)", command: [join(repo, "plugins-example/python/.venv/bin/python"), join(repo, "plugins-example/python/counter.py")] },
  { name: "Go SDK (counter-go)", command: [join(repo, "plugins-example/go/bin/counter-go")] },
];

describe("H-TOKEN: a plugin without its token line", () => {
  test("H-TOKEN-06: PLUGWIRE_AUTH_TOKEN_SOURCE=stdin but stdin held open with no line -> exits 1 within the 5 s bound, saying no token line arrived", { timeout: TIMEOUT_MS }, async () => {
    const { code, stderr } = await runByHand(POLYGLOT[0]!.command, { line: null, close: false });
    assert.equal(code, 1);
    assert.equal(
      stderr,
      "plugwire plugin 'echo': no 'PLUGWIRE_TOKEN <token>' line arrived on stdin within 5000 ms (PLUGWIRE_AUTH_TOKEN_SOURCE=stdin); " +
        "the host writes it right after it starts the plugin, so whatever started this one is not a plugwire host (or is broken)\n",
    );
  });

  test("H-TOKEN-07: stdin closed before the line, or a first line that is not 'PLUGWIRE_TOKEN <token>' -> every SDK exits 1 at once, naming the line and never quoting it", { timeout: TIMEOUT_MS }, async (t) => {
    for (const plugin of POLYGLOT) {
      if (!polyglotBuilt(plugin.command[0]!, t)) continue;
      const closed = await runByHand(plugin.command, { line: null, close: true });
      assert.equal(closed.code, 1, `${plugin.name}: ${closed.stderr}`);
      assert.match(closed.stderr, /: stdin closed before the host wrote the 'PLUGWIRE_TOKEN <token>' line \(PLUGWIRE_AUTH_TOKEN_SOURCE=stdin\); this plugin must be started by a plugwire host\n$/, plugin.name);
      const secret = `not-a-token-line-${randomBytes(6).toString("hex")}`;
      const garbage = await runByHand(plugin.command, { line: `${secret}\n`, close: false });
      assert.equal(garbage.code, 1, `${plugin.name}: ${garbage.stderr}`);
      assert.match(garbage.stderr, /: the first line on stdin \(\d+ bytes\) does not start with 'PLUGWIRE_TOKEN '; the host writes 'PLUGWIRE_TOKEN <token>' there \(PLUGWIRE_AUTH_TOKEN_SOURCE=stdin\)\n$/, plugin.name);
      assert.ok(!garbage.stderr.includes(secret), `${plugin.name} does not echo the line`);
      const empty = await runByHand(plugin.command, { line: `${TOKEN_LINE_PREFIX} \n`, close: false });
      assert.equal(empty.code, 1, `${plugin.name}: ${empty.stderr}`);
      assert.match(empty.stderr, /the token on the first line of stdin is empty or holds a space or a control character/, plugin.name);
    }
  });

  test("H-TOKEN-08: a plugin built for the legacy variable under the default tokenVia: stdin -> plugin_exited naming the plugin, saying to set tokenVia: env or update its SDK", { timeout: TIMEOUT_MS }, async () => {
    // An old plugin: it insists on PLUGWIRE_AUTH_TOKEN, as every SDK did before.
    const script = 'test -n "$PLUGWIRE_AUTH_TOKEN" || { echo "plugwire plugin: the host did not set PLUGWIRE_AUTH_TOKEN; this plugin must be started by a plugwire host." >&2; exit 1; }; exec "$0" "$@"';
    const runDir = createRunDir();
    try {
      for (const tokenVia of ["stdin", "env"] as const) {
        const launched = launchPlugin(
          { name: "oldie", command: "/bin/sh", args: ["-c", script, process.execPath, example("echo")] },
          {
            runDir,
            hostAddress: `unix://${join(runDir, "host.sock")}`,
            token: randomBytes(24).toString("base64url"),
            tokenVia,
            instanceId: `oldie-${tokenVia}`,
            handshakeTimeoutMs: 20_000,
            maxLogLineBytes: 16 * 1024,
            maxLogLinesPerSecond: 1000,
            stderrTailLines: 20,
            logger: pino({ level: "silent" }),
          },
        );
        if (tokenVia === "env") {
          // The same plugin with tokenVia: env starts.
          const proc = await launched;
          proc.signalGroup("SIGKILL", true);
          await proc.exited;
          continue;
        }
        const error = await launched.then(
          () => assert.fail("the old plugin should not start under tokenVia: stdin"),
          (e: unknown) => e as PlugwireError,
        );
        assert.ok(error instanceof PlugwireError);
        assert.equal(error.code, "plugin_exited");
        assert.equal(error.plugin, "oldie");
        assert.match(error.message, /^plugin 'oldie' \(command: \/bin\/sh -c .*\) exited with code 1 before its handshake\./s);
        assert.match(
          error.message,
          / It asked for PLUGWIRE_AUTH_TOKEN, which this host does not set: it passes the token on stdin \(tokenVia: stdin\)\. Update the plugin's SDK, or give it 'tokenVia: env' in its config \(weaker: any process of the same user can read the variable\)\./,
        );
        assert.ok(error.message.endsWith("\nLast stderr lines:\n  plugwire plugin: the host did not set PLUGWIRE_AUTH_TOKEN; this plugin must be started by a plugwire host."), error.message);
      }
    } finally {
      removeRunDir(runDir);
    }
  });
});

describe("H-TOKEN: one connection per plugin server", () => {
  const cases = [
    { id: "H-TOKEN-09", sdk: "TS SDK (echo)", name: "echo", command: process.execPath, args: [example("echo")] },
    { id: "H-TOKEN-10", sdk: "Go SDK (counter-go)", name: "counter-go", command: join(repo, "plugins-example/go/bin/counter-go"), args: [] },
  ];
  for (const c of cases) test(`${c.id}: ${c.sdk}: a second connection with the right token while the host's is open -> UNAUTHENTICATED naming the plugin; after the host's connection closes, a new one is served (reconnect)`, { timeout: TIMEOUT_MS }, async (t) => {
    if (!polyglotBuilt(c.command, t)) return t.skip(`${c.command} is not built: run scripts/setup-polyglot.sh`);
    const runDir = createRunDir();
    const token = randomBytes(24).toString("base64url");
    let proc: PluginProcess | undefined;
    const clients: grpc.Client[] = [];
    try {
      proc = await launchPlugin(
        { name: c.name, command: c.command, args: c.args },
        {
          runDir,
          hostAddress: `unix://${join(runDir, "host.sock")}`,
          token,
          instanceId: `${c.name}-t9`,
          handshakeTimeoutMs: 20_000,
          maxLogLineBytes: 16 * 1024,
          maxLogLinesPerSecond: 1000,
          stderrTailLines: 20,
          logger: pino({ level: "silent" }),
        },
      );
      const target = `unix://${proc.handshake.address}`;
      const method = serviceDefinition(PluginService).describe!;
      /** Describe with the right token on a connection of its own. */
      const describeAlone = (): Promise<grpc.ServiceError | null> => {
        const client = new grpc.Client(target, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
        clients.push(client);
        const metadata = new grpc.Metadata();
        metadata.set("authorization", `Bearer ${token}`);
        return new Promise((resolve) =>
          client.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, { protocolVersion: 1 }, metadata, { deadline: Date.now() + 10_000 }, (err) =>
            resolve(err),
          ),
        );
      };
      // The host's connection: the first to authenticate.
      const host = dialPlugin(proc.handshake, token, c.name);
      const described = await host.plugin.describe({ protocolVersion: 1 }, { deadlineMs: 10_000 });
      const second = await describeAlone();
      assert.equal(second?.code, grpc.status.UNAUTHENTICATED);
      assert.equal(
        second!.details,
        `plugin '${described.name}' refused Describe: it serves one connection, its host's, and another connection is already the host's; ` +
          `only the host that started this plugin may call it (docs/protocol.md §6)`,
      );
      // The host's connection still serves.
      assert.equal((await host.health.check({ service: "" }, { deadlineMs: 10_000 })).status, 1);
      // The host's connection ends (as after a broken connection); the next one that authenticates is served.
      host.close();
      let again: grpc.ServiceError | null = second;
      for (let tries = 0; again && tries < 50; tries++) {
        // Until the plugin has seen the close, the new connection is still the second one.
        if (again.code !== grpc.status.UNAUTHENTICATED) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
        again = await describeAlone();
      }
      assert.equal(again, null, `a new connection is served once the host's has closed: ${again?.details}`);
      assert.equal(alive(proc.pid), true);
    } finally {
      for (const c of clients) c.close();
      proc?.signalGroup("SIGKILL", true);
      await proc?.exited;
      removeRunDir(runDir);
    }
  });
});

describe("H-TOKEN: the tokenVia option", () => {
  test("H-TOKEN-11: tokenVia 'argv' (or any value but stdin and env) -> invalid_config naming the plugin and the two values; default stdin", () => {
    assert.throws(
      () => resolvePluginConfig({ name: "odd", command: "x", tokenVia: "argv" as never }),
      (e: unknown) =>
        e instanceof PlugwireError && e.code === "invalid_config" && e.plugin === "odd" && e.message === `plugin 'odd': tokenVia must be stdin or env, not "argv"`,
    );
    assert.equal(resolvePluginConfig({ name: "odd", command: "x" }).tokenVia, "stdin");
    assert.equal(resolvePluginConfig({ name: "odd", command: "x", tokenVia: "env" }).tokenVia, "env");
    // The YAML schema refuses it too (the CLI's config file).
    assert.equal(pluginSchema.safeParse({ name: "odd", command: "x", tokenVia: "argv" }).success, false);
    assert.equal(pluginSchema.safeParse({ name: "odd", command: "x", tokenVia: "env" }).success, true);
  });
});
