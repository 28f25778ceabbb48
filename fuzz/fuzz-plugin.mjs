#!/usr/bin/env node
// The plugin the HostService fuzzer's host runs. It claims `fz.hold` and
// holds each payload for `holdMs` (config), so some seqs are always in flight
// and SendRouted origins can name them. It appends its launch's token to
// `tokenFile` (config), a fallback for hosts whose token map is not visible.
import { appendFileSync } from "node:fs";
import { definePlugin, serve } from "@plugwire/sdk";

let holdMs = 100;

void serve(
  definePlugin({
    name: process.env.PLUGWIRE_PLUGIN_NAME ?? "fz",
    payloadKinds: [`${process.env.PLUGWIRE_PLUGIN_NAME ?? "fz"}.hold`],
    async start(ctx) {
      holdMs = Number(ctx.config.holdMs ?? 100);
      if (typeof ctx.config.tokenFile === "string") {
        appendFileSync(ctx.config.tokenFile, `${JSON.stringify({ name: ctx.name, instanceId: ctx.instanceId, token: process.env.PLUGWIRE_AUTH_TOKEN ?? null })}\n`);
      }
    },
    async handlePayload() {
      await new Promise((resolve) => setTimeout(resolve, holdMs));
    },
  }),
);
