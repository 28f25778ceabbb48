#!/usr/bin/env node
// Validates deploy/kubernetes offline, without a cluster or schema downloads.
// No schema validator with bundled Kubernetes schemas is obtainable from the
// registries this project can reach (kubeconform is a Go module, but it
// fetches its JSON schemas from the network at run time), so this script
// parses every manifest and checks the fields the guide (docs/remote-plugins.md)
// relies on:
//   - every document has apiVersion, kind, metadata.name and namespace plugwire,
//     of a kind/apiVersion pair listed below; names are unique per kind;
//   - kustomization.yaml lists exactly the manifests there are (besides plain-secrets/);
//   - Deployments: selector matches the template labels; containers have an image;
//     each volumeMount names a volume; each Secret volume is written by a
//     cert-manager Certificate (and by plain-secrets/make-secrets.sh); each PVC
//     and ConfigMap volume exists; a TLS Secret volume is never mounted with
//     subPath (rotation needs the files to update in place);
//   - plugins: PLUGWIRE_LISTEN / PLUGWIRE_HEALTH_LISTEN ports are containerPorts,
//     the TLS env files lie under the TLS mount, readiness and liveness probes are
//     grpc on the health port (never the mutual-TLS one); a Service selects the
//     Deployment and targets its plugwire port;
//   - the host: one replica, Recreate, the PVC mounted at the config's dataDir;
//     its plugwire.yaml passes the host's own config loader, and each attach
//     entry names a Service and port that exist, a serverName the plugin's
//     Certificate carries, and TLS files under the host's TLS mount;
//   - every Dockerfile under deploy/docker has FROM and ENTRYPOINT, and the
//     images the manifests use have one.
// Exits 1 listing every problem.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

const repo = join(fileURLToPath(new URL(".", import.meta.url)), "..");
const root = join(repo, "deploy", "kubernetes");
const problems = [];
const problem = (where, what) => problems.push(`${where}: ${what}`);

const KINDS = {
  Namespace: "v1",
  Service: "v1",
  ConfigMap: "v1",
  Secret: "v1",
  PersistentVolumeClaim: "v1",
  Deployment: "apps/v1",
  Certificate: "cert-manager.io/v1",
  Issuer: "cert-manager.io/v1",
};

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith(".yaml") ? [join(dir, e.name)] : []));
}

const docs = [];
for (const file of walk(root)) {
  const rel = relative(root, file);
  if (rel === "kustomization.yaml") continue;
  const parsed = parseAllDocuments(readFileSync(file, "utf8"));
  for (const [i, doc] of parsed.entries()) {
    if (doc.errors.length) {
      problem(`${rel}#${i}`, `not valid YAML: ${doc.errors[0].message}`);
      continue;
    }
    const o = doc.toJS();
    if (o === null || o === undefined) continue;
    docs.push({ file: rel, where: `${rel} ${o.kind ?? "?"}/${o.metadata?.name ?? "?"}`, o });
  }
}

const byKind = (kind) => docs.filter((d) => d.o.kind === kind);
const seen = new Set();
for (const { where, o, file } of docs) {
  if (!KINDS[o.kind]) problem(where, `kind ${o.kind} is not one the guide uses (${Object.keys(KINDS).join(", ")})`);
  else if (o.apiVersion !== KINDS[o.kind]) problem(where, `apiVersion must be ${KINDS[o.kind]}, not ${o.apiVersion}`);
  if (!o.metadata?.name) problem(where, "metadata.name is missing");
  if (o.kind !== "Namespace" && o.metadata?.namespace !== "plugwire") problem(where, "metadata.namespace must be plugwire");
  const key = `${o.kind}/${o.metadata?.name}/${file.startsWith("plain-secrets/") ? "plain" : "main"}`;
  if (seen.has(key)) problem(where, "a second object of this kind and name");
  seen.add(key);
}

// kustomization.yaml lists every manifest but the plain-Secret alternative.
const kustomization = parseAllDocuments(readFileSync(join(root, "kustomization.yaml"), "utf8"))[0].toJS();
const listed = new Set(kustomization.resources ?? []);
const files = new Set(walk(root).map((f) => relative(root, f)).filter((f) => f !== "kustomization.yaml" && !f.startsWith("plain-secrets/")));
for (const f of files) if (!listed.has(f)) problem("kustomization.yaml", `does not list ${f}`);
for (const f of listed) if (!files.has(f)) problem("kustomization.yaml", `lists ${f}, which does not exist`);

// Secrets the manifests can rely on: cert-manager's, and make-secrets.sh's.
const certificates = byKind("Certificate");
const certSecrets = new Map(certificates.map((c) => [c.o.spec?.secretName, c.o.spec]));
const makeSecrets = readFileSync(join(root, "plain-secrets", "make-secrets.sh"), "utf8");
const pvcs = new Set(byKind("PersistentVolumeClaim").map((d) => d.o.metadata.name));
const configMaps = new Map(byKind("ConfigMap").map((d) => [d.o.metadata.name, d.o]));
for (const c of certificates) {
  if (!c.o.spec?.secretName) problem(c.where, "spec.secretName is missing");
  if (!c.o.spec?.issuerRef?.name) problem(c.where, "spec.issuerRef.name is missing");
  else if (!byKind("Issuer").some((i) => i.o.metadata.name === c.o.spec.issuerRef.name)) problem(c.where, `issuer ${c.o.spec.issuerRef.name} does not exist`);
}

const portOf = (value, what, where) => {
  const m = /^tcp:\/\/[^:]+:(\d+)$/.exec(value ?? "");
  if (!m) problem(where, `${what}=${value} is not tcp://HOST:PORT`);
  return m ? Number(m[1]) : undefined;
};

const deployments = byKind("Deployment");
const services = byKind("Service");
const plugins = new Map(); // service name -> { port, dnsNames }
for (const d of deployments) {
  const { where } = d;
  const spec = d.o.spec ?? {};
  const labels = spec.template?.metadata?.labels ?? {};
  const selector = spec.selector?.matchLabels ?? {};
  if (Object.keys(selector).length === 0) problem(where, "spec.selector.matchLabels is empty");
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) problem(where, `selector ${k}=${v} does not match the template's labels`);
  const pod = spec.template?.spec ?? {};
  const volumes = new Map((pod.volumes ?? []).map((v) => [v.name, v]));
  for (const v of volumes.values()) {
    if (v.secret && !certSecrets.has(v.secret.secretName)) problem(where, `volume ${v.name}: Secret ${v.secret.secretName} is made by no Certificate`);
    if (v.secret && !makeSecrets.includes(v.secret.secretName.replace(/^plugwire-(.*)-tls$/, "$1")) && !makeSecrets.includes(v.secret.secretName)) {
      problem(where, `volume ${v.name}: plain-secrets/make-secrets.sh does not make Secret ${v.secret.secretName}`);
    }
    if (v.persistentVolumeClaim && !pvcs.has(v.persistentVolumeClaim.claimName)) problem(where, `volume ${v.name}: PVC ${v.persistentVolumeClaim.claimName} does not exist`);
    if (v.configMap && !configMaps.has(v.configMap.name)) problem(where, `volume ${v.name}: ConfigMap ${v.configMap.name} does not exist`);
  }
  for (const c of pod.containers ?? []) {
    if (!c.image) problem(where, `container ${c.name} has no image`);
    const mounts = c.volumeMounts ?? [];
    for (const m of mounts) {
      const volume = volumes.get(m.name);
      if (!volume) problem(where, `mount ${m.mountPath} names volume ${m.name}, which the pod does not have`);
      else if (volume.secret && m.subPath) problem(where, `the TLS Secret ${volume.secret.secretName} is mounted with subPath: its renewed files would never appear in the pod`);
    }
    const tlsMount = mounts.find((m) => volumes.get(m.name)?.secret)?.mountPath;
    const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));
    const ports = new Map((c.ports ?? []).map((p) => [p.containerPort, p]));
    const portNames = new Map((c.ports ?? []).map((p) => [p.name, p.containerPort]));
    if (env.PLUGWIRE_LISTEN) {
      const listen = portOf(env.PLUGWIRE_LISTEN, "PLUGWIRE_LISTEN", where);
      const healthPort = portOf(env.PLUGWIRE_HEALTH_LISTEN, "PLUGWIRE_HEALTH_LISTEN", where);
      if (listen !== undefined && !ports.has(listen)) problem(where, `PLUGWIRE_LISTEN port ${listen} is not a containerPort`);
      if (healthPort !== undefined && !ports.has(healthPort)) problem(where, `PLUGWIRE_HEALTH_LISTEN port ${healthPort} is not a containerPort`);
      for (const name of ["PLUGWIRE_TLS_CERT", "PLUGWIRE_TLS_KEY", "PLUGWIRE_TLS_CLIENT_CA"]) {
        if (!env[name]) problem(where, `${name} is not set: attach mode needs mutual TLS`);
        else if (!tlsMount || !env[name].startsWith(`${tlsMount}/`)) problem(where, `${name}=${env[name]} is not under the TLS Secret's mount (${tlsMount ?? "none"})`);
      }
      for (const probe of ["readinessProbe", "livenessProbe"]) {
        const p = c[probe];
        if (!p?.grpc) problem(where, `${probe} must be a grpc probe (grpc.health.v1)`);
        else {
          const port = typeof p.grpc.port === "string" ? portNames.get(p.grpc.port) : p.grpc.port;
          if (port !== healthPort) problem(where, `${probe} probes port ${p.grpc.port}, not the health-only port ${healthPort}: the kubelet cannot present a client certificate`);
        }
      }
      const name = d.o.metadata.name;
      const service = services.find((s) => Object.entries(s.o.spec?.selector ?? {}).every(([k, v]) => labels[k] === v) && Object.keys(s.o.spec?.selector ?? {}).length > 0);
      if (!service) problem(where, "no Service selects this plugin's pods");
      else {
        const sp = (service.o.spec.ports ?? []).find((p) => (typeof p.targetPort === "string" ? portNames.get(p.targetPort) : p.targetPort) === listen);
        if (!sp) problem(service.where, `no port targets the plugin's PLUGWIRE_LISTEN port ${listen}`);
        const tls = volumes.get(mounts.find((m) => m.mountPath === tlsMount)?.name)?.secret?.secretName;
        plugins.set(service.o.metadata.name, { port: sp?.port, dnsNames: certSecrets.get(tls)?.dnsNames ?? [], deployment: name, usages: certSecrets.get(tls)?.usages ?? [], hostAddress: env.PLUGWIRE_HOST_ADDRESS });
        if (env.PLUGWIRE_HOST_ADDRESS && !(certSecrets.get(tls)?.usages ?? []).includes("client auth")) problem(where, `it calls HostService, but its Certificate (Secret ${tls}) lacks usage 'client auth'`);
        if (!(certSecrets.get(tls)?.usages ?? []).includes("server auth")) problem(where, `its Certificate (Secret ${tls}) lacks usage 'server auth'`);
      }
    }
  }
}

// The host: its Deployment, PVC, and config.
const host = deployments.find((d) => d.o.metadata.name === "plugwire-host");
if (!host) problem("host/deployment.yaml", "no Deployment plugwire-host");
else {
  if (host.o.spec.replicas !== 1) problem(host.where, "replicas must be 1: one host owns the snapshot store");
  if (host.o.spec.strategy?.type !== "Recreate") problem(host.where, "strategy must be Recreate: two hosts must never share the store");
  const pod = host.o.spec.template.spec;
  const c = pod.containers[0];
  const volumes = new Map(pod.volumes.map((v) => [v.name, v]));
  const mountOf = (pred) => c.volumeMounts.find((m) => pred(volumes.get(m.name)));
  const dataMount = mountOf((v) => v?.persistentVolumeClaim)?.mountPath;
  const tlsMount = mountOf((v) => v?.secret)?.mountPath;
  const configMount = mountOf((v) => v?.configMap);
  const cm = configMaps.get(volumes.get(configMount?.name)?.configMap?.name);
  const text = cm?.data?.[configMount?.subPath ?? "plugwire.yaml"];
  if (!text) problem(host.where, "its config (plugwire.yaml from the ConfigMap) is not mounted");
  else {
    const { loadConfigFile } = await import(join(repo, "host", "dist", "src", "cli", "config-file.js"));
    const dir = mkdtempSync(join(tmpdir(), "pw-k8s-"));
    try {
      writeFileSync(join(dir, "plugwire.yaml"), text);
      const config = loadConfigFile(join(dir, "plugwire.yaml"));
      if (config.dataDir !== dataMount) problem(host.where, `the config's dataDir ${config.dataDir} is not the PVC's mount ${dataMount}`);
      const { resolvePlugins } = await import(join(repo, "host", "dist", "src", "config.js"));
      for (const p of resolvePlugins(config.plugins)) {
        if (!p.attach) continue;
        const where = `host/configmap.yaml plugin ${p.name}`;
        const m = /^([a-z0-9-]+)\.plugwire\.svc$/.exec(p.attach.tcp.host);
        const target = m && plugins.get(m[1]);
        if (!target) problem(where, `attach.address ${p.attach.address} names no plugin Service of this namespace`);
        else {
          if (target.port !== p.attach.tcp.port) problem(where, `attach.address port ${p.attach.tcp.port} is not the Service's port ${target.port}`);
          if (!target.dnsNames.includes(p.attach.serverName)) problem(where, `serverName ${p.attach.serverName} is not among the plugin certificate's dnsNames (${target.dnsNames.join(", ")})`);
        }
        if (!p.attach.tls) problem(where, "attach has no tls");
        else for (const f of ["ca", "cert", "key"]) if (!p.attach.tls[f].startsWith(`${tlsMount}/`)) problem(where, `attach.tls.${f} ${p.attach.tls[f]} is not under the host's TLS mount ${tlsMount}`);
      }
      const client = certSecrets.get(volumes.get(mountOf((v) => v?.secret)?.name)?.secret?.secretName);
      if (!(client?.usages ?? []).includes("client auth")) problem(host.where, "the host's Certificate lacks usage 'client auth'");
      // Plugins that call HostService: the host serves it (remoteHostService) behind a Service they name.
      const callers = [...plugins.entries()].filter(([, p]) => p.hostAddress);
      if (callers.length > 0) {
        const r = config.remoteHostService;
        if (!r) problem("host/configmap.yaml", `${callers.map(([n]) => n).join(", ")} set PLUGWIRE_HOST_ADDRESS, but the host has no remoteHostService`);
        else {
          const listenPort = Number(/:(\d+)$/.exec(r.listen)?.[1]);
          const hostPorts = new Map((c.ports ?? []).map((p) => [p.name, p.containerPort]));
          if (![...hostPorts.values()].includes(listenPort)) problem(host.where, `remoteHostService listens on ${listenPort}, which is not a containerPort`);
          if (!r.tls) problem("host/configmap.yaml", "remoteHostService has no tls");
          else for (const f of ["ca", "cert", "key"]) if (!r.tls[f].startsWith(`${tlsMount}/`)) problem("host/configmap.yaml", `remoteHostService.tls.${f} is not under the host's TLS mount ${tlsMount}`);
          if (!(client?.usages ?? []).includes("server auth")) problem(host.where, "the host serves HostService, but its Certificate lacks usage 'server auth'");
          for (const [name, p] of callers) {
            const m = /^tcp:\/\/([a-z0-9-]+)\.plugwire\.svc:(\d+)$/.exec(p.hostAddress);
            const svc = m && services.find((s) => s.o.metadata.name === m[1]);
            if (!svc) problem(`plugin ${name}`, `PLUGWIRE_HOST_ADDRESS ${p.hostAddress} names no Service of this namespace`);
            else {
              const sp = (svc.o.spec.ports ?? []).find((x) => x.port === Number(m[2]));
              const target = sp && (typeof sp.targetPort === "string" ? hostPorts.get(sp.targetPort) : sp.targetPort);
              if (target !== listenPort) problem(`plugin ${name}`, `PLUGWIRE_HOST_ADDRESS ${p.hostAddress} does not reach the host's remoteHostService port ${listenPort}`);
              if (!(client?.dnsNames ?? []).includes(`${m[1]}.plugwire.svc`)) problem(`plugin ${name}`, `the host's Certificate does not carry ${m[1]}.plugwire.svc, the name the plugin dials`);
            }
          }
        }
      }
    } catch (e) {
      problem("host/configmap.yaml", `plugwire.yaml does not load: ${e.message}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

// Dockerfiles: one per image the manifests use.
const dockerDir = join(repo, "deploy", "docker");
for (const f of readdirSync(dockerDir).filter((n) => n.endsWith(".Dockerfile"))) {
  const text = readFileSync(join(dockerDir, f), "utf8");
  if (!/^FROM /m.test(text)) problem(`deploy/docker/${f}`, "no FROM");
  if (!/^ENTRYPOINT /m.test(text)) problem(`deploy/docker/${f}`, "no ENTRYPOINT");
}
for (const d of deployments) {
  for (const c of d.o.spec.template.spec.containers) {
    const name = /^plugwire\/([a-z0-9-]+):/.exec(c.image ?? "")?.[1];
    if (!name || !existsSync(join(dockerDir, `${name}.Dockerfile`))) problem(d.where, `image ${c.image} has no deploy/docker/<name>.Dockerfile`);
  }
}

if (problems.length > 0) {
  console.error(`deploy/kubernetes: ${problems.length} problem(s):\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
console.log(`deploy/kubernetes: ${docs.length} objects in ${new Set(docs.map((d) => d.file)).size} files valid (offline structural check, scripts/validate-k8s.mjs)`);
