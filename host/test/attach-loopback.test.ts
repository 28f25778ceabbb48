/**
 * Attach mode on loopback (no network namespaces needed): a plugin that has
 * logged "serving attach mode" must accept the host's first connection.
 *
 * Regression: grpc-js reads a certificate provider's files asynchronously
 * after the server binds, and drops every connection until then. The SDK used
 * to log that it served before the files were read, so a host attaching at
 * once got ECONNRESET ("could not be reached"); CI's bench failed on it.
 * Each round starts a new plugin process and attaches the moment it says it
 * serves, which is when the window was open.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import type { PluginConfig } from "../src/index.js";
import { example, freeLoopbackPort, peer, testHost } from "./helpers.js";
import { hasOpenssl, makePki } from "./remote-certs.js";

const ROUNDS = 6;
const skip = hasOpenssl() ? false : "skipped: the openssl CLI is not installed";


/** Starts the counter example in attach mode on a loopback port; resolves with the port it logged. */
function serveCounter(env: NodeJS.ProcessEnv, children: ChildProcess[]): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [example("counter")], { env, stdio: ["ignore", "ignore", "pipe"] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let err = "";
    const timer = setTimeout(() => reject(new Error(`the plugin did not say it serves within 20 s; stderr:\n${err}`)), 20_000);
    child.stderr!.on("data", (chunk: Buffer) => {
      err += chunk.toString();
      const m = /serving attach mode on tcp:\/\/127\.0\.0\.1:(\d+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve({ child, port: Number(m[1]) });
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the plugin exited (${code}) before serving; stderr:\n${err}`));
    });
  });
}

describe("attach mode on loopback", { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), "pw-attach-lo-"));
  const children: ChildProcess[] = [];
  after(async () => {
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null) {
        const gone = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGKILL");
        await gone;
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  test(`the host attaches the moment the plugin says it serves (${ROUNDS} new processes)`, { timeout: 120_000 }, async () => {
    const pki = makePki(join(dir, "pki"));
    const server = pki.issue("plugin", { cn: "counter", san: ["127.0.0.1", "localhost"], usage: "server" });
    const client = pki.issue("host", { cn: "plugwire-host", usage: "client" });
    for (let round = 1; round <= ROUNDS; round++) {
      const { child, port } = await serveCounter(
        {
          PATH: process.env.PATH,
          PLUGWIRE_LISTEN: `tcp://127.0.0.1:${await freeLoopbackPort()}`,
          PLUGWIRE_TLS_CERT: server.cert,
          PLUGWIRE_TLS_KEY: server.key,
          PLUGWIRE_TLS_CLIENT_CA: pki.ca,
        },
        children,
      );
      const config = {
        name: "counter",
        attach: { address: `tcp://127.0.0.1:${port}`, tls: { ca: pki.ca, cert: client.cert, key: client.key }, serverName: "localhost" },
        handshakeTimeoutMs: 5_000,
      } as unknown as PluginConfig;
      const t = testHost([config]);
      try {
        await t.host.start();
        await t.host.dispatch(peer(1), "counter.hit", new Uint8Array(0));
        const status = t.host.status().find((p) => p.name === "counter");
        assert.equal(status?.state, "ready", `round ${round}: counter is ${status?.state}`);
      } catch (e) {
        throw new Error(`round ${round}: attaching to a plugin that said it serves failed: ${e instanceof Error ? e.message : String(e)}`);
      } finally {
        await t.close();
        if (child.exitCode === null && child.signalCode === null) {
          const gone = new Promise((resolve) => child.once("exit", resolve));
          child.kill("SIGKILL");
          await gone;
        }
      }
    }
  });
});
