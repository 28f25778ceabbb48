import { chmodSync } from "node:fs";
import { basename, join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import {
  ENV,
  HANDSHAKE_PREFIX,
  MAGIC_COOKIE_VALUE,
  MAX_SOCKET_PATH_BYTES,
  PROTOCOL_VERSION,
  PluginService,
  PlugwireError,
  SNAPSHOT_CHUNK_BYTES,
  SnapshotResponseSchema,
  addService,
  bearerToken,
  createServer,
  hasBearerToken,
  health,
  isHandshakeValue,
  listenTcp,
  listenUnix,
  missingCookieMessage,
  parseProtocolVersions,
  readLaunchToken,
  statefulErrors,
  type DeliverRequest,
  type DeliverResponse,
  type Effect,
} from "@plugwire/proto";
import { DeliveryProcessor } from "./delivery.js";
import { PayloadContext } from "./handler-context.js";
import { RestoreFailedError, SnapshotFailedError, UnsupportedVersionError } from "./errors.js";
import { CAPABILITY_NAMES, hostPorts } from "./host-client.js";
import { acceptOnlyHostConnection, refusedReason } from "./host-connection.js";
import { createLogger } from "./log.js";
import { remoteListenFromEnv } from "./listen.js";
import type { PluginContext, PluginDefinition } from "./plugin.js";
import type { Capability } from "./types.js";
import { SDK_VERSION } from "./version.js";

const NO_EFFECTS: Effect[] = [];
/** The largest snapshot a Restore may announce: what one buffer holds (2 GiB − 1); the host's maxSnapshotBytes is far below. */
const MAX_RESTORE_BYTES = 2 ** 31 - 1;

/** Attach mode: host calls fail with this target when PLUGWIRE_HOST_ADDRESS is unset (no HostService reachable). */
const REMOTE_NO_HOST_SERVICE = "unix:///nonexistent/plugwire-attach-mode-has-no-host-service";
/** Attach mode: exit status of a process that ends because a second host session began. */
const REMOTE_NEW_SESSION_EXIT_CODE = 3;

/** How long shutdown hooks may run when stdin closes or SIGTERM arrives. */
const EXIT_GRACE_MS = 500;

/** Thrown inside `serve` for a launch environment that cannot work. */
function fatal(message: string): never {
  process.stderr.write(message.endsWith("\n") ? message : `${message}\n`);
  process.exit(1);
}

function requireEnv(name: string): string {
  const value = process.env[name];
  if (!value) fatal(`plugwire plugin: the host did not set ${name}; this plugin must be started by a plugwire host.`);
  return value;
}

/**
 * Runs a plugin: checks the magic cookie, listens on a unix socket in the
 * host's socket dir, prints the handshake line, serves PluginService and the
 * health service, and exits when stdin closes or on SIGTERM.
 */
/** The line printed once the socket listens (docs/protocol.md §5), with its LF. */
export function handshakeLine(version: number, socketPath: string): string {
  return `${HANDSHAKE_PREFIX} protocol=${version} network=unix address=${socketPath} transport=grpc\n`;
}

export async function serve(plugin: PluginDefinition): Promise<void> {
  // Attach mode (PLUGWIRE_LISTEN): run by a process manager, served on TCP with mutual TLS (docs/protocol.md §18).
  const remote = remoteListenFromEnv(plugin.name);
  if (typeof remote === "string") fatal(remote);
  if (!remote && process.env[ENV.magicCookie] !== MAGIC_COOKIE_VALUE) {
    process.stderr.write(missingCookieMessage(basename(process.argv[1] ?? plugin.name)));
    process.exit(1);
  }
  const offered = remote ? String(PROTOCOL_VERSION) : requireEnv(ENV.protocolVersions);
  const accepted = parseProtocolVersions(offered);
  if (accepted === undefined) {
    fatal(
      `plugwire plugin '${plugin.name}': ${ENV.protocolVersions}=${JSON.stringify(offered)} is malformed; ` +
        `it must be decimal versions separated by commas, such as "1" or "1,2". The host that started this plugin is broken.`,
    );
  }
  // The highest version both sides speak; this SDK speaks one.
  const version = PROTOCOL_VERSION;
  if (!accepted.includes(version)) {
    fatal(
      `plugwire plugin '${plugin.name}': the host accepts protocol versions ${accepted.join(", ")}, ` +
        `but this plugin speaks version ${PROTOCOL_VERSION}. Upgrade the plugin or the host so they share a version.`,
    );
  }
  const socketDir = remote ? "/" : requireEnv(ENV.socketDir);
  const instanceId = remote ? process.env[ENV.instanceId] || plugin.name : requireEnv(ENV.instanceId);
  const hostAddress = remote ? (remote.host?.target ?? REMOTE_NO_HOST_SERVICE) : requireEnv(ENV.hostAddress);
  if (!/^[A-Za-z0-9._-]+$/.test(instanceId)) {
    fatal(`plugwire plugin '${plugin.name}': ${ENV.instanceId}=${JSON.stringify(instanceId)} may only use [A-Za-z0-9._-].`);
  }
  const socketPath = join(socketDir, `${instanceId}.sock`);
  if (!socketDir.startsWith("/") || !isHandshakeValue(socketPath)) {
    fatal(
      `plugwire plugin '${plugin.name}': ${ENV.socketDir}=${JSON.stringify(socketDir)} must be an absolute path without ` +
        `whitespace or control characters, since the socket path goes in the handshake line. The host that started this plugin is broken.`,
    );
  }
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
    fatal(
      `plugwire plugin '${plugin.name}': socket path ${socketPath} is ${Buffer.byteLength(socketPath)} bytes, ` +
        `over the ${MAX_SOCKET_PATH_BYTES}-byte unix socket limit. Give the host a shorter runDirParent (docs/protocol.md §4).`,
    );
  }
  // The token: by default the first line on stdin, which no other process can
  // read (docs/protocol.md §6); read before anything listens.
  let token: string;
  if (remote) token = "";
  else try {
    token = await readLaunchToken(process.env, process.stdin);
    // The legacy variable is not passed on to processes the plugin starts.
    delete process.env[ENV.authToken];
  } catch (e) {
    fatal(`plugwire plugin '${plugin.name}': ${e instanceof Error ? e.message : String(e)}`);
  }

  const log = createLogger();
  // Attach mode: the token for host calls is the one the host sends with Start (docs/protocol.md §18).
  let remoteHostToken = "";
  const ports = hostPorts(
    hostAddress,
    token,
    plugin.name,
    remote?.host ? { tokenOf: () => remoteHostToken, credentials: remote.host.credentials, channelOptions: remote.host.channelOptions } : undefined,
  );
  const shutdownController = new AbortController();
  let capabilities = new Set<Capability>();
  let context: PluginContext = {
    name: plugin.name,
    instanceId,
    dataDir: "",
    config: {},
    capabilities,
    signal: shutdownController.signal,
    peers: ports.peers,
    control: ports.control,
    identity: ports.identity,
    log,
  };
  let servingStatus = health.HealthCheckResponse_ServingStatus.SERVING;

  const requireCapability = (capability: Capability): void => {
    if (!capabilities.has(capability)) {
      throw new PlugwireError(
        "permission_denied",
        `plugin '${plugin.name}' was not granted the '${capability}' capability; add it to the plugin's capabilities in the host config`,
        { plugin: plugin.name },
      );
    }
  };

  const processor = new DeliveryProcessor(
    (item) => {
      const handlerContext = new PayloadContext(context, item.seq, ports.sendRoutedFrom, requireCapability);
      let result: void | Promise<void>;
      if (item.forgotten !== undefined) {
        result = plugin.onPeerForgotten?.(item.forgotten, handlerContext);
      } else {
        if (!plugin.payloadKinds.includes(item.payload.kind)) {
          throw new Error(`plugin '${plugin.name}' does not claim payload kind '${item.payload.kind}'`);
        }
        result = plugin.handlePayload(item.payload, handlerContext);
      }
      // Synchronous handlers cost no promise.
      if (result instanceof Promise) return result.then(() => handlerContext.effects ?? NO_EFFECTS);
      return handlerContext.effects ?? NO_EFFECTS;
    },
    (item, e) =>
      log.error(item.forgotten !== undefined ? "onPeerForgotten failed" : "payload handler failed", {
        seq: item.seq,
        ...(item.payload ? { kind: item.payload.kind } : { peer: Buffer.from(item.forgotten!).toString("hex") }),
        error: e instanceof Error ? e.message : String(e),
      }),
  );

  const server = createServer();
  const deliverCalls = new Set<grpc.ServerDuplexStream<unknown, unknown>>();
  const authorize = (metadata: grpc.Metadata, method: string): void => {
    if (remote) return authorizeRemoteSession(method, metadata);
    if (refusedReason(metadata) === "second-connection") {
      throw new PlugwireError(
        "unauthenticated",
        `plugin '${plugin.name}' refused ${method}: it serves one connection, its host's, and another connection is already the host's; ` +
          `only the host that started this plugin may call it (docs/protocol.md §6)`,
        { plugin: plugin.name },
      );
    }
    if (refusedReason(metadata) !== undefined || !hasBearerToken(metadata, token)) {
      throw new PlugwireError(
        "unauthenticated",
        `plugin '${plugin.name}' refused ${method}: the call carried no valid plugwire auth token ` +
          `(send 'authorization: Bearer <PLUGWIRE_AUTH_TOKEN>')`,
        { plugin: plugin.name },
      );
    }
  };

  /**
   * Attach mode: TLS already checked the caller's certificate. A process
   * serves one host session: once a Start was served, a new Describe or Start
   * (the host reconnecting after a lost connection) is refused and the
   * process exits, so its process manager starts it again with fresh memory
   * and the host restores its snapshot and replays into a clean state
   * (docs/protocol.md §18).
   */
  let sessionStarted = false;
  function authorizeRemoteSession(method: string, metadata: grpc.Metadata): void {
    if (method !== "Describe" && method !== "Start") return;
    if (!sessionStarted) {
      if (method === "Start") {
        sessionStarted = true;
        remoteHostToken = bearerToken(metadata) ?? "";
      }
      return;
    }
    log.warn(`a new host session began (${method}) after this process served one; exiting so the process manager restarts it with fresh state`);
    setImmediate(() => void beginShutdown(EXIT_GRACE_MS).finally(() => exit(REMOTE_NEW_SESSION_EXIT_CODE)));
    throw new PlugwireError(
      "plugin_unavailable",
      `plugin '${plugin.name}' already served a host session in this process; it exits (status ${REMOTE_NEW_SESSION_EXIT_CODE}) so that its process manager ` +
        `restarts it with fresh memory, and the host's next attempt restores its snapshot into a clean state (docs/protocol.md §18)`,
      { plugin: plugin.name },
    );
  }

  const stateful = plugin.stateful;
  addService(
    server,
    PluginService,
    {
      async describe(request) {
        if (request.protocolVersion !== version) {
          throw new PlugwireError(
            "protocol_mismatch",
            `plugin '${plugin.name}' refused Describe: it handshook protocol ${version}, but Describe asked for protocol ${request.protocolVersion}; ` +
              `the host must send the version of the handshake line`,
            { plugin: plugin.name },
          );
        }
        return {
          name: plugin.name,
          payloadKinds: [...plugin.payloadKinds],
          protocolVersion: version,
          stateful: stateful ? { id: stateful.id, snapshotVersions: [...stateful.versions] } : undefined,
          sdk: { language: "typescript", version: SDK_VERSION },
        };
      },
      async start(request) {
        capabilities = new Set(
          request.capabilities.map((c) => CAPABILITY_NAMES[c]).filter((c): c is Capability => c !== undefined),
        );
        let config: Record<string, unknown> = {};
        if (request.configJson) {
          const parsed: unknown = JSON.parse(request.configJson);
          if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) config = parsed as Record<string, unknown>;
        }
        context = { ...context, dataDir: request.dataDir, instanceId: request.instanceId || instanceId, config, capabilities };
        await plugin.start?.(context);
        return {};
      },
      deliver(call) {
        const send = (r: DeliverResponse): void => void call.write(r);
        deliverCalls.add(call);
        call.on("close", () => deliverCalls.delete(call));
        processor.attach(send, () => call.end()); // a newer Deliver stream ends this one (docs/protocol.md §8)
        call.on("data", (request: DeliverRequest) => processor.push(request, send));
        call.on("end", () => {
          processor.detach(send);
          call.end();
        });
        call.on("error", () => processor.detach(send));
        call.on("cancelled", () => processor.detach(send));
      },
      async snapshot(_request, call) {
        if (!stateful) {
          throw statefulErrors.snapshotFailed(plugin.name, "this plugin is not stateful (it declares no stateful hooks)");
        }
        const { snap, appliedSeq } = await processor.runExclusive(async () => {
          try {
            return { snap: await stateful.snapshot(), appliedSeq: processor.appliedSeq };
          } catch (e) {
            throw statefulErrors.snapshotFailed(plugin.name, e instanceof Error ? e.message : String(e));
          }
        });
        const bytes = snap.bytes;
        call.write(
          create(SnapshotResponseSchema, {
            part: {
              case: "header",
              value: { id: stateful.id, version: snap.version, appliedSeq: BigInt(appliedSeq), sizeBytes: BigInt(bytes.byteLength) },
            },
          }),
        );
        for (let offset = 0; offset < bytes.byteLength; offset += SNAPSHOT_CHUNK_BYTES) {
          // The host may give up (snapshot_too_large, deadline): a cancelled
          // call never drains, so stop instead of holding the bytes forever.
          if (call.cancelled) return;
          const chunk = bytes.subarray(offset, Math.min(offset + SNAPSHOT_CHUNK_BYTES, bytes.byteLength));
          if (!call.write(create(SnapshotResponseSchema, { part: { case: "chunk", value: chunk } }))) {
            await new Promise<void>((resolve) => {
              const done = (): void => {
                call.off("drain", done);
                call.off("cancelled", done);
                resolve();
              };
              call.once("drain", done);
              call.once("cancelled", done);
            });
          }
        }
      },
      async restore(call) {
        let header: { id: string; version: number; size: number; appliedSeq: number } | undefined;
        // Filled chunk by chunk as they arrive: one copy, no concatenation at the end.
        let body: Buffer | undefined;
        let received = 0;
        // The stream is read to its end even when it is already known to fail, so the host can finish writing it.
        let refused: string | undefined;
        for await (const message of call) {
          if (refused) continue;
          if (message.part.case === "header") {
            if (header) {
              refused = "the restore stream carried a second header";
              continue;
            }
            header = {
              id: message.part.value.id,
              version: message.part.value.version,
              size: Number(message.part.value.sizeBytes),
              appliedSeq: Number(message.part.value.appliedSeq),
            };
            if (!Number.isSafeInteger(header.size) || header.size > MAX_RESTORE_BYTES) {
              refused = `the restore stream's header announces ${message.part.value.sizeBytes} bytes, more than this SDK restores (${MAX_RESTORE_BYTES})`;
              continue;
            }
            try {
              body = Buffer.allocUnsafeSlow(header.size);
            } catch (e) {
              refused = `cannot hold a ${header.size}-byte snapshot: ${e instanceof Error ? e.message : String(e)}`;
            }
          } else if (message.part.case === "chunk") {
            if (!header) {
              refused = "the restore stream carried a chunk before its header";
              continue;
            }
            received += message.part.value.byteLength;
            if (received > header.size) {
              refused = `snapshot is longer than its header says: over ${header.size} bytes`;
              continue;
            }
            body!.set(message.part.value, received - message.part.value.byteLength);
          } else {
            refused = "the restore stream carried a message with neither header nor chunk";
          }
        }
        if (!stateful) throw statefulErrors.restoreFailed(plugin.name, "this plugin is not stateful (it declares no stateful hooks)");
        if (refused) throw statefulErrors.restoreFailed(plugin.name, refused);
        if (!header) throw statefulErrors.restoreFailed(plugin.name, "the restore stream carried no header");
        if (header.id !== stateful.id) {
          throw statefulErrors.restoreFailed(plugin.name, `snapshot id '${header.id}' is not this plugin's id '${stateful.id}'`);
        }
        if (received !== header.size) {
          throw statefulErrors.restoreFailed(plugin.name, `snapshot was truncated: header says ${header.size} bytes, got ${received}`);
        }
        if (!stateful.versions.includes(header.version)) {
          throw statefulErrors.unsupportedVersion(plugin.name, header.version, stateful.versions);
        }
        const bytes = new Uint8Array(body!.buffer, body!.byteOffset, received);
        const { version, appliedSeq } = header;
        await processor.runExclusive(async () => {
          try {
            await stateful.restore({ version, bytes });
            processor.restoredThrough(appliedSeq);
          } catch (e) {
            if (e instanceof UnsupportedVersionError) throw statefulErrors.unsupportedVersion(plugin.name, e.version, e.expected);
            if (e instanceof SnapshotFailedError) throw statefulErrors.snapshotFailed(plugin.name, e.message);
            throw statefulErrors.restoreFailed(plugin.name, e instanceof RestoreFailedError || e instanceof Error ? e.message : String(e));
          }
        });
        return {};
      },
      async shutdown(request) {
        await beginShutdown(request.deadlineMs || EXIT_GRACE_MS);
        // Reply first; exit() then ends the Deliver streams and lets the reply go out.
        setImmediate(() => exit(0));
        return {};
      },
    },
    { authorize },
  );
  addService(
    server,
    health.Health,
    {
      async check() {
        return { status: servingStatus };
      },
      async watch(_request, call) {
        call.write({ status: servingStatus });
        if (shutdownController.signal.aborted) return;
        await new Promise<void>((resolve) => {
          call.on("cancelled", resolve);
          // A shutdown began: say NOT_SERVING, then end the stream so the server can stop.
          shutdownController.signal.addEventListener(
            "abort",
            () => {
              if (!call.cancelled) call.write({ status: health.HealthCheckResponse_ServingStatus.NOT_SERVING });
              resolve();
            },
            { once: true },
          );
        });
      },
    },
    { authorize },
  );

  /** Waits for `work`, at most `ms`. */
  async function within(work: Promise<unknown>, ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([work, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
    clearTimeout(timer);
  }

  let stopping: Promise<void> | undefined;
  /**
   * The start of every shutdown (Shutdown, SIGTERM, SIGINT, stdin EOF), once:
   * Health turns NOT_SERVING, no new item starts, the handler running now
   * finishes and the final ack is written, then the plugin's shutdown hook
   * runs; all within `deadlineMs`. Queued items are left for the next launch.
   */
  function beginShutdown(deadlineMs: number): Promise<void> {
    stopping ??= (async () => {
      servingStatus = health.HealthCheckResponse_ServingStatus.NOT_SERVING;
      shutdownController.abort();
      const deadline = performance.now() + deadlineMs;
      await within(processor.close(), deadlineMs);
      if (!plugin.shutdown) return;
      const hook = Promise.resolve()
        .then(() => plugin.shutdown!(context))
        .catch((e: unknown) => log.error("shutdown hook failed", { error: e instanceof Error ? e.message : String(e) }));
      await within(hook, Math.max(0, deadline - performance.now()));
    })();
    return stopping;
  }

  let exiting = false;
  /** Lets in-flight replies (such as Shutdown's) reach the host, then exits. */
  function exit(code: number): void {
    if (exiting) return;
    exiting = true;
    ports.close();
    for (const call of deliverCalls) call.end();
    setTimeout(() => process.exit(code), EXIT_GRACE_MS).unref();
    server.tryShutdown(() => process.exit(code));
  }
  const graceful = (): void => {
    void beginShutdown(EXIT_GRACE_MS).finally(() => exit(0));
  };

  // The host keeps our stdin open; EOF means the host is gone.
  if (!remote) {
    process.stdin.on("end", graceful);
    process.stdin.on("error", graceful);
    process.stdin.resume();
    if (process.stdin.readableEnded) graceful();
  }
  process.on("SIGTERM", graceful);
  process.on("SIGINT", graceful);

  if (remote) {
    const port = await listenTcp(server, remote.address, remote.credentials);
    const shown = remote.address.host.includes(":") ? `[${remote.address.host}]` : remote.address.host;
    if (remote.healthAddress) {
      // Probes (the kubelet's) get the serving status in plaintext, and nothing else.
      const probes = createServer();
      addService(
        probes,
        health.Health,
        {
          async check() {
            return { status: servingStatus };
          },
          async watch(_request, call) {
            call.write({ status: servingStatus });
          },
        },
        { authorize: () => undefined },
      );
      const healthPort = await listenTcp(probes, remote.healthAddress, grpc.ServerCredentials.createInsecure());
      log.info(`plugwire plugin '${plugin.name}' serving grpc.health.v1 for probes on port ${healthPort} (plaintext, health only)`, { healthPort });
    }
    log.info(`plugwire plugin '${plugin.name}' serving attach mode on tcp://${shown}:${port} with ${remote.security}`, { port });
    return;
  }

  await listenUnix(server, socketPath);
  chmodSync(socketPath, 0o600);
  if (!acceptOnlyHostConnection(server, token)) log.warn("cannot limit the plugin server to the host's connection (grpc-js internals changed); only the token is checked");
  process.stdout.write(handshakeLine(version, socketPath));
}
