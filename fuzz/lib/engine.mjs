/**
 * Runs generated inputs (gRPC calls over node:http2, raw HTTP/2 connections)
 * against a gRPC server on a unix socket, several at a time, within a count
 * and a time budget, and tallies the outcome of each.
 */
import { buildHeaders, authHeader, encodeBody, encodeRaw, targetInput } from "./gen.mjs";
import { h2Request, rawExchange } from "./h2.mjs";
import { BULK_BODY_BYTES, InputSource, Tally, pool } from "./util.mjs";

/**
 * options:
 *   seed, count, timeLimitMs, concurrency, methods, rawShare, fallbackSchema
 *   endpoint(index) -> Promise<{ socketPath, sessions, tokens, recent, gate }> (recent: array of recent indexes; gate: an optional SessionGate of `sessions`)
 *   resolve(init, input) -> init with symbolic values made concrete
 *   failed() -> true to stop early (a crash was seen)
 *   onHang(index, input) -> (async) a complete unary call went unanswered; the request's session is in lastHang (h2.mjs)
 *   only: run just this index (replay)
 */
export async function runInputs(options) {
  const source = new InputSource(targetInput(options.methods, options.rawShare), options.seed);
  const tally = new Tally();
  const kinds = new Tally();
  const started = performance.now();
  const deadline = started + options.timeLimitMs;
  let sent = 0;
  const fuzzerErrors = [];
  const run = async (index) => {
    try {
      await runOne(index);
    } catch (e) {
      // A bug of the fuzzer itself: reported, never hidden.
      tally.add("fuzzer-error");
      if (fuzzerErrors.length < 5) fuzzerErrors.push({ index, error: e.stack ?? String(e) });
    }
  };
  const runOne = async (index) => {
    const input = source.get(index);
    // For diagnosis: only the inputs a filter keeps (the others count as skipped).
    if (options.filter && !options.filter(input)) {
      tally.add("skipped");
      return;
    }
    const ep = await options.endpoint(index);
    ep.recent?.push(index);
    if (ep.recent && ep.recent.length > 64) ep.recent.shift();
    let outcome;
    if (input.type === "raw") {
      kinds.add("raw-h2");
      outcome = await rawExchange(ep.socketPath, encodeRaw(input, options.methods, ep.tokens, (init) => options.resolve(init, input)), {
        quietMs: input.quietMs,
      });
    } else {
      const m = options.methods[input.method];
      kinds.add(m ? `grpc:${m.name}` : "grpc:other-path");
      const path = m ? m.path : input.otherPath;
      const headers = buildHeaders(path, input.headers, authHeader(input.auth, ep.tokens));
      const body = encodeBody(input, m ? m.schema : options.fallbackSchema, (init) => options.resolve(init, input));
      const bytes = body.reduce((n, b) => n + b.length, 0);
      // A big body takes the session alone when the target gives a gate (see SessionGate).
      const release = ep.gate ? await ep.gate.enter(bytes >= BULK_BODY_BYTES) : undefined;
      try {
        outcome = await h2Request(ep.sessions, headers, body, {
          endStream: input.endStream,
          waitMs: input.waitMs,
          // An other path may name a streaming method of another service (Health/Watch on the host, say).
          streaming: m ? m.kind === "server" || m.kind === "bidi" : /Watch|Deliver|Snapshot/.test(path),
        });
      } finally {
        release?.();
      }
      // grpc-js never answers UNIMPLEMENTED to a call whose body outgrows the stream window (8 MiB):
      // a known quirk that costs the server nothing (it stops reading), not a hang of a real method.
      if (outcome === "hang" && !m && bytes > 8 * 1024 * 1024) outcome = "unanswered:unknown-method-large-body";
    }
    sent++;
    tally.add(outcome);
    if (options.progress && sent % Math.max(1000, Math.floor(options.count / 10)) === 0) options.progress(sent, performance.now() - started);
    // Awaited: a target judges who stopped reading (fuzz/lib/sockets.mjs) before its lane goes on.
    if (outcome === "hang") await options.onHang?.(index, input);
  };
  if (options.only !== undefined) {
    await run(options.only);
  } else {
    await pool(options.count, options.concurrency, run, () => performance.now() > deadline || options.failed());
  }
  return { inputs: sent, tally, kinds, fuzzerErrors, ms: performance.now() - started, timedOut: performance.now() > deadline && sent < options.count };
}

/** Prints the input for a replay: the JSON of the generated value (bytes as hex). */
export function describeInput(seed, index, methods, rawShare) {
  const input = new InputSource(targetInput(methods, rawShare), seed).get(index);
  return JSON.stringify(input, (_k, v) => (v instanceof Uint8Array ? `hex:${Buffer.from(v).toString("hex")}` : typeof v === "bigint" ? `${v}n` : v)).slice(0, 4000);
}
