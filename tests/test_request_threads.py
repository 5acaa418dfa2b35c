"""Requests through the project's ASGI application: the threads that run their sync code are kept
for the next request (backend/core/handler.py), never shared by two requests at once."""

import asyncio
import json
import threading

import pytest

from backend.users.credentials import create_api_token

pytestmark = pytest.mark.django_db(transaction=True)


async def _post(application, body: dict, secret: str) -> dict:
    raw = json.dumps(body).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/graphql/", "raw_path": b"/graphql/", "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
             "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(raw)).encode()),
                         (b"authorization", f"Bearer {secret}".encode())]}
    sent, messages = [], [{"type": "http.request", "body": raw, "more_body": False}]

    async def receive():  # the body, then a client that stays connected
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()

    async def send(message):
        sent.append(message)

    await application(scope, receive, send)
    assert sent[0]["status"] == 200, sent
    return json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def test_requests_reuse_their_threads_one_request_per_thread_at_a_time(user, monkeypatch):
    from backend.asgi import django_asgi_app
    from backend.core import auth

    _, secret = create_api_token(user, name="threads")
    seen, inside, both_inside = [], [0], threading.Event()
    authenticate = auth._authenticate

    def recording(request):
        seen.append(threading.get_ident())
        inside[0] += 1
        if inside[0] == 2:
            both_inside.set()
        both_inside.wait(timeout=5)  # two requests at once: each must have a thread of its own
        try:
            return authenticate(request)
        finally:
            inside[0] -= 1

    monkeypatch.setattr(auth, "_authenticate", recording)

    async def scenario():
        me = {"query": "{ me { email } }"}
        both = await asyncio.gather(_post(django_asgi_app, me, secret), _post(django_asgi_app, me, secret))
        assert both_inside.is_set() and len(set(seen)) == 2
        for answer in both:
            assert answer == {"data": {"me": {"email": user.email}}}
        kept = set(seen)
        for _ in range(3):  # one after another: on threads kept from before, no new one
            assert (await _post(django_asgi_app, me, secret))["data"]["me"]["email"] == user.email
        assert set(seen) == kept
        return django_asgi_app.threads.idle

    assert asyncio.run(scenario()) == 2


def test_idle_threads_beyond_the_bound_are_let_go():
    from backend.core.handler import RequestThreads

    threads = RequestThreads(keep=1)
    first, second = threads.take(), threads.take()
    assert first is not second
    threads.give_back(first)
    threads.give_back(second)  # one idle already: this one is shut down
    assert threads.idle == 1 and threads.take() is first
    with pytest.raises(RuntimeError):
        second.submit(lambda: None)


def test_a_search_leaves_its_threads_openmp_setting_as_it_was(tmp_path):
    import faiss
    import numpy as np

    from backend.rag.index import FaissStore

    store = FaissStore(tmp_path)
    vectors = np.random.default_rng(1).standard_normal((50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = store.new_index(8, 50)
    index.add_with_ids(vectors, np.arange(50, dtype=np.int64))
    result = {}

    def in_a_fresh_thread():
        faiss.omp_set_num_threads(2)
        result["hits"] = store.search(index, vectors[3], 3)
        result["threads"] = faiss.omp_get_max_threads()

    worker = threading.Thread(target=in_a_fresh_thread)
    worker.start()
    worker.join()
    assert result["hits"][0][0] == 3 and result["threads"] == 2
