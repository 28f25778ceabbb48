/**
 * Attach mode across two machines, simulated by two network namespaces joined
 * by a veth pair: the host (fixtures/remote-host.ts) runs in one, the counter
 * example in the other, serving mutual TLS under a plain supervisor script
 * (the stand-in for Kubernetes). Certificates are made at test time with the
 * openssl CLI. Covered: attach and dispatch; a SIGKILL of the plugin with
 * exact state after the reconnect; the link cut for 5 s; a wrong CA, an
 * expired certificate and plaintext clients refused with clear errors; and
 * certificate rotation without a restart.
 *
 * Skips, saying why, when namespaces cannot be made (not root, no iproute2);
 * under CI=true on a root machine with iproute2 a failure to make one fails.
 * Every wait is for an event with a deadline; the only fixed wait is the
 * 5 s the link stays down, which is the fault itself.
 */
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, afterEach, before, describe, test } from "node:test";
import { spawnSync } from "node:child_process";
import { example, fixture } from "./helpers.js";
import { hasOpenssl, makePki, type Pki } from "./remote-certs.js";
import { createNetPair, netnsSupport, RemoteHostProc, Supervisor, type NetPair } from "./remote-net.js";

const support = netnsSupport();
const skip = support.skip ?? (support.fail === undefined && !hasOpenssl() ? "the openssl CLI is not installed" : undefined);
if (skip) process.stderr.write(`remote-attach tests skipped: ${skip}\n`);

const PORT = 7443;
const PRESENCE_GO = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "plugins-example", "go", "bin", "presence-go");
const COUNTER_GO = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "plugins-example", "go", "bin", "counter-go");
const PEERS = 4;
const PYTHON = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "plugins-example", "python", ".venv", "bin", "python");
const COUNTER_PY = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "plugins-example", "python", "counter.py");
const PRESENCE_PY = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "host", "test", "fixtures", "presence-py.py");
const SKIP_PY = existsSync(PYTHON) ? false : "skipped: plugins-example/python/.venv is not built (scripts/setup-polyglot.sh)";

describe("attach mode over TCP with mutual TLS, across two network namespaces", { skip: skip ? `skipped: ${skip}` : false }, () => {
  let net: NetPair;
  let pki: Pki;
  let dir: string;
  /** The plugin's and the host's TLS files, at fixed paths so a test can rotate them in place. */
  let files: { serverCert: string; serverKey: string; clientCa: string; hostCa: string; hostCert: string; hostKey: string };
  const cleanups: (() => Promise<void> | void)[] = [];

  before(() => {
    if (support.fail) throw new Error(support.fail);
    dir = mkdtempSync(join(tmpdir(), "pw-remote-"));
    net = createNetPair();
    pki = makePki(join(dir, "pki"));
    // Both serve and call: the plugin's certificate is also its client certificate for HostService, and the host's its server certificate.
    const server = pki.issue("plugin", { cn: "counter", san: [net.pluginIp, "counter.plugwire.test"], usage: "both" });
    const client = pki.issue("host", { cn: "plugwire-host", san: [net.hostIp], usage: "both" });
    files = {
      serverCert: join(dir, "tls-plugin.crt"),
      serverKey: join(dir, "tls-plugin.key"),
      clientCa: join(dir, "tls-plugin-client-ca.pem"),
      hostCa: join(dir, "tls-host-ca.pem"),
      hostCert: join(dir, "tls-host.crt"),
      hostKey: join(dir, "tls-host.key"),
    };
    copyFileSync(server.cert, files.serverCert);
    copyFileSync(server.key, files.serverKey);
    copyFileSync(pki.ca, files.clientCa);
    copyFileSync(pki.ca, files.hostCa);
    copyFileSync(client.cert, files.hostCert);
    copyFileSync(client.key, files.hostKey);
  });

  /** Every process a test started goes, pass or fail, before the next test binds the port again. */
  async function runCleanups(): Promise<void> {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  }
  afterEach(runCleanups);

  after(async () => {
    await runCleanups();
    net?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (net) {
      const left = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout;
      assert.ok(!left.includes(net.hostNs) && !left.includes(net.pluginNs), `namespaces left behind: ${left}`);
    }
  });

  function pluginEnv(extra: Record<string, string> = {}): Record<string, string> {
    return {
      PLUGWIRE_LISTEN: `tcp://${net.pluginIp}:${PORT}`,
      PLUGWIRE_TLS_CERT: files.serverCert,
      PLUGWIRE_TLS_KEY: files.serverKey,
      PLUGWIRE_TLS_CLIENT_CA: files.clientCa,
      PLUGWIRE_TLS_RELOAD_MS: "200",
      ...extra,
    };
  }

  /** The counter example under the supervisor script, in the plugin's namespace. */
  async function startPlugin(name: string, env: Record<string, string> = pluginEnv(), command = [process.execPath, example("counter")]): Promise<Supervisor> {
    const sup = new Supervisor(net.pluginNs, mkdtempSync(join(dir, `${name}-`)), command, env);
    cleanups.push(() => sup.close());
    await sup.waitServing(1, 20_000);
    return sup;
  }

  function attachConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      name: "counter",
      attach: { address: `tcp://${net.pluginIp}:${PORT}`, tls: { ca: files.hostCa, cert: files.hostCert, key: files.hostKey }, serverName: "counter.plugwire.test" },
      healthIntervalMs: 300,
      healthTimeoutMs: 500,
      healthFailures: 2,
      handshakeTimeoutMs: 2_000,
      backoffInitialMs: 100,
      backoffMaxMs: 1_000,
      maxRestarts: 200,
      restartWindowMs: 120_000,
      ...extra,
    };
  }

  function startHost(plugins: Record<string, unknown>[], extra: Record<string, unknown> = {}): RemoteHostProc {
    const host = new RemoteHostProc(net.hostNs, fixture("remote-host"), { dataDir: mkdtempSync(join(dir, "host-")), plugins, ...extra });
    cleanups.push(() => host.close());
    return host;
  }

  const expected = (n: number): Record<string, number> =>
    Object.fromEntries(Array.from({ length: PEERS }, (_, i) => [Buffer.alloc(32, i + 1).toString("hex"), n / PEERS]));

  async function startedHost(extra: Record<string, unknown> = {}): Promise<RemoteHostProc> {
    const host = startHost([attachConfig(extra)]);
    const started = await host.command({ op: "start" });
    assert.equal(started.error, undefined, `the host could not attach: ${String(started.error)}`);
    return host;
  }

  test("the host attaches, dispatches, and shows the plugin's address and connection in status", async () => {
    const sup = await startPlugin("dispatch", pluginEnv({ PLUGWIRE_HEALTH_LISTEN: `tcp://${net.pluginIp}:${PORT + 1}` }));
    // The kubelet's gRPC probe: plaintext grpc.health.v1 on its own port.
    const probe = spawnSync("ip", ["netns", "exec", net.hostNs, process.execPath, fixture("remote-probe"), JSON.stringify({ host: net.pluginIp, port: PORT + 1, grpcHealth: true })], { encoding: "utf8", timeout: 20_000 });
    assert.deepEqual(JSON.parse(probe.stdout.trim()), { ok: true, status: 1 }, "PLUGWIRE_HEALTH_LISTEN answers SERVING in plaintext");
    const host = await startedHost();
    const sent = await host.command({ op: "dispatch", n: 400, peers: PEERS });
    assert.deepEqual([sent.ok, sent.failed], [400, 0], JSON.stringify(sent.errors));
    assert.deepEqual((await host.command({ op: "counts" })).counts, expected(400));
    const status = ((await host.command({ op: "status" })).status as Record<string, unknown>[])[0]!;
    assert.equal(status.state, "ready");
    assert.equal(status.pid, undefined, "an attached plugin has no pid of the host's");
    assert.deepEqual(status.remote, { address: `tcp://${net.pluginIp}:${PORT}`, connection: "connected" });
    await host.close();
    await sup.close();
  });

  test("a SIGKILL of the remote plugin: the supervisor restarts it, the host reconnects, restores and replays; state is exact", async () => {
    const sup = await startPlugin("kill");
    const host = await startedHost();
    assert.equal((await host.command({ op: "dispatch", n: 200, peers: PEERS })).ok, 200);
    assert.deepEqual((await host.command({ op: "counts" })).counts, expected(200)); // a snapshot in the host's store
    assert.equal((await host.command({ op: "dispatch", n: 200, peers: PEERS })).ok, 200); // replay material after it
    const mark = host.mark();
    const burst = host.command({ op: "dispatch", n: 400, peers: PEERS });
    process.kill(sup.pluginPid(), "SIGKILL");
    await host.waitLine((l) => l.event === "state" && l.state === "restarting", 20_000, "the host to see the lost connection", mark);
    await host.waitLine((l) => l.event === "state" && l.state === "ready", 30_000, "the host to reconnect", mark);
    const sent = await burst;
    assert.deepEqual([sent.ok, sent.failed], [400, 0], JSON.stringify(sent.errors));
    assert.deepEqual((await host.command({ op: "counts" })).counts, expected(800), "exact state after the reconnect: nothing lost, nothing doubled");
    assert.ok(sup.servingCount >= 2, "the plugin was restarted by its supervisor");
    assert.equal(host.lines.filter((l) => l.event === "dead-letter").length, 0);
    await host.close();
    await sup.close();
  });

  test("the Go SDK in attach mode: dispatch, a SIGKILL restarted by the supervisor, exact state", { skip: existsSync(COUNTER_GO) ? false : "skipped: plugins-example/go/bin/counter-go is not built (scripts/setup-polyglot.sh)" }, async () => {
    const sup = await startPlugin("go", pluginEnv(), [COUNTER_GO]);
    const host = await startedHost({ name: "counter-go" });
    const go = { kind: "counter-go.hit", peers: PEERS };
    assert.equal((await host.command({ op: "dispatch", n: 200, ...go })).ok, 200);
    assert.deepEqual((await host.command({ op: "counts", plugin: "counter-go" })).counts, expected(200));
    const mark = host.mark();
    const burst = host.command({ op: "dispatch", n: 400, ...go });
    process.kill(sup.pluginPid(), "SIGKILL");
    await host.waitLine((l) => l.event === "state" && l.state === "ready", 30_000, "the host to reconnect to the Go plugin", mark);
    const sent = await burst;
    assert.deepEqual([sent.ok, sent.failed], [400, 0], JSON.stringify(sent.errors));
    assert.deepEqual((await host.command({ op: "counts", plugin: "counter-go" })).counts, expected(600));
  });

  test("the Python SDK in attach mode: dispatch, a SIGKILL restarted by the supervisor, exact state", { skip: SKIP_PY }, async () => {
    const sup = await startPlugin("py", pluginEnv(), [PYTHON, COUNTER_PY]);
    const host = await startedHost({ name: "counter-py" });
    const py = { kind: "counter-py.hit", peers: PEERS };
    assert.equal((await host.command({ op: "dispatch", n: 200, ...py })).ok, 200);
    assert.deepEqual((await host.command({ op: "counts", plugin: "counter-py" })).counts, expected(200));
    const mark = host.mark();
    const burst = host.command({ op: "dispatch", n: 400, ...py });
    process.kill(sup.pluginPid(), "SIGKILL");
    await host.waitLine((l) => l.event === "state" && l.state === "ready", 30_000, "the host to reconnect to the Python plugin", mark);
    const sent = await burst;
    assert.deepEqual([sent.ok, sent.failed], [400, 0], JSON.stringify(sent.errors));
    assert.deepEqual((await host.command({ op: "counts", plugin: "counter-py" })).counts, expected(600));
  });

  for (const lang of ["TS", "Go", "Python"] as const) {
    const name = lang === "TS" ? "presence" : lang === "Go" ? "presence-go" : "presence-py";
    const command = () => (lang === "TS" ? [process.execPath, example("presence")] : lang === "Go" ? [PRESENCE_GO] : [PYTHON, PRESENCE_PY]);
    const skipGo = lang === "Go" && !existsSync(PRESENCE_GO) ? "skipped: plugins-example/go/bin/presence-go is not built (scripts/setup-polyglot.sh)" : lang === "Python" ? SKIP_PY : false;
    test(`host calls (${lang} SDK): an attached plugin calls HostService over mutual TLS (remoteHostService) with the token the host sent`, { skip: skipGo }, async () => {
      const hostServicePort = PORT + 2;
      const sup = await startPlugin(name, pluginEnv({ PLUGWIRE_HOST_ADDRESS: `tcp://${net.hostIp}:${hostServicePort}` }), command());
      const host = startHost([attachConfig({ name, capabilities: ["peers"] })], {
        remoteHostService: { listen: `tcp://${net.hostIp}:${hostServicePort}`, tls: { ca: files.hostCa, cert: files.hostCert, key: files.hostKey } },
      });
      const started = await host.command({ op: "start" });
      assert.equal(started.error, undefined, String(started.error));
      // The handler awaits lookupName and lookupX25519: a failed host call fails the payload.
      const sent = await host.command({ op: "dispatch", n: 50, peers: PEERS, kind: `${name}.who` });
      assert.deepEqual([sent.ok, sent.failed], [50, 0], JSON.stringify(sent.errors));
      assert.ok(sup.servingCount >= 1);
      // A client certificate of another CA is refused by the host's TLS listener.
      const other = pki.newCa(`hs-other-ca-${lang}`);
      const stranger = pki.issue(`hs-stranger-${lang}`, { cn: "x", usage: "client", ca: other });
      const probe = spawnSync("ip", ["netns", "exec", net.pluginNs, process.execPath, fixture("remote-probe"), JSON.stringify({ host: net.hostIp, port: hostServicePort, servername: net.hostIp, ca: pki.ca, cert: stranger.cert, key: stranger.key })], { encoding: "utf8", timeout: 20_000 });
      assert.equal((JSON.parse(probe.stdout.trim()) as { ok: boolean }).ok, false, "the host's HostService must refuse a client certificate of another CA");
    });
  }

  test("the link cut for 5 s and restored: nothing lost, nothing doubled", async () => {
    const sup = await startPlugin("link");
    const host = await startedHost();
    assert.equal((await host.command({ op: "dispatch", n: 200, peers: PEERS })).ok, 200);
    assert.deepEqual((await host.command({ op: "counts" })).counts, expected(200));
    const mark = host.mark();
    const burst = host.command({ op: "dispatch", n: 400, peers: PEERS }, 120_000);
    net.inPlugin(["link", "set", net.pluginIf, "down"]);
    try {
      await host.waitLine((l) => l.event === "state" && l.state === "restarting", 20_000, "the host to notice the cut link", mark);
      await new Promise((resolve) => setTimeout(resolve, 5_000)); // the fault: the link stays down 5 s
    } finally {
      net.inPlugin(["link", "set", net.pluginIf, "up"]);
    }
    await host.waitLine((l) => l.event === "state" && l.state === "ready", 60_000, "the host to reconnect after the link came back", mark);
    const sent = await burst;
    assert.deepEqual([sent.ok, sent.failed], [400, 0], JSON.stringify(sent.errors));
    assert.deepEqual((await host.command({ op: "counts" })).counts, expected(600), "exact state after the link came back");
    assert.equal(host.lines.filter((l) => l.event === "dead-letter").length, 0);
    await host.close();
    await sup.close();
  });

  test("a wrong CA, an expired certificate and plaintext clients are refused with clear errors", async () => {
    const other = pki.newCa("other-ca");
    const sup = await startPlugin("refuse");
    const tls = { ca: files.hostCa, cert: files.hostCert, key: files.hostKey };
    const address = `tcp://${net.pluginIp}:${PORT}`;
    const attempt = async (attach: Record<string, unknown>): Promise<string> => {
      const host = startHost([attachConfig({ attach: { address, serverName: "counter.plugwire.test", ...attach } })]);
      const started = await host.command({ op: "start" });
      await host.close();
      return String(started.error ?? "");
    };

    // The host trusts another CA than the one that signed the plugin.
    const wrongCa = await attempt({ tls: { ...tls, ca: other.ca } });
    assert.match(wrongCa, /server certificate was refused/);
    assert.match(wrongCa, /attach\.tls\.ca must be the CA that signed it/);

    // The host's client certificate is signed by a CA the plugin does not trust.
    const stranger = pki.issue("stranger", { cn: "not-the-host", usage: "client", ca: other });
    const refusedClient = await attempt({ tls: { ...tls, cert: stranger.cert, key: stranger.key } });
    assert.match(refusedClient, /refused the host's client certificate/);

    // A plaintext client is refused by the plugin, a probe without TLS at all.
    const plain = spawnSync("ip", ["netns", "exec", net.hostNs, process.execPath, fixture("remote-probe"), JSON.stringify({ host: net.pluginIp, port: PORT, plaintext: true })], { encoding: "utf8" });
    const probe = JSON.parse(plain.stdout.trim()) as { ok: boolean; error?: string };
    assert.equal(probe.ok, false, "a plaintext client must not be served");

    // And the host refuses to dial plaintext to a non-loopback address.
    const plainHost = await attempt({ plaintext: true });
    assert.match(plainHost, /refusing to attach to tcp:\/\/[0-9.]+:7443 in plaintext/);
    assert.match(plainHost, /not a loopback address/);
    await sup.close();

    // A plugin whose server certificate expired in 2020.
    const expired = pki.issue("expired", { cn: "counter", san: [net.pluginIp, "counter.plugwire.test"], usage: "server", expired: true });
    const supExpired = await startPlugin("expired", pluginEnv({ PLUGWIRE_TLS_CERT: expired.cert, PLUGWIRE_TLS_KEY: expired.key }));
    const expiredError = await attempt({ tls });
    assert.match(expiredError, /server certificate is not valid now/);
    assert.match(expiredError, /CERT_HAS_EXPIRED|expired/);
    await supExpired.close();
  });

  test("certificate rotation: the plugin serves a renewed certificate and a new client CA without a restart; the host uses rotated files on reconnect", async () => {
    const sup = await startPlugin("rotate");
    const host = await startedHost();
    assert.equal((await host.command({ op: "dispatch", n: 100, peers: PEERS })).ok, 100);
    const pid = sup.pluginPid();
    // Rotate to a new CA on both sides: the plugin's files first.
    const next = pki.newCa("next-ca");
    const server2 = pki.issue("plugin-2", { cn: "counter", san: [net.pluginIp, "counter.plugwire.test"], usage: "server", ca: next });
    const client2 = pki.issue("host-2", { cn: "plugwire-host", usage: "client", ca: next });
    copyFileSync(server2.key, files.serverKey);
    copyFileSync(server2.cert, files.serverCert);
    copyFileSync(next.ca, files.clientCa);
    // A client with the new material is accepted once the plugin re-read its files (every 200 ms).
    const probeArgs = JSON.stringify({ host: net.pluginIp, port: PORT, servername: "counter.plugwire.test", ca: next.ca, cert: client2.cert, key: client2.key });
    let accepted: { ok: boolean; error?: string } = { ok: false };
    for (let i = 0; i < 50 && !accepted.ok; i++) {
      const run = spawnSync("ip", ["netns", "exec", net.hostNs, process.execPath, fixture("remote-probe"), probeArgs], { encoding: "utf8", timeout: 10_000 });
      accepted = JSON.parse(run.stdout.trim() || '{"ok":false}') as typeof accepted;
    }
    assert.ok(accepted.ok, `the plugin never served the rotated certificate: ${accepted.error}`);
    assert.equal(sup.pluginPid(), pid, "no restart of the plugin");
    // The host's established connection keeps working.
    assert.equal((await host.command({ op: "dispatch", n: 100, peers: PEERS })).ok, 100);
    // The host's files rotate in place; its next connection uses them.
    copyFileSync(next.ca, files.hostCa);
    copyFileSync(client2.key, files.hostKey);
    copyFileSync(client2.cert, files.hostCert);
    const mark = host.mark();
    process.kill(pid, "SIGKILL");
    await host.waitLine((l) => l.event === "state" && l.state === "ready", 30_000, "the host to reconnect with the rotated files", mark);
    assert.equal((await host.command({ op: "dispatch", n: 100, peers: PEERS })).ok, 100);
    assert.deepEqual((await host.command({ op: "counts" })).counts, expected(300));
    await host.close();
    await sup.close();
  });
});
