/**
 * Target 3: handshake lines into the pure parser (host/src/handshake/parse.ts).
 * Properties, for every line:
 *   - parseHandshake never throws and answers within 100 ms (lines up to 1 MiB);
 *   - an accepted line is one the host can use: an accepted protocol version,
 *     unix with an absolute path or tcp on a loopback port, grpc, and the
 *     address is the line's own `address=` field;
 *   - a line built from the grammar of docs/protocol.md §5 is accepted with
 *     exactly its values; one with a repeated key or a version the host does
 *     not offer is refused.
 */
import fc from "fast-check";
import { HANDSHAKE_PREFIX } from "@plugwire/proto";
import { MAX_HANDSHAKE_REASON_CHARS, isHandshakeLine, parseHandshake } from "../../host/dist/src/handshake/parse.js";
import { mutate } from "../lib/gen.mjs";
import { Tally, procStatus, propertyFailure } from "../lib/util.mjs";

const valueChar = fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c));
const value = fc.string({ unit: valueChar, minLength: 1, maxLength: 30 });
const key = fc.stringMatching(/^[a-z0-9_]{1,12}$/);
const REQUIRED = ["protocol", "network", "address", "transport"];

const tcpAddress = fc.oneof(
  fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.integer({ min: 1, max: 65535 })).map(([a, b, c, p]) => `127.${a}.${b}.${c}:${p}`),
  fc.integer({ min: 1, max: 65535 }).map((p) => `[::1]:${p}`),
  fc.integer({ min: 1, max: 65535 }).map((p) => `localhost:${p}`),
);

/** A line from the grammar, with what it must parse to. */
const grammarLine = fc
  .record({
    network: fc.constantFrom("unix", "tcp"),
    path: value.map((v) => `/${v}`),
    tcp: tcpAddress,
    version: fc.integer({ min: 1, max: 5 }),
    extra: fc.uniqueArray(fc.tuple(key.filter((k) => !REQUIRED.includes(k)), value), { maxLength: 4, selector: ([k]) => k }),
    order: fc.array(fc.nat(), { minLength: 8, maxLength: 8 }),
    gaps: fc.array(fc.constantFrom(" ", " ", " ", "  "), { minLength: 8, maxLength: 8 }),
    accepted: fc.uniqueArray(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 3 }),
    offered: fc.nat(4),
  })
  .map((r) => {
    // Most lines speak a version the host offers.
    if (r.offered > 0 && !r.accepted.includes(r.version)) r.accepted = [...r.accepted, r.version];
    const address = r.network === "unix" ? r.path : r.tcp;
    const fields = [["protocol", String(r.version)], ["network", r.network], ["address", address], ["transport", "grpc"], ...r.extra];
    // A shuffle driven by `order`.
    const shuffled = fields.map((f, i) => [r.order[i] ?? i, f]).sort((a, b) => a[0] - b[0]).map(([, f]) => f);
    const line = HANDSHAKE_PREFIX + shuffled.map(([k, v], i) => `${r.gaps[i] ?? " "}${k}=${v}`).join("");
    const ok = r.accepted.includes(r.version);
    return { kind: "grammar", line, accepted: r.accepted, expect: ok ? { protocolVersion: r.version, network: r.network, address, transport: "grpc" } : "refused" };
  });

/** A grammar line with a required key given twice. */
const repeatedKey = fc.tuple(grammarLine, fc.constantFrom(...REQUIRED), value).map(([g, k, v]) => ({ kind: "repeated", line: `${g.line} ${k}=${v}`, accepted: g.accepted, expect: "refused" }));

const mutation = fc.oneof(
  fc.record({ op: fc.constant("flip"), at: fc.double({ min: 0, max: 1, noNaN: true }), bit: fc.nat(7) }),
  fc.record({ op: fc.constant("insert"), at: fc.double({ min: 0, max: 1, noNaN: true }), data: fc.constantFrom(...[" ", "\t", "=", "\u0000", "\r", "\u00a0", "\u2028", "\ufeff", "==", "/", ":", "é", "\ud800"].map((s) => new TextEncoder().encode(s))) }),
  fc.record({ op: fc.constant("delete"), at: fc.double({ min: 0, max: 1, noNaN: true }), len: fc.integer({ min: 1, max: 6 }) }),
  fc.record({ op: fc.constant("truncate"), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
  fc.record({ op: fc.constant("dup"), at: fc.double({ min: 0, max: 1, noNaN: true }), len: fc.integer({ min: 1, max: 20 }), times: fc.integer({ min: 1, max: 5 }) }),
);
/** Mutations land after the prefix most of the time, so they reach the field parser. */
const mutated = fc.tuple(grammarLine, fc.array(mutation, { minLength: 1, maxLength: 4 }), fc.nat(9)).map(([g, muts, where]) => {
  const keep = where === 0 ? "" : HANDSHAKE_PREFIX;
  return { kind: "mutated", line: keep + mutate(Buffer.from(g.line.slice(keep.length), "utf8"), muts).toString("utf8"), accepted: g.accepted, expect: undefined };
});

const anyText = fc.oneof(fc.string({ maxLength: 80 }), fc.string({ unit: "binary", maxLength: 80 }), fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 40 }));
const randomLine = fc.tuple(fc.constantFrom("", `${HANDSHAKE_PREFIX} `, `${HANDSHAKE_PREFIX} `, `${HANDSHAKE_PREFIX} protocol=1 `, HANDSHAKE_PREFIX, `${HANDSHAKE_PREFIX}\t`, "plugwire_handshake "), anyText).map(([p, t]) => ({ kind: "random", line: p + t, accepted: [1], expect: undefined }));

const special = fc.constantFrom(
  "", HANDSHAKE_PREFIX, `${HANDSHAKE_PREFIX} `, `${HANDSHAKE_PREFIX} =`, `${HANDSHAKE_PREFIX} ==`, `${HANDSHAKE_PREFIX} a==b`,
  `${HANDSHAKE_PREFIX} protocol=1 network=unix address=/ transport=grpc`,
  `${HANDSHAKE_PREFIX} protocol=01 network=unix address=/a transport=grpc`,
  `${HANDSHAKE_PREFIX} protocol=1.0 network=unix address=/a transport=grpc`,
  `${HANDSHAKE_PREFIX} protocol=99999999999999999999999 network=unix address=/a transport=grpc`,
  `${HANDSHAKE_PREFIX} protocol=1 network=tcp address=127.0.0.1:0 transport=grpc`,
  `${HANDSHAKE_PREFIX} protocol=1 network=tcp address=127.0.0.256:80 transport=grpc`,
  `${HANDSHAKE_PREFIX} protocol=1 network=tcp address=10.0.0.1:80 transport=grpc`,
  `${HANDSHAKE_PREFIX} protocol=1 network=tcp address=[::1]:65536 transport=grpc`,
  `${HANDSHAKE_PREFIX} protocol=1 network=tcp address=localhost.evil.com:80 transport=grpc`,
  `${HANDSHAKE_PREFIX} protocol=1 network=unix address=relative.sock transport=grpc`,
  `${HANDSHAKE_PREFIX} protocol=1 network=unix address=/a transport=grpc\r`,
  `${HANDSHAKE_PREFIX} protocol=1 network=unix address=/a transport=GRPC`,
  `${HANDSHAKE_PREFIX} __proto__=1 constructor=2 protocol=1 network=unix address=/a transport=grpc`,
).map((line) => ({ kind: "special", line, accepted: [1], expect: undefined }));

/** Long lines: one huge field, many fields, many spaces, a huge address. */
const huge = fc
  .record({ size: fc.integer({ min: 64 * 1024, max: 1024 * 1024 }), shape: fc.constantFrom("field", "fields", "spaces", "address", "equals", "nokey") })
  .map(({ size, shape }) => {
    const p = `${HANDSHAKE_PREFIX} `;
    const line =
      shape === "field" ? `${p}x=${"a".repeat(size)}`
      : shape === "fields" ? p + "k=v ".repeat(size / 4)
      : shape === "spaces" ? p + " ".repeat(size) + "protocol=1"
      : shape === "address" ? `${p}protocol=1 network=unix transport=grpc address=/${"a".repeat(size)}`
      : shape === "equals" ? p + "=".repeat(size)
      : p + "a".repeat(size);
    return { kind: `huge-${shape}`, line, accepted: [1], expect: undefined };
  });

const lineInput = fc.oneof(
  { weight: 30, arbitrary: grammarLine },
  { weight: 5, arbitrary: repeatedKey },
  { weight: 30, arbitrary: mutated },
  { weight: 25, arbitrary: randomLine },
  { weight: 5, arbitrary: special },
  { weight: 1, arbitrary: huge },
);

const LOOPBACK = /^(127(?:\.[0-9]{1,3}){3}|\[::1\]|localhost):([0-9]{1,5})$/;

/** Throws when `result` for `input` breaks a property. */
function check(input, result, ms) {
  // Linear time: 50 ms plus 0.5 us a character (a 1 MiB line: 0.57 s) catches any blow-up.
  if (ms > 50 + input.line.length * 0.0005) throw new Error(`parse of a ${input.line.length}-character line took ${ms.toFixed(1)} ms`);
  if (typeof result !== "object" || typeof result.ok !== "boolean") throw new Error(`not a result: ${JSON.stringify(result)}`);
  if (!result.ok) {
    if (typeof result.reason !== "string" || result.reason === "") throw new Error("a refusal without a reason");
    if (input.expect && input.expect !== "refused") throw new Error(`a grammar line was refused: ${result.reason}`);
    return;
  }
  const h = result.handshake;
  if (input.expect === "refused") throw new Error(`accepted a line that must be refused (${input.kind})`);
  if (!isHandshakeLine(input.line)) throw new Error("accepted a line that isHandshakeLine rejects");
  if (!input.accepted.includes(h.protocolVersion)) throw new Error(`accepted version ${h.protocolVersion}, not in ${input.accepted}`);
  if (h.transport !== "grpc") throw new Error(`transport ${h.transport}`);
  if (h.network === "unix") {
    if (!h.address.startsWith("/")) throw new Error(`unix address ${h.address} is not absolute`);
  } else if (h.network === "tcp") {
    const m = LOOPBACK.exec(h.address);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535 || m[1].split(".").some((o) => Number(o) > 255)) throw new Error(`tcp address ${h.address} is not loopback`);
  } else throw new Error(`network ${h.network}`);
  const at = input.line.indexOf(`address=${h.address}`);
  const after = input.line[at + 8 + h.address.length];
  if (at < 0 || !/\s/.test(input.line[at - 1] ?? "") || (after !== undefined && !/\s/.test(after))) {
    throw new Error(`address ${JSON.stringify(h.address)} is not the line's address field`);
  }
  if (input.expect && JSON.stringify(h) !== JSON.stringify(input.expect)) throw new Error(`parsed ${JSON.stringify(h)}, expected ${JSON.stringify(input.expect)}`);
}

const REASONS = [
  ["does not start", "not a handshake line"],
  ["not key=value", "not key=value"],
  ["appears twice", "repeated key"],
  ["missing or empty", "missing field"],
  ["not a whole number", "bad protocol"],
  ["protocol version", "version not offered"],
  ["network", "bad network"],
  ["transport", "bad transport"],
  ["unix address", "bad unix address"],
  ["tcp address", "bad tcp address"],
  ["control character", "control character"],
];
function reasonKind(reason) {
  return REASONS.find(([needle]) => reason.includes(needle))?.[1] ?? reason.split(" ").slice(0, 3).join(" ");
}

export async function fuzzHandshake({ seed, count, only, log }) {
  const tally = new Tally();
  const kinds = new Tally();
  const failures = [];
  let inputs = 0;
  let longestReason = 0;
  let slowestMs = 0;
  let peakRssKb = 0;
  const started = performance.now();
  try {
    fc.assert(
      fc.property(lineInput, (input) => {
        inputs++;
        if (inputs % 1000 === 0) peakRssKb = Math.max(peakRssKb, procStatus(process.pid)?.rssKb ?? 0);
        kinds.add(input.kind);
        const t = performance.now();
        const result = parseHandshake(input.line, input.accepted);
        const ms = performance.now() - t;
        slowestMs = Math.max(slowestMs, ms);
        check(input, result, ms);
        if (result.ok) tally.add("accepted");
        else {
          longestReason = Math.max(longestReason, result.reason.length);
          // A refusal quotes what the plugin printed only in part: it lands in logs and errors.
          if (result.reason.length > MAX_HANDSHAKE_REASON_CHARS) throw new Error(`refusal reason of ${result.reason.length} characters (max ${MAX_HANDSHAKE_REASON_CHARS})`);
          tally.add(`refused:${reasonKind(result.reason)}`);
        }
      }),
      { seed, numRuns: count, ...(only !== undefined ? { path: String(only) } : {}), endOnFailure: false },
    );
  } catch (e) {
    failures.push({ kind: "property", detail: propertyFailure(e) });
  }
  log(`longest refusal reason ${longestReason} chars, slowest parse ${slowestMs.toFixed(1)} ms`);
  // The parser runs in this process: the largest VmRSS sampled during the target (every 1,000 inputs).
  return { target: "handshake-parse", failures, inputs, tally, kinds, ms: performance.now() - started, longestReason, slowestMs, peakRssKb };
}
