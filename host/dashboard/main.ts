/**
 * The plugwire dashboard: one page, no framework. It talks to the admin API
 * of the server that serves it (same origin) with connect-web and the
 * generated AdminService code: WatchStatus streams an update a second (and at
 * once on restarts and state changes); the buttons call RestartPlugin,
 * StopPlugin, SnapshotNow, ListDeadLetters and ReplayDeadLetter. The admin
 * token lives in this module's memory only (never in storage or the URL); a
 * one-time login code in the URL's fragment is traded for it and removed.
 */
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AdminService, type PluginDetail, type WatchStatusResponse, type LogLine } from "../../proto/src/gen/plugwire/admin/v1/admin_pb.js";

type Admin = Client<typeof AdminService>;

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => document.getElementById(id) as T;
const LEVELS = ["trace", "debug", "info", "warn", "error", "fatal"];
const MAX_LOG_LINES = 1000;
const HOUR_MS = 3_600_000;

let token: string | undefined;
let client: Admin | undefined;
let watch: AbortController | undefined;
const logs: LogLine[] = [];
const cards = new Map<string, Card>();

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag: string, attrs: Record<string, string | number>): SVGElement {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

/** A sparkline of `values` (oldest first) as an inline SVG. */
function sparkline(values: number[], width = 120, height = 24): SVGElement {
  const s = svg("svg", { class: "spark", width, height, viewBox: `0 0 ${width} ${height}` });
  const max = Math.max(1e-9, ...values);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 1 - (v / max) * (height - 2)).toFixed(1)}`).join(" ");
  s.append(svg("polyline", { points: points || `0,${height - 1} ${width},${height - 1}` }));
  return s;
}

/** The last hour as an axis, a tick per restart; hovering a tick shows its time and reason. */
function timeline(restarts: PluginDetail["restarts"], now: number, width = 320, height = 22): SVGElement {
  const s = svg("svg", { class: "timeline", width, height, viewBox: `0 0 ${width} ${height}` });
  s.append(svg("line", { class: "axis", x1: 0, y1: 12, x2: width, y2: 12 }));
  for (const r of restarts) {
    const x = width - ((now - Number(r.atMs)) / HOUR_MS) * width;
    if (x < 0) continue;
    const tick = svg("line", { class: "tick", x1: x, y1: 4, x2: x, y2: 20 });
    const title = svg("title", {});
    title.textContent = `${new Date(Number(r.atMs)).toLocaleTimeString()}: ${r.reason}`;
    tick.append(title);
    s.append(tick);
  }
  const left = svg("text", { x: 0, y: 9 });
  left.textContent = "-60 min";
  const right = svg("text", { x: width - 22, y: 9 });
  right.textContent = "now";
  s.append(left, right);
  return s;
}

function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function bytes(n: number): string {
  return n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function say(text: string, error = false): void {
  const out = $("action-result");
  out.textContent = text;
  out.className = error ? "error" : "";
}

/** Runs an admin call from a button, showing its outcome. */
async function act(button: HTMLButtonElement, what: string, call: (c: Admin) => Promise<unknown>): Promise<void> {
  if (!client) return;
  button.disabled = true;
  say(`${what}…`);
  try {
    await call(client);
    say(`${what}: done`);
  } catch (e) {
    const err = ConnectError.from(e);
    if (err.code === Code.Unauthenticated) logout("the host refused the token");
    else say(`${what} failed: ${err.rawMessage}`, true);
  } finally {
    button.disabled = false;
  }
}

/** One plugin's card: built once, its fields updated in place (so buttons keep working between updates). */
class Card {
  readonly root: HTMLElement;
  private readonly fields = new Map<string, HTMLElement>();
  private readonly stateBadge = el("span", { class: "state" });
  private readonly throughput = el("span", { class: "throughput" });
  private readonly latency = el("span", { class: "latency" });
  private readonly timelineBox = el("div", { class: "restart-timeline" });
  private readonly reasons = el("ul", { class: "reasons" });
  private readonly deadBox = el("div", { class: "dead-letters" });
  private deadKey = "";

  constructor(readonly name: string) {
    this.root = el("article", { class: "plugin", "data-plugin": name });
    const title = el("h3");
    title.append(el("span", { class: "name" }, name), this.stateBadge);
    const dl = el("dl");
    for (const [key, label] of [
      ["pid", "pid"],
      ["uptime", "uptime"],
      ["restarts", "restarts"],
      ["queued", "queued"],
      ["in-flight", "in flight"],
      ["replay", "replay buffer"],
      ["snapshot", "last snapshot"],
      ["last-exit", "last exit"],
    ] as const) {
      const dd = el("dd", { class: key });
      this.fields.set(key, dd);
      dl.append(el("dt", {}, label), dd);
    }
    dl.append(el("dt", {}, "dispatch/s"), this.throughput, el("dt", {}, "ack latency"), this.latency);
    const actions = el("div", { class: "actions" });
    const button = (cls: string, label: string, what: string, call: (c: Admin) => Promise<unknown>): void => {
      const b = el("button", { type: "button", class: cls }, label);
      b.addEventListener("click", () => void act(b, what, call));
      actions.append(b);
    };
    button("restart", "Restart", `restart ${name}`, (c) => c.restartPlugin({ name }));
    button("stop", "Stop", `stop ${name}`, (c) => c.stopPlugin({ name }));
    button("snapshot", "Snapshot", `snapshot ${name}`, (c) => c.snapshotNow({ name }));
    this.root.append(title, dl, el("div", { class: "label" }, "restarts, last hour"), this.timelineBox, this.reasons, this.deadBox, actions);
  }

  private set(key: string, text: string): void {
    this.fields.get(key)!.textContent = text;
  }

  update(p: PluginDetail, now: number): void {
    const info = p.info!;
    this.root.dataset.state = info.state;
    this.stateBadge.textContent = info.state;
    this.set("pid", info.pid ? String(info.pid) : "–");
    this.set("uptime", p.readySinceMs > 0n ? ago(now - Number(p.readySinceMs)) : "–");
    this.set("restarts", String(info.restarts));
    this.set("queued", String(info.queued));
    this.set("in-flight", String(info.inFlight));
    this.set("replay", `${p.replayPayloads} (${bytes(Number(p.replayBytes))})`);
    const snap = p.lastSnapshot;
    this.set(
      "snapshot",
      snap ? `${ago(now - Number(snap.atMs))} ago${snap.restored ? " (restored)" : ""}, ${bytes(Number(snap.sizeBytes))}, applied_seq ${snap.appliedSeq}` : info.stateful ? "none yet" : "stateless",
    );
    this.set("last-exit", info.lastExit || "–");
    const rate = p.dispatchRate.at(-1) ?? 0;
    this.throughput.replaceChildren(sparkline(p.dispatchRate), document.createTextNode(` ${rate.toFixed(1)}`));
    const lat = p.ackLatencyMs.at(-1) ?? 0;
    this.latency.replaceChildren(sparkline(p.ackLatencyMs), document.createTextNode(` ${lat.toFixed(2)} ms`));
    this.timelineBox.replaceChildren(timeline(p.restarts, now));
    this.reasons.replaceChildren(...p.restarts.slice(-3).reverse().map((r) => el("li", {}, `${new Date(Number(r.atMs)).toLocaleTimeString()} ${r.reason}`)));
    // The dead letters are fetched when their count changes.
    const key = `${info.deadLetters}`;
    if (key !== this.deadKey) {
      this.deadKey = key;
      void this.loadDeadLetters(info.deadLetters);
    }
  }

  private async loadDeadLetters(count: number): Promise<void> {
    if (count === 0 || !client) {
      this.deadBox.replaceChildren();
      return;
    }
    try {
      const { deadLetters } = await client.listDeadLetters({ name: this.name });
      const table = el("table");
      const head = el("tr");
      for (const h of ["seq", "kind", "size", "reason", ""]) head.append(el("th", {}, h));
      table.append(head);
      for (const d of deadLetters) {
        const row = el("tr", { "data-seq": String(d.seq) });
        row.append(el("td", {}, String(d.seq)), el("td", {}, d.kind), el("td", {}, bytes(Number(d.sizeBytes))), el("td", {}, d.reason));
        const replay = el("button", { type: "button", class: "replay", "data-seq": String(d.seq) }, "Replay");
        replay.addEventListener("click", () =>
          void act(replay, `replay dead letter ${d.seq} of ${this.name}`, (c) => c.replayDeadLetter({ name: this.name, seq: d.seq })).then(() => {
            this.deadKey = "";
          }),
        );
        const cell = el("td");
        cell.append(replay);
        row.append(cell);
        table.append(row);
      }
      this.deadBox.replaceChildren(el("div", { class: "label" }, `dead letters (${deadLetters.length})`), table);
    } catch (e) {
      this.deadBox.replaceChildren(el("span", { class: "error" }, `dead letters: ${ConnectError.from(e).rawMessage}`));
    }
  }
}

function render(update: WatchStatusResponse): void {
  const now = Number(update.timeMs);
  $("total-rate").textContent = update.dispatchRate.toFixed(1);
  const sums = update.plugins.reduce<number[]>((acc, p) => {
    const offset = 60 - p.dispatchRate.length;
    p.dispatchRate.forEach((v, i) => (acc[offset + i] = (acc[offset + i] ?? 0) + v));
    return acc;
  }, []);
  $("total-spark").replaceChildren(sparkline(sums.filter((v) => v !== undefined)));
  const box = $("plugins");
  const select = $<HTMLSelectElement>("log-plugin");
  for (const p of update.plugins) {
    const name = p.info!.name;
    let card = cards.get(name);
    if (!card) {
      card = new Card(name);
      cards.set(name, card);
      box.append(card.root);
      select.append(el("option", { value: name }, name));
    }
    card.update(p, now);
  }
  if (update.logs.length > 0) {
    logs.push(...update.logs);
    if (logs.length > MAX_LOG_LINES) logs.splice(0, logs.length - MAX_LOG_LINES);
    renderLogs();
  }
}

function renderLogs(): void {
  const plugin = $<HTMLSelectElement>("log-plugin").value;
  const min = LEVELS.indexOf($<HTMLSelectElement>("log-level").value);
  const out = $("log");
  const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
  const lines = logs.filter((l) => (plugin === "" || (plugin === "-" ? l.plugin === "" : l.plugin === plugin)) && LEVELS.indexOf(l.level) >= min).slice(-300);
  out.replaceChildren(
    ...lines.map((l) => {
      const line = el("div", { class: l.level, "data-plugin": l.plugin, "data-level": l.level });
      line.textContent = `${new Date(Number(l.timeMs)).toLocaleTimeString()} ${l.level.padEnd(5)} ${l.plugin || "host"}: ${l.msg}`;
      return line;
    }),
  );
  if (atBottom) out.scrollTop = out.scrollHeight;
}

/** Streams WatchStatus until aborted; reconnects after errors, stops on a refused token. */
async function follow(signal: AbortSignal): Promise<void> {
  const conn = $("conn");
  while (!signal.aborted && client) {
    try {
      for await (const update of client.watchStatus({ intervalMs: 1000 }, { signal })) {
        if ($("dashboard").hidden) {
          $("login").hidden = true;
          $("dashboard").hidden = false;
          $("host-summary").hidden = false;
        }
        conn.textContent = "live";
        conn.className = "conn live";
        render(update);
      }
    } catch (e) {
      if (signal.aborted) return;
      const err = ConnectError.from(e);
      if (err.code === Code.Unauthenticated) {
        logout("the host refused this token");
        return;
      }
      conn.textContent = `disconnected (${err.rawMessage}); retrying`;
      conn.className = "conn";
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function login(value: string): void {
  token = value.trim();
  const auth = token;
  client = createClient(
    AdminService,
    createConnectTransport({
      baseUrl: location.origin,
      interceptors: [
        (next) => (req) => {
          req.header.set("authorization", `Bearer ${auth}`);
          return next(req);
        },
      ],
    }),
  );
  watch?.abort();
  watch = new AbortController();
  void follow(watch.signal);
}

/** Forgets the token and everything shown. */
function logout(why?: string): void {
  watch?.abort();
  token = undefined;
  client = undefined;
  cards.clear();
  logs.length = 0;
  $("plugins").replaceChildren();
  $("log").replaceChildren();
  for (const o of [...$<HTMLSelectElement>("log-plugin").options].slice(2)) o.remove();
  $("dashboard").hidden = true;
  $("host-summary").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = why ?? "";
  $<HTMLInputElement>("token").value = "";
}

async function start(): Promise<void> {
  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    $("login-error").textContent = "";
    login($<HTMLInputElement>("token").value);
  });
  $("logout").addEventListener("click", () => logout());
  $("log-plugin").addEventListener("change", renderLogs);
  $("log-level").addEventListener("change", renderLogs);
  const code = new URLSearchParams(location.hash.slice(1)).get("code");
  if (code) {
    // The code works once; take it out of the address bar and history.
    history.replaceState(null, "", location.pathname);
    const res = await fetch("/dashboard/login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ code }) });
    const body = (await res.json().catch(() => ({}))) as { token?: string; error?: string };
    if (res.ok && body.token) {
      login(body.token);
      return;
    }
    logout(body.error ?? `login failed (HTTP ${res.status})`);
    return;
  }
  logout();
}

void start();
