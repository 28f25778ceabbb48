/** A plugin's handshake address → typed clients of its PluginService and Health. */
import { PluginService, connect, health } from "@plugwire/proto";
import type { Handshake } from "./handshake-line.js";

export function targetOf(handshake: Handshake): string {
  return handshake.network === "unix" ? `unix://${handshake.address}` : handshake.address;
}

/** Dials a plugin: its PluginService and its health service, with the launch's token. */
export function dialPlugin(handshake: Handshake, token: string, pluginName: string) {
  const target = targetOf(handshake);
  const plugin = connect(PluginService, target, { token, plugin: pluginName });
  // One connection for both: a plugin serves only its host's (docs/protocol.md §6.3).
  const healthConn = connect(health.Health, target, { token, plugin: pluginName, shareWith: plugin });
  return {
    plugin: plugin.client,
    health: healthConn.client,
    close(): void {
      plugin.close();
      healthConn.close();
    },
  };
}

export type DialedPlugin = ReturnType<typeof dialPlugin>;
