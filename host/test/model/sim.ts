/**
 * A deterministic simulation of the delivery protocol: the host's real
 * DeliveryChannel and the SDK's real DeliveryProcessor, joined by simulated
 * transports that move a message only when the history says so.
 *
 * A history is a list of step names (STEPS). Each is something that can
 * happen in a deployment: the application dispatches or forgets, a message
 * crosses the wire, the plugin finishes a handler, the event loop turns,
 * time passes, the plugin crashes or is relaunched, a snapshot is taken,
 * saved or lost, the host itself restarts. A step that cannot happen in the
 * current state (an ack with nothing on the wire, a restart while a launch
 * lives) does nothing, so every list of steps is a valid history and
 * fast-check shrinks freely.
 *
 * After the history `finish` drains without faults (relaunching if needed),
 * checks the sequential model, then crashes once more, recovers from the
 * durable snapshot plus replay, and checks again. A broken invariant throws
 * a Violation whose message carries the trace of the history.
 *
 * Determinism: nothing here does I/O; while a history runs, setTimeout and
 * performance.now() run on a virtual clock (VirtualClock) that only `time`
 * steps and drain rounds advance; setImmediate runs only when a step turns
 * the event loop. So a seed always replays the same interleaving.
 *
 * The runner's orchestration (host/src/supervisor/runner.ts: launchOnce,
 * restoreLatest, snapshotNow, endLaunch, earlySnapshot) and serve.ts's
 * wiring of the processor (deliver, snapshot, restore) are mirrored step by
 * step; where the model departs from them the comment says so.
 *
 * What is checked, per host incarnation (a DeliveryChannel's lifetime):
 * - every Deliver message: seqs to one launch increase; a new seq is the
 *   next one (from the restored snapshot's applied_seq on) and carries the
 *   next queued item; a seq written again carries the same item and the
 *   redelivered flag; an item in flight at a crash is redelivered alone into
 *   an empty window; items in flight stay within maxInFlight, and bytes
 *   within max(maxInFlightBytes, SAFE_IN_FLIGHT_BYTES), and within
 *   SAFE_IN_FLIGHT_BYTES while a snapshot streams;
 * - a process applies each seq at most once, in increasing order;
 * - a saved snapshot's state is the sequential model's state at its
 *   applied_seq (dead letters excluded);
 * - after the fault-free drain: every dispatch settled (liveness, within
 *   12 + 4 × outstanding items rounds, and no round without progress);
 *   resolved ⇒ not a dead letter and its one send effect performed exactly
 *   once, with its own frame and seq; rejected ⇒ queue_full (never given a
 *   seq), a throwing handler, or a dead letter; dead letter ⇒ in flight at 2
 *   crashes and alone in flight at the second; the plugin's state equals
 *   the sequential model (base snapshot, then every seq in order, dead
 *   letters excluded), and again after one more crash, restore and replay.
 * A host restart keeps only the store: acked items after the newest durable
 * snapshot are not in the next incarnation's state (docs/guarantees.md "Host
 * restart"), the old incarnation's pending dispatches never settle, and
 * seqs after that snapshot are given again to new items. So the model checks
 * that resolved dispatches had their effects exactly once, and the next
 * incarnation starts from the stored state, exactly.
 */
import { create } from "@bufbuild/protobuf";
import {
  EffectSchema,
  PlugwireError,
  SNAPSHOT_CHUNK_BYTES,
  decodeDeliverRequest,
  decodeDeliverResponse,
  encodeDeliverRequest,
  encodeDeliverResponse,
  type DeliverRequest,
  type DeliverResponse,
  type Effect,
} from "@plugwire/proto";
import {
  BATCH_OVERHEAD_BYTES,
  DeliveryChannel,
  SAFE_IN_FLIGHT_BYTES,
  type DeliveryStream,
  type Entry,
} from "../../src/delivery/channel.js";
import type * as SdkDelivery from "../../../sdk/src/delivery.js";

// The SDK package exports only its bundle and index; the processor is an
// internal module, so load it from the compiled module tree next to the
// index. PLUGWIRE_MODEL_PROCESSOR (a file URL) swaps in another build of it,
// for example a mutated copy when checking what the model detects.
const processorUrl = process.env.PLUGWIRE_MODEL_PROCESSOR ?? new URL("./delivery.js", import.meta.resolve("@plugwire/sdk/unbundled")).href;
const { DeliveryProcessor } = (await import(processorUrl)) as typeof SdkDelivery;
type Processor = InstanceType<typeof DeliveryProcessor>;
type Item = SdkDelivery.Item;

/**
 * Every step a history can contain.
 * - `inc pN`: a payload for peer N; the plugin counts it and sends one effect echoing the body.
 * - `quiet pN`: the same count, but its one effect is a few bytes (small replies).
 * - `bad p0`: a payload whose handler throws (an error outcome, no state change).
 * - `forget pN`: the peer is forgotten (a sequenced item; the plugin drops its count).
 * - `burst quiet` / `burst inc`: 16 such payloads at once (peers p0 and p1 alternating).
 * - `deliver` / `ack`: one message crosses host→plugin / plugin→host, if the reader reads
 *   (a Node HTTP/2 endpoint whose own socket write is pending reads nothing).
 *   `deliverAll` / `ackAll`: every message that can.
 * - `handle` / `handleAll`: a gated handler finishes (gated config only).
 * - `tick`: one turn of the event loop (immediates run). `time`: 25 ms pass (timers fire).
 * - `crash` / `exit`: the plugin process dies / exits cleanly; the wire is lost.
 * - `restart`: a new launch restores the newest durable snapshot. `attach`: its Deliver stream opens.
 * - `snapshot`: the runner snapshots; `save`: the store's write completes; `loseSnapshot`: it fails.
 * - `hostRestart`: the host process dies and starts again on the same store (the plugin dies too).
 */
export const STEPS = [
  "inc p0",
  "inc p1",
  "inc p2",
  "quiet p0",
  "quiet p1",
  "bad p0",
  "forget p0",
  "forget p1",
  "burst quiet",
  "burst inc",
  "deliver",
  "deliverAll",
  "ack",
  "ackAll",
  "handle",
  "handleAll",
  "tick",
  "time",
  "crash",
  "exit",
  "restart",
  "attach",
  "snapshot",
  "save",
  "loseSnapshot",
  "hostRestart",
] as const;
export type Step = (typeof STEPS)[number];

export interface SimConfig {
  maxInFlight: number;
  maxInFlightBytes: number;
  maxBatch: number;
  maxBatchBytes: number;
  maxQueued: number;
  overflow: "reject" | "drop-oldest";
  maxReplayPayloads: number;
  coalesceMs: number;
  /** sync: handlers return at once; gated: each handler waits for a `handle` step. */
  handlers: "sync" | "gated";
  /** Padding added to every payload body (bytes); every fourth gets 100 more. */
  bodyBytes: number;
  /**
   * "mixed": `inc` and `quiet` steps dispatch what they say. "echo" / "quiet":
   * every such step dispatches that one kind, so the plugin's reply per item
   * stays the same size all along.
   */
  payloads: "mixed" | "echo" | "quiet";
  /** Bytes of the plugin's snapshot (streamed back in SNAPSHOT_CHUNK_BYTES chunks on the shared connection). */
  snapshotBytes: number;
  /** What the socket buffers in each direction; Infinity for unbounded pipes. */
  socketBytes: number;
  /** What each host→plugin message costs in the socket beyond its bytes (frame headers, the kernel's per-write overhead). */
  hostMessageBytes: number;
  /** The same for each plugin→host message (acks, snapshot chunks). */
  pluginMessageBytes: number;
  /**
   * "runner": relaunch exactly as runner.launchOnce does today: the
   * channel's trims are held from restore to attach (channel.holdTrim).
   * "recheck": an alternative fix of the same race: when a snapshot saved
   * while the launch restored has trimmed the replay buffer past the
   * restored record, restore the newer record before attaching.
   */
  relaunch: "runner" | "recheck";
  /**
   * "channel": the channel's own window. "unbounded": emulates the host of
   * bcbf52c, whose window had no byte bound (only maxInFlight), to show the
   * model finds the deadlock class of part 1.
   */
  window?: "channel" | "unbounded";
}

/** A broken invariant of the model. */
export class Violation extends Error {
  override name = "Violation";
}

/** The channel's per-item size formula (channel.ts entrySize, ITEM_OVERHEAD_BYTES = 32), for the window check. */
const ITEM_OVERHEAD_BYTES = 32;
/** Virtual time a `time` step or a drain round lets pass: more than the SDK's 20 ms ack interval. */
const TIME_STEP_MS = 25;
/** The runner's snapshot deadline (SNAPSHOT_DEADLINE_MS): the ack and window waits time out after it. */
const SNAPSHOT_DEADLINE_MS = 120_000;
const BURST = 16;

type State = Map<number, number>;

interface Content {
  forget: boolean;
  peer: number;
  kind: string;
  body: string;
}

interface Dispatch {
  id: number;
  what: "inc" | "quiet" | "bad" | "forget";
  content: Content;
  /** The frame of its one send effect. */
  frame: string;
  status: "pending" | "resolved" | "rejected";
  error?: PlugwireError;
  /** Seq the channel gave it, learned from the writes (see checkEpoch). */
  seq?: number;
  effects: Array<{ seq: number; frame: string }>;
}

type Message =
  | { tag: "deliver" | "ack"; bytes: Uint8Array }
  | { tag: "snapshot"; size: number; last: boolean; snap: PendingSnapshot };

const messageBytes = (m: Message): number => (m.tag === "snapshot" ? m.size : m.bytes.byteLength);

/**
 * One direction of a launch's connection: `socket` is what the kernel
 * buffers (at most `capacity` bytes, each message charged `perMessage` more,
 * but always at least one message), `pending` what the writer's HTTP/2
 * session holds because the socket was full. A Node HTTP/2 session with a
 * pending socket write stops reading its own socket.
 */
class Pipe {
  private readonly socket: Message[] = [];
  private socketBytes = 0;
  private readonly pending: Message[] = [];
  constructor(
    private readonly capacity: number,
    private readonly perMessage: number,
  ) {}

  write(message: Message): void {
    this.pending.push(message);
    this.move();
  }

  read(): Message | undefined {
    const message = this.socket.shift();
    if (message === undefined) return undefined;
    this.socketBytes -= messageBytes(message) + this.perMessage;
    this.move();
    return message;
  }

  private move(): void {
    while (this.pending.length > 0) {
      const size = messageBytes(this.pending[0]!) + this.perMessage;
      if (this.socket.length > 0 && this.socketBytes + size > this.capacity) return;
      this.socket.push(this.pending.shift()!);
      this.socketBytes += size;
    }
  }

  /** The writer has a socket write pending (and so, by Node's rule, reads nothing). */
  get writeBlocked(): boolean {
    return this.pending.length > 0;
  }

  get readable(): boolean {
    return this.socket.length > 0;
  }

  get empty(): boolean {
    return this.socket.length === 0 && this.pending.length === 0;
  }

  describe(): string {
    return `${this.socket.length} msgs/${this.socketBytes} B in the socket, ${this.pending.length} msgs pending`;
  }

  clear(): void {
    this.socket.length = 0;
    this.pending.length = 0;
    this.socketBytes = 0;
  }
}

interface Launch {
  id: number;
  alive: boolean;
  attached: boolean;
  /** Seq the launch's state was restored to (0: default state). */
  restoredThrough: number;
  /** The `replayAfter` the runner passes to attach. */
  replayAfter: number;
  processor: Processor;
  state: State;
  toPlugin: Pipe;
  toHost: Pipe;
  /** Releases the handler waiting for a `handle` step (gated mode). */
  gate: (() => void) | undefined;
  /** Last seq the plugin applied in this process (exactly-once, in order, per process). */
  lastApplied: number;
  /** Last seq the host wrote to this launch, and every message it wrote (last seq, window bytes). */
  lastWritten: number;
  written: Array<{ seqs: number[]; through: number; bytes: number }>;
  /** Cumulative ack the host received from this launch (bounded by what it wrote). */
  hostAcked: number;
  /** runner.launchOnce holds the channel's trims from restore to attach (relaunch: "runner"). */
  releaseTrim?: () => void;
}

interface PendingSnapshot {
  launch: Launch;
  phase: "window" | "requested" | "transfer" | "acks" | "store";
  record?: { appliedSeq: number; state: State };
  /** Settles the store's write: the `save` and `loseSnapshot` steps. */
  store?: { done: () => void; fail: () => void };
  /** The transfer failed (the launch died while its chunks were on the wire). */
  broken?: () => void;
  received?: () => void;
}

interface Epoch {
  n: number;
  channel: DeliveryChannel;
  /** State and seq of the durable snapshot this host incarnation started from. */
  base: State;
  baseSeq: number;
  launches: number;
  resumed: boolean;
  launch: Launch | undefined;
  /** Every seq the host wrote, with what it carried; a seq written again must carry the same item. */
  seqLog: Map<number, Content>;
  maxSeq: number;
  dispatches: Dispatch[];
  byBody: Map<string, Dispatch>;
  deadSeqs: Set<number>;
  /** Per seq, the crashes it was in flight during, and whether it was alone in flight then. */
  crashedInFlight: Map<number, Array<{ launch: number; alone: boolean }>>;
  snap: PendingSnapshot | undefined;
  /** The channel asked for a snapshot (onReplayPressure). */
  replayPressure: boolean;
  /** Between beginSnapshot and its end: the window stays within SAFE_IN_FLIGHT_BYTES. */
  snapshotting: boolean;
  /** Highest seq written to a launch that crashed: un-acked items up to it are redelivered one at a time. */
  suspectThrough: number;
}

export interface SimStats {
  dispatched: number;
  resolved: number;
  crashes: number;
  redelivered: number;
  replayed: number;
  deadLetters: number;
  hostRestarts: number;
  snapshotsSaved: number;
  overflowRejected: number;
  handlerErrors: number;
  replayFullSeen: boolean;
  /** A socket write stayed pending at some point (bounded transports only). */
  hostWriteBlocked: boolean;
  pluginWriteBlocked: boolean;
  /** Most bytes the host had in flight to one launch (window accounting). */
  maxWindowBytes: number;
  drainRounds: number;
}

const NO_EFFECTS: Effect[] = [];
const encoder = new TextEncoder();
/**
 * A body's identity: its "d<id>." prefix, its length and a checksum of its
 * bytes (cheaper than the bytes themselves for bodies of tens of KiB).
 */
function bodyKey(b: Uint8Array): string {
  let sum = 0;
  for (let i = 0; i < b.byteLength; i += 61) sum = (sum * 31 + b[i]!) | 0;
  const dot = b.indexOf(46);
  return `${Buffer.from(b.subarray(0, dot < 0 ? Math.min(16, b.byteLength) : dot)).toString()}/${b.byteLength}/${sum}`;
}
const sameContent = (a: Content, b: Content): boolean =>
  a.forget === b.forget && a.peer === b.peer && a.kind === b.kind && a.body === b.body;
const showContent = (c: Content): string =>
  c.forget ? `forget p${c.peer}` : `${c.kind} p${c.peer} ${c.body.split("/")[0]}`;
const showState = (s: State): string =>
  `{${[...s.entries()].sort((a, b) => a[0] - b[0]).map(([p, n]) => `p${p}:${n}`).join(", ")}}`;
const sameState = (a: State, b: State): boolean => showState(a) === showState(b);

function applyContent(state: State, c: Content): void {
  if (c.forget) state.delete(c.peer);
  else if (c.kind === "inc" || c.kind === "quiet") state.set(c.peer, (state.get(c.peer) ?? 0) + 1);
}

/**
 * A virtual clock behind the globals the channel and the processor read:
 * performance.now(), setTimeout and clearTimeout (coalescing timers, the
 * snapshot's ack and window waits). Timers fire only in `advance`, in due
 * order. Installed for one history at a time.
 */
class VirtualClock {
  now = 1_000;
  private timers: Array<{ at: number; order: number; run: () => void; cleared: boolean }> = [];
  private order = 0;
  private restore: (() => void) | undefined;

  install(): void {
    const saved = { setTimeout: globalThis.setTimeout, clearTimeout: globalThis.clearTimeout, now: Object.getOwnPropertyDescriptor(performance, "now") };
    const clock = this;
    const fakeSetTimeout = (run: () => void, ms?: number): object => {
      const timer = { at: clock.now + Math.max(1, ms ?? 0), order: clock.order++, run, cleared: false };
      clock.timers.push(timer);
      return { timer, ref: () => undefined, unref: () => undefined, hasRef: () => false };
    };
    const fakeClearTimeout = (handle: unknown): void => {
      const timer = (handle as { timer?: { cleared: boolean } } | undefined)?.timer;
      if (timer) timer.cleared = true;
    };
    globalThis.setTimeout = fakeSetTimeout as unknown as typeof setTimeout;
    globalThis.clearTimeout = fakeClearTimeout as typeof clearTimeout;
    Object.defineProperty(performance, "now", { value: () => clock.now, configurable: true, writable: true });
    this.restore = () => {
      globalThis.setTimeout = saved.setTimeout;
      globalThis.clearTimeout = saved.clearTimeout;
      if (saved.now) Object.defineProperty(performance, "now", saved.now);
      else delete (performance as { now?: unknown }).now;
    };
  }

  uninstall(): void {
    this.restore?.();
    this.restore = undefined;
    this.timers = [];
  }

  advance(ms: number): void {
    const until = this.now + ms;
    for (;;) {
      const due = this.timers.filter((t) => !t.cleared && t.at <= until).sort((a, b) => a.at - b.at || a.order - b.order)[0];
      if (!due) break;
      due.cleared = true;
      this.now = Math.max(this.now, due.at);
      due.run();
    }
    this.timers = this.timers.filter((t) => !t.cleared);
    this.now = until;
  }
}

/** Gives the event loop one turn: every immediate queued so far runs, and every microtask. */
function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Lets promise chains settle without running immediates. */
async function settleMicrotasks(): Promise<void> {
  for (let i = 0; i < 16; i++) await Promise.resolve();
}

export class World {
  readonly stats: SimStats = {
    dispatched: 0,
    resolved: 0,
    crashes: 0,
    redelivered: 0,
    replayed: 0,
    deadLetters: 0,
    hostRestarts: 0,
    snapshotsSaved: 0,
    overflowRejected: 0,
    handlerErrors: 0,
    replayFullSeen: false,
    hostWriteBlocked: false,
    pluginWriteBlocked: false,
    maxWindowBytes: 0,
    drainRounds: 0,
  };
  private readonly trace: string[] = [];
  private readonly epochs: Epoch[] = [];
  /** The durable snapshot store: its newest record. */
  private store: { appliedSeq: number; state: State } | undefined;
  private nextDispatchId = 1;
  /** Bumped by everything that moves the system; a drain round that leaves it unchanged is stuck. */
  private progress = 0;
  private readonly clock = new VirtualClock();
  private stepNo = 0;
  /** The first broken invariant; callbacks the channel or processor call record it instead of throwing into them. */
  private violation: Violation | undefined;

  constructor(readonly config: SimConfig) {}

  private get epoch(): Epoch {
    return this.epochs[this.epochs.length - 1]!;
  }

  private note(line: string): void {
    if (this.trace.length < 800) this.trace.push(line);
    else if (this.trace.length === 800) this.trace.push("   (trace truncated)");
  }

  private flag(what: string): void {
    this.violation ??= new Violation(`${what}\n--- trace (#step, then what it did) ---\n${this.trace.join("\n")}`);
  }

  private fail(what: string): never {
    this.flag(what);
    throw this.violation!;
  }

  private rethrow(): void {
    if (this.violation) throw this.violation;
  }

  /** Runs a whole history, then the fault-free drain, the recovery, and every check. */
  async run(steps: readonly Step[]): Promise<void> {
    this.clock.install();
    try {
      this.epochs.push(this.newEpoch(new Map(), 0));
      for (const step of steps) await this.step(step);
      await this.finish();
      this.rethrow();
    } finally {
      this.clock.uninstall();
      // Whatever the discarded processors and channels still had queued.
      await turn();
    }
  }

  private advance(ms: number): void {
    this.clock.advance(ms);
  }

  private newEpoch(base: State, baseSeq: number): Epoch {
    const n = this.epochs.length;
    const epoch: Epoch = {
      n,
      channel: undefined as unknown as DeliveryChannel,
      base,
      baseSeq,
      launches: 0,
      resumed: false,
      launch: undefined,
      seqLog: new Map(),
      maxSeq: baseSeq,
      dispatches: [],
      byBody: new Map(),
      deadSeqs: new Set(),
      crashedInFlight: new Map(),
      snap: undefined,
      replayPressure: false,
      snapshotting: false,
      suspectThrough: 0,
    };
    const c = this.config;
    epoch.channel = new DeliveryChannel({
      plugin: "model",
      maxInFlight: c.maxInFlight,
      maxInFlightBytes: c.maxInFlightBytes,
      maxQueued: c.maxQueued,
      overflow: c.overflow,
      maxBatch: c.maxBatch,
      maxBatchBytes: c.maxBatchBytes,
      maxDeadLetters: 1000,
      maxReplayPayloads: c.maxReplayPayloads,
      maxReplayBytes: 1 << 30,
      coalesceMs: c.coalesceMs,
      performEffects: (entry, effects) => this.onEffects(epoch, entry, effects),
      onHandlerError: () => {
        this.stats.handlerErrors++;
      },
      onDeadLetter: (letter) => {
        epoch.deadSeqs.add(letter.seq);
        this.stats.deadLetters++;
        this.note(`   dead letter: seq ${letter.seq}`);
      },
      // runner.earlySnapshot: a snapshot unless one is pending (its backoff is not modelled).
      onReplayPressure: () => {
        epoch.replayPressure = true;
      },
      onReplayFull: (full) => {
        if (full) this.stats.replayFullSeen = true;
      },
    });
    // runner.checkDescription: the plugin is stateful.
    epoch.channel.keepReplay = true;
    if (c.window === "unbounded") {
      // The old window: items only, no bytes (fits is private; patched on the instance).
      const channel = epoch.channel as unknown as { fits: (entry: unknown, batchBytes: number) => boolean; inFlight: number };
      channel.fits = () => channel.inFlight < c.maxInFlight;
    }
    return epoch;
  }

  // ---------------------------------------------------------------- steps

  async step(step: Step): Promise<void> {
    this.stepNo++;
    const before = this.trace.length;
    const [verb, arg] = step.split(" ") as [string, string | undefined];
    switch (verb) {
      case "inc":
      case "quiet":
      case "bad":
      case "forget":
        this.dispatch(verb, Number(arg!.slice(1)));
        break;
      case "burst":
        for (let i = 0; i < BURST; i++) this.dispatch(arg === "inc" ? "inc" : "quiet", i % 2);
        break;
      case "deliver":
        this.deliverOne();
        break;
      case "deliverAll":
        while (this.deliverOne()) await settleMicrotasks();
        break;
      case "ack":
        this.ackOne();
        break;
      case "ackAll":
        while (this.ackOne()) await settleMicrotasks();
        break;
      case "handle":
        this.handleOne();
        break;
      case "handleAll":
        while (this.handleOne()) await settleMicrotasks();
        break;
      case "tick":
        await turn();
        break;
      case "time":
        this.advance(TIME_STEP_MS);
        break;
      case "crash":
        this.endLaunch(true);
        break;
      case "exit":
        this.endLaunch(false);
        break;
      case "restart":
        await this.relaunch();
        break;
      case "attach":
        await this.attach();
        break;
      case "snapshot":
        this.startSnapshot();
        break;
      case "save":
        this.epoch.snap?.store?.done();
        break;
      case "loseSnapshot":
        this.epoch.snap?.store?.fail();
        break;
      case "hostRestart":
        this.hostRestart();
        break;
      default:
        throw new Error(`unknown step '${step}'`);
    }
    await settleMicrotasks();
    this.rethrow();
    this.maybeEarlySnapshot();
    if (this.trace.length > before || (verb !== "tick" && verb !== "time")) {
      this.trace.splice(before, 0, `#${this.stepNo} ${step}`);
    }
  }

  private dispatch(asked: Dispatch["what"], peer: number): void {
    const e = this.epoch;
    const { payloads } = this.config;
    const what = (asked === "inc" || asked === "quiet") && payloads !== "mixed" ? (payloads === "echo" ? "inc" : "quiet") : asked;
    const id = this.nextDispatchId++;
    const src = Uint8Array.of(peer);
    const pad = this.config.bodyBytes + (id % 4 === 0 ? 100 : 0);
    const body = what === "forget" ? new Uint8Array(0) : encoder.encode(`d${id}.${".".repeat(pad)}`);
    const content: Content = { forget: what === "forget", peer, kind: what === "forget" ? "" : what, body: what === "forget" ? "" : bodyKey(body) };
    const frame = what === "inc" ? content.body : bodyKey(encoder.encode(`d${id}`));
    const d: Dispatch = { id, what, content, frame, status: "pending", effects: [] };
    e.dispatches.push(d);
    this.stats.dispatched++;
    if (what !== "forget") e.byBody.set(content.body, d);
    const promise = what === "forget" ? e.channel.forget(src) : e.channel.dispatch(src, what, body);
    promise.then(
      () => {
        d.status = "resolved";
        this.stats.resolved++;
        this.progress++;
      },
      (error: unknown) => {
        d.status = "rejected";
        d.error = error instanceof PlugwireError ? error : new PlugwireError("internal", String(error));
        if (d.error.code === "queue_full") this.stats.overflowRejected++;
        this.progress++;
      },
    );
    this.note(`   d${id} = ${showContent(content)}`);
  }

  /** The plugin reads one message, unless its own socket write is pending. */
  private deliverOne(): boolean {
    const launch = this.epoch.launch;
    if (!launch?.attached || launch.toHost.writeBlocked || !launch.toPlugin.readable) return false;
    const message = launch.toPlugin.read()!;
    this.progress++;
    if (message.tag !== "deliver") return true;
    const request = decodeDeliverRequest(message.bytes);
    this.note(`   plugin reads [${request.items.map((i) => `${i.seq}${i.redelivered ? "r" : ""}`).join(",")}]`);
    launch.processor.push(request);
    return true;
  }

  /** The host reads one message (an ack, or a snapshot chunk), unless its own socket write is pending. */
  private ackOne(): boolean {
    const e = this.epoch;
    const launch = e.launch;
    if (!launch?.attached || launch.toPlugin.writeBlocked || !launch.toHost.readable) return false;
    const message = launch.toHost.read()!;
    this.progress++;
    if (message.tag === "snapshot") {
      if (message.last && e.snap === message.snap) message.snap.received?.();
      return true;
    }
    if (message.tag !== "ack") return true;
    const response = decodeDeliverResponse(message.bytes);
    const through = Number(response.ackedThrough);
    this.note(`   host reads ack ${through}${response.outcomes.length ? ` (+${response.outcomes.length} outcomes)` : ""}`);
    launch.hostAcked = Math.max(launch.hostAcked, Math.min(through, launch.lastWritten));
    e.channel.onAck(response);
    return true;
  }

  private handleOne(): boolean {
    const gate = this.epoch.launch?.gate;
    if (!gate) return false;
    gate();
    this.progress++;
    return true;
  }

  /** runner.endLaunch: the process is gone (crash or clean exit), and so is everything on the wire. */
  private endLaunch(crashed: boolean): void {
    const e = this.epoch;
    const launch = e.launch;
    if (!launch) return;
    this.killProcess(launch);
    e.launch = undefined;
    this.progress++;
    if (crashed) this.stats.crashes++;
    // What was in flight: written to this launch and not acked to the host.
    const inFlight = launch.written.flatMap((w) => w.seqs).filter((seq) => seq > launch.hostAcked);
    if (crashed) {
      e.suspectThrough = Math.max(e.suspectThrough, launch.lastWritten);
      for (const seq of inFlight) {
        let list = e.crashedInFlight.get(seq);
        if (!list) e.crashedInFlight.set(seq, (list = []));
        list.push({ launch: launch.id, alone: inFlight.length === 1 });
      }
    }
    this.note(`   launch ${launch.id} ${crashed ? "crashed" : "exited"}; in flight [${inFlight.join(",")}]`);
    // A launch that never attached its stream had no payload in flight.
    if (launch.attached) e.channel.detach(crashed);
    launch.releaseTrim?.();
    // A snapshot still streaming from it fails (takeSnapshot's stream breaks);
    // one the host received waits for its acks whatever happens to the launch.
    if (e.snap?.launch === launch) e.snap.broken?.();
  }

  private killProcess(launch: Launch): void {
    launch.alive = false;
    launch.gate = undefined;
    launch.toPlugin.clear();
    launch.toHost.clear();
  }

  /** runner.launchOnce up to the Deliver stream: a fresh process, then restoreLatest. */
  private async relaunch(): Promise<void> {
    const e = this.epoch;
    if (e.launch) return;
    const launch = this.newLaunch(++e.launches);
    e.launch = launch;
    this.progress++;
    const record = this.store;
    if (!e.resumed) {
      e.resumed = true;
      if (record) e.channel.resumeAfter(record.appliedSeq);
    }
    if (this.config.relaunch === "runner") launch.releaseTrim = e.channel.holdTrim();
    if (record) await this.restore(launch, record);
    this.note(`   launch ${launch.id} restored through ${launch.restoredThrough} (replay buffer trimmed through ${e.channel.trimmedThrough})`);
  }

  /** serve.ts restore: an exclusive task that swaps the state and tells the processor. */
  private async restore(launch: Launch, record: { appliedSeq: number; state: State }): Promise<void> {
    await launch.processor.runExclusive(async () => {
      launch.state = new Map(record.state);
      launch.processor.restoredThrough(record.appliedSeq);
    });
    launch.lastApplied = record.appliedSeq;
    launch.restoredThrough = record.appliedSeq;
    launch.replayAfter = record.appliedSeq;
  }

  /** runner.launchOnce, the rest: open the Deliver stream and attach it. */
  private async attach(): Promise<void> {
    const e = this.epoch;
    const launch = e.launch;
    if (!launch || launch.attached) return;
    if (this.config.relaunch === "recheck") {
      while (this.store && launch.replayAfter < e.channel.trimmedThrough) {
        this.note(`   launch ${launch.id}: the replay buffer was trimmed through ${e.channel.trimmedThrough} meanwhile; restoring again`);
        await this.restore(launch, this.store);
      }
    }
    launch.attached = true;
    this.progress++;
    const stream: DeliveryStream = {
      write: (request: DeliverRequest) => {
        if (!launch.alive) return true;
        this.onHostWrite(e, launch, request);
        launch.toPlugin.write({ tag: "deliver", bytes: encodeDeliverRequest(request) });
        if (launch.toPlugin.writeBlocked) this.stats.hostWriteBlocked = true;
        this.progress++;
        return !launch.toPlugin.writeBlocked;
      },
    };
    if (launch.replayAfter < e.channel.trimmedThrough) {
      this.note(
        `   NOTE launch ${launch.id} was restored through ${launch.replayAfter}, but the replay buffer is now trimmed through ${e.channel.trimmedThrough}: ` +
          `seqs ${launch.replayAfter + 1}..${e.channel.trimmedThrough} can be neither restored nor replayed`,
      );
    }
    // serve.ts deliver: acks go to this call.
    launch.processor.attach((response: DeliverResponse) => {
      if (!launch.alive) return;
      launch.toHost.write({ tag: "ack", bytes: encodeDeliverResponse(response) });
      if (launch.toHost.writeBlocked) this.stats.pluginWriteBlocked = true;
      this.progress++;
    });
    const { replayed, redelivered } = e.channel.attach(stream, launch.id, launch.replayAfter);
    launch.releaseTrim?.();
    this.stats.replayed += replayed;
    this.stats.redelivered += redelivered;
    this.note(`   launch ${launch.id} attached: replays ${replayed}, redelivers ${redelivered}`);
  }

  private newLaunch(id: number): Launch {
    const launch: Launch = {
      id,
      alive: true,
      attached: false,
      restoredThrough: 0,
      replayAfter: 0,
      processor: undefined as unknown as Processor,
      state: new Map(),
      toPlugin: new Pipe(this.config.socketBytes, this.config.hostMessageBytes),
      toHost: new Pipe(this.config.socketBytes, this.config.pluginMessageBytes),
      gate: undefined,
      lastApplied: 0,
      lastWritten: 0,
      written: [],
      hostAcked: 0,
    };
    const apply = (item: Item): Effect[] => {
      if (!launch.alive) return NO_EFFECTS; // a dead process does nothing anyone sees
      if (item.seq <= launch.lastApplied) {
        this.fail(`plugin launch ${launch.id} was given seq ${item.seq} to apply after it applied seq ${launch.lastApplied}`);
      }
      launch.lastApplied = item.seq;
      this.progress++;
      if (item.forgotten !== undefined) {
        launch.state.delete(item.forgotten[0]!);
        return NO_EFFECTS;
      }
      const { kind, src, body } = item.payload;
      if (kind === "bad") throw new Error(`bad payload seq ${item.seq}`);
      if (kind !== "inc" && kind !== "quiet") this.fail(`plugin launch ${launch.id} got an item of unknown kind '${kind}' at seq ${item.seq}`);
      launch.state.set(src[0]!, (launch.state.get(src[0]!) ?? 0) + 1);
      // One send per payload, as handler-context's sendDirect records it.
      const frame = kind === "inc" ? body : encoder.encode(Buffer.from(body).toString().split(".")[0]);
      return [create(EffectSchema, { effect: { case: "sendDirect", value: { peer: src, frame } } })];
    };
    const run =
      this.config.handlers === "sync"
        ? apply
        : (item: Item): Promise<Effect[]> =>
            new Promise<Effect[]>((resolve, reject) => {
              this.progress++;
              launch.gate = () => {
                launch.gate = undefined;
                try {
                  resolve(apply(item));
                } catch (e) {
                  reject(e);
                }
              };
            });
    launch.processor = new DeliveryProcessor(run, () => undefined);
    return launch;
  }

  /** Checks each Deliver message the host writes: seq order, one item per seq, the window. */
  private onHostWrite(e: Epoch, launch: Launch, request: DeliverRequest): void {
    const c = this.config;
    if (request.items.length === 0) return this.flag(`host wrote an empty Deliver message to launch ${launch.id}`);
    if (request.items.length > c.maxBatch) return this.flag(`host wrote ${request.items.length} items in one message (maxBatch ${c.maxBatch})`);
    const seqs: number[] = [];
    const shown: string[] = [];
    let bytes = BATCH_OVERHEAD_BYTES;
    for (const it of request.items) {
      const seq = Number(it.seq);
      seqs.push(seq);
      shown.push(`${seq}${it.redelivered ? "r" : ""}`);
      if (seq <= launch.lastWritten) {
        return this.flag(`host wrote seq ${seq} to launch ${launch.id} after seq ${launch.lastWritten}: seqs to one launch must increase`);
      }
      launch.lastWritten = seq;
      let content: Content;
      if (it.item.case === "payload") {
        const p = it.item.value;
        content = { forget: false, peer: p.src[0]!, kind: p.kind, body: bodyKey(p.body) };
      } else if (it.item.case === "peerForgotten") {
        content = { forget: true, peer: it.item.value.nodeId[0]!, kind: "", body: "" };
      } else {
        return this.flag(`host wrote an item with no content at seq ${seq}`);
      }
      const known = e.seqLog.get(seq);
      if (known) {
        if (!sameContent(known, content)) {
          return this.flag(`seq ${seq} was written as '${showContent(known)}' and later as '${showContent(content)}': a seq was reused`);
        }
        if (!it.redelivered) return this.flag(`seq ${seq} was written again to launch ${launch.id} without the redelivered flag`);
      } else {
        if (seq !== e.maxSeq + 1) return this.flag(`host gave seq ${seq} to a new item, but the last seq given was ${e.maxSeq}`);
        if (it.redelivered) return this.flag(`seq ${seq} was written for the first time with the redelivered flag`);
        e.seqLog.set(seq, content);
        e.maxSeq = seq;
      }
      bytes += (it.item.case === "payload" ? it.item.value.body.byteLength : 0) + 1 + content.kind.length + ITEM_OVERHEAD_BYTES;
    }
    launch.written.push({ seqs, through: seqs[seqs.length - 1]!, bytes });
    // A redelivery after a crash (not a replay of an acked item) goes alone, into an empty window.
    const suspect = seqs.find((seq) => seq > e.channel.lastAcked && seq <= e.suspectThrough);
    const othersInFlight = launch.written.flatMap((w) => w.seqs).filter((seq) => seq > launch.hostAcked).length - 1;
    if (suspect !== undefined && (seqs.length > 1 || othersInFlight > 0)) {
      return this.flag(`seq ${suspect}, in flight at a crash, was redelivered together with ${seqs.length - 1 + othersInFlight} other item(s), not alone`);
    }
    // The window: messages the host wrote to this launch and has not had fully acked.
    const open = launch.written.filter((w) => w.through > launch.hostAcked);
    const items = open.reduce((n, w) => n + w.seqs.filter((s) => s > launch.hostAcked).length, 0);
    const windowBytes = open.reduce((n, w) => n + w.bytes, 0);
    this.stats.maxWindowBytes = Math.max(this.stats.maxWindowBytes, windowBytes);
    const alone = items === 1;
    if (!alone && items > c.maxInFlight) {
      return this.flag(`host has ${items} items in flight to launch ${launch.id} (maxInFlight ${c.maxInFlight})`);
    }
    const byteBound = Math.min(SAFE_IN_FLIGHT_BYTES, c.maxInFlightBytes);
    if (c.window !== "unbounded" && (!alone || e.snapshotting) && windowBytes > byteBound) {
      return this.flag(
        `host has ${windowBytes} B in flight to launch ${launch.id}${e.snapshotting ? " while a snapshot streams" : ""} (bound ${byteBound})`,
      );
    }
    this.note(`   host writes [${shown.join(",")}] to launch ${launch.id}`);
  }

  private onEffects(e: Epoch, entry: Entry, effects: Effect[]): void {
    if (entry.forget) return this.flag(`effects performed for a forget (seq ${entry.seq})`);
    const d = e.byBody.get(bodyKey(entry.body));
    if (!d) return this.flag(`effects performed for an item no one dispatched (seq ${entry.seq})`);
    for (const effect of effects) {
      if (effect.effect.case !== "sendDirect") return this.flag(`unexpected effect ${effect.effect.case} at seq ${entry.seq}`);
      d.effects.push({ seq: entry.seq, frame: bodyKey(effect.effect.value.frame) });
    }
    this.note(`   host performs ${effects.length} effect(s) of seq ${entry.seq} (d${d.id})`);
  }

  /** runner.snapshot → snapshotNow, one at a time; a snapshot asked for while one runs is dropped (snapshotIfIdle). */
  private startSnapshot(): void {
    const e = this.epoch;
    const launch = e.launch;
    if (!launch?.attached || e.snap) return;
    const snap: PendingSnapshot = { launch, phase: "window" };
    e.snap = snap;
    this.progress++;
    void this.snapshotNow(e, snap).then(
      (appliedSeq) => {
        this.progress++;
        this.note(`   snapshot through seq ${appliedSeq} saved; replay trimmed through ${e.channel.trimmedThrough}`);
      },
      (why: unknown) => {
        this.progress++;
        this.note(`   snapshot of launch ${launch.id} failed: ${why instanceof Error ? why.message : String(why)}`);
      },
    ).finally(() => {
      if (e.snap === snap) e.snap = undefined;
    });
  }

  /** runner.snapshotNow, step by step. */
  private async snapshotNow(e: Epoch, snap: PendingSnapshot): Promise<number> {
    const { launch } = snap;
    const { channel } = e;
    // takeSnapshot's stream breaks when the launch ends.
    const broken = new Promise<never>((_, reject) => {
      snap.broken = () => reject(new Error("the launch ended while it snapshotted"));
    });
    broken.catch(() => undefined);
    const deadLettersBefore = channel.deadLettersTotal;
    const window = channel.beginSnapshot(SNAPSHOT_DEADLINE_MS);
    e.snapshotting = true;
    let record: { appliedSeq: number; state: State } | undefined;
    try {
      // The runner takes the snapshot anyway when the window did not drain in time.
      await window.ready;
      if (!launch.alive) throw new Error("the launch ended");
      snap.phase = "requested";
      // serve.ts snapshot: between items, report the state and appliedSeq;
      // then stream it back (header and chunks) on the launch's connection.
      const transferred = new Promise<void>((resolve) => {
        snap.received = resolve;
      });
      const taken = launch.processor.runExclusive(async () => {
        if (!launch.alive) throw new Error("the process is gone");
        return { appliedSeq: launch.processor.appliedSeq, state: new Map(launch.state) };
      });
      record = await Promise.race([taken, broken]);
      snap.phase = "transfer";
      const size = this.config.snapshotBytes;
      const chunks = Math.max(1, Math.ceil(size / SNAPSHOT_CHUNK_BYTES));
      for (let i = 0; i < chunks; i++) {
        const bytes = i === chunks - 1 ? size - (chunks - 1) * SNAPSHOT_CHUNK_BYTES : SNAPSHOT_CHUNK_BYTES;
        launch.toHost.write({ tag: "snapshot", size: bytes + (i === 0 ? 32 : 0), last: i === chunks - 1, snap });
      }
      if (launch.toHost.writeBlocked) this.stats.pluginWriteBlocked = true;
      this.progress++;
      await Promise.race([transferred, broken]);
    } finally {
      // end() flushes at once: what it writes is no longer bound by the snapshot.
      e.snapshotting = false;
      window.end();
    }
    snap.broken = undefined;
    if (record.appliedSeq > channel.highestSeq) {
      this.fail(`launch ${launch.id} snapshotted through seq ${record.appliedSeq}, past the highest seq given, ${channel.highestSeq}`);
    }
    snap.record = record;
    snap.phase = "acks";
    this.note(`   host received the snapshot of launch ${launch.id} through seq ${record.appliedSeq} ${showState(record.state)}`);
    if (!(await channel.waitForAck(record.appliedSeq, SNAPSHOT_DEADLINE_MS))) throw new Error("never acked");
    // runner.snapshotNow: a snapshot covering an item parked meanwhile is discarded.
    const parked = channel.lowestParkedSince(deadLettersBefore);
    if (parked !== undefined && parked <= record.appliedSeq) throw new Error(`seq ${parked} was parked as a dead letter meanwhile`);
    // runner.snapshotNow: a state older than the stored snapshot is not stored.
    if (record.appliedSeq < channel.trimFloor) throw new Error(`older than the stored snapshot (through ${channel.trimFloor}); not stored`);
    // store.save: completes at a `save` step, fails at `loseSnapshot`.
    snap.phase = "store";
    await new Promise<void>((resolve, reject) => {
      snap.store = { done: resolve, fail: () => reject(new Error("the store's write failed")) };
    });
    const { appliedSeq, state } = record;
    const expected = this.expectedState(e, appliedSeq);
    if (!sameState(state, expected)) {
      const dead = [...e.deadSeqs].filter((s) => s <= appliedSeq);
      this.fail(
        `the snapshot saved through seq ${appliedSeq} holds ${showState(state)}, but applying the items through seq ${appliedSeq} ` +
          `(dead letters [${dead.join(",")}] excluded) gives ${showState(expected)}`,
      );
    }
    this.store = { appliedSeq, state: new Map(state) };
    this.stats.snapshotsSaved++;
    channel.trimReplay(appliedSeq);
    return appliedSeq;
  }

  /** runner.earlySnapshot, after a step: a snapshot when the replay buffer passed its bound. */
  private maybeEarlySnapshot(): void {
    const e = this.epoch;
    if (!e.replayPressure) return;
    e.replayPressure = false;
    if (e.snap || !e.launch?.attached) return;
    this.note(`   replay buffer over its bound: early snapshot`);
    this.startSnapshot();
  }

  /** The host process restarts: a new channel, the same store; the plugin dies with the host. */
  private hostRestart(): void {
    const old = this.epoch;
    if (old.launch) this.killProcess(old.launch);
    old.launch = undefined;
    // A snapshot the old host had not saved is lost with it.
    old.snap?.broken?.();
    old.snap?.store?.fail();
    old.snap = undefined;
    this.checkEpoch(old, false);
    this.stats.hostRestarts++;
    const record = this.store;
    this.epochs.push(this.newEpoch(record ? new Map(record.state) : new Map(), record?.appliedSeq ?? 0));
    this.progress++;
    this.note(`   host restarted from the snapshot through seq ${record?.appliedSeq ?? 0}`);
  }

  // ---------------------------------------------------------------- the model

  /** The sequential model: the base state, then every item through `through` in seq order, dead letters excluded. */
  private expectedState(e: Epoch, through: number): State {
    const state = new Map(e.base);
    for (let seq = e.baseSeq + 1; seq <= Math.min(through, e.maxSeq); seq++) {
      const content = e.seqLog.get(seq);
      if (content && !e.deadSeqs.has(seq)) applyContent(state, content);
    }
    return state;
  }

  private unsettled(e: Epoch): number {
    return e.dispatches.filter((d) => d.status === "pending").length;
  }

  private quiescent(): boolean {
    const e = this.epoch;
    const launch = e.launch;
    return (
      launch !== undefined &&
      launch.attached &&
      launch.gate === undefined &&
      launch.toPlugin.empty &&
      launch.toHost.empty &&
      e.channel.inFlight === 0 &&
      e.channel.queued === 0 &&
      e.snap === undefined &&
      this.unsettled(e) === 0
    );
  }

  /**
   * No more faults: relaunch if needed, then move every message, release
   * every handler, let every snapshot save, let 25 ms pass and the event
   * loop turn, round after round, until nothing is left to do. A round in
   * which nothing moves while work remains is a deadlock; more rounds than
   * the bound is a liveness failure.
   */
  private async drain(label: string): Promise<void> {
    const e = this.epoch;
    const work = this.unsettled(e) + e.channel.replayCount + e.channel.inFlight + e.channel.queued;
    const bound = 12 + 4 * work;
    this.note(`-- ${label}: ${this.unsettled(e)} unsettled, bound ${bound} rounds`);
    for (let round = 1; ; round++) {
      if (this.quiescent()) {
        this.stats.drainRounds = Math.max(this.stats.drainRounds, round);
        return;
      }
      if (round > bound) this.fail(`liveness: ${label} did not finish within ${bound} rounds\n${this.dump()}`);
      const before = this.progress;
      if (!e.launch) await this.relaunch();
      if (!e.launch!.attached) await this.attach();
      while (this.deliverOne() || this.handleOne()) await settleMicrotasks();
      while (this.ackOne()) await settleMicrotasks();
      e.snap?.store?.done();
      // The runner's early snapshot, and its interval snapshot while the replay buffer is full.
      if (e.channel.replayFull) e.replayPressure = true;
      this.maybeEarlySnapshot();
      this.advance(TIME_STEP_MS);
      await turn();
      await turn();
      this.rethrow();
      if (this.progress === before && !this.quiescent()) {
        this.fail(`deadlock: ${label}, round ${round}: nothing can move\n${this.dump()}`);
      }
    }
  }

  private dump(): string {
    const e = this.epoch;
    const l = e.launch;
    return (
      `  channel: inFlight ${e.channel.inFlight}, queued ${e.channel.queued}, lastAcked ${e.channel.lastAcked}, ` +
      `replay ${e.channel.replayCount}${e.channel.replayFull ? " (full)" : ""}, unsettled ${this.unsettled(e)}\n` +
      (l
        ? `  launch ${l.id}: host→plugin ${l.toPlugin.describe()}${l.toPlugin.writeBlocked ? " (the host's write is pending: it reads nothing)" : ""}\n` +
          `  plugin→host ${l.toHost.describe()}${l.toHost.writeBlocked ? " (the plugin's write is pending: it reads nothing)" : ""}\n` +
          `  handler waiting: ${l.gate !== undefined}; plugin applied through ${l.lastApplied}`
        : "  no launch") +
      (e.snap ? `\n  snapshot: ${e.snap.phase}${e.snap.record ? ` through ${e.snap.record.appliedSeq}` : ""}` : "")
    );
  }

  private async finish(): Promise<void> {
    this.note(`== history done`);
    await this.drain("final drain");
    this.checkEpoch(this.epoch, true);
    // Once more from durable state: restore the newest snapshot and replay.
    this.endLaunch(true);
    await this.drain("recovery drain");
    this.checkEpoch(this.epoch, true);
  }

  /**
   * The checks of one host incarnation. `live` is the current one, drained:
   * every dispatch settled and the plugin's state is the model's.
   */
  private checkEpoch(e: Epoch, live: boolean): void {
    // Seqs were given consecutively from the restored snapshot on (onHostWrite checks each).
    // Match the written items to the dispatches, in order: the items that
    // could take a seq are every dispatch not refused for a full queue.
    const numberable = e.dispatches.filter((d) => !(d.status === "rejected" && d.error?.code === "queue_full"));
    const written = e.maxSeq - e.baseSeq;
    if (written > numberable.length) this.fail(`host incarnation ${e.n}: ${written} seqs were written but only ${numberable.length} items were queued`);
    for (let i = 0; i < numberable.length; i++) {
      const d = numberable[i]!;
      const seq = e.baseSeq + 1 + i;
      const content = e.seqLog.get(seq);
      if (content === undefined) {
        // Never written: only possible for items still waiting when the host died.
        if (d.status !== "pending" || live) this.fail(`d${d.id} (${showContent(d.content)}) is ${d.status} but was never written to the plugin\n${this.dump()}`);
        continue;
      }
      if (!sameContent(content, d.content)) {
        this.fail(`seq ${seq} carries '${showContent(content)}' but the queued item number ${i + 1} is d${d.id} '${showContent(d.content)}': seq order is not queue order`);
      }
      d.seq = seq;
    }
    for (const d of e.dispatches) {
      const dead = d.seq !== undefined && e.deadSeqs.has(d.seq);
      const label = `d${d.id} (${showContent(d.content)}, seq ${d.seq ?? "none"})`;
      if (d.status === "pending" && live) this.fail(`liveness: ${label} never settled\n${this.dump()}`);
      if (d.status === "resolved") {
        if (dead) this.fail(`${label} resolved but is a dead letter`);
        if (d.what === "bad") this.fail(`${label} resolved though its handler throws`);
      }
      if (d.status === "rejected") {
        const code = d.error!.code;
        const expected = code === "queue_full" ? d.seq === undefined : code === "handler_failed" && (dead || d.what === "bad");
        if (!expected) this.fail(`${label} rejected unexpectedly: ${code}: ${d.error!.message}`);
      }
      const wantEffects = d.status === "resolved" && d.what !== "forget" ? 1 : 0;
      if (d.effects.length !== wantEffects) {
        this.fail(`${label} is ${d.status} and its send effect was performed ${d.effects.length} times (expected ${wantEffects})`);
      }
      for (const effect of d.effects) {
        if (effect.seq !== d.seq || effect.frame !== d.frame) this.fail(`${label}: the effect performed for seq ${effect.seq} carried the wrong frame`);
      }
    }
    // Dead letters: only an item in flight during 2 crashes, alone in flight at the last.
    for (const seq of e.deadSeqs) {
      const crashes = e.crashedInFlight.get(seq) ?? [];
      if (crashes.length < 2 || !crashes[crashes.length - 1]!.alone) {
        this.fail(`seq ${seq} was dead-lettered after ${crashes.length} crash(es) in flight: ${JSON.stringify(crashes)}`);
      }
      const d = numberable[seq - e.baseSeq - 1];
      if (d && d.status !== "rejected") this.fail(`dead letter seq ${seq} (d${d.id}) is ${d.status}, not rejected`);
    }
    if (live) {
      const launch = e.launch!;
      const expected = this.expectedState(e, e.maxSeq);
      if (!sameState(launch.state, expected)) {
        this.fail(
          `the plugin's state ${showState(launch.state)} is not the sequential model's ${showState(expected)} ` +
            `(launch ${launch.id}, restored through ${launch.restoredThrough}, replay trimmed through ${e.channel.trimmedThrough}, ` +
            `dead letters [${[...e.deadSeqs].join(",")}])`,
        );
      }
    }
  }
}

/** Replays one history; resolves with its statistics, or rejects with a Violation. */
export async function runHistory(config: SimConfig, steps: readonly Step[]): Promise<SimStats> {
  const world = new World(config);
  await world.run(steps);
  return world.stats;
}
