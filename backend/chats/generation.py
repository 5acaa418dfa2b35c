"""Generation jobs: an answer is written to its end whether or not anyone listens.

A started turn becomes a ``Job`` on this process's event loop (``launch``). It relays the provider's
tokens (``stream.stream_turn``) into its list of deltas, wakes its followers on this process
(``following``), publishes batches of deltas to the answer's channel group while followers on
other processes listen, and is saved with every other job of its loop (``saves``). ``cancel_here``
stops a job of this process; ``settled`` waits for an answer's final state.
"""

import asyncio
import contextvars
import logging
import threading

from channels.layers import get_channel_layer

from backend.core import events
from backend.core.concurrency import in_thread_pool

from .models import Message
from .saves import cross_process, keeper_of
from .stream import Done, Token, stream_turn

logger = logging.getLogger(__name__)

PUBLISH_EVERY = 0.05  # seconds: deltas for followers on other processes, batched
CANCEL_GRACE = 0.5  # seconds a provider may take to send its next token after a cancel

_jobs: dict[int, "Job"] = {}


def answer_group(message_id: int) -> str:
    return f"answer.{message_id}"


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
        keeper = keeper_of(self.loop)
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


def _load(pk: int) -> Message | None:
    return Message.objects.select_related("chat").filter(pk=pk).first()


def _final_state(pk: int):
    message = _load(pk)
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


def record_cancel(pk: int) -> None:
    """Ask for answer ``pk`` to stop wherever its job runs: the job reads this at its next save."""
    Message.objects.filter(pk=pk, status=Message.Status.STREAMING).update(cancel_requested=True)


def stop(pk: int) -> None:
    """From async code: stop answer ``pk``, here at once, or through the database elsewhere."""
    if not cancel_here(pk):
        asyncio.ensure_future(in_thread_pool(record_cancel)(pk))


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
