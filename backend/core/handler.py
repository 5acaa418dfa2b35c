"""Django's ASGI handler, with the threads that run requests' synchronous code kept for the next.

Django runs a request's sync code (middleware, the token check, resolvers) on a thread made for
that request: ``ThreadSensitiveContext()`` gives each request a new single-thread executor, shut
down when the request ends. Each request then pays for starting and joining a thread, and, since
Django's database connections belong to a thread, for opening a connection (SQLite: the file and
its PRAGMAs; PostgreSQL without a pool: a new session), which CONN_MAX_AGE cannot keep. Measured
with py-spy on ``searchDocuments``: thread start, shutdown and connect were about 4 ms of a 37 ms
request. asgiref lets the caller own the executor (``ThreadSensitiveContext(executor=...)``):
here a request borrows an idle one from a free list and gives it back. Each executor still runs
one request at a time on one thread, as Django expects; the number of requests running at once is
not bounded here (``ConcurrencyLimitMiddleware`` does that), only the number of idle threads kept.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler


class RequestThreads:
    """Single-thread executors, reused: at most ``keep`` idle ones are kept."""

    def __init__(self, keep: int):
        self.keep = keep
        self._idle: list[ThreadPoolExecutor] = []
        self._lock = threading.Lock()

    def take(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")

    def give_back(self, executor: ThreadPoolExecutor) -> None:
        with self._lock:
            if len(self._idle) < self.keep:
                self._idle.append(executor)
                return
        executor.shutdown(wait=False)

    @property
    def idle(self) -> int:
        return len(self._idle)


class PooledThreadASGIHandler(ASGIHandler):
    def __init__(self, keep: int):
        super().__init__()
        self.threads = RequestThreads(keep)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self.threads.take()
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            self.threads.give_back(executor)


def get_asgi_application() -> PooledThreadASGIHandler:
    """``django.core.asgi.get_asgi_application`` with request threads kept (REQUEST_THREADS_KEEP)."""
    import django
    from django.conf import settings

    django.setup(set_prefix=False)
    return PooledThreadASGIHandler(keep=settings.REQUEST_THREADS_KEEP)
