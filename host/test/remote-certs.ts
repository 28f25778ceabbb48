/**
 * Certificates for the attach-mode tests, made at test time with the openssl
 * CLI: a CA, a plugin server certificate (serverAuth, SAN = the plugin's IP
 * and a DNS name), a host client certificate (clientAuth), a second unrelated
 * CA, and certificates that expired in 2020 (made with `openssl ca`, which
 * can set dates in the past).
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface CertPair {
  cert: string;
  key: string;
}

export interface Pki {
  dir: string;
  ca: string;
  caKey: string;
  /** Signs `ca`-issued pairs. */
  issue(name: string, options: { cn: string; san?: string[]; usage: "server" | "client" | "both"; expired?: boolean; ca?: { ca: string; caKey: string } }): CertPair;
  /** A new, unrelated CA. */
  newCa(name: string): { ca: string; caKey: string };
}

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

/** True when the openssl CLI can be run. */
export function hasOpenssl(): boolean {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

export function makePki(dir: string): Pki {
  mkdirSync(dir, { recursive: true });
  const newCa = (name: string): { ca: string; caKey: string } => {
    const caKey = join(dir, `${name}.key`);
    const ca = join(dir, `${name}.pem`);
    openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", caKey], dir);
    openssl(["req", "-x509", "-new", "-key", caKey, "-sha256", "-days", "30", "-subj", `/CN=${name}`, "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", ca], dir);
    return { ca, caKey };
  };
  const root = newCa("plugwire-test-ca");
  let serial = 1;
  const issue: Pki["issue"] = (name, options) => {
    const signer = options.ca ?? root;
    const key = join(dir, `${name}.key`);
    const csr = join(dir, `${name}.csr`);
    const cert = join(dir, `${name}.pem`);
    const ext = join(dir, `${name}.ext`);
    openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key], dir);
    openssl(["req", "-new", "-key", key, "-subj", `/CN=${options.cn}`, "-out", csr], dir);
    const san = (options.san ?? []).map((s) => (/^[0-9.]+$|:/.test(s) ? `IP:${s}` : `DNS:${s}`)).join(",");
    const lines = [
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature,keyEncipherment",
      `extendedKeyUsage=${options.usage === "both" ? "serverAuth,clientAuth" : options.usage === "server" ? "serverAuth" : "clientAuth"}`,
      ...(san ? [`subjectAltName=${san}`] : []),
    ];
    writeFileSync(ext, `${lines.join("\n")}\n`);
    if (!options.expired) {
      openssl(["x509", "-req", "-in", csr, "-CA", signer.ca, "-CAkey", signer.caKey, "-set_serial", String(serial++), "-days", "30", "-sha256", "-extfile", ext, "-out", cert], dir);
      return { cert, key };
    }
    // `openssl ca` is the CLI's way to dates in the past.
    const caDir = join(dir, `ca-${name}`);
    mkdirSync(join(caDir, "new"), { recursive: true });
    writeFileSync(join(caDir, "index.txt"), "");
    writeFileSync(join(caDir, "serial"), `${(1000 + serial++).toString(16).padStart(4, "0")}\n`);
    const config = join(caDir, "ca.cnf");
    writeFileSync(
      config,
      [
        "[ca]",
        "default_ca = test",
        "[test]",
        `dir = ${caDir}`,
        "database = $dir/index.txt",
        "serial = $dir/serial",
        "new_certs_dir = $dir/new",
        "default_md = sha256",
        "policy = any",
        "unique_subject = no",
        "copy_extensions = none",
        "[any]",
        "commonName = supplied",
        "",
      ].join("\n"),
    );
    openssl(
      ["ca", "-batch", "-config", config, "-cert", signer.ca, "-keyfile", signer.caKey, "-in", csr, "-out", cert, "-startdate", "20200101000000Z", "-enddate", "20200201000000Z", "-extfile", ext, "-notext"],
      dir,
    );
    return { cert, key };
  };
  return { dir, ca: root.ca, caKey: root.caKey, issue, newCa };
}
