"""Events for a user's live subscriptions, sent to that user's channel group after commit.

The group lives in the channel layer from settings (in memory, or Redis so that a subscriber on
any process sees events published by any other process or worker).
"""

import asyncio
import atexit
import collections
import logging
import os
import threading
import time

from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def send_now(user_id: int, event: dict) -> None:
    send_group_now(user_group(user_id), event)


def publish(user_id: int, event: dict) -> None:
    """Send ``event`` to ``user_id``'s subscribers once the current transaction commits."""
    transaction.on_commit(lambda: send_now(user_id, event))


def collection_group(collection_id: int) -> str:
    return f"collection.{collection_id}"


_server_loop: asyncio.AbstractEventLoop | None = None


def bind_server_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Remember the event loop that serves websockets (called as a socket connects).

    The in-memory layer's queues belong to that loop; a background thread must hand its sends to
    it instead of running them on a loop of its own, or the subscribers are never woken.
    """
    global _server_loop
    _server_loop = loop


def server_loop() -> asyncio.AbstractEventLoop | None:
    """The server's event loop, when one is bound and running."""
    loop = _server_loop
    return loop if loop is not None and loop.is_running() else None


def send_group_now(group: str, event: dict) -> None:
    _group_send(group, {"type": "app.event", **event})


_publisher: tuple[int, asyncio.AbstractEventLoop] | None = None
_publisher_lock = threading.Lock()


def _publisher_loop() -> asyncio.AbstractEventLoop:
    """A loop of this process's own, on a daemon thread, for sends from threads without a server
    loop (a Celery worker, a management command). ``async_to_sync`` made a thread and an event loop
    per send, and channels_redis a Redis connection per loop: per progress event of an ingestion."""
    global _publisher
    with _publisher_lock:
        if _publisher is None or _publisher[0] != os.getpid() or _publisher[1].is_closed():  # a forked worker: anew
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="event-publisher", daemon=True).start()
            _publisher = (os.getpid(), loop)
        return _publisher[1]


class _Outbox:
    """Sends handed over by other threads to a loop, made there one after another, in order.

    The thread goes on at once: it used to wait for each send (a GIL hand-off to the loop's thread
    and back, and with Redis a round trip), which was a seventh of a short document's ingestion
    spent per progress event. One at a time keeps a thread's events to a group in the order it
    sent them (concurrent Redis sends could overtake one another). ``flush`` waits for them."""

    LIMIT = 10_000  # unsent messages per process; beyond it (a layer that hangs) new ones are dropped, logged

    def __init__(self):
        self.pending: collections.Counter = collections.Counter()  # unsent messages by loop
        self.idle = threading.Condition()
        self.queues: dict[asyncio.AbstractEventLoop, collections.deque] = {}

    def put(self, loop: asyncio.AbstractEventLoop, layer, group: str, message: dict) -> None:
        with self.idle:
            for gone in [other for other in self.pending if other.is_closed()]:  # never to be sent
                del self.pending[gone]
            if self.pending.total() >= self.LIMIT:
                logger.error("event outbox full: %s to %s dropped", message.get("kind") or message["type"], group)
                return
            self.pending[loop] += 1
        try:
            loop.call_soon_threadsafe(self._add, loop, layer, group, message)
        except RuntimeError:  # the loop is closed
            self._done(loop)
            raise

    def _add(self, loop, layer, group, message) -> None:  # on the loop
        queue = self.queues.get(loop)
        if queue is None:
            queue = self.queues[loop] = collections.deque()
            loop.create_task(self._drain(loop, queue))
        queue.append((layer, group, message))

    async def _drain(self, loop, queue: collections.deque) -> None:
        try:
            while queue:
                layer, group, message = queue[0]
                try:
                    await layer.group_send(group, message)
                except Exception:  # a broken layer must never break the operation that committed
                    logger.exception("could not publish %s to %s", message.get("kind") or message["type"], group)
                finally:
                    queue.popleft()
                    self._done(loop)
        finally:
            del self.queues[loop]
            for _ in queue:  # cancelled (the loop is stopping): these are not coming
                self._done(loop)

    def _done(self, loop) -> None:
        with self.idle:
            self.pending[loop] -= 1
            if self.pending[loop] <= 0:
                del self.pending[loop]
            self.idle.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until the messages handed to running loops are sent (a loop that stopped, e.g. a
        test's, never sends its own: not waited for)."""
        deadline = time.monotonic() + timeout
        with self.idle:
            while any(loop.is_running() for loop in self.pending):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.idle.wait(min(left, 0.1))
            return True


_outbox = _Outbox()
os.register_at_fork(after_in_child=_outbox.__init__)  # a forked worker starts with nothing unsent


def flush(timeout: float = 10) -> bool:
    """Wait until the events this process handed over from threads are sent (tests, shutdown)."""
    return _outbox.flush(timeout)


def _group_send(group: str, message: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    what = message.get("kind") or message["type"]
    try:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:  # called on a loop's own thread: sent from it, without blocking it
            task = running.create_task(layer.group_send(group, message))
            task.add_done_callback(lambda done: done.cancelled() or done.exception() is None or logger.error(
                "could not publish %s to %s", what, group, exc_info=done.exception()))
            return
        _outbox.put(server_loop() or _publisher_loop(), layer, group, message)
    except Exception:  # a broken layer must never break the operation that committed
        logger.exception("could not publish %s to %s", what, group)


atexit.register(flush, 5)  # a management command or a stopping worker: its last events still go out


def publish_group(group: str, event: dict) -> None:
    """Send ``event`` to a group's subscribers once the current transaction commits."""
    transaction.on_commit(lambda: send_group_now(group, event))


AUTH_CHANGED = "auth.changed"  # a channel-layer message type, handled by the websocket consumer


def auth_group(user_id: int) -> str:
    return f"auth.{user_id}"


def publish_auth_change(user_id: int) -> None:
    """After commit, tell every socket of ``user_id`` (on any process) to check its credential
    again: a token was revoked, a session ended, the password or the account changed."""
    transaction.on_commit(lambda: _group_send(auth_group(user_id), {"type": AUTH_CHANGED}))
