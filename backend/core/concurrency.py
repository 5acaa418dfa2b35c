"""At most HTTP_MAX_CONCURRENCY requests of this process run at once; the rest wait their turn.

Django runs each request's sync code (session, token check, resolvers) on a thread of its own.
Under a peak, dozens of such threads share one GIL and a few pooled database connections: a
thread that holds a connection gets a small share of the CPU, so it keeps the connection for
seconds and the others time out waiting for one (measured: 60 concurrent clients on two
processes with a pool of 4 gave 503s after 5 s while PostgreSQL sat idle). Queueing the request
before any of that starts keeps the in-flight ones fast: an awaiting coroutine costs no thread,
no connection and no CPU. A request that waits longer than HTTP_QUEUE_TIMEOUT gets 503 with
Retry-After, as for an exhausted pool.
"""

import asyncio

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings

from .unavailable import unavailable_response


class ConcurrencyLimitMiddleware:
    sync_capable = False
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.limit = settings.HTTP_MAX_CONCURRENCY
        self.semaphore: asyncio.Semaphore | None = None
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    async def __call__(self, request):
        if self.limit <= 0:
            return await self.get_response(request)
        if self.semaphore is None:  # made on the server's event loop
            self.semaphore = asyncio.Semaphore(self.limit)
        try:
            await asyncio.wait_for(self.semaphore.acquire(), settings.HTTP_QUEUE_TIMEOUT)
        except asyncio.TimeoutError:
            return unavailable_response()
        try:
            return await self.get_response(request)
        finally:
            self.semaphore.release()


_pool = None


def in_thread_pool(func):
    """``func`` as a coroutine run on this module's thread pool, not on the one thread that
    ``sync_to_async`` uses by default: hundreds of chat turns starting at once (database writes,
    retrieval) then run side by side instead of one after another. Not the event loop's default
    executor either: the loop resolves host names there, and provider calls waited behind a queue
    of turn start-ups. Its database connection is given back when it ends (to the pool, when
    pooling), as Channels does for consumers."""
    global _pool
    from concurrent.futures import ThreadPoolExecutor

    from channels.db import database_sync_to_async

    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=settings.DB_THREADS, thread_name_prefix="db")
    return database_sync_to_async(func, thread_sensitive=False, executor=_pool)
