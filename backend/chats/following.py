"""Following an answer: its text from an offset, then live deltas, then its final events.

A job of this process is followed straight from its list of deltas: a follower that falls behind
gets what was written meanwhile as one event, and with hundreds of followers each waits a moment
between events (``STREAM_EVENTS_PER_SECOND`` per process). An answer written on another process is
followed through the database (the saved text, never more than SAVE_EVERY behind) and the deltas
its job publishes to the answer's channel group; a finished answer gives its text and final events
at once.
"""

import asyncio

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache

from backend.core.concurrency import in_thread_pool

from .generation import Job, _jobs, _load, answer_group
from .models import Message
from .saves import FOLLOWERS_TTL, SAVE_EVERY, followers_key
from .stream import Done, Failed, Sources, Token

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
    listening = in_thread_pool(lambda: cache.set(followers_key(pk), 1, FOLLOWERS_TTL))
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
