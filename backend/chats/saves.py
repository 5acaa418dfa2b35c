"""The growing answers of every job of an event loop, written together.

Every SAVE_EVERY one transaction writes the text so far of every job that wrote something (all of
them every HEARTBEAT_EVERY: a touch that tells the sweep, ``recovery``, the answer's process lives),
reads the cancels recorded by other processes, and (with a shared channel layer) which answers
followers on other processes listen to. With hundreds of streams, per-stream writes were half of
the server's time.
"""

import asyncio
import logging
import weakref

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.core.cache import cache

from backend.core.concurrency import in_thread_pool

from .models import Message

logger = logging.getLogger(__name__)

SAVE_EVERY = 0.5  # seconds between saves of the growing answers
HEARTBEAT_EVERY = 10  # seconds: a quiet job's answer is touched at least this often
FOLLOWERS_TTL = 60  # seconds a remote follower's "I am listening" lasts unless renewed


def followers_key(message_id: int) -> str:
    return f"answer-followers:{message_id}"


def cross_process() -> bool:
    """Whether followers on other processes can exist (a channel layer shared by processes)."""
    layer = get_channel_layer()
    return layer is not None and not isinstance(layer, InMemoryChannelLayer)


def save_partials(contents: dict[int, str], live: list[int], followed: bool) -> tuple[set[int], set[int]]:
    """Save the answers so far of many jobs in one transaction (STREAMING ones only: a finished
    answer is never overwritten), with one prepared UPDATE run for every row (executemany): with
    hundreds of streams, an ORM update per row cost more than the writes. Returns the live
    answers whose cancel was requested elsewhere, and those followed from other processes."""
    from django.db import connection, transaction
    from django.utils import timezone

    streaming = Message.Status.STREAMING
    if contents:
        field = Message._meta.get_field
        quote = connection.ops.quote_name
        sql = (f"UPDATE {quote(Message._meta.db_table)} SET {quote(field('content').column)} = %s, "
               f"{quote(field('updated_at').column)} = %s WHERE {quote(field('id').column)} = %s "
               f"AND {quote(field('status').column)} = %s")
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.executemany(sql, [(content, now, pk, streaming) for pk, content in contents.items()])
    cancelled = set(Message.objects.filter(pk__in=live, status=streaming, cancel_requested=True)
                    .values_list("pk", flat=True))
    remote = set()
    if followed:
        found = cache.get_many([followers_key(pk) for pk in live])
        remote = {pk for pk in live if followers_key(pk) in found}
    return cancelled, remote


class _Keeper:
    """The jobs of one event loop (``generation.Job``), their answers written together."""

    def __init__(self):
        self.jobs: dict = {}  # answer id -> generation.Job
        self.task: asyncio.Task | None = None

    def wake(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        ticks, beat = 0, max(1, round(HEARTBEAT_EVERY / SAVE_EVERY))
        try:
            while self.jobs:
                await asyncio.sleep(SAVE_EVERY)
                ticks += 1
                heartbeat = ticks % beat == 0
                jobs = list(self.jobs.values())
                lengths = {job.pk: job.length for job in jobs}
                contents = {job.pk: job.text() for job in jobs if heartbeat or job.saved < job.length}
                try:
                    cancelled, remote = await in_thread_pool(save_partials)(
                        contents, list(lengths), cross_process())
                except Exception:  # noqa: BLE001 - a missed save is made good by the next or the final one
                    logger.exception("saving %d growing answers failed", len(contents))
                    continue
                for job in jobs:
                    if job.pk in contents:
                        job.saved = lengths[job.pk]
                    if job.pk in cancelled:
                        job.request_cancel()
                    job.remote = job.pk in remote
        finally:
            self.task = None


_keepers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Keeper]" = weakref.WeakKeyDictionary()


def keeper_of(loop) -> _Keeper:
    if loop not in _keepers:
        _keepers[loop] = _Keeper()
    return _keepers[loop]
