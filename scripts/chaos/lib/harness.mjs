// The harness a chaos scenario runs in: it creates hosts over the example
// plugins, routes their effects to the scenario's ledgers, injects faults and
// records them, measures stuck dispatches, and at the end stops everything
// and checks for orphan processes and leaked descriptors.
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { Ledger, runLoad } from "./ledger.mjs";
import { pluginConfig, polyglotExamples } from "./plugins.mjs";
import { fdCount, markedProcesses, node, prng, sigkill, sleep, withTimeout } from "./util.mjs";

/** A dispatch not settled this long after the last fault (or the last dispatch) is stuck. */
export const STUCK_AFTER_MS = 10_000;
/** Bounds of the harness's own waits. */
const HOST_START_MS = 30_000;
const HOST_STOP_MS = 30_000;
const READ_STATE_MS = 30_000;
const ORPHAN_GRACE_MS = 5_000;
/**
 * Descriptors allowed to stay open after the hosts stopped. Node opens a few
 * process-lifetime descriptors lazily, on first use (for example a /dev/null
 * handle after the first child process); they are not per launch. Every
 * launch opens several (sockets, stdio pipes), so a leak per launch would
 * grow with the launches of a run and go far past 2.
 */
export const FD_TOLERANCE = 2;
const PROGRESS_EVERY_MS = 5_000;

export class Harness {
  /**
   * @param {object} o
   * @param {string} o.scenario
   * @param {{durationMs:number, seed:number, killEveryMs:number|undefined, maxPayloads:number}} o.args
   * @param {object} o.lib   the host library (host/dist/src/index.js)
   * @param {string} o.repo
   * @param {string} o.run   the marker value every plugin of this scenario carries (CHAOS_RUN)
   * @param {string} o.logPath  where the host log goes
   */
  constructor({ scenario, args, lib, repo, run, logPath }) {
    this.scenario = scenario;
    this.args = args;
    this.lib = lib;
    this.repo = repo;
    this.run = run;
    this.rand = prng(args.seed ^ hashString(scenario));
    this.t0 = Date.now();
    this.failures = [];
    this.notes = [];
    this.ledgers = [];
    this.byTag = new Map();
    this.faults = [];
    this.lastFaultAt = 0;
    this.stuck = 0;
    this.stateChecks = [];
    this.extraPayloads = 0;
    this.extraLost = 0;
    this.extraDup = 0;
    this.extraOrphans = 0;
    this.skipped = undefined;
    this.hosts = new Set();
    this.pidsSeen = new Set();
    this.deadLetters = 0;
    this.restored = [];
    this.errorLines = new Map();
    this.replayLines = { replayed: 0, redelivered: 0, launches: 0 };
    this.foreignEffects = 0;
    this.directory = new lib.MemoryPeerDirectory();
    this.peerIds = Array.from({ length: 16 }, (_, i) => node(i + 1));
    this.logPath = logPath;
    this.logFd = openSync(logPath, "w");
    this.logBuffer = [];
    this.logBytes = 0;
    this.logger = pino({ level: "info" }, { write: (line) => this.onLogLine(line) });
    this.dataDir = mkdtempSync(join(tmpdir(), `pw-chaos-${scenario}-`));
    this.fdsBefore = fdCount();
    this.decoder = new TextDecoder();
    this.progressTimer = setInterval(() => this.progress(), PROGRESS_EVERY_MS);
  }

  // ------------------------------------------------------------ output

  elapsed() {
    return `${((Date.now() - this.t0) / 1000).toFixed(1)}s`;
  }

  log(message) {
    console.log(`[${this.scenario} ${this.elapsed()}] ${message}`);
  }

  /** A check failed: the scenario's verdict is FAIL. */
  fail(message) {
    this.failures.push(message);
    this.log(`FAIL: ${message}`);
  }

  /** Something worth reporting that is not a failure. */
  note(message) {
    this.notes.push(message);
  }

  /** The scenario cannot run here (for example an example plugin is not built). */
  skip(reason) {
    this.skipped = reason;
    this.log(`SKIP: ${reason}`);
  }

  onLogLine(line) {
    this.logBuffer.push(line);
    this.logBytes += line.length;
    if (this.logBytes > 64 * 1024) this.flushLog();
    // Parse only what the report needs; plugin log lines are many.
    if (line.startsWith('{"level":50') || line.startsWith('{"level":60')) {
      let msg;
      try {
        msg = JSON.parse(line).msg;
      } catch (e) {
        msg = `(unparsable log line: ${e.message})`;
      }
      this.errorLines.set(msg, (this.errorLines.get(msg) ?? 0) + 1);
    } else if (line.includes('"payloads replayed to the new launch"')) {
      let l;
      try {
        l = JSON.parse(line);
      } catch (e) {
        return; // a host line that is not JSON is no figure to count
      }
      this.replayLines.replayed += l.replayed ?? 0;
      this.replayLines.redelivered += l.redelivered ?? 0;
      this.replayLines.launches++;
    }
  }

  flushLog() {
    if (this.logBuffer.length === 0 || this.logFd === undefined) return;
    writeSync(this.logFd, this.logBuffer.join(""));
    this.logBuffer = [];
    this.logBytes = 0;
  }

  progress() {
    const hosts = [...this.hosts];
    const states = hosts
      .flatMap((h) => h.status())
      .map((s) => `${s.name}=${s.state}/r${s.restarts}/q${s.queued}/f${s.inFlight}`)
      .join(" ");
    const dispatched = this.ledgers.reduce((n, l) => n + l.dispatched, 0);
    const acked = this.ledgers.reduce((n, l) => n + l.acked, 0);
    const pending = this.ledgers.reduce((n, l) => n + l.pending, 0);
    this.log(`dispatched ${dispatched}, acked ${acked}, pending ${pending}, faults ${this.faults.length}${states ? `, ${states}` : ""}`);
  }

  // ------------------------------------------------------------ plugins and hosts

  /** The Python, Go and Rust examples, each undefined when not built. */
  polyglot() {
    return polyglotExamples(this.repo);
  }

  /** The config of a known plugin, marked so its processes can be found. */
  plugin(name, overrides = {}) {
    return pluginConfig(this.repo, this.run, name, overrides);
  }

  ports() {
    return {
      peers: this.directory,
      control: {
        sendDirect: (_peer, frame) => {
          const match = /^pong:([a-z]+)-(\d+)$/.exec(this.decoder.decode(frame));
          const ledger = match && this.byTag.get(match[1]);
          if (!ledger) {
            this.foreignEffects++;
            return;
          }
          ledger.effect(Number(match[2]));
        },
        sendRouted: () => false,
      },
      identity: { signingSeed: () => new Uint8Array(32) },
    };
  }

  /**
   * Creates and starts a host on the scenario's data dir. `plugins` holds
   * names from the catalog or full configs.
   */
  async startHost({ plugins, snapshotIntervalMs = 1_000, store, dataDir = this.dataDir }) {
    const configs = plugins.map((p) => (typeof p === "string" ? this.plugin(p) : p));
    const host = this.lib.createHost({ dataDir, logger: this.logger, snapshotIntervalMs, store, plugins: configs, ports: this.ports() });
    this.hosts.add(host);
    const notePids = () => {
      for (const s of host.status()) if (s.pid) this.pidsSeen.add(s.pid);
    };
    host.on("plugin:state", notePids);
    host.on("plugin:exit", (e) => this.pidsSeen.add(e.pid));
    host.on("plugin:dead-letter", () => this.deadLetters++);
    host.on("snapshot:restored", (e) => this.restored.push({ ...e, at: Date.now() }));
    await withTimeout(host.start(), HOST_START_MS, "host start");
    notePids();
    // A few peers, so presence has names to look up and events to watch.
    for (let i = 0; i < this.peerIds.length; i++) {
      const event = { type: "seen", nodeId: this.peerIds[i], x25519Pub: new Uint8Array(32).fill(i + 1), name: `peer-${i + 1}`, source: "direct" };
      this.directory.apply(event);
      host.publishPeerEvent(event);
    }
    return host;
  }

  async stopHost(host) {
    if (!this.hosts.has(host)) return;
    this.hosts.delete(host);
    try {
      await withTimeout(host.stop(), HOST_STOP_MS, "host stop");
    } catch (e) {
      this.fail(`host stop: ${e.message}`);
    }
  }

  /** Waits until `plugin` of `host` is in `state`; false after `timeoutMs`. */
  async waitState(host, plugin, state, timeoutMs = 15_000) {
    const is = () => host.status().find((s) => s.name === plugin)?.state === state;
    if (is()) return true;
    return new Promise((resolve) => {
      const onState = (e) => {
        if (e.plugin === plugin && e.state === state) done(true);
      };
      const timer = setTimeout(() => done(is()), timeoutMs);
      const done = (ok) => {
        clearTimeout(timer);
        host.off("plugin:state", onState);
        resolve(ok);
      };
      host.on("plugin:state", onState);
    });
  }

  // ------------------------------------------------------------ ledgers and load

  ledger(options) {
    const ledger = new Ledger(options);
    this.ledgers.push(ledger);
    if (options.tag) this.byTag.set(options.tag, ledger);
    return ledger;
  }

  /** A random one of the 16 standard peers. */
  randomPeer() {
    const src = this.peerIds[Math.floor(this.rand() * this.peerIds.length)];
    return { src, hex: this.lib.hex(src) };
  }

  totalDispatched() {
    return this.ledgers.reduce((n, l) => n + l.dispatched, 0);
  }

  /** Runs bounded load on a ledger until `until` (epoch ms) or the payload bound. */
  load(host, ledger, { maxOutstanding, until, next = () => this.randomPeer(), maxCount = Infinity }) {
    const shouldStop = () => Date.now() >= until || this.totalDispatched() >= this.args.maxPayloads;
    return runLoad(host, ledger, { maxOutstanding, shouldStop, maxCount, next });
  }

  // ------------------------------------------------------------ faults

  /** Records a fault; the stuck clock starts over from it. */
  fault(what) {
    const at = Date.now();
    this.faults.push({ ...what, at: at - this.t0 });
    this.lastFaultAt = at;
  }

  /** SIGKILLs the current process of `plugin`, if it has one; returns its pid. */
  kill(host, plugin, what = "SIGKILL") {
    const s = host.status().find((x) => x.name === plugin);
    if (!s?.pid) return undefined;
    this.pidsSeen.add(s.pid);
    if (!sigkill(s.pid)) return undefined;
    this.fault({ what, plugin, pid: s.pid, state: s.state, inFlight: s.inFlight, queued: s.queued });
    return s.pid;
  }

  /** SIGKILLs a random plugin among the ready ones. */
  killRandomReady(host, what = "SIGKILL") {
    const ready = host.status().filter((s) => s.state === "ready" && s.pid);
    if (ready.length === 0) return undefined;
    const victim = ready[Math.floor(this.rand() * ready.length)];
    const pid = this.kill(host, victim.name, what);
    return pid && { plugin: victim.name, pid };
  }

  /**
   * SIGKILLs every live process of `plugin` (found by its marker), whatever
   * its state: also one that is still starting and has no pid in status().
   */
  killProcessesOf(plugin, what) {
    const pids = markedProcesses(this.run)
      .filter((p) => p.plugin === plugin)
      .map((p) => p.pid);
    const killed = pids.filter((pid) => sigkill(pid));
    for (const pid of killed) {
      this.pidsSeen.add(pid);
      this.fault({ what, plugin, pid });
    }
    return killed;
  }

  /**
   * Calls `fn` every `everyMs` (with ±25% jitter) until `until`. Bounded by
   * time and by count.
   */
  async every(everyMs, until, fn) {
    const maxRounds = Math.ceil((until - Date.now()) / (everyMs * 0.75)) + 1;
    for (let round = 0; round < maxRounds; round++) {
      const wait = everyMs * (0.75 + 0.5 * this.rand());
      if (Date.now() + wait >= until) break;
      await sleep(wait);
      await fn(round);
    }
  }

  // ------------------------------------------------------------ checks

  /**
   * Waits for every dispatch to settle, at most STUCK_AFTER_MS after the
   * later of the last fault and the last dispatch. What is still pending then
   * is stuck. Returns how many were.
   */
  async settle() {
    const from = Math.max(this.lastFaultAt, ...this.ledgers.map((l) => l.lastDispatchAt));
    const deadline = from + STUCK_AFTER_MS;
    for (const l of this.ledgers) await l.drained(deadline);
    const stuck = this.ledgers.reduce((n, l) => n + l.pending, 0);
    if (stuck > 0) {
      this.stuck += stuck;
      const per = this.ledgers.filter((l) => l.pending > 0).map((l) => `${l.kind} ${l.pending}`).join(", ");
      const status = [...this.hosts]
        .flatMap((h) => h.status())
        .map((s) => `${s.name}=${s.state}/pid ${s.pid ?? "-"}/queued ${s.queued}/inFlight ${s.inFlight}/lastAcked ${s.lastAcked}`)
        .join("; ");
      const sinceFault = this.lastFaultAt ? `${((Date.now() - this.lastFaultAt) / 1000).toFixed(1)} s after the last fault` : "with no fault";
      this.fail(`${stuck} dispatches not settled ${sinceFault} (${per}); host status: ${status}`);
    }
    return stuck;
  }

  /**
   * The JSON state of a stateful plugin, taken by snapshotting it now. A
   * plugin killed by the last fault may still look ready until the host sees
   * its exit; then the snapshot fails, and it is taken again once the plugin
   * is back (at most 3 tries, within READ_STATE_MS).
   *
   * A relaunch may still be replaying when every dispatch has settled (the
   * replayed payloads were acked before the crash), and a snapshot then holds
   * the state of the replay so far. With `probe` (the plugin's ledger), one
   * more payload is dispatched and acked first: it queues behind the replay
   * and the redeliveries, so once it is acked the plugin has caught up.
   */
  async readState(host, plugin, { probe } = {}) {
    const deadline = Date.now() + READ_STATE_MS;
    let error;
    for (let attempt = 0; attempt < 3 && Date.now() < deadline; attempt++) {
      // A plugin that is restarting cannot be snapshotted yet.
      await this.waitState(host, plugin, "ready", deadline - Date.now());
      try {
        if (probe) {
          const p = this.randomPeer();
          probe.dispatch(host, p.src, p.hex);
          if (!(await probe.drained(Math.min(deadline, Date.now() + STUCK_AFTER_MS)))) {
            // Stuck like any other dispatch (those before it were counted by settle()): no point in trying again.
            this.stuck += 1;
            throw Object.assign(new Error(`a probe payload to ${plugin} was not acked within ${STUCK_AFTER_MS} ms`), { final: true });
          }
        }
        const record = await withTimeout(host.snapshot(plugin), Math.max(1, deadline - Date.now()), `snapshot of ${plugin} to read its state`);
        if (!record) throw new Error(`${plugin} is not stateful`);
        return { counts: JSON.parse(this.decoder.decode(record.bytes)), appliedSeq: record.appliedSeq };
      } catch (e) {
        error = e;
        if (e.final) break;
        this.log(`snapshot to read ${plugin}'s state failed (${e.message}); trying again once it is ready`);
        await this.nextState(host, plugin, 2_000);
      }
    }
    throw error;
  }

  /** Resolves at the next state change of `plugin`, or after `timeoutMs`. */
  nextState(host, plugin, timeoutMs) {
    return new Promise((resolve) => {
      const on = (e) => {
        if (e.plugin === plugin) done();
      };
      const timer = setTimeout(() => done(), timeoutMs);
      const done = () => {
        clearTimeout(timer);
        host.off("plugin:state", on);
        resolve();
      };
      host.on("plugin:state", on);
    });
  }

  /** Checks a counter-like plugin's state against its per-peer ledger. */
  async checkState(host, ledger, label = ledger.plugin) {
    let state;
    try {
      state = await this.readState(host, ledger.plugin, { probe: ledger });
    } catch (e) {
      this.stateChecks.push({ label, exact: undefined });
      this.fail(`${label}: could not read the state: ${e.message}`);
      return undefined;
    }
    return this.judgeState(label, ledger.checkState(state.counts), state.appliedSeq);
  }

  /** Records a state verdict { exact, lost, dup, summary } under `label`. */
  judgeState(label, verdict, appliedSeq) {
    this.stateChecks.push({ label, ...verdict });
    this.extraLost += verdict.lost;
    this.extraDup += verdict.dup;
    const seq = appliedSeq === undefined ? "" : `, applied_seq ${appliedSeq}`;
    if (verdict.exact === true) this.note(`${label} state exact: ${verdict.summary}${seq}`);
    else if (verdict.exact === null) this.note(`${label} state differs only by unsettled payloads: ${verdict.summary}`);
    else this.fail(`${label} state not exact: ${verdict.summary}${seq}`);
    return verdict;
  }

  // ------------------------------------------------------------ the end

  /** Stops every host, then counts orphans and leaked descriptors; returns the result row. */
  async finish() {
    clearInterval(this.progressTimer);
    for (const host of [...this.hosts]) await this.stopHost(host);

    let lost = this.extraLost;
    let dup = this.extraDup;
    for (const l of this.ledgers) {
      const e = l.checkEffects();
      lost += e.lost;
      dup += e.dup;
      for (const d of e.details) this.fail(d);
    }
    if (this.foreignEffects) {
      dup += this.foreignEffects;
      this.fail(`${this.foreignEffects} effects the scenario never asked for`);
    }

    // Plugin processes left after stop: give the kernel a moment, then kill what is left.
    let orphans = markedProcesses(this.run);
    for (let waited = 0; orphans.length > 0 && waited < ORPHAN_GRACE_MS; waited += 100) {
      await sleep(100);
      orphans = markedProcesses(this.run);
    }
    for (const o of orphans) sigkill(o.pid);
    if (orphans.length > 0) {
      this.fail(`${orphans.length} plugin processes alive ${ORPHAN_GRACE_MS / 1000} s after stop: ${orphans.map((o) => `${o.plugin} ${o.pid}`).join(", ")}`);
    }

    rmSync(this.dataDir, { recursive: true, force: true });
    let fdsAfter = fdCount();
    for (let waited = 0; fdsAfter - this.fdsBefore > FD_TOLERANCE && waited < 3_000; waited += 100) {
      await sleep(100);
      fdsAfter = fdCount();
    }
    const fdLeak = fdsAfter - this.fdsBefore;
    if (fdLeak > FD_TOLERANCE) this.fail(`${fdLeak} descriptors leaked (${this.fdsBefore} before, ${fdsAfter} after, tolerance ${FD_TOLERANCE})`);
    if ((lost > 0 || dup > 0) && this.failures.length === 0) this.fail(`${lost} payloads lost, ${dup} duplicated`);

    const rejected = {};
    for (const l of this.ledgers) for (const [code, n] of l.rejected) rejected[code] = (rejected[code] ?? 0) + n;
    if (Object.keys(rejected).length > 0) {
      this.note(`rejected dispatches: ${Object.entries(rejected).map(([c, n]) => `${c} ${n}`).join(", ")}`);
    }
    this.note(`plugin processes seen: ${this.pidsSeen.size}`);
    const r = this.replayLines;
    if (r.launches > 0) this.note(`relaunches: ${r.launches}, replayed ${r.replayed} and redelivered ${r.redelivered} payloads to them (host log)`);
    if (this.deadLetters > 0) this.note(`${this.deadLetters} payloads dead-lettered (in flight during 2 consecutive crashes)`);
    const byPlugin = {};
    for (const f of this.faults) byPlugin[f.plugin ?? "host"] = (byPlugin[f.plugin ?? "host"] ?? 0) + 1;
    this.note(`faults: ${this.faults.length}${this.faults.length ? ` (${Object.entries(byPlugin).map(([p, n]) => `${p} ${n}`).join(", ")})` : ""}`);
    if (this.errorLines.size > 0) {
      const top = [...this.errorLines].sort((a, b) => b[1] - a[1]).slice(0, 6);
      this.note(`host error lines: ${top.map(([m, n]) => `${n}x "${String(m).slice(0, 100)}"`).join("; ")}`);
    }
    this.flushLog();
    closeSync(this.logFd);
    this.logFd = undefined;

    const some = (v) => this.stateChecks.some((c) => c.exact === v);
    // NO: checked and wrong; ?: could not be read; n/a: only unsettled payloads explain the difference.
    const exact = this.stateChecks.length === 0 ? "-" : some(false) ? "NO" : some(undefined) ? "?" : some(null) ? "n/a" : "yes";
    const verdict = this.skipped !== undefined && this.failures.length === 0 ? "SKIP" : this.failures.length === 0 ? "PASS" : "FAIL";
    return {
      scenario: this.scenario,
      verdict,
      payloads: this.totalDispatched() + this.extraPayloads,
      lost,
      dup,
      stuck: this.stuck,
      exact,
      orphans: orphans.length + this.extraOrphans,
      fds: fdLeak,
      seconds: (Date.now() - this.t0) / 1000,
      failures: this.failures,
      notes: this.notes,
      skipped: this.skipped,
      log: this.logPath,
    };
  }
}

function hashString(s) {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}
