/** A typed client of a running host's admin API. */
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { admin } from "@plugwire/proto";

export type AdminClient = Client<typeof admin.AdminService>;

export interface AdminClientOptions {
  /** The admin bearer token (see loadOrCreateAdminToken); sent as `authorization: Bearer <token>`. */
  token?: string;
  /** For an https:// address: the CA to trust, and the client certificate and key when the port requires them. */
  tls?: { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer };
}

/** Connects to an admin API at a unix socket path or an http(s)://HOST:PORT URL. */
export function adminClient(address: string, options: AdminClientOptions = {}): AdminClient {
  const interceptors: Interceptor[] = [];
  const { token } = options;
  if (token !== undefined) {
    interceptors.push((next) => (req) => {
      req.header.set("authorization", `Bearer ${token}`);
      return next(req);
    });
  }
  let transport;
  if (address.startsWith("https://")) {
    transport = createConnectTransport({ baseUrl: address, httpVersion: "1.1", interceptors, nodeOptions: { ...options.tls } });
  } else if (address.startsWith("http://")) {
    transport = createConnectTransport({ baseUrl: address, httpVersion: "1.1", interceptors });
  } else {
    transport = createConnectTransport({ baseUrl: "http://localhost", httpVersion: "1.1", interceptors, nodeOptions: { socketPath: address } });
  }
  return createClient(admin.AdminService, transport);
}
