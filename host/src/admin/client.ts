/** A typed client of a running host's admin API. */
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { admin } from "@plugwire/proto";

export type AdminClient = Client<typeof admin.AdminService>;

/** Connects to an admin API at a unix socket path or an http://127.0.0.1:PORT URL. */
export function adminClient(address: string): AdminClient {
  const transport = address.startsWith("http://")
    ? createConnectTransport({ baseUrl: address, httpVersion: "1.1" })
    : createConnectTransport({ baseUrl: "http://localhost", httpVersion: "1.1", nodeOptions: { socketPath: address } });
  return createClient(admin.AdminService, transport);
}
