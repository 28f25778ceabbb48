/**
 * Limits on what a plugin describes itself as, and on the text a plugin
 * sends the host (docs/protocol.md §13). The host refuses a `Describe` that
 * breaks them; the TS SDK refuses to serve such a definition at all.
 */

/** A plugin name (configured, or returned by Describe): 1-64 of these characters. */
export const PLUGIN_NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
/** Payload kinds one plugin may claim, at most. */
export const MAX_PAYLOAD_KINDS = 1024;
/** Longest payload kind, in characters (all of them ASCII). */
export const MAX_PAYLOAD_KIND_LENGTH = 128;
/** A payload kind: printable ASCII without spaces (0x21-0x7E), 1 to MAX_PAYLOAD_KIND_LENGTH characters. */
export const PAYLOAD_KIND_PATTERN = /^[\x21-\x7e]{1,128}$/;
/** Longest stateful id, in characters; the same characters as a kind. */
export const MAX_STATEFUL_ID_LENGTH = 128;
/** Snapshot versions one plugin may list, at most. */
export const MAX_SNAPSHOT_VERSIONS = 64;
/** Longest `sdk.language` / `sdk.version` of Describe kept; longer ones are cut (they are diagnostics). */
export const MAX_SDK_FIELD_LENGTH = 64;
/** Largest plugin config handed over in Start (`config_json`, UTF-8 bytes). */
export const MAX_PLUGIN_CONFIG_BYTES = 1024 * 1024;
/** Error texts a plugin sends (status details, ErrorDetail fields, handler errors) are cut to this many UTF-8 bytes. */
export const MAX_ERROR_TEXT_BYTES = 4096;

/** What a Describe answer (or an SDK definition) says about itself, as far as the limits go. */
export interface DescribedSurface {
  name: string;
  payloadKinds: readonly string[];
  stateful?: { id: string; snapshotVersions: readonly number[] } | undefined;
}

/** A printable, quoted and bounded rendering of a string a plugin sent, for error messages. */
export function quote(text: string, max = 80): string {
  const cut = text.length > max ? `${text.slice(0, max)}…` : text;
  return `${JSON.stringify(cut)}${text.length > max ? ` (${text.length} characters)` : ""}`;
}

/**
 * Every way `d` breaks the limits above, for a human ("payload kind #3
 * \"a\\u0000b\" has a control character"). At most `maxProblems` are listed,
 * with a count of the rest. Empty when `d` is valid.
 */
export function describeProblems(d: DescribedSurface, maxProblems = 5): string[] {
  const problems: string[] = [];
  if (!PLUGIN_NAME_PATTERN.test(d.name)) problems.push(`its name ${quote(d.name)} is not 1-64 characters of [A-Za-z0-9._-]`);
  if (d.payloadKinds.length > MAX_PAYLOAD_KINDS) {
    problems.push(`it claims ${d.payloadKinds.length} payload kinds; at most ${MAX_PAYLOAD_KINDS} are allowed`);
  } else {
    const seen = new Set<string>();
    const bad: string[] = [];
    d.payloadKinds.forEach((kind, i) => {
      const what = kindProblem(kind);
      if (what) bad.push(`payload kind #${i + 1} ${quote(kind)} ${what}`);
      else if (seen.has(kind)) bad.push(`payload kind ${quote(kind)} is listed twice`);
      seen.add(kind);
    });
    problems.push(...bad);
  }
  if (d.stateful) {
    const id = d.stateful.id;
    if (id.length === 0) problems.push("its stateful id is empty");
    else if (id.length > MAX_STATEFUL_ID_LENGTH || !/^[\x21-\x7e]+$/.test(id)) {
      problems.push(`its stateful id ${quote(id)} is not 1-${MAX_STATEFUL_ID_LENGTH} printable ASCII characters without spaces`);
    }
    const versions = d.stateful.snapshotVersions;
    if (versions.length === 0) problems.push("it is stateful but lists no snapshot versions");
    if (versions.length > MAX_SNAPSHOT_VERSIONS) problems.push(`it lists ${versions.length} snapshot versions; at most ${MAX_SNAPSHOT_VERSIONS} are allowed`);
    else if (new Set(versions).size !== versions.length) problems.push(`its snapshot versions ${versions.join(", ")} list one twice`);
  }
  if (problems.length <= maxProblems) return problems;
  return [...problems.slice(0, maxProblems), `and ${problems.length - maxProblems} more`];
}

/** Why `kind` is not a valid payload kind, or undefined. */
export function kindProblem(kind: string): string | undefined {
  if (kind.length === 0) return "is empty";
  if (kind.length > MAX_PAYLOAD_KIND_LENGTH) return `is longer than ${MAX_PAYLOAD_KIND_LENGTH} characters`;
  if (PAYLOAD_KIND_PATTERN.test(kind)) return undefined;
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(kind)) return "has a control character";
  if (/\s/.test(kind)) return "has a space";
  return "has a character outside printable ASCII";
}

/**
 * `text` cut on a character boundary and marked `…(truncated, N bytes)`
 * (N: its original UTF-8 size) so that the result is at most `maxBytes`
 * UTF-8 bytes, marker included; unchanged when it fits. Cutting a cut text
 * again is a no-op.
 */
export function truncateText(text: string, maxBytes = MAX_ERROR_TEXT_BYTES): string {
  // Cheap test first: a string of n UTF-16 units has at most 3n UTF-8 bytes.
  if (text.length * 3 <= maxBytes) return text;
  const bytes = Buffer.byteLength(text, "utf8");
  if (bytes <= maxBytes) return text;
  const marker = `…(truncated, ${bytes} bytes)`;
  const room = Math.max(0, maxBytes - Buffer.byteLength(marker, "utf8"));
  let cut = Buffer.from(text.slice(0, room), "utf8").subarray(0, room).toString("utf8");
  // A character split by the byte cut decodes as U+FFFD at the end: drop it.
  if (cut.endsWith("\uFFFD") && !text.startsWith(cut)) cut = cut.slice(0, -1);
  return `${cut}${marker}`;
}
