/**
 * The Python SDK in attach mode (docs/protocol.md §18), on loopback with
 * mutual TLS: no network namespaces needed (host/test/remote-attach.test.ts
 * runs the same across two namespaces where the machine allows them).
 *
 * Real processes: the Python counter (plugins-example/python/counter.py,
 * unchanged: plugwire.serve() sees PLUGWIRE_LISTEN) and the presence-py
 * fixture (host/test/fixtures/presence-py.py, host calls), run by the venv of
 * scripts/setup-polyglot.sh. The test is their process manager: it starts a
 * plugin again whenever it exits, like Kubernetes' restartPolicy: Always.
 * Certificates are made at test time with the openssl CLI.
 *
 * Skipped with a note when the venv or the openssl CLI is missing.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { after, afterEach, before, describe, test } from "node:test";
import { hex, type HostEvents, type PluginConfig } from "../src/index.js";
import { freeLoopbackPort, peer, testHost, waitFor, type TestHost } from "./helpers.js";
import { hasOpenssl, makePki, type CertPair, type Pki } from "./remote-certs.js";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const python = join(repo, "plugins-example", "python", ".venv", "bin", "python");
const COUNTER = join(repo, "plugins-example", "python", "counter.py");
const PRESENCE = join(repo, "host", "test", "fixtures", "presence-py.py");
const PEERS = 4;

const skip = !existsSync(python)
  ? "skipped: plugins-example/python/.venv is not built (bash scripts/setup-polyglot.sh, needs python3 with venv)"
  : !hasOpenssl()
    ? "skipped: the openssl CLI is not installed"
    : false;
if (skip) process.stderr.write(`attach-python tests ${skip}\n`);


/**
 * The plugin's process manager: starts the command again whenever it exits
 * (at most `maxStarts` times in all), and counts the "serving attach mode"
 * lines on its stderr.
 */
class LoopSupervisor {
  child: ChildProcess | undefined;
  readonly stderr: string[] = [];
  readonly exits: (number | string)[] = [];
  private serving = 0;
  private starts = 0;
  private stopped = false;
  private waiters: { n: number; resolve: () => void }[] = [];

  constructor(
    private readonly command: string[],
    private readonly env: Record<string, string>,
    private readonly maxStarts = 30,
  ) {
    this.start();
  }

  private start(): void {
    this.starts++;
    const child = spawn(this.command[0]!, this.command.slice(1), { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...this.env }, stdio: ["ignore", "ignore", "pipe"] });
    this.child = child;
    createInterface({ input: child.stderr! }).on("line", (text) => {
      this.stderr.push(text);
      if (this.stderr.length > 200) this.stderr.shift();
      if (!text.includes("serving attach mode")) return;
      this.serving++;
      this.waiters = this.waiters.filter((w) => {
        if (this.serving < w.n) return true;
        w.resolve();
        return false;
      });
    });
    child.once("exit", (code, signal) => {
      this.exits.push(code ?? signal ?? "?");
      if (!this.stopped && this.starts < this.maxStarts) this.start();
    });
  }

  get servingCount(): number {
    return this.serving;
  }

  /** The running plugin's pid. */
  pid(): number {
    const pid = this.child?.pid;
    assert.ok(pid && this.child!.exitCode === null && this.child!.signalCode === null, "the plugin is not running");
    return pid;
  }

  /** Waits until the plugin has said "serving" `n` times in all. */
  waitServing(n: number, timeoutMs = 20_000): Promise<void> {
    if (this.serving >= n) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the plugin did not serve (${n} times) within ${timeoutMs} ms; exits ${JSON.stringify(this.exits)}; its stderr:\n${this.stderr.slice(-15).join("\n")}`)), timeoutMs);
      this.waiters.push({
        n,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  /** Stops restarting, kills the plugin and waits for it to be gone. */
  async close(): Promise<void> {
    this.stopped = true;
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGKILL");
      await gone;
    }
  }
}

describe("the Python SDK in attach mode (loopback, mutual TLS)", { skip }, () => {
  let dir: string;
  let pki: Pki;
  let server: CertPair;
  let client: CertPair;
  const cleanups: (() => Promise<void> | void)[] = [];

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "pw-attach-py-"));
    pki = makePki(join(dir, "pki"));
    // Both usages: the plugin's certificate is also its client certificate for HostService, and the host's its server certificate.
    server = pki.issue("plugin", { cn: "counter-py", san: ["127.0.0.1", "counter-py.plugwire.test"], usage: "both" });
    client = pki.issue("host", { cn: "plugwire-host", san: ["127.0.0.1"], usage: "both" });
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function pluginEnv(port: number, extra: Record<string, string> = {}): Record<string, string> {
    return {
      PLUGWIRE_LISTEN: `tcp://127.0.0.1:${port}`,
      PLUGWIRE_TLS_CERT: server.cert,
      PLUGWIRE_TLS_KEY: server.key,
      PLUGWIRE_TLS_CLIENT_CA: pki.ca,
      ...extra,
    };
  }

  async function supervise(command: string[], env: Record<string, string>): Promise<LoopSupervisor> {
    const sup = new LoopSupervisor(command, env);
    cleanups.push(() => sup.close());
    await sup.waitServing(1);
    return sup;
  }

  function attachConfig(name: string, port: number, extra: Record<string, unknown> = {}): PluginConfig {
    return {
      name,
      attach: { address: `tcp://127.0.0.1:${port}`, tls: { ca: pki.ca, cert: client.cert, key: client.key }, serverName: "counter-py.plugwire.test" },
      healthIntervalMs: 300,
      healthTimeoutMs: 1_000,
      healthFailures: 2,
      handshakeTimeoutMs: 5_000,
      backoffInitialMs: 100,
      backoffMaxMs: 1_000,
      maxRestarts: 100,
      restartWindowMs: 120_000,
      ...extra,
    } as unknown as PluginConfig;
  }

  function host(plugins: PluginConfig[], options: Parameters<typeof testHost>[1] = {}): TestHost {
    const t = testHost(plugins, options);
    cleanups.push(() => t.close());
    return t;
  }

  const expected = (n: number): Record<string, number> =>
    Object.fromEntries(Array.from({ length: PEERS }, (_, i) => [Buffer.alloc(32, i + 1).toString("hex"), n / PEERS]));

  /** Dispatches n hits, round robin over PEERS peers; resolves with the failures. */
  async function hits(t: TestHost, n: number): Promise<string[]> {
    const results = await Promise.allSettled(Array.from({ length: n }, (_, i) => t.host.dispatch(peer((i % PEERS) + 1), "counter-py.hit", new Uint8Array([i & 0xff]))));
    return results.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => String(r.reason));
  }

  async function counts(t: TestHost): Promise<Record<string, number>> {
    const record = await t.host.snapshot("counter-py");
    assert.ok(record, "the counter made a snapshot");
    return JSON.parse(Buffer.from(record.bytes).toString()) as Record<string, number>;
  }

  test("counter.py serves attach mode unchanged: dispatch, a SIGKILL restarted by its process manager, exact state after the reconnect", { timeout: 180_000 }, async () => {
    const port = await freeLoopbackPort();
    const sup = await supervise([python, COUNTER], pluginEnv(port, { PLUGWIRE_TLS_RELOAD_MS: "500" }));
    assert.match(sup.stderr.join("\n"), new RegExp(`plugwire plugin 'counter-py' serving attach mode on tcp://127\\.0\\.0\\.1:${port} with mutual TLS \\(client certificates must chain to .*; files re-read every 500 ms\\)`));
    const t = host([attachConfig("counter-py", port)]);
    const deadLetters: unknown[] = [];
    t.host.on("plugin:dead-letter", (e) => deadLetters.push(e));
    await t.host.start();
    assert.deepEqual(await hits(t, 200), []);
    assert.deepEqual(await counts(t), expected(200)); // a snapshot in the host's store
    assert.deepEqual(await hits(t, 200), []); // replay material after it
    const status = t.host.status().find((p) => p.name === "counter-py")!;
    assert.equal(status.state, "ready");
    assert.equal(status.pid, undefined, "an attached plugin has no pid of the host's");
    assert.deepEqual(status.remote, { address: `tcp://127.0.0.1:${port}`, connection: "connected" });

    const restarting = waitFor<HostEvents["plugin:state"][0]>(t.host, "plugin:state", (e) => e.plugin === "counter-py" && e.state === "restarting", 30_000);
    const burst = hits(t, 400);
    process.kill(sup.pid(), "SIGKILL");
    await restarting;
    await waitFor<HostEvents["plugin:state"][0]>(t.host, "plugin:state", (e) => e.plugin === "counter-py" && e.state === "ready", 60_000);
    assert.deepEqual(await burst, [], "every payload of the burst is applied once the host reconnected");
    assert.deepEqual(await counts(t), expected(800), "exact state after the reconnect: nothing lost, nothing doubled");
    assert.ok(sup.servingCount >= 2, "the plugin was restarted by its process manager");
    assert.ok(sup.exits.includes("SIGKILL"), `exits: ${JSON.stringify(sup.exits)}`);
    assert.deepEqual(deadLetters, []);
  });

  test("host calls: presence-py calls HostService over mutual TLS (remoteHostService) with the token the host sent on Start", { timeout: 120_000 }, async () => {
    const [port, hostServicePort] = [await freeLoopbackPort(), await freeLoopbackPort()];
    await supervise([python, PRESENCE], pluginEnv(port, { PLUGWIRE_HOST_ADDRESS: `tcp://127.0.0.1:${hostServicePort}` }));
    const t = host([attachConfig("presence-py", port, { capabilities: ["peers", "control"] })], {
      remoteHostService: { listen: `tcp://127.0.0.1:${hostServicePort}`, tls: { ca: pki.ca, cert: client.cert, key: client.key } },
    });
    const known = peer(1);
    t.directory.apply({ type: "seen", nodeId: known, x25519Pub: new Uint8Array(32).fill(0xc3), name: "alice", source: "direct" });
    await t.host.start();
    // The handler calls LookupName and LookupX25519: a refused host call fails the payload.
    await t.host.dispatch(known, "presence-py.who", new Uint8Array(0));
    await t.host.dispatch(peer(2), "presence-py.who", new Uint8Array(0));
    assert.deepEqual(
      t.sent.map((s) => [s.peer, s.frame]),
      [
        [hex(known), `who:alice:${"c3".repeat(32)}`],
        [hex(peer(2)), "who:(unknown):(unknown)"],
      ],
    );
  });

  test("without PLUGWIRE_HOST_ADDRESS host calls fail as unavailable, and fail the payload", { timeout: 60_000 }, async () => {
    const port = await freeLoopbackPort();
    await supervise([python, PRESENCE], pluginEnv(port));
    const t = host([attachConfig("presence-py", port, { capabilities: ["peers", "control"] })]);
    await t.host.start();
    await assert.rejects(t.host.dispatch(peer(1), "presence-py.who", new Uint8Array(0)), /UNAVAILABLE/);
    assert.deepEqual(t.sent, []);
  });

  test("a wrong CA on either side is refused with a clear error", { timeout: 120_000 }, async () => {
    const port = await freeLoopbackPort();
    await supervise([python, COUNTER], pluginEnv(port));
    const other = pki.newCa("other-ca");
    const attempt = async (tls: Record<string, string>): Promise<string> => {
      const t = host([attachConfig("counter-py", port, { attach: { address: `tcp://127.0.0.1:${port}`, tls, serverName: "counter-py.plugwire.test" }, maxRestarts: 0 })]);
      try {
        await t.host.start();
        return "";
      } catch (e) {
        return e instanceof Error ? e.message : String(e);
      }
    };
    // The host trusts another CA than the one that signed the plugin.
    const wrongCa = await attempt({ ca: other.ca, cert: client.cert, key: client.key });
    assert.match(wrongCa, /server certificate was refused/);
    assert.match(wrongCa, /attach\.tls\.ca must be the CA that signed it/);
    // The host's client certificate is signed by a CA the plugin does not trust.
    const stranger = pki.issue("stranger", { cn: "not-the-host", usage: "client", ca: other });
    const refused = await attempt({ ca: pki.ca, cert: stranger.cert, key: stranger.key });
    assert.match(refused, /refused the host's client certificate/);
    assert.match(refused, /PLUGWIRE_TLS_CLIENT_CA must be the CA that signed attach\.tls\.cert/);
  });
});
