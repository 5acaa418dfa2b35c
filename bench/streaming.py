"""Streaming: `chatStream` over a websocket against the generator called in-process, then under load.

The generator is instant: a local server on 127.0.0.1 speaking OpenAI's streaming chat-completions
protocol (server-sent events, no delay between tokens), driven through the project's OpenAI
provider (langchain-openai) both in-process and inside daphne. So the difference between the two
is what the backend adds: saving the turn, the growing answer, the websocket and GraphQL framing.

1. one client at a time: time to first token and time per token, websocket vs in-process;
2. 100 and 500 websocket clients streaming at once against one daphne process: success rate,
   p50/p95 time to first token and to the last token, the server's peak memory.

    .venv/bin/python bench/streaming.py [--tokens 100] [--runs 30] [--clients 100,500]
"""

import asyncio
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import Daphne, parser, rss_mib, setup_django, summary_ms, write  # noqa: E402
from tests.fake_providers import FakeProvider  # noqa: E402

SUBSCRIPTION = """subscription($chat: ID!, $content: String!) {
  chatStream(chatId: $chat, content: $content) {
    __typename
    ... on TokenDelta { delta }
    ... on StreamDone { message { status content } }
    ... on StreamFailed { code errorMessage }
  }
}"""


async def direct(provider_url: str, tokens: int, runs: int) -> dict:
    from backend.rag.providers import ChatMessage, OpenAIProvider, Params

    provider = OpenAIProvider("gpt-3.5-turbo", "bench-key", provider_url)
    first, per_token = [], []
    for _ in range(runs + 1):
        started = time.perf_counter()
        stamps = []
        async for _ in provider.astream([ChatMessage("user", "Hello")], Params()):
            stamps.append(time.perf_counter())
        assert len(stamps) == tokens, len(stamps)
        first.append(stamps[0] - started)
        per_token.append((stamps[-1] - stamps[0]) / (len(stamps) - 1))
    return {"first_token": summary_ms(first[1:]), "per_token": summary_ms(per_token[1:])}


async def stream_once(url: str, secret: str, chat_id: str, tokens: int, start_gate: asyncio.Event | None = None,
                      connected: list | None = None) -> dict:
    import websockets

    result = {"ok": False}
    try:
        async with websockets.connect(url, subprotocols=["graphql-transport-ws"], max_size=None,
                                      open_timeout=120, ping_interval=None) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {secret}"}}))
            ack = json.loads(await asyncio.wait_for(ws.recv(), 120))
            assert ack["type"] == "connection_ack", ack
            if connected is not None:
                connected.append(1)
            if start_gate is not None:
                await start_gate.wait()
            started = time.perf_counter()
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
                "query": SUBSCRIPTION, "variables": {"chat": chat_id, "content": "Hello"}}}))
            stamps = []
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 300))
                if message["type"] == "next":
                    event = message["payload"]["data"]["chatStream"]
                    if event["__typename"] == "TokenDelta":
                        stamps.append(time.perf_counter())
                    elif event["__typename"] == "StreamDone":
                        result["status"] = event["message"]["status"]
                        done = time.perf_counter()
                    elif event["__typename"] == "StreamFailed":
                        result["error"] = event["code"]
                elif message["type"] in ("complete", "error"):
                    if message["type"] == "error":
                        result["error"] = str(message.get("payload"))[:200]
                    break
            if stamps and result.get("status") == "COMPLETE" and len(stamps) >= tokens:
                result.update(ok=True, first=stamps[0] - started, last=done - started,
                              per_token=(stamps[-1] - stamps[0]) / max(1, len(stamps) - 1), tokens=len(stamps))
            else:
                result.setdefault("error", f"{len(stamps)} tokens, status {result.get('status')}")
    except Exception as exc:  # a lost stream is a figure, not a crash of the benchmark
        result["error"] = f"{type(exc).__name__}: {exc}"[:200]
    return result


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--tokens", type=int, default=100)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--clients", default="100,500")
    args = p.parse_args()
    tokens, runs = (10, 3) if args.smoke else (args.tokens, args.runs)
    loads = [5] if args.smoke else [int(c) for c in args.clients.split(",")]

    fake = FakeProvider()
    fake.tokens = [f" t{i}" for i in range(tokens)]
    provider_url = fake.url + "/v1"
    data_dir = setup_django(OPENAI_API_KEY="bench-key", OPENAI_BASE_URL=provider_url)
    from backend.chats.services import create_chat
    from backend.users.services import create_api_token, register

    users = []
    chats_needed = sum(loads) + runs + 1  # every client of every load streams into its own chat
    per_user = 10  # each user streams into 10 chats
    for u in range((chats_needed + per_user - 1) // per_user):
        user = register(email=f"load{u}@example.com", password="bench passphrase 123")
        _, secret = create_api_token(user, name="bench")
        for _ in range(per_user):
            chat = create_chat(user, model="gpt-3.5-turbo")
            users.append((secret, chat))
    from strawberry import relay

    pairs = [(secret, str(relay.GlobalID("Chat", str(chat.pk)))) for secret, chat in users]

    figures = {"tokens_per_answer": tokens, "generator": "local OpenAI-protocol server, no delay",
               "direct": asyncio.run(direct(provider_url, tokens, runs))}
    print(f"in-process:  first token p50 {figures['direct']['first_token']['p50_ms']} ms, "
          f"per token p50 {figures['direct']['per_token']['p50_ms']} ms", flush=True)

    server = Daphne(data_dir, OPENAI_API_KEY="bench-key", OPENAI_BASE_URL=provider_url)
    url = f"ws://127.0.0.1:{server.port}/graphql/"
    try:
        async def sequential():
            results = []
            for secret, chat in pairs[:runs + 1]:
                results.append(await stream_once(url, secret, chat, tokens))
            return results

        results = asyncio.run(sequential())[1:]
        ok = [r for r in results if r["ok"]]
        assert ok, results
        figures["websocket"] = {"first_token": summary_ms([r["first"] for r in ok]),
                                "per_token": summary_ms([r["per_token"] for r in ok]),
                                "failures": [r["error"] for r in results if not r["ok"]][:5]}
        ws_fig, d_fig = figures["websocket"], figures["direct"]
        figures["overhead"] = {
            "first_token_ms": round(ws_fig["first_token"]["p50_ms"] - d_fig["first_token"]["p50_ms"], 2),
            "per_token_ms": round(ws_fig["per_token"]["p50_ms"] - d_fig["per_token"]["p50_ms"], 3)}
        print(f"websocket:   first token p50 {ws_fig['first_token']['p50_ms']} ms, per token p50 "
              f"{ws_fig['per_token']['p50_ms']} ms  (overhead {figures['overhead']})", flush=True)

        figures["load"] = {}
        offset = runs + 1
        for clients in loads:
            peak = [rss_mib(server.pid)]
            stop = threading.Event()

            def sample():
                while not stop.is_set():
                    peak.append(rss_mib(server.pid))
                    time.sleep(0.1)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()

            async def crowd():
                gate, connected = asyncio.Event(), []
                crowd_pairs = pairs[offset:offset + clients]
                assert len(crowd_pairs) == clients, (len(crowd_pairs), clients)
                tasks = [asyncio.create_task(stream_once(url, s, c, tokens, gate, connected)) for s, c in crowd_pairs]
                deadline = time.monotonic() + 120
                while len(connected) < clients and time.monotonic() < deadline and not all(t.done() for t in tasks):
                    await asyncio.sleep(0.05)
                started = time.perf_counter()
                gate.set()
                results = await asyncio.gather(*tasks)
                return results, time.perf_counter() - started

            results, wall = asyncio.run(crowd())
            stop.set()
            sampler.join()
            ok = [r for r in results if r["ok"]]
            errors: dict[str, int] = {}
            for r in results:
                if not r["ok"]:
                    errors[r["error"]] = errors.get(r["error"], 0) + 1
            figures["load"][str(clients)] = {
                "clients": clients, "completed": len(ok), "success_rate": round(len(ok) / clients, 4),
                "first_token": summary_ms([r["first"] for r in ok]), "last_token": summary_ms([r["last"] for r in ok]),
                "wall_seconds": round(wall, 2), "tokens_per_second": round(sum(r["tokens"] for r in ok) / wall, 1),
                "server_peak_rss_mib": max(peak), "errors": errors}
            f = figures["load"][str(clients)]
            print(f"{clients:4d} clients: {f['completed']}/{clients} complete, first token p50 "
                  f"{f['first_token']['p50_ms']} ms p95 {f['first_token']['p95_ms']} ms, last token p95 "
                  f"{f['last_token']['p95_ms']} ms, {f['tokens_per_second']} tokens/s, peak RSS "
                  f"{f['server_peak_rss_mib']} MiB, errors {errors}", flush=True)
            offset += clients
    finally:
        server.stop()
        fake.close()
    write("streaming", args, figures)


if __name__ == "__main__":
    main()
