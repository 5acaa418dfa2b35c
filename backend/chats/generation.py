"""Generation jobs: an answer is written to its end whether or not anyone listens.

A started turn becomes a ``Job`` on this process's event loop (``launch``). Its deltas go to the
job's followers in this process, merged when a follower falls behind (a follower that keeps up
gets token-sized deltas), and its growing text is saved with every other job's every SAVE_EVERY
(one transaction for all), which also touches the answers of quiet jobs (a heartbeat: an answer
STREAMING with no sign of life for STREAM_STALE_AFTER has lost its process, ``recovery``) and
reads the cancels recorded by other processes.

Followers on other processes (``follow``, with a cross-process channel layer such as Redis) read
the saved text from the database, then live deltas the job publishes to the channel group of the
answer (batched every PUBLISH_EVERY, and only while such a follower has said it is listening), and
the final state from the database. The database is the replay buffer: a follower that finds a gap
reads it again, which is never more than SAVE_EVERY behind.
"""

import asyncio
import contextvars
import logging
import threading
import weakref

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.core.cache import cache

from backend.core import events
from backend.core.concurrency import in_thread_pool

from .models import Message
from .stream import FINAL, Done, Failed, Sources, Token, stream_turn

logger = logging.getLogger(__name__)

SAVE_EVERY = 0.5  # seconds between saves of the growing answers
HEARTBEAT_EVERY = 10  # seconds: a quiet job's answer is touched at least this often
PUBLISH_EVERY = 0.05  # seconds: deltas for followers on other processes, batched
CANCEL_GRACE = 0.5  # seconds a provider may take to send its next token after a cancel
FOLLOWERS_TTL = 60  # seconds a remote follower's "I am listening" lasts unless renewed

_jobs: dict[int, "Job"] = {}


def answer_group(message_id: int) -> str:
    return f"answer.{message_id}"


def _followers_key(message_id: int) -> str:
    return f"answer-followers:{message_id}"


def cross_process() -> bool:
    """Whether followers on other processes can exist (a channel layer shared by processes)."""
    layer = get_channel_layer()
    return layer is not None and not isinstance(layer, InMemoryChannelLayer)


class Job:
    def __init__(self, turn, loop: asyncio.AbstractEventLoop):
        self.turn, self.pk, self.loop = turn, turn.answer.pk, loop
        self.parts: list[str] = []
        self.length = 0
        self.saved = 0  # length of the text last written
        self.cancel = asyncio.Event()
        self.finals: list = []  # Sources, then Done or Failed
        self.finished = False
        self.waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.remote = False  # followers on other processes: publish deltas to the answer's group
        self.published = (0, 0)  # parts and characters published
        self.publishing = False
        self.task: asyncio.Task | None = None

    def text(self) -> str:
        return "".join(self.parts)

    def _wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for loop, waiter in waiters:
            if loop is self.loop:
                waiter.set()
            else:
                loop.call_soon_threadsafe(waiter.set)

    def request_cancel(self) -> None:
        """Stop at the next token; a provider that sends none within CANCEL_GRACE is cut off."""
        if self.finished or self.cancel.is_set():
            return
        self.cancel.set()
        self.loop.call_later(CANCEL_GRACE, self._cut_off)

    def _cut_off(self) -> None:
        if not self.finished and self.task is not None:
            self.task.cancel()

    async def run(self) -> None:
        keeper = _keeper(self.loop)
        keeper.jobs[self.pk] = self
        keeper.wake()
        try:
            async for event in stream_turn(self.turn, self.cancel):
                if type(event) is Token:
                    self.parts.append(event.delta)
                    self.length = event.length
                    if self.waiters:
                        self._wake()
                    if self.remote and not self.publishing:
                        self.publishing = True
                        self.loop.call_later(PUBLISH_EVERY, self._publish_soon)
                else:
                    self.finals.append(event)
        except asyncio.CancelledError:
            if not self.cancel.is_set():
                raise  # the server is stopping: stream_turn stored the answer INTERRUPTED
            message, chat = await in_thread_pool(_final_state)(self.pk)  # CANCELLED by stream_turn
            if message is not None:
                self.finals.append(Done(message, chat))
        except Exception:  # noqa: BLE001 - e.g. the database gone; its followers end, the sweep finishes it
            logger.exception("the job of answer %s failed", self.pk)
        finally:
            keeper.jobs.pop(self.pk, None)
            self.finished = True
            _jobs.pop(self.pk, None)
            self._wake()
        if cross_process():
            await self._publish()
            await _send(self.pk, {"kind": "answer.final"})

    def _publish_soon(self) -> None:
        self.loop.create_task(self._publish())

    async def _publish(self) -> None:
        index, length = self.published
        count = len(self.parts)
        self.publishing = False
        if count > index:
            chunk = "".join(self.parts[index:count])
            self.published = (count, length + len(chunk))
            await _send(self.pk, {"kind": "answer.delta", "end": length + len(chunk), "text": chunk})


async def _send(pk: int, event: dict) -> None:
    try:
        await get_channel_layer().group_send(answer_group(pk), {"type": "app.event", **event})
    except Exception:  # noqa: BLE001 - a follower elsewhere catches up from the database
        logger.exception("could not publish answer %s's progress", pk)


def _final_state(pk: int):
    message = Message.objects.select_related("chat").filter(pk=pk).first()
    return (message, message.chat) if message is not None else (None, None)


# --- launching and cancelling ----------------------------------------------------------------

_private_loop: asyncio.AbstractEventLoop | None = None
_private_lock = threading.Lock()


def _loop() -> asyncio.AbstractEventLoop:
    """The loop a job runs on: the caller's (an async resolver), else the server's (a sync
    resolver on a thread of daphne), else a loop of this module's own (a management command,
    a test client without a server)."""
    global _private_loop
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    server = events.server_loop()
    if server is not None:
        return server
    with _private_lock:
        if _private_loop is None or _private_loop.is_closed():
            _private_loop = asyncio.new_event_loop()
            threading.Thread(target=_private_loop.run_forever, name="generation", daemon=True).start()
        return _private_loop


def launch(turn) -> Job:
    """Run ``turn`` to its end on an event loop; followers find it by its answer's id."""
    loop = _loop()
    job = Job(turn, loop)
    _jobs[job.pk] = job
    context = contextvars.copy_context()  # the job's logs carry the ids of the operation that started it

    def start():
        job.task = loop.create_task(job.run(), context=context)

    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        start()
    else:
        loop.call_soon_threadsafe(start)
    return job


def running_here(pk: int) -> Job | None:
    return _jobs.get(pk)


def cancel_here(pk: int) -> bool:
    """Cancel the job of answer ``pk`` if it runs in this process."""
    job = _jobs.get(pk)
    if job is None:
        return False
    job.loop.call_soon_threadsafe(job.request_cancel)
    return True


CANCEL_WAIT = 5.0  # seconds cancelGeneration waits for the answer's final state


async def settled(pk: int, timeout: float = CANCEL_WAIT) -> Message:
    """Answer ``pk`` once it is no longer STREAMING (or as it is after ``timeout``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    load = in_thread_pool(_load)
    while True:
        if pk in _jobs and loop.time() < deadline:  # runs here: no need to ask the database yet
            await asyncio.sleep(0.02)
            continue
        message = await load(pk)
        if message is None or message.status != Message.Status.STREAMING or loop.time() >= deadline:
            return message
        await asyncio.sleep(0.1)


# --- the growing answers, saved together -----------------------------------------------------

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
        found = cache.get_many([_followers_key(pk) for pk in live])
        remote = {pk for pk in live if _followers_key(pk) in found}
    return cancelled, remote


class _Keeper:
    """The jobs of one event loop, their growing answers written together every SAVE_EVERY."""

    def __init__(self):
        self.jobs: dict[int, Job] = {}
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


def _keeper(loop) -> _Keeper:
    if loop not in _keepers:
        _keepers[loop] = _Keeper()
    return _keepers[loop]


# --- following an answer ----------------------------------------------------------------------

async def follow(message: Message, offset: int = 0):
    """The events of answer ``message`` (already checked readable) from character ``offset``: the
    text the follower misses, then live deltas, then the final events. An answer already
    finished gives its text and final events at once."""
    offset = max(0, offset)
    job = _jobs.get(message.pk)
    if job is not None:
        stream = _follow_job(job, offset)
    elif message.status != Message.Status.STREAMING:
        stream = _replay(message, offset)
    else:
        stream = _follow_elsewhere(message.pk, offset)
    async for event in stream:
        yield event


_following = 0  # followers of jobs on this process


def _pause() -> float:
    """Seconds a follower waits after an event so that all of them together send about
    STREAM_EVENTS_PER_SECOND events: none with a few listeners (every token is an event), a
    fraction of a second with hundreds (each event carries the tokens written meanwhile). Each
    event is a GraphQL execution and a websocket frame; under a crowd they, not the tokens, were
    the server's work, and turns waited seconds to start."""
    budget = settings.STREAM_EVENTS_PER_SECOND
    pause = _following / budget if budget > 0 else 0.0
    return min(pause, 0.5) if pause >= 0.005 else 0.0


async def _follow_job(job: Job, have: int):
    global _following
    loop = asyncio.get_running_loop()
    _following += 1
    try:
        async for event in _job_events(job, have, loop):
            yield event
    finally:
        _following -= 1


async def _job_events(job: Job, have: int, loop):
    index = position = 0
    while True:
        finished = job.finished
        count = len(job.parts)
        if index < count:
            chunk = "".join(job.parts[index:count])
            start, index = position, count
            position += len(chunk)
            if position > have:
                yield Token(chunk[max(0, have - start):], position)
                have = position
                pause = _pause()
                if pause and not job.finished:
                    await asyncio.sleep(pause)
            continue
        if finished:
            break
        waiter = asyncio.Event()
        job.waiters.append((loop, waiter))
        if loop is job.loop:
            await waiter.wait()
        else:  # another thread's loop: a wake may race the registration, so look again soon
            try:
                await asyncio.wait_for(waiter.wait(), 0.5)
            except asyncio.TimeoutError:
                pass
    for event in job.finals:
        yield event


def _load(pk: int):
    message = Message.objects.select_related("chat").filter(pk=pk).first()
    return message


async def _replay(message: Message, have: int, chat=None):
    if len(message.content) > have:
        yield Token(message.content[have:], len(message.content))
    if message.status == Message.Status.FAILED:
        yield Failed(message.error_code, message.error_message, message, None, chat or message.chat)
        return
    if message.status == Message.Status.COMPLETE and message.sources:
        yield Sources(message.sources)
    yield Done(message, chat or message.chat)


async def _follow_elsewhere(pk: int, have: int):
    """Follow a job of another process: the database, then the answer's channel group."""
    layer = get_channel_layer()
    channel = await layer.new_channel() if layer is not None else None
    if channel is not None:
        await layer.group_add(answer_group(pk), channel)
    load = in_thread_pool(_load)
    listening = in_thread_pool(lambda: cache.set(_followers_key(pk), 1, FOLLOWERS_TTL))
    renewed = 0.0
    try:
        while True:
            now = asyncio.get_running_loop().time()
            if channel is not None and now - renewed > FOLLOWERS_TTL / 3:
                await listening()
                renewed = now
            message = await load(pk)
            if message is None:
                return
            if message.status != Message.Status.STREAMING:
                async for event in _replay(message, have):
                    yield event
                return
            if len(message.content) > have:
                yield Token(message.content[have:], len(message.content))
                have = len(message.content)
            # Live deltas until one starts past what we have (saved soon: read the database again).
            while channel is not None:
                try:
                    event = await asyncio.wait_for(layer.receive(channel), 1.0)
                except asyncio.TimeoutError:
                    break
                if event.get("kind") != "answer.delta":
                    break
                end, text = event["end"], event["text"]
                start = end - len(text)
                if end <= have:
                    continue
                if start > have:
                    await asyncio.sleep(SAVE_EVERY / 2)
                    break
                yield Token(text[have - start:], end)
                have = end
            if channel is None:
                await asyncio.sleep(1.0)
    finally:
        if channel is not None:
            await layer.group_discard(answer_group(pk), channel)


__all__ = ["FINAL", "Job", "launch", "follow", "cancel_here", "running_here", "save_partials"]
