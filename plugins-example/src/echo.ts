#!/usr/bin/env node
// echo: answers every `echo.ping` payload with a `pong:` frame sent back to
// its source. The send rides on the payload's ack, so it happens exactly once.
import { definePlugin, serve } from "@plugwire/sdk";

const PONG = new TextEncoder().encode("pong:");

export const echo = definePlugin({
  name: "echo",
  payloadKinds: ["echo.ping"],
  async handlePayload(payload, ctx) {
    const frame = new Uint8Array(PONG.length + payload.body.length);
    frame.set(PONG);
    frame.set(payload.body, PONG.length);
    await ctx.control.sendDirect(payload.src, frame);
  },
});

void serve(echo);
