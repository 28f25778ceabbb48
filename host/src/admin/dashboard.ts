/**
 * The web dashboard's files, served by the admin server at `/` without the
 * token: the page (index.html), its one esbuild bundle (dashboard.js, built
 * from host/dashboard/ by `npm run build`) and its stylesheet. None of them
 * holds a secret; the page asks for the admin token, or trades a one-time
 * login code from its URL (`/#code=CODE`, printed by `plugwire run`) for it
 * at POST /dashboard/login, then calls the admin API like any client.
 */
import { randomBytes, createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Where the build puts the dashboard: host/dist/dashboard (this file is host/dist/src/admin/dashboard.js). */
export const DASHBOARD_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "dashboard");

/** The login endpoint's path. */
export const DASHBOARD_LOGIN_PATH = "/dashboard/login";
/** Largest login request body (a code is 43 characters). */
const LOGIN_BODY_BYTES = 1024;
/** Login codes not yet used, at most. */
const MAX_LOGIN_CODES = 16;
const DEFAULT_LOGIN_TTL_MS = 10 * 60 * 1000;

const FILES: Record<string, { file: string; type: string }> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/index.html": { file: "index.html", type: "text/html; charset=utf-8" },
  "/dashboard.js": { file: "dashboard.js", type: "text/javascript; charset=utf-8" },
  "/dashboard.css": { file: "dashboard.css", type: "text/css; charset=utf-8" },
};

const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cache-control": "no-store",
};

const digest = (s: string): Buffer => createHash("sha256").update(s).digest();

export class DashboardAssets {
  private readonly cache = new Map<string, Buffer>();
  /** sha256 of each unused login code -> when it expires (performance.now()). */
  private readonly codes = new Map<string, { hash: Buffer; expires: number }>();

  constructor(private readonly dir = DASHBOARD_DIR) {}

  private file(name: string): Buffer | undefined {
    let body = this.cache.get(name);
    if (body === undefined) {
      try {
        body = readFileSync(join(this.dir, name));
      } catch {
        return undefined;
      }
      this.cache.set(name, body);
    }
    return body;
  }

  newLoginCode(ttlMs = DEFAULT_LOGIN_TTL_MS): string {
    const now = performance.now();
    for (const [k, v] of this.codes) if (v.expires <= now) this.codes.delete(k);
    while (this.codes.size >= MAX_LOGIN_CODES) this.codes.delete(this.codes.keys().next().value!);
    const code = randomBytes(32).toString("base64url");
    this.codes.set(code.slice(0, 8), { hash: digest(code), expires: now + ttlMs });
    return code;
  }

  /** Consumes a login code: true once for a valid, unexpired code. */
  private useCode(code: string): boolean {
    const entry = this.codes.get(code.slice(0, 8));
    if (!entry) return false;
    if (entry.expires <= performance.now()) {
      this.codes.delete(code.slice(0, 8));
      return false;
    }
    if (!timingSafeEqual(entry.hash, digest(code))) return false;
    this.codes.delete(code.slice(0, 8));
    return true;
  }

  /** Serves the request when it is one of the dashboard's; false to let the admin API have it. */
  handle(req: IncomingMessage, res: ServerResponse, token: string): boolean {
    const path = (req.url ?? "").split("?")[0]!;
    if ((req.method === "GET" || req.method === "HEAD") && FILES[path]) {
      const { file, type } = FILES[path]!;
      const body = this.file(file);
      if (body === undefined) {
        const text = `the dashboard is not built (no ${join(this.dir, file)}): run 'npm run build'\n`;
        res.writeHead(503, { "content-type": "text/plain; charset=utf-8", ...SECURITY_HEADERS }).end(text);
        return true;
      }
      res.writeHead(200, { "content-type": type, "content-length": body.byteLength, ...SECURITY_HEADERS });
      res.end(req.method === "HEAD" ? undefined : body);
      return true;
    }
    if (req.method === "POST" && path === DASHBOARD_LOGIN_PATH) {
      this.login(req, res, token);
      return true;
    }
    return false;
  }

  private login(req: IncomingMessage, res: ServerResponse, token: string): void {
    const answer = (status: number, body: object): void => {
      const text = JSON.stringify(body);
      res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...SECURITY_HEADERS });
      res.end(text);
    };
    if (Number(req.headers["content-length"] ?? 0) > LOGIN_BODY_BYTES) {
      res.once("finish", () => req.socket.destroySoon());
      answer(413, { error: `a login request body is at most ${LOGIN_BODY_BYTES} bytes` });
      return;
    }
    const chunks: Buffer[] = [];
    let bytes = 0;
    let done = false;
    req.on("data", (chunk: Buffer) => {
      bytes += chunk.byteLength;
      if (bytes > LOGIN_BODY_BYTES) {
        if (done) return;
        done = true;
        req.pause();
        res.once("finish", () => req.socket.destroySoon());
        answer(413, { error: `a login request body is at most ${LOGIN_BODY_BYTES} bytes` });
        return;
      }
      chunks.push(chunk);
    });
    req.once("end", () => {
      if (done) return;
      done = true;
      let code = "";
      try {
        code = String((JSON.parse(Buffer.concat(chunks).toString("utf8")) as { code?: unknown }).code ?? "");
      } catch {
        // an empty code is refused below
      }
      if (code === "" || !this.useCode(code)) {
        answer(401, { error: "this login code is not valid: it was used already, it expired (10 minutes), or the host restarted. Paste the token from <dataDir>/admin.token instead." });
        return;
      }
      answer(200, { token });
    });
  }
}
