"""Streaming: answers over websockets from one daphne process, against a local OpenAI-protocol server.

The provider is a local server on 127.0.0.1 speaking OpenAI's streaming chat-completions protocol
(server-sent events), in a process of its own (bench/llm_server.py), driven through the project's OpenAI provider
(langchain-openai). Every client is a real graphql-transport-ws client in this process.

1. in-process: the provider called directly, one answer at a time (what the backend adds is the rest);
2. unpaced: N clients at once, the provider as fast as it can: tokens per second delivered;
3. paced: the provider alone first (500 answers in this process: the CPU to start one and to read
   a token, the floor under the server's work), then 500 clients starting within a second, 300 tokens each at 30 tokens/s (a GPT-4-class
   model): first token p50/p95, and each client's pace as a share of the provider's;
4. resume: clients that drop their socket three times during an answer and resume from their
   offset (``answerStream``): does each end with exactly the saved text?
5. retries: 1,000 subscriptions of 200 questions, each sent five times with its clientMessageId
   (some dropped midway): how many questions are stored twice?

    .venv/bin/python bench/streaming.py [--tokens 300] [--unpaced 100] [--paced 500] [--pace 30]
"""

import asyncio
import json
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import Daphne, parser, rss_mib, setup_django, summary_ms, write  # noqa: E402

EVENT = """__typename
    ... on StreamStarted { messageId }
    ... on TokenDelta { delta length }
    ... on StreamDone { message { status content } }
    ... on StreamFailed { code }"""
SEND = ("subscription($chat: ID!, $content: String!, $id: String) { chatStream(chatId: $chat, content: $content, "
        "clientMessageId: $id) { " + EVENT + " } }")
RESUME = "subscription($id: ID!, $offset: Int!) { answerStream(messageId: $id, offset: $offset) { " + EVENT + " } }"


class Provider:
    """bench/llm_server.py in a process of its own (asyncio: 500 paced answers cost it little)."""

    def __init__(self, tokens: int, delay: float):
        import subprocess

        self.process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("llm_server.py")), "0",
                                         str(tokens), str(delay)], stdout=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{int(self.process.stdout.readline())}/v1"

    def stop(self):
        self.process.kill()


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


async def direct_crowd(provider_url: str, clients: int) -> dict:
    """The provider alone, ``clients`` paced answers at once in this process: the CPU a process
    spends to start an answer's request and to read each token, before any of the server's work."""
    from backend.rag.providers import ChatMessage, OpenAIProvider, Params

    provider = OpenAIProvider("gpt-3.5-turbo", "bench-key", provider_url)
    firsts, counts = [], []

    async def one(started):
        n = 0
        async for _ in provider.astream([ChatMessage("user", "Hello")], Params()):
            if n == 0:
                firsts.append(time.perf_counter() - started)
            n += 1
        counts.append(n)

    await one(time.perf_counter())  # the client's imports
    firsts.clear(), counts.clear()
    started, cpu = time.perf_counter(), time.process_time()
    tasks = [asyncio.create_task(one(started)) for _ in range(clients)]
    while len(firsts) < clients and not any(t.done() and t.exception() for t in tasks):
        await asyncio.sleep(0.005)
    cpu_first = time.process_time()
    await asyncio.gather(*tasks)
    tokens = sum(counts) - clients
    return {"clients": clients, "start_cpu_ms_per_answer": round((cpu_first - cpu) * 1000 / clients, 2),
            "read_cpu_us_per_token": round((time.process_time() - cpu_first) * 1e6 / max(1, tokens), 1),
            "first_token": summary_ms(firsts)}


async def connect(url: str, secret: str):
    import websockets

    ws = await websockets.connect(url, subprotocols=["graphql-transport-ws"], max_size=None, open_timeout=120,
                                  ping_interval=None)
    await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {secret}"}}))
    ack = json.loads(await asyncio.wait_for(ws.recv(), 120))
    assert ack["type"] == "connection_ack", ack
    return ws


class Follow:
    """One subscription's events: the text, when its tokens came, the final event."""

    def __init__(self):
        self.text, self.stamps, self.final, self.message_id, self.error = "", [], None, None, None

    async def run(self, ws, query: str, variables: dict, *, stop_after: int | None = None) -> "Follow":
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}}))
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 300))
            if message["type"] != "next":
                if message["type"] == "error":
                    self.error = str(message.get("payload"))[:200]
                return self
            if message["payload"].get("errors"):
                self.error = str(message["payload"]["errors"][0].get("extensions", {}).get("code"))
                return self
            event = next(iter(message["payload"]["data"].values()))
            kind = event["__typename"]
            if kind == "TokenDelta":
                self.text = self.text[: event["length"] - len(event["delta"])] + event["delta"]
                self.stamps.append((time.perf_counter(), self.text.count(" t")))
                if stop_after is not None and len(self.stamps) >= stop_after:
                    return self
            elif kind == "StreamStarted":
                self.message_id = event["messageId"]
            elif kind == "StreamDone":
                self.final = event["message"]
            elif kind == "StreamFailed":
                self.error = event["code"]


async def answer(url, secret, chat, gate=None, connected=None) -> dict:
    result = {"ok": False}
    try:
        ws = await connect(url, secret)
        if connected is not None:
            connected.append(1)
        if gate is not None:
            await gate.wait()
        started = time.perf_counter()
        follow = await Follow().run(ws, SEND, {"chat": chat, "content": "Hello"})
        await ws.close()
        if follow.final and follow.final["status"] == "COMPLETE" and follow.stamps:
            (t_first, _), (t_last, tokens) = follow.stamps[0], follow.stamps[-1]
            result.update(ok=True, first=t_first - started, last=t_last - started, tokens=tokens,
                          pace=(tokens - 1) / (t_last - t_first) if t_last > t_first else None)
        else:
            result["error"] = follow.error or f"final {follow.final and follow.final['status']}"
    except Exception as exc:  # a lost stream is a figure, not a crash of the benchmark
        result["error"] = f"{type(exc).__name__}: {exc}"[:200]
    return result


async def crowd(url, pairs):
    gate, connected = asyncio.Event(), []
    tasks = [asyncio.create_task(answer(url, s, c, gate, connected)) for s, c in pairs]
    deadline = time.monotonic() + 180
    while len(connected) < len(pairs) and time.monotonic() < deadline and not all(t.done() for t in tasks):
        await asyncio.sleep(0.05)
    started = time.perf_counter()
    gate.set()
    results = await asyncio.gather(*tasks)
    return results, time.perf_counter() - started


async def resumed(url, secret, chat, drops: int, tokens: int) -> dict:
    """Drop after a share of the answer, resume from the length the client has, ``drops`` times."""
    ws = await connect(url, secret)
    follow = await Follow().run(ws, SEND, {"chat": chat, "content": "Hello"}, stop_after=max(1, tokens // 8))
    await ws.close()
    text = follow.text
    for n in range(drops):
        ws = await connect(url, secret)
        again = Follow()
        again.text = text
        last = n == drops - 1
        await again.run(ws, RESUME, {"id": follow.message_id, "offset": len(text)},
                        stop_after=None if last else max(1, tokens // 8))
        await ws.close()
        text = again.text
        final = again.final
    return {"same": final is not None and text == final["content"] and final["status"] == "COMPLETE",
            "complete": final is not None and final["status"] == "COMPLETE"}


async def retried(url, secret, chat, client_id: str, copies: int) -> int:
    """``copies`` subscriptions of one question with one clientMessageId, some dropped midway."""
    async def one(i):
        await asyncio.sleep(random.random() * 2)
        for attempt in range(5):  # as graphql-ws would: a refused connection is tried again
            try:
                ws = await connect(url, secret)
                await Follow().run(ws, SEND, {"chat": chat, "content": "Hello", "id": client_id},
                                   stop_after=3 if i % 2 else None)
                await ws.close()
                return 1
            except Exception:  # noqa: BLE001 - counted below
                await asyncio.sleep(0.5 + random.random())
        return 0

    return sum(await asyncio.gather(*(one(i) for i in range(copies))))


def make_pairs(count: int, per_user: int = 10) -> list[tuple[str, str]]:
    from strawberry import relay

    from backend.chats.conversations import create_chat
    from backend.users.accounts import register
    from backend.users.credentials import create_api_token

    pairs = []
    for u in range((count + per_user - 1) // per_user):
        user = register(email=f"load{u}-{time.monotonic_ns()}@example.com", password="bench passphrase 123")
        _, secret = create_api_token(user, name="bench")
        for _ in range(per_user):
            chat = create_chat(user, model="gpt-3.5-turbo")
            pairs.append((secret, str(relay.GlobalID("Chat", str(chat.pk)))))
    return pairs[:count]


def load_figures(results, wall, clients, peak, pace=None) -> dict:
    ok = [r for r in results if r["ok"]]
    errors: dict[str, int] = {}
    for r in results:
        if not r["ok"]:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    figures = {"clients": clients, "completed": len(ok), "first_token": summary_ms([r["first"] for r in ok]),
               "last_token": summary_ms([r["last"] for r in ok]), "wall_seconds": round(wall, 2),
               "tokens_per_second": round(sum(r["tokens"] for r in ok) / wall, 1), "server_peak_rss_mib": peak,
               "errors": errors}
    if pace:
        shares = sorted((r["pace"] or 0) / pace for r in ok)
        figures["pace_share"] = {"min": round(shares[0], 3) if shares else None,
                                 "p5": round(shares[len(shares) // 20], 3) if shares else None,
                                 "p50": round(shares[len(shares) // 2], 3) if shares else None,
                                 "clients_at_90pct": sum(s >= 0.9 for s in shares)}
    return figures


def sampled_peak(pid):
    peak, stop = [rss_mib(pid)], threading.Event()

    def sample():
        while not stop.is_set():
            peak.append(rss_mib(pid))
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    return peak, stop


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--tokens", type=int, default=300)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--unpaced", type=int, default=100, help="clients at once, provider unpaced")
    p.add_argument("--paced", type=int, default=500, help="clients at once, provider paced")
    p.add_argument("--pace", type=float, default=30.0, help="tokens per second per answer, paced")
    p.add_argument("--resumes", type=int, default=50)
    p.add_argument("--questions", type=int, default=200, help="questions sent five times each")
    args = p.parse_args()
    if args.smoke:
        args.tokens, args.runs, args.unpaced, args.paced, args.resumes, args.questions = 20, 2, 5, 5, 3, 4
    tokens = args.tokens

    unpaced = Provider(tokens, 0.0)
    paced = Provider(tokens, 1 / args.pace)
    data_dir = setup_django(OPENAI_API_KEY="bench-key", OPENAI_BASE_URL=unpaced.url)
    pairs = make_pairs(args.runs + 1 + args.unpaced)
    paced_pairs = make_pairs(args.paced + args.resumes + 1)
    retry_pairs = make_pairs(args.questions)
    figures = {"tokens_per_answer": tokens, "direct": asyncio.run(direct(unpaced.url, tokens, args.runs))}
    print(f"in-process: first token p50 {figures['direct']['first_token']['p50_ms']} ms, per token p50 "
          f"{figures['direct']['per_token']['p50_ms']} ms", flush=True)

    server = Daphne(data_dir, OPENAI_API_KEY="bench-key", OPENAI_BASE_URL=unpaced.url)
    url = f"ws://127.0.0.1:{server.port}/graphql/"
    try:
        async def sequential():
            return [await answer(url, s, c) for s, c in pairs[: args.runs + 1]]

        results = [r for r in asyncio.run(sequential())[1:] if r["ok"]]
        figures["websocket"] = {"first_token": summary_ms([r["first"] for r in results]),
                                "per_token": summary_ms([(r["last"] - r["first"]) / max(1, r["tokens"] - 1)
                                                         for r in results])}
        print(f"one client: first token p50 {figures['websocket']['first_token']['p50_ms']} ms, per token p50 "
              f"{figures['websocket']['per_token']['p50_ms']} ms", flush=True)

        peak, stop = sampled_peak(server.pid)
        results, wall = asyncio.run(crowd(url, pairs[args.runs + 1:]))
        stop.set()
        figures["unpaced"] = load_figures(results, wall, args.unpaced, max(peak))
        f = figures["unpaced"]
        print(f"unpaced, {args.unpaced} clients: {f['completed']} complete, {f['tokens_per_second']} tokens/s, "
              f"first token p50 {f['first_token']['p50_ms']} ms, errors {f['errors']}", flush=True)
    finally:
        server.stop()

    figures["provider_alone_paced"] = asyncio.run(direct_crowd(paced.url, args.paced))
    print(f"provider alone, {args.paced} paced answers in one process: {figures['provider_alone_paced']}", flush=True)
    server = Daphne(data_dir, OPENAI_API_KEY="bench-key", OPENAI_BASE_URL=paced.url)
    url = f"ws://127.0.0.1:{server.port}/graphql/"
    try:
        asyncio.run(answer(url, *paced_pairs[0]))  # warm-up: the first answer imports the provider's client
        peak, stop = sampled_peak(server.pid)
        results, wall = asyncio.run(crowd(url, paced_pairs[1: args.paced + 1]))
        stop.set()
        figures["paced"] = load_figures(results, wall, args.paced, max(peak), pace=args.pace)
        f = figures["paced"]
        print(f"paced {args.pace:g}/s, {args.paced} clients: {f['completed']} complete, first token p50 "
              f"{f['first_token']['p50_ms']} ms p95 {f['first_token']['p95_ms']} ms, pace share {f['pace_share']}, "
              f"{f['tokens_per_second']} tokens/s, peak RSS {f['server_peak_rss_mib']} MiB, errors {f['errors']}",
              flush=True)

        async def resumes():
            return await asyncio.gather(*(resumed(url, s, c, 3, tokens) for s, c in paced_pairs[args.paced + 1:]))

        outcomes = asyncio.run(resumes())
        figures["resume"] = {"clients": len(outcomes), "drops_each": 3, "exact": sum(o["same"] for o in outcomes),
                             "complete": sum(o["complete"] for o in outcomes)}
        print(f"resume: {figures['resume']}", flush=True)

        async def retries():
            return await asyncio.gather(*(retried(url, s, c, f"q-{i}", 5) for i, (s, c) in enumerate(retry_pairs)))

        subscriptions = sum(asyncio.run(retries()))
        from backend.chats.models import Message

        stored = Message.objects.filter(role="user", client_id__startswith="q-").count()
        figures["retries"] = {"subscriptions": subscriptions, "questions": len(retry_pairs),
                              "stored": stored, "duplicated": stored - len(retry_pairs)}
        print(f"retries: {figures['retries']}", flush=True)
    finally:
        server.stop()
        unpaced.stop()
        paced.stop()
    write("streaming", args, figures)


if __name__ == "__main__":
    main()
