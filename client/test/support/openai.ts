// A local server on 127.0.0.1 speaking OpenAI's streaming chat-completions protocol (server-sent
// events of `chat.completion.chunk` objects, then `data: [DONE]`), a token every `delayMs`.
import { createServer, type Server } from "node:http";

export interface FakeOpenAI {
  url: string;
  tokens: string[];
  delayMs: number;
  requests: number;
  close(): Promise<void>;
}

export async function startFakeOpenAI(): Promise<FakeOpenAI> {
  const fake = { tokens: ["Hello", " there", "."], delayMs: 0, requests: 0 } as FakeOpenAI;
  const server: Server = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk) => (body += chunk));
    request.on("end", async () => {
      fake.requests += 1;
      const model = (JSON.parse(body || "{}") as { model?: string }).model;
      response.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" });
      const chunk = (delta: object, finish: string | null = null) =>
        `data: ${JSON.stringify({ id: "chatcmpl-e2e", object: "chat.completion.chunk", created: 0, model,
                                  choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      response.write(chunk({ role: "assistant", content: "" }));
      for (const token of fake.tokens) {
        if (response.destroyed) return;
        response.write(chunk({ content: token }));
        await new Promise((wake) => setTimeout(wake, fake.delayMs));
      }
      response.write(chunk({}, "stop"));
      response.end("data: [DONE]\n\n");
    });
  });
  await new Promise<void>((listening) => server.listen(0, "127.0.0.1", listening));
  const address = server.address();
  fake.url = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}/v1`;
  fake.close = () => new Promise((closed) => server.close(() => closed()));
  return fake;
}
