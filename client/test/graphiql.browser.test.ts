// GraphiQL in headless Chromium, with no internet: the page and its scripts come from this
// server only; a query, a mutation (CSRF) and a call with an Authorization header all work.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { chromium, type Browser, type Page } from "playwright-core";

import { createBackendClient } from "../src/apollo.js";
import { CreateApiTokenDocument, MeDocument, RegisterDocument } from "../src/generated/graphql.js";
import { as } from "./support/helpers.js";
import { repoRoot, startServer, type RunningServer } from "./support/server.js";

const outputDir = process.env.TEST_OUTPUT_DIR ?? join(repoRoot, "test-output");
let server: RunningServer;
let browser: Browser;
const foreignRequests: string[] = [];

before(async () => {
  server = await startServer();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  mkdirSync(outputDir, { recursive: true });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function openGraphiQL(params: Record<string, string>): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on("request", (request) => {
    const url = request.url();
    if (!url.startsWith(server.base) && !url.startsWith("data:")) foreignRequests.push(url);
  });
  // The page decodes its parameters with decodeURIComponent, as links shared from it are made.
  const query = Object.entries(params)
    .map(([key, value]) => `${encodeURIComponent(key)}=${encodeURIComponent(value)}`)
    .join("&");
  await page.goto(`${server.url}?${query}`, { waitUntil: "load" });
  await page.locator(".graphiql-execute-button").waitFor({ timeout: 30_000 });
  return page;
}

async function run(page: Page, expected: string): Promise<string> {
  // GraphiQL runs the editor's operation; the answer appears in the result window. The editors
  // mount after the first render, so the button is pressed until the answer shows.
  const result = page.locator(".graphiql-response .result-window");
  const deadline = Date.now() + 30_000;
  for (;;) {
    await page.locator(".graphiql-execute-button").click();
    try {
      await result.filter({ hasText: expected }).waitFor({ timeout: 2_000 });
      break;
    } catch (error) {
      if (Date.now() > deadline) {
        await page.screenshot({ path: join(outputDir, "graphiql-failure.png") });
        throw error;
      }
    }
  }
  return (await result.innerText()).replace(/\u200b/g, "");
}

test("GraphiQL loads from local assets only and runs a query", async () => {
  const page = await openGraphiQL({ q: "query Models {\n  models {\n    id\n    name\n    available\n  }\n}" });
  const text = await run(page, "rag-faiss");
  assert.match(text, /"id": "rag-faiss"/);
  assert.match(text, /RAG Knowledge Base/);
  await page.screenshot({ path: join(outputDir, "graphiql.png") });
  assert.deepEqual(foreignRequests, [], "no request left this server");
  await page.close();
});

test("a mutation from GraphiQL passes CSRF with the page's cookie", async () => {
  const page = await openGraphiQL({
    q: "mutation Guest {\n  startGuestSession {\n    __typename\n    ... on User { isGuest }\n  }\n}",
  });
  const text = await run(page, "isGuest");
  assert.match(text, /"__typename": "User"/);
  assert.match(text, /"isGuest": true/);
  await page.close();
});

test("the Authorization header set in GraphiQL's header editor authenticates the call", async () => {
  const api = createBackendClient({ url: server.url });
  await api.apollo.query({ query: MeDocument });
  as((await api.apollo.mutate({
    mutation: RegisterDocument,
    variables: { email: "grace@example.com", password: "correct horse battery staple 42" },
  })).data?.register, "User");
  const created = await api.apollo.mutate({ mutation: CreateApiTokenDocument, variables: { name: "graphiql" } });
  const secret = as(created.data?.createApiToken, "NewApiToken").secret;
  await api.close();

  const page = await openGraphiQL({
    q: "query Me {\n  me {\n    email\n  }\n}",
    headers: JSON.stringify({ Authorization: `Bearer ${secret}` }),
  });
  const text = await run(page, "grace@example.com");
  assert.match(text, /"email": "grace@example.com"/);
  await page.screenshot({ path: join(outputDir, "graphiql-authorized.png") });
  await page.close();
  assert.deepEqual(foreignRequests, []);
});
