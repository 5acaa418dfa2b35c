// The Apollo Client set-up a frontend uses against this backend, in Node: the same links and
// cache policies as the Next.js app, with a cookie jar standing in for the browser's.
//
// - HTTP: apollo-upload-client's UploadHttpLink (GraphQL multipart request spec for files, GET for
//   queries so the first call brings the CSRF token), credentials included, X-CSRFToken sent on
//   every POST, taken from the response header CORS exposes to the frontend's origin.
// - Websocket: GraphQLWsLink over graphql-ws (graphql-transport-ws), authenticated by the
//   session cookie or by `connectionParams: { authorization: "Bearer <token>" }`.
// - Persisted queries: Apollo's PersistedQueryLink sends each operation's SHA-256 first (GET for
//   queries); the app's own operations carry the hash graphql-codegen gave them (the server knows
//   them from persisted-documents.json), any other is sent with its text once when the server asks.
// - Cache: InMemoryCache with the generated possibleTypes (unions and interfaces) and
//   relayStylePagination for the cursor connections.
import { ApolloClient, ApolloLink, InMemoryCache } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { getMainDefinition, relayStylePagination } from "@apollo/client/utilities";
import UploadHttpLink from "apollo-upload-client/UploadHttpLink.mjs";
import { createClient, type Client as WsClient } from "graphql-ws";
import { print, type DocumentNode } from "graphql";
import { createHash } from "node:crypto";
import WebSocket from "ws";

import possibleTypesResult from "./generated/possible-types.js";

const { possibleTypes } = possibleTypesResult;

/** What a browser keeps for one site: name=value pairs from Set-Cookie. */
export class CookieJar {
  private readonly cookies = new Map<string, string>();

  get(name: string): string | undefined {
    return this.cookies.get(name);
  }

  header(): string {
    return [...this.cookies].map(([name, value]) => `${name}=${value}`).join("; ");
  }

  store(response: Response): void {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(";");
      const eq = pair.indexOf("=");
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attributes.some((attribute) => {
        const [key, raw = ""] = attribute.split("=");
        const k = key.trim().toLowerCase();
        return (k === "max-age" && Number(raw) <= 0) || (k === "expires" && Date.parse(raw) < Date.now());
      });
      if (expired || value === "" || value === '""') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }
}

export interface BackendClientOptions {
  /** http(s)://host:port/graphql/ */
  url: string;
  /** The frontend's origin, sent as a browser would on cross-origin calls. */
  origin?: string;
  /** An API token: sent as `Authorization: Bearer` on HTTP and in `connection_init`. */
  token?: string;
  jar?: CookieJar;
  /**
   * Apollo's persisted queries: "apq" (the default) hashes each document as sent and registers
   * unknown ones; "trusted" sends the hash graphql-codegen gave the app's own operations, for a
   * server that knows them (GRAPHQL_PERSISTED_DOCUMENTS, and GRAPHQL_TRUSTED_DOCUMENTS_ONLY); false: off.
   */
  persistedQueries?: "apq" | "trusted" | false;
}

export interface BackendClient {
  apollo: ApolloClient;
  jar: CookieJar;
  ws: WsClient;
  /** The fetch the links use (cookies, CSRF, Origin and CORS, bearer token). */
  fetch: typeof fetch;
  /** Breaks the open websocket as a lost network does (no closing handshake: code 1006). */
  dropConnection(): boolean;
  close(): Promise<void>;
}

export function createCache(): InMemoryCache {
  return new InMemoryCache({
    possibleTypes,
    typePolicies: {
      Query: {
        fields: {
          chats: relayStylePagination(["search", "archived"]),
          documents: relayStylePagination([
            "collectionId",
            "status",
            "fileType",
            "tags",
            "createdAfter",
            "createdBefore",
            "titleContains",
            "orderBy",
          ]),
          collections: relayStylePagination(),
          recipes: relayStylePagination(["scope", "category", "tag", "text"]),
          aiPresets: relayStylePagination(),
          apiTokens: relayStylePagination(),
        },
      },
      Chat: { fields: { messages: relayStylePagination() } },
      Document: { fields: { chunks: relayStylePagination() } },
      // Metadata is a JSON scalar: replaced whole. Settings, traces, citations and search hits have
      // no id of their own: they live inside their parents (settings merged field by field).
      ChatSettings: { keyFields: false, merge: true },
      RagSettings: { keyFields: false, merge: true },
      RetrievalTrace: { keyFields: false },
      Citation: { keyFields: false },
      SearchHit: { keyFields: false },
    },
  });
}

export function createBackendClient(options: BackendClientOptions): BackendClient {
  const jar = options.jar ?? new CookieJar();

  // What a browser page on `origin` may do: send cookies with `credentials: "include"`, read a
  // response only when CORS allows its origin with credentials, and read only exposed headers.
  // It cannot read this host's cookies, so the CSRF token comes from the X-CSRFToken header.
  let csrfToken: string | undefined;
  const browserFetch: typeof fetch = async (input, init = {}) => {
    const headers = new Headers(init.headers);
    const cookie = jar.header();
    if (cookie) headers.set("Cookie", cookie);
    if (options.origin) headers.set("Origin", options.origin);
    const method = (init.method ?? "GET").toUpperCase();
    if (method !== "GET" && csrfToken) headers.set("X-CSRFToken", csrfToken);
    if (options.token) headers.set("Authorization", `Bearer ${options.token}`);
    const response = await fetch(input, { ...init, headers });
    jar.store(response);
    if (options.origin) {
      const allowed = response.headers.get("access-control-allow-origin");
      const credentials = response.headers.get("access-control-allow-credentials");
      if (allowed !== options.origin || credentials !== "true") {
        throw new TypeError(`CORS: ${options.origin} may not read this response (allow-origin ${allowed})`);
      }
    }
    const exposed = (response.headers.get("access-control-expose-headers") ?? "").toLowerCase();
    if (!options.origin || exposed.split(/\s*,\s*/).includes("x-csrftoken")) {
      csrfToken = response.headers.get("x-csrftoken") ?? csrfToken;
    }
    return response;
  };

  const httpLink = new UploadHttpLink({
    uri: options.url,
    useGETForQueries: true,
    credentials: "include",
    fetch: browserFetch,
  });

  // Trusted: the hash graphql-codegen embedded (__meta__.hash); else the SHA-256 of the document
  // as sent (Apollo's protocol: the server checks the text it is sent against it).
  const mode = options.persistedQueries ?? "apq";
  const persisted = new PersistedQueryLink({
    generateHash: (document: DocumentNode) =>
      (mode === "trusted" ? (document as { __meta__?: { hash?: string } }).__meta__?.hash : undefined) ??
      createHash("sha256").update(print(document)).digest("hex"),
    useGETForHashedQueries: true,
  });

  const wsUrl = options.url.replace(/^http/, "ws");
  const origin = options.origin;
  // The `ws` package's constructor takes headers; a browser sends the cookie and Origin itself.
  class BrowserLikeWebSocket extends WebSocket {
    constructor(address: string, protocols?: string | string[]) {
      const headers: Record<string, string> = {};
      const cookie = jar.header();
      if (cookie) headers.Cookie = cookie;
      if (origin) headers.Origin = origin;
      super(address, protocols, { headers });
    }
  }
  let socket: WebSocket | undefined;
  const ws = createClient({
    url: wsUrl,
    on: { connected: (opened) => (socket = opened as WebSocket), closed: () => (socket = undefined) },
    webSocketImpl: BrowserLikeWebSocket,
    lazy: true,
    // graphql-ws's default: a dropped socket is opened again and its subscriptions sent again.
    // chatStream's clientMessageId makes that resend follow the same answer, not ask twice.
    retryAttempts: 5,
    connectionParams: () => (options.token ? { authorization: `Bearer ${options.token}` } : {}),
  });

  const transport = ApolloLink.split(
    ({ query }) => {
      const definition = getMainDefinition(query);
      return definition.kind === "OperationDefinition" && definition.operation === "subscription";
    },
    new GraphQLWsLink(ws),
    httpLink,
  );
  const link = mode === false ? transport : persisted.concat(transport);

  const apollo = new ApolloClient({ link, cache: createCache() });
  return {
    apollo,
    jar,
    ws,
    fetch: browserFetch,
    dropConnection() {
      const open = socket;
      if (!open) return false;
      setTimeout(() => open.terminate(), 0); // after the message being handled, as a network would
      return true;
    },
    async close() {
      await ws.dispose();
      apollo.stop();
    },
  };
}
