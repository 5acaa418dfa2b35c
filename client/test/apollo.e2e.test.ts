// Apollo Client against the real server, as the Next.js app uses it: cookie session with CSRF,
// an API token, uploads by the multipart spec, subscriptions over graphql-ws, the normalized cache.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { gql } from "@apollo/client";

import { createBackendClient, type BackendClient, type CookieJar } from "../src/apollo.js";
import {
  AnswerStreamDocument,
  ChatDocument,
  ChatStreamDocument,
  ChatsDocument,
  CollectionsDocument,
  CreateApiTokenDocument,
  CreateChatDocument,
  CreateRecipeDocument,
  DocumentDocument,
  DocumentEventsDocument,
  LoginDocument,
  LogoutDocument,
  MeDocument,
  RegisterDocument,
  SearchDocumentsDocument,
  UpdateChatDocument,
  UpdateRecipeDocument,
  UploadDocumentDocument,
  type AnswerStreamSubscription,
  type ChatStreamSubscription,
  type DocumentEventsSubscription,
} from "../src/generated/graphql.js";
import { as, collect, errorCodes, sleep } from "./support/helpers.js";
import { startFakeOpenAI, type FakeOpenAI } from "./support/openai.js";
import { corpus, frontendOrigin, repoRoot, startServer, type RunningServer } from "./support/server.js";

const PASSWORD = "correct horse battery staple 42";
let server: RunningServer;
const clients: BackendClient[] = [];

function client(options: { token?: string; jar?: CookieJar } = {}): BackendClient {
  const created = createBackendClient({ url: server.url, origin: frontendOrigin, persistedQueries: "trusted", ...options });
  clients.push(created);
  return created;
}

let openai: FakeOpenAI;

before(async () => {
  openai = await startFakeOpenAI();
  // gpt-4 through the local OpenAI-protocol server; RAG answers stay extractive. The server runs
  // as production would: only the operations graphql-codegen generated from operations/, by hash.
  server = await startServer({
    OPENAI_API_KEY: "sk-e2e", OPENAI_BASE_URL: openai.url, RAG_GENERATOR: "extractive",
    GRAPHQL_PERSISTED_DOCUMENTS: join(repoRoot, "client", "src", "generated", "persisted-documents.json"),
    GRAPHQL_TRUSTED_DOCUMENTS_ONLY: "true",
  });
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await server?.stop();
  await openai?.close();
});

// Shared across the steps below, in order, as one user's session would be.
let alice: BackendClient;
let aliceToken: string;
let tokenClient: BackendClient;
let collectionId: string;
let documentId: string;
const PDF = "google-doc-document.pdf";

test("register, log in with the session cookie and CSRF token, create an API token", async () => {
  alice = client();
  // The first query goes by GET and brings the CSRF token (cookie, and header for this origin).
  const anonymous = await alice.apollo.query({ query: MeDocument, fetchPolicy: "network-only" });
  assert.equal(anonymous.data?.me, null);
  assert.ok(alice.jar.get("csrftoken"), "csrftoken cookie set by the first response");

  const registered = await alice.apollo.mutate({
    mutation: RegisterDocument,
    variables: { email: "alice@example.com", password: PASSWORD, displayName: "Alice" },
  });
  assert.equal(as(registered.data?.register, "User").email, "alice@example.com");

  await alice.apollo.mutate({ mutation: LogoutDocument });
  assert.equal(alice.jar.get("sessionid"), undefined, "logout clears the session cookie");
  await alice.apollo.clearStore();

  const wrong = await alice.apollo.mutate({
    mutation: LoginDocument,
    variables: { email: "alice@example.com", password: "not the password" },
  });
  const info = as(wrong.data?.login, "AccountErrors");
  // A typed code a client switches on (AccountErrorCode), with no field: the input as a whole.
  assert.deepEqual(info.messages.map((m) => [m.field, m.code]), [[null, "INVALID_CREDENTIALS"]]);

  const login = await alice.apollo.mutate({
    mutation: LoginDocument,
    variables: { email: "alice@example.com", password: PASSWORD },
  });
  assert.equal(as(login.data?.login, "User").displayName, "Alice");
  assert.ok(alice.jar.get("sessionid"), "the session cookie is set");

  const me = await alice.apollo.query({ query: MeDocument, fetchPolicy: "network-only" });
  assert.equal(me.data?.me?.email, "alice@example.com");

  const created = await alice.apollo.mutate({ mutation: CreateApiTokenDocument, variables: { name: "e2e" } });
  const token = as(created.data?.createApiToken, "NewApiToken");
  assert.ok(token.secret.startsWith(token.token.prefix));
  aliceToken = token.secret;

  // The token alone (no cookies) authenticates HTTP and, in connection_init, the websocket.
  tokenClient = client({ token: aliceToken });
  const byToken = await tokenClient.apollo.query({ query: MeDocument });
  assert.equal(byToken.data?.me?.email, "alice@example.com");
});

test("upload a PDF through the upload link and follow documentEvents until READY", async () => {
  const collections = await alice.apollo.query({ query: CollectionsDocument, variables: { first: 10 } });
  const defaults = collections.data!.collections.edges.filter((e) => e.node.isDefault);
  assert.equal(defaults.length, 1);
  collectionId = defaults[0].node.id;

  let connected = false;
  tokenClient.ws.on("connected", () => (connected = true));
  const events = collect(
    tokenClient.apollo,
    DocumentEventsDocument,
    { collectionId },
    (data: DocumentEventsSubscription) => ["READY", "FAILED"].includes(data.documentEvents.status),
  );
  while (!connected) await sleep(20);
  await sleep(300); // the server subscribes to the collection's group right after the socket opens

  const bytes = readFileSync(join(corpus, "pdf", PDF));
  const file = new File([bytes], PDF, { type: "application/pdf" });
  const uploaded = await alice.apollo.mutate({
    mutation: UploadDocumentDocument,
    variables: { file, collectionId, tags: ["zen"] },
  });
  const result = as(uploaded.data?.uploadDocument, "UploadedDocument");
  assert.equal(result.duplicate, false);
  assert.equal(result.document.status, "PENDING", "the mutation returns before ingestion runs");
  assert.equal(result.document.fileType, "PDF");
  documentId = result.document.id;

  const received = await events.done;
  const mine = received.map((d) => d.documentEvents).filter((e) => e.documentId === documentId);
  assert.equal(mine.at(-1)?.status, "READY", JSON.stringify(mine.at(-1)));
  const progress = mine.map((e) => e.progress);
  assert.deepEqual(progress, [...progress].sort((a, b) => a - b), "progress never goes back");
  assert.equal(mine.at(-1)?.document?.chunkCount! > 0, true);

  const document = await alice.apollo.query({
    query: DocumentDocument,
    variables: { id: documentId, firstChunks: 5 },
    fetchPolicy: "network-only",
  });
  assert.equal(document.data?.document?.status, "READY");
  assert.equal(document.data?.document?.pageCount, 1);
  assert.ok(document.data?.document?.chunks.edges.some((e) => e.node.text.includes("Readability counts")));
});

test("searchDocuments finds the passage by meaning", async () => {
  const found = await alice.apollo.query({
    query: SearchDocumentsDocument,
    variables: { query: "mistakes must not be ignored quietly", k: 3 },
  });
  const hits = found.data!.searchDocuments;
  assert.ok(hits.length > 0);
  assert.equal(hits[0].document.id, documentId);
  assert.ok(hits[0].text.includes("Errors should never pass silently"), hits[0].text);
  assert.equal(hits[0].page, 1);
});

test("chatStream streams a rag-faiss answer token by token, with sources naming the document", async () => {
  const created = await alice.apollo.mutate({ mutation: CreateChatDocument, variables: { model: "rag-faiss" } });
  const chat = as(created.data?.createChat, "Chat");

  const stream = collect(
    alice.apollo, // the session cookie authenticates this socket
    ChatStreamDocument,
    { chatId: chat.id, content: "Should errors pass silently?" },
    (data: ChatStreamSubscription) => ["StreamDone", "StreamFailed"].includes(data.chatStream.__typename),
  );
  const events = (await stream.done).map((d) => d.chatStream);
  const kinds = events.map((e) => e.__typename);
  assert.equal(kinds[0], "StreamStarted");
  assert.equal(kinds.at(-1), "StreamDone", JSON.stringify(events.at(-1)));
  const firstDelta = kinds.indexOf("TokenDelta");
  assert.ok(firstDelta > 0 && kinds.filter((k) => k === "TokenDelta").length > 3, "several tokens");
  assert.ok(firstDelta < kinds.indexOf("StreamDone"), "tokens arrive before the final event");

  const sources = as(events.find((e) => e.__typename === "StreamSources"), "StreamSources").sources;
  assert.equal(sources[0].documentId, documentId);
  assert.equal(sources[0].title, "google-doc-document");
  assert.equal(sources[0].page, 1);

  const done = as(events.at(-1), "StreamDone").message;
  const streamed = events.filter((e) => e.__typename === "TokenDelta").map((e) => as(e, "TokenDelta").delta).join("");
  assert.equal(done.content, streamed, "the saved answer is what was streamed");
  assert.equal(done.status, "COMPLETE");
  assert.match(done.content, /\[1\]/);
  assert.ok(done.content.includes("Errors should never pass silently"));
});

test("chats page with relayStylePagination, and a mutation's result updates the normalized cache", async () => {
  for (let i = 1; i <= 4; i++) {
    await alice.apollo.mutate({ mutation: CreateChatDocument, variables: { title: `Chat ${i}`, model: "rag-faiss" } });
  }
  const watched = alice.apollo.watchQuery({ query: ChatsDocument, variables: { first: 2 } });
  const seen: string[][] = [];
  const subscription = watched.subscribe((result) => {
    if (result.dataState === "complete") seen.push(result.data.chats.edges.map((e) => e.node.id));
  });
  const first = await watched.refetch();
  assert.equal(first.data?.chats.edges.length, 2);
  assert.equal(first.data?.chats.totalCount, 5);

  let pageInfo = first.data!.chats.pageInfo;
  while (pageInfo.hasNextPage) {
    const more = await watched.fetchMore({ variables: { after: pageInfo.endCursor } });
    pageInfo = more.data!.chats.pageInfo;
  }
  const merged = alice.apollo.readQuery({ query: ChatsDocument, variables: { first: 2 } });
  const ids = merged!.chats.edges.map((e) => e.node.id);
  assert.equal(ids.length, 5, "every page merged into one list");
  assert.equal(new Set(ids).size, 5, "no chat twice");

  // Renaming returns the Chat; the cache entry it normalizes to is the one the list shows.
  const target = ids[3];
  await alice.apollo.mutate({ mutation: UpdateChatDocument, variables: { id: target, title: "Renamed", pinned: true } });
  const after = alice.apollo.readQuery({ query: ChatsDocument, variables: { first: 2 } });
  const renamed = after!.chats.edges.find((e) => e.node.id === target)!.node;
  assert.equal(renamed.title, "Renamed");
  assert.equal(renamed.pinned, true);
  await sleep(50);
  assert.ok(seen.at(-1)?.includes(target), "the watching list re-rendered from the cache");
  subscription.unsubscribe();
});

test("a socket dropped mid-answer: the client resumes from its offset and shows the whole answer once", async () => {
  openai.tokens = Array.from({ length: 40 }, (_, i) => `word${i} `);
  openai.delayMs = 60;
  const requestsBefore = openai.requests;
  const created = await alice.apollo.mutate({ mutation: CreateChatDocument, variables: { model: "gpt-4" } });
  const chat = as(created.data?.createChat, "Chat");
  const clientMessageId = crypto.randomUUID();
  const final = (typename: string) => ["StreamDone", "StreamFailed"].includes(typename);

  // What the chat page keeps: the answer's id and text, each delta placed by its end offset (a
  // delta received twice replaces, never repeats).
  let messageId = "";
  let text = "";
  let dropped = false;
  const show = (event: ChatStreamSubscription["chatStream"]) => {
    if (event.__typename === "StreamStarted") messageId = event.messageId;
    if (event.__typename === "TokenDelta") text = text.slice(0, event.length - event.delta.length) + event.delta;
  };
  const first = collect(
    alice.apollo,
    ChatStreamDocument,
    { chatId: chat.id, content: "Count to forty\nplease", clientMessageId },
    (data: ChatStreamSubscription) => {
      show(data.chatStream);
      if (!dropped && text.length > 40) dropped = alice.dropConnection(); // a phone losing signal
      return final(data.chatStream.__typename);
    },
  );
  const before = await first.done.catch(() => first.received);
  assert.ok(dropped, "the socket was dropped mid-answer");
  assert.ok(!final(before.at(-1)!.chatStream.__typename), "the first subscription ended without the answer");
  assert.ok(text.length > 0 && text.length < openai.tokens.join("").length);

  // The page, reloaded (a new client with the same cookies), follows the same answer from what it has.
  const reloaded = client({ jar: alice.jar });
  const resumed = collect(
    reloaded.apollo,
    AnswerStreamDocument,
    { messageId, offset: text.length },
    (data: AnswerStreamSubscription) => {
      show(data.answerStream);
      return final(data.answerStream.__typename);
    },
  );
  const events = (await resumed.done).map((d) => d.answerStream);
  const done = as(events.at(-1), "StreamDone");
  const full = openai.tokens.join("");
  assert.equal(text, full);
  assert.equal(done.message.content, full);
  assert.equal(done.message.status, "COMPLETE");
  assert.equal(openai.requests - requestsBefore, 1, "one answer generated");
  // The chat's title came with the stream events into the normalized cache: no refetch.
  const cached = reloaded.apollo.cache.readFragment({
    id: reloaded.apollo.cache.identify({ __typename: "Chat", id: chat.id }),
    fragment: gql`fragment CachedTitle on Chat { title }`,
  }) as { title: string } | null;
  assert.equal(cached?.title, "Count to forty");

  const stored = await alice.apollo.query({ query: ChatDocument, variables: { id: chat.id }, fetchPolicy: "network-only" });
  const messages = stored.data!.chat!.messages.edges.map((e) => e.node);
  assert.deepEqual(messages.map((m) => [m.role, m.content]), [["USER", "Count to forty\nplease"], ["ASSISTANT", full]]);
  assert.equal(messages[0].clientMessageId, clientMessageId);
});

test("extensions.code on an unauthenticated call and on a forbidden one", async () => {
  const stranger = client();
  const anonymous = await stranger.apollo.query({ query: ChatsDocument, variables: { first: 5 }, errorPolicy: "all" });
  assert.deepEqual(errorCodes(anonymous.error), ["UNAUTHENTICATED"]);
  // An operation the app does not have is refused, by hash and then with its text.
  const foreign = await alice.apollo.query({ query: gql`query NotOurs { me { id email } }`, fetchPolicy: "network-only", errorPolicy: "all" });
  assert.deepEqual(errorCodes(foreign.error), ["PERSISTED_QUERY_NOT_ALLOWED"]);

  const shared = await alice.apollo.mutate({
    mutation: CreateRecipeDocument,
    variables: { title: "Summarize", template: "Summarize {{text}}", visibility: "SHARED" },
  });
  const recipe = as(shared.data?.createRecipe, "Recipe");

  const bob = client();
  await bob.apollo.query({ query: MeDocument });
  as(
    (await bob.apollo.mutate({ mutation: RegisterDocument, variables: { email: "bob@example.com", password: PASSWORD } }))
      .data?.register,
    "User",
  );
  const forbidden = await bob.apollo.mutate({
    mutation: UpdateRecipeDocument,
    variables: { id: recipe.id, title: "Mine now" },
    errorPolicy: "all",
  });
  assert.deepEqual(errorCodes(forbidden.error), ["FORBIDDEN"]);
});
