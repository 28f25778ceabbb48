/** Small helpers shared by the checks: timeouts, gRPC status names, formatting. */
import * as grpc from "@grpc/grpc-js";
import { CheckFailure } from "./types.js";

/** Resolves like `promise`, or rejects with a CheckFailure after `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CheckFailure(`${what} did not happen within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The gRPC status code of a failed call, whether raw or wrapped in a PlugwireError. */
export function grpcCodeOf(e: unknown): grpc.status | undefined {
  for (let cur: unknown = e, depth = 0; cur instanceof Error && depth < 4; cur = cur.cause, depth++) {
    const code = (cur as Partial<grpc.ServiceError>).code;
    if (typeof code === "number") return code;
  }
  return undefined;
}

/** "UNAUTHENTICATED", "OK", … for a status code. */
export function statusName(code: grpc.status | undefined): string {
  return code === undefined ? "no gRPC status" : (grpc.status[code] ?? String(code));
}

export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** A call's failure as "STATUS: message". */
export function describeFailure(e: unknown): string {
  return `${statusName(grpcCodeOf(e))}: ${messageOf(e)}`;
}

/** Milliseconds, rounded for humans. */
export function ms(value: number): string {
  return `${Math.round(value)} ms`;
}

/** A value quoted and cut to `max` characters, for one-line details. */
export function quote(text: string, max = 120): string {
  const one = text.replace(/\s+/g, " ").trim();
  return JSON.stringify(one.length > max ? `${one.slice(0, max - 1)}…` : one);
}
