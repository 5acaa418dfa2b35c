"""The server: daphne, with the flow control it lacks on HTTP responses.

    python -m backend.serve -b 0.0.0.0 -p 8000 backend.asgi:application   (daphne's arguments)

daphne hands every block of a response body to Twisted as soon as the application sends it, and
the application's ``send`` returns at once: a client reading slower than the server (a phone, a
throttled link, or someone who opens a download and stops reading) had the whole rest of the
response piled up in the server's memory, a knowledge-base archive up to its 512 MB, per
download. Twisted knows when a connection's send buffer is full (it pauses a registered
producer, and resumes it once the buffer drains); daphne never asks. Here each streamed response
registers as that producer, and ``send`` waits while it is paused, so a download holds about one
block of the file in memory however slowly it is read. Websockets are unchanged.
"""

import asyncio

from daphne.cli import CommandLineInterface
from daphne.server import Server
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

# While paused, how often a waiting response looks whether its client went away (Twisted tells a
# producer of a lost connection only once it is unregistered).
CHECK_GONE = 1.0


@implementer(IPushProducer)
class _SendWindow:
    """Registered on a response as its producer: Twisted pauses it while the connection's send
    buffer is full and resumes it once that drains."""

    def __init__(self):
        self.open = asyncio.Event()
        self.open.set()

    def pauseProducing(self):
        self.open.clear()

    def resumeProducing(self):
        self.open.set()

    def stopProducing(self):  # the connection is going away: nothing to wait for
        self.open.set()


class FlowControlledServer(Server):
    """daphne's server whose HTTP ``send`` waits while the client is not reading."""

    async def handle_reply(self, protocol, message):
        if message.get("type") != "http.response.body":
            return await super().handle_reply(protocol, message)
        window = getattr(protocol, "_send_window", None)
        more = message.get("more_body", False)
        if window is None and more and not protocol.finished and protocol.channel is not None:
            window = protocol._send_window = _SendWindow()
            protocol.registerProducer(window, True)
        if window is not None and not more:
            protocol._send_window = None
            if protocol.producer is window and protocol.channel is not None:  # (None: the client went away)
                protocol.unregisterProducer()  # before the response finishes: Twisted requires it
        await super().handle_reply(protocol, message)
        if more and window is not None:
            await self._wait_for_room(protocol, window)

    async def _wait_for_room(self, protocol, window: _SendWindow) -> None:
        while not window.open.is_set():
            if protocol not in self.connections or self.connections[protocol].get("disconnected"):
                return  # daphne tells the application (http.disconnect); later sends are dropped
            try:
                await asyncio.wait_for(window.open.wait(), CHECK_GONE)
            except asyncio.TimeoutError:
                pass


class FlowControlledCommandLine(CommandLineInterface):
    server_class = FlowControlledServer


if __name__ == "__main__":
    FlowControlledCommandLine.entrypoint()
