// steady-attach: `steady` with counter in attach mode (docs/remote-plugins.md).
// counter serves mutual TLS on loopback TCP under a plain supervisor loop (a
// stand-in for Kubernetes: it starts the plugin again whenever it exits); the
// host attaches to it, while echo and presence are spawned as usual. Every
// --kill-every-ms either the remote counter process or a random spawned
// plugin is SIGKILLed. A lost connection is a crash: the host reconnects,
// restores counter's snapshot from its own store and replays; the check is
// the same as steady's (0 lost, 0 duplicated, counter's state exact).
// Certificates come from the openssl CLI; without it the scenario fails,
// saying so.
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { node, sigkill, sleep } from "../lib/util.mjs";
import { CHAOS_POLICY } from "../lib/plugins.mjs";

function openssl(args, cwd) {
  const r = spawnSync("openssl", args, { cwd, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.error?.message ?? r.stderr}`);
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, in `dir`. */
function makeCerts(dir) {
  mkdirSync(dir, { recursive: true });
  const key = (name) => openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${name}.key`], dir);
  key("ca");
  openssl(["req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", "2", "-subj", "/CN=chaos-ca", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign", "-out", "ca.pem"], dir);
  for (const [name, usage, san] of [
    ["server", "serverAuth", "subjectAltName=IP:127.0.0.1"],
    ["client", "clientAuth", ""],
  ]) {
    key(name);
    openssl(["req", "-new", "-key", `${name}.key`, "-subj", `/CN=chaos-${name}`, "-out", `${name}.csr`], dir);
    writeFileSync(join(dir, `${name}.ext`), `basicConstraints=critical,CA:FALSE\nextendedKeyUsage=${usage}\n${san}\n`);
    openssl(["x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", name === "server" ? "2" : "3", "-days", "2", "-extfile", `${name}.ext`, "-out", `${name}.pem`], dir);
  }
  return { ca: join(dir, "ca.pem"), serverCert: join(dir, "server.pem"), serverKey: join(dir, "server.key"), clientCert: join(dir, "client.pem"), clientKey: join(dir, "client.key") };
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** The supervisor loop: runs `args` again whenever it exits, until stopped. */
function supervise(args, env) {
  let child;
  let stopped = false;
  let starts = 0;
  const start = () => {
    if (stopped) return;
    starts++;
    child = spawn(process.execPath, args, { env, stdio: ["ignore", "ignore", "ignore"] });
    child.once("exit", () => {
      if (!stopped) setTimeout(start, 50);
    });
  };
  start();
  return {
    get pid() {
      return child?.exitCode === null && child.signalCode === null ? child.pid : undefined;
    },
    get starts() {
      return starts;
    },
    async stop() {
      stopped = true;
      if (child && child.exitCode === null && child.signalCode === null) {
        const gone = new Promise((resolve) => child.once("exit", resolve));
        sigkill(child.pid);
        await gone;
      }
    },
  };
}

export default {
  name: "steady-attach",
  summary: "steady with counter attached over loopback TCP + mutual TLS under a supervisor loop; the remote counter or a spawned plugin SIGKILLed every --kill-every-ms (default 1000)",
  async run(t) {
    const certs = makeCerts(join(t.dataDir, "tls"));
    const port = await freePort();
    const sup = supervise([join(t.repo, "plugins-example", "dist", "counter.js")], {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      PLUGWIRE_LISTEN: `tcp://127.0.0.1:${port}`,
      PLUGWIRE_TLS_CERT: certs.serverCert,
      PLUGWIRE_TLS_KEY: certs.serverKey,
      PLUGWIRE_TLS_CLIENT_CA: certs.ca,
      CHAOS_RUN: t.run,
      CHAOS_PLUGIN: "counter",
    });
    try {
      const counterConfig = {
        name: "counter",
        attach: { address: `tcp://127.0.0.1:${port}`, tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey }, serverName: "127.0.0.1" },
        ...CHAOS_POLICY,
        handshakeTimeoutMs: 2_000,
      };
      // The supervisor's first start may not listen yet: the host retries under its backoff.
      let host;
      for (let attempt = 0; attempt < 50 && !host; attempt++) {
        try {
          host = await t.startHost({ plugins: [counterConfig, "echo", "presence"], snapshotIntervalMs: 1_000 });
        } catch (e) {
          if (attempt === 49) throw e;
          for (const h of t.hosts) await t.stopHost(h);
          await sleep(100);
        }
      }
      const counter = t.ledger({ kind: "counter.hit", plugin: "counter", perPeer: true });
      const echo = t.ledger({ kind: "echo.ping", plugin: "echo", tag: "e" });
      const presence = t.ledger({ kind: "presence.who", plugin: "presence", body: new Uint8Array() });
      const echoPeer = { src: node(0x40), hex: "40".repeat(32) };
      const until = Date.now() + t.args.durationMs;
      await Promise.all([
        t.load(host, counter, { maxOutstanding: 2_000, until }),
        t.load(host, echo, { maxOutstanding: 2_000, until, next: () => echoPeer }),
        t.load(host, presence, { maxOutstanding: 64, until }),
        t.every(t.args.killEveryMs ?? 1_000, until, (round) => {
          // Every other fault hits the remote counter, when it is attached and ready.
          const remote = host.status().find((s) => s.name === "counter");
          const pid = sup.pid;
          if (round % 2 === 0 && remote?.state === "ready" && pid && sigkill(pid)) {
            t.fault({ what: "SIGKILL", plugin: "counter (remote)", pid, state: remote.state, inFlight: remote.inFlight, queued: remote.queued });
            return;
          }
          t.killRandomReady(host);
        }),
      ]);
      await t.settle();
      await t.checkState(host, counter);
      t.note(`the supervisor started the remote counter ${sup.starts} times`);
      for (const h of [...t.hosts]) await t.stopHost(h);
    } finally {
      await sup.stop();
    }
  },
};
