/**
 * The web dashboard (docs/dashboard.md) in a real browser: headless Chromium
 * (the system's, Debian's `chromium` package) driven by playwright-core,
 * against a real `plugwire run` of the demo plugins plus the `poison` fixture
 * (whose "poison" payload crashes it twice and is parked as a dead letter).
 * Every wait is for something the page shows, bounded; the one bound the
 * issue sets (a SIGKILL shows up as a restart within 2 s) is the wait's
 * timeout. Without Chromium the tests skip saying so (and fail under CI=true).
 *
 * PLUGWIRE_DASHBOARD_SCREENSHOT=docs/img/dashboard.png writes the docs'
 * screenshot; otherwise it goes to the test's temp dir.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it, test } from "node:test";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { admin } from "@plugwire/proto";
import { fixture } from "./helpers.js";
import { startLiveHost, type LiveHost } from "./live-host.js";

// The functions passed to page.waitForFunction / evaluate run in the page; the host's tests compile without the DOM lib.
declare const document: any; // eslint-disable-line @typescript-eslint/no-explicit-any
declare const location: { hash: string };
type HTMLElement = { dataset: Record<string, string | undefined> };

const CANDIDATES = [process.env.PLUGWIRE_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].filter(
  (p): p is string => Boolean(p),
);
const executablePath = CANDIDATES.find((p) => existsSync(p));
const MISSING =
  executablePath === undefined
    ? `no Chromium found (looked for ${CANDIDATES.join(", ")}): the dashboard's browser tests are skipped. ` +
      `Install it with 'apt-get install -y chromium' (.ci/run does), or set PLUGWIRE_CHROMIUM to a Chrome/Chromium binary.`
    : undefined;

if (MISSING !== undefined && process.env.CI === "true") {
  test("Chromium is available for the dashboard's browser tests (required under CI)", () => assert.fail(MISSING));
}

const PLUGINS = ["echo", "counter", "presence", "poison"];
const SRC = new Uint8Array(32).fill(1);

describe("the dashboard in headless Chromium against a real host", { skip: MISSING, timeout: 180_000 }, () => {
  let host: LiveHost;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let cureFile: string;
  let cureDir: string | undefined;
  const pids = new Set<number>();

  const card = (name: string, field: string): string => `[data-plugin="${name}"] .${field}`;
  const text = (selector: string): Promise<string> => page.locator(selector).first().innerText();
  /** Waits until the card of `name` shows `field` = `value`. */
  const shows = (name: string, field: string, value: string, timeout = 15_000) =>
    page.waitForFunction(([sel, v]) => document.querySelector(sel!)?.textContent === v, [card(name, field), value] as const, { timeout });
  const listPlugins = async () => {
    const { plugins } = await host.client.listPlugins({});
    for (const p of plugins) if (p.pid) pids.add(p.pid);
    return plugins;
  };
  const pidOf = async (name: string): Promise<number> => (await listPlugins()).find((p) => p.name === name)!.pid;

  before(async () => {
    cureDir = mkdtempSync(join(tmpdir(), "pwt-dash-"));
    cureFile = join(cureDir, "cured");
    host = await startLiveHost({
      config: { snapshotIntervalMs: 1000 },
      plugins: [{ name: "poison", command: process.execPath, args: [fixture("poison")], capabilities: ["control"], config: { cureFile } }],
    });
    browser = await chromium.launch({ executablePath, headless: true });
    context = await browser.newContext({ viewport: { width: 1360, height: 1000 } });
    page = await context.newPage();
  });

  after(async () => {
    await browser?.close();
    if (host) {
      await listPlugins().catch(() => undefined);
      await host.stop([...pids]);
    }
    if (cureDir) rmSync(cureDir, { recursive: true, force: true });
  });

  it("the one-time URL opens the page with the token (which leaves the address bar) and shows every plugin", async () => {
    assert.ok(host.loginUrl, "plugwire run logged the dashboard's one-time URL");
    assert.match(host.loginUrl, /^http:\/\/127\.0\.0\.1:\d+\/#code=[A-Za-z0-9_-]{43}$/);
    assert.ok(!host.loginUrl.includes(host.token), "the URL carries a login code, not the token");
    await page.goto(host.loginUrl);
    for (const name of PLUGINS) await shows(name, "state", "ready");
    assert.deepEqual(await page.locator("article.plugin").evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.plugin)), PLUGINS);
    assert.equal(await page.evaluate(() => location.hash), "", "the code is removed from the URL");
    const plugins = await listPlugins();
    for (const p of plugins) assert.equal(await text(card(p.name, "pid")), String(p.pid));
  });

  it("a SIGKILL of a plugin shows up as a restart within 2 s, with its reason; the log tail filters by plugin and level", async () => {
    const pid = await pidOf("counter");
    assert.ok(pid > 0, "counter is running");
    assert.equal(await text(card("counter", "restarts")), "0");
    process.kill(pid, "SIGKILL");
    // The bound, as the wait's timeout.
    await shows("counter", "restarts", "1", 2_000);
    await page.waitForFunction(() => document.querySelectorAll('[data-plugin="counter"] .timeline line.tick').length === 1, null, { timeout: 2_000 });
    assert.match(await text('[data-plugin="counter"] .reasons li'), /was killed by SIGKILL \(crash\)/);
    await shows("counter", "state", "ready");
    assert.notEqual(await pidOf("counter"), pid);

    await page.selectOption("#log-plugin", "counter");
    await page.selectOption("#log-level", "error");
    await page.waitForFunction(() => [...document.querySelectorAll("#log div")].some((l) => /SIGKILL/.test(l.textContent ?? "")), null, { timeout: 5_000 });
    const shown = await page.locator("#log div").evaluateAll((els) => els.map((e) => [(e as HTMLElement).dataset.plugin, (e as HTMLElement).dataset.level]));
    assert.ok(shown.length > 0);
    for (const [plugin, level] of shown) {
      assert.equal(plugin, "counter");
      assert.ok(level === "error" || level === "fatal", `level ${level} shown under the 'error' filter`);
    }
    await page.selectOption("#log-plugin", "");
    await page.selectOption("#log-level", "info");
  });

  it("the restart button restarts a plugin", async () => {
    const before = await pidOf("echo");
    await page.click('[data-plugin="echo"] button.restart');
    await page.waitForFunction(() => document.getElementById("action-result")?.textContent === "restart echo: done", null, { timeout: 30_000 });
    const after = await pidOf("echo");
    assert.notEqual(after, before, "a new process");
    await shows("echo", "pid", String(after));
    await shows("echo", "state", "ready");
    await page.waitForFunction(() => /operator restart/.test(document.querySelector('[data-plugin="echo"] .reasons')?.textContent ?? ""), null, { timeout: 5_000 });
  });

  it("a dead letter is listed and its replay button dispatches it again", async () => {
    // Crashes the plugin twice, then is parked: the Dispatch reports a handler error.
    const parked = await host.client.dispatch({ plugin: "poison", src: SRC, body: new TextEncoder().encode("poison") });
    assert.equal(parked.outcome, admin.DispatchOutcome.HANDLER_ERROR);
    assert.match(parked.error, /moved to its dead letters/);
    const [letter] = (await host.client.listDeadLetters({ name: "poison" })).deadLetters;
    assert.ok(letter);
    const button = `[data-plugin="poison"] button.replay[data-seq="${letter.seq}"]`;
    await page.waitForSelector(button, { timeout: 30_000 });
    await shows("poison", "state", "ready", 30_000);
    // The plugin copes with it now.
    writeFileSync(cureFile, "");
    await page.click(button);
    await page.waitForFunction(() => /^replay dead letter \d+ of poison: done$/.test(document.getElementById("action-result")?.textContent ?? ""), null, { timeout: 30_000 });
    assert.deepEqual((await host.client.listDeadLetters({ name: "poison" })).deadLetters, []);
    await page.waitForFunction(() => document.querySelector('[data-plugin="poison"] button.replay') === null, null, { timeout: 5_000 });
    // Its handler answered it: the CLI's control port logged a 14-byte "handled:poison" send.
    await host.waitForLog((r) => r.msg === "send_direct" && r.bytes === "handled:poison".length, "'send_direct' of the replayed payload", 10_000);
  });

  it("shows throughput and snapshots under load (and saves the screenshot)", async () => {
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < 300; i++) {
      sends.push(host.client.dispatch({ kind: "counter.hit", src: SRC, body: new TextEncoder().encode(`hit-${i}`) }));
      sends.push(host.client.dispatch({ kind: "echo.ping", src: SRC, body: new TextEncoder().encode(`ping-${i}`) }));
    }
    await Promise.all(sends);
    await page.waitForFunction(() => Number(document.getElementById("total-rate")?.textContent) > 0 || document.querySelectorAll(".throughput polyline").length > 0, null, {
      timeout: 10_000,
    });
    await page.waitForFunction(() => /applied_seq [1-9]/.test(document.querySelector('[data-plugin="counter"] .snapshot')?.textContent ?? ""), null, { timeout: 15_000 });
    const out = process.env.PLUGWIRE_DASHBOARD_SCREENSHOT ? resolve(process.env.PLUGWIRE_DASHBOARD_SCREENSHOT) : join(host.dir, "dashboard.png");
    await page.screenshot({ path: out, fullPage: true });
    assert.ok(existsSync(out));
  });

  it("without the token nothing is shown and no action works; a login code works once; the page holds no token", async () => {
    const fresh = await browser.newContext();
    try {
      const anon = await fresh.newPage();
      await anon.goto(`${host.adminUrl}/`);
      await anon.waitForSelector("#login", { state: "visible", timeout: 10_000 });
      assert.equal(await anon.locator("article.plugin").count(), 0);
      assert.equal(await anon.locator("#dashboard").isVisible(), false);

      // A wrong token: refused, still nothing shown.
      await anon.fill("#token", "not-the-token-0123456789");
      await anon.click("#login button[type=submit]");
      await anon.waitForFunction(() => /refused/.test(document.getElementById("login-error")?.textContent ?? ""), null, { timeout: 10_000 });
      assert.equal(await anon.locator("article.plugin").count(), 0);

      // Calls from the page without the token are refused, and change nothing.
      const echoPid = await pidOf("echo");
      const status = await anon.evaluate(async () => {
        const res = await fetch("/plugwire.admin.v1.AdminService/RestartPlugin", { method: "POST", headers: { "content-type": "application/json" }, body: '{"name":"echo"}' });
        return res.status;
      });
      assert.equal(status, 401);
      assert.equal(await pidOf("echo"), echoPid);

      // The one-time URL was used by the first test: it does not work again.
      const again = await fresh.newPage();
      await again.goto(host.loginUrl!);
      await again.waitForFunction(() => /not valid/.test(document.getElementById("login-error")?.textContent ?? ""), null, { timeout: 10_000 });
      assert.equal(await again.locator("article.plugin").count(), 0);

      // The page and its script carry no token.
      for (const path of ["/", "/dashboard.js", "/dashboard.css"]) {
        const body = await (await fetch(`${host.adminUrl}${path}`)).text();
        assert.ok(!body.includes(host.token), `${path} holds the token`);
      }

      // The login endpoint gives nothing for a wrong code, and reads no large body.
      const login = (body: string) => fetch(`${host.adminUrl}/dashboard/login`, { method: "POST", headers: { "content-type": "application/json" }, body });
      const wrong = await login(JSON.stringify({ code: "A".repeat(43) }));
      assert.equal(wrong.status, 401);
      assert.ok(!(await wrong.text()).includes(host.token));
      assert.equal((await login("not json")).status, 401);
      assert.equal((await login(JSON.stringify({ code: "x".repeat(4096) }))).status, 413);

      // The token pasted into the form opens it.
      await anon.fill("#token", host.token);
      await anon.click("#login button[type=submit]");
      await anon.waitForSelector('[data-plugin="presence"]', { timeout: 10_000 });
      assert.equal(await anon.locator("article.plugin").count(), PLUGINS.length);
      // Log out: everything shown goes.
      await anon.click("#logout");
      assert.equal(await anon.locator("article.plugin").count(), 0);
    } finally {
      await fresh.close();
    }
  });
});
