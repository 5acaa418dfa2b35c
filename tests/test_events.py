"""Events sent from threads without a server loop (a Celery worker, the task runner before any
socket connected) go through one long-lived loop of the process, not a new thread and event
loop per event (with Redis, a new connection per event)."""

import asyncio
import threading

from backend.core import events


class Layer:
    def __init__(self):
        self.sent = []

    async def group_send(self, group, message):
        self.sent.append((group, message["kind"], id(asyncio.get_running_loop()), threading.current_thread().name))


def test_events_from_worker_threads_share_one_loop_and_arrive_in_order(monkeypatch):
    layer = Layer()
    monkeypatch.setattr(events, "get_channel_layer", lambda: layer)
    monkeypatch.setattr(events, "_server_loop", None)
    before = threading.active_count()

    def worker(n):
        for i in range(5):
            events.send_group_now("collection.1", {"kind": f"{n}-{i}"})

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert events.flush(10)
    assert len(layer.sent) == 15
    assert len({loop for _, _, loop, _ in layer.sent}) == 1  # one loop for every send
    assert {name for *_, name in layer.sent} == {"event-publisher"}
    for n in range(3):  # each thread's events in the order it sent them
        assert [kind for _, kind, _, _ in layer.sent if kind.startswith(f"{n}-")] == [f"{n}-{i}" for i in range(5)]
    assert threading.active_count() <= before + 1  # the publisher, made once


def test_a_broken_layer_does_not_break_the_sender(monkeypatch, caplog):
    class Broken:
        async def group_send(self, group, message):
            raise ConnectionError("redis is down")

    monkeypatch.setattr(events, "get_channel_layer", lambda: Broken())
    monkeypatch.setattr(events, "_server_loop", None)
    events.send_group_now("collection.1", {"kind": "DOCUMENT"})  # no exception
    assert events.flush(10)
    assert "could not publish DOCUMENT" in caplog.text


def test_a_thread_does_not_wait_for_its_sends_and_they_still_arrive_in_order(monkeypatch):
    """A slow layer (a Redis round trip, a busy server loop) no longer holds the sending thread
    (an ingestion sent a handful of progress events per document), and a slow send is not
    overtaken by the faster ones after it."""
    sent, gate = [], threading.Event()

    class Slow:
        async def group_send(self, group, message):
            if message["kind"] == "0":
                await asyncio.get_running_loop().run_in_executor(None, gate.wait, 10)
            sent.append(message["kind"])

    monkeypatch.setattr(events, "get_channel_layer", lambda: Slow())
    monkeypatch.setattr(events, "_server_loop", None)
    for i in range(5):
        events.send_group_now("collection.1", {"kind": str(i)})  # returns while "0" is still being sent
    assert sent == [] and not events.flush(0.2)
    gate.set()
    assert events.flush(10)
    assert sent == ["0", "1", "2", "3", "4"]


async def test_an_event_sent_from_a_loops_own_thread_goes_out_without_blocking_it(monkeypatch):
    """Before, this path went through async_to_sync, which refuses to run on a loop's thread:
    the event was lost (logged)."""
    layer = Layer()
    monkeypatch.setattr(events, "get_channel_layer", lambda: layer)
    events.send_group_now("collection.1", {"kind": "DOCUMENT"})
    await asyncio.sleep(0)
    assert [(group, kind) for group, kind, *_ in layer.sent] == [("collection.1", "DOCUMENT")]
    assert layer.sent[0][2] == id(asyncio.get_running_loop())


def test_flush_does_not_wait_for_a_loop_that_stopped(monkeypatch):
    """A server loop that stopped (a test's, a shutting-down server) never sends what it was
    handed; waiting for it held ``wait_idle`` and exit for their whole timeout."""
    import time

    stopped = asyncio.new_event_loop()  # never run: as a loop that has stopped
    monkeypatch.setattr(events, "get_channel_layer", lambda: Layer())
    monkeypatch.setattr(events, "server_loop", lambda: stopped)
    events.send_group_now("collection.1", {"kind": "DOCUMENT"})
    started = time.monotonic()
    assert events.flush(5) and time.monotonic() - started < 1
    stopped.close()
