"""A graphql-transport-ws client over Channels' WebsocketCommunicator."""

import itertools
import json

from channels.testing import WebsocketCommunicator

PROTOCOL = "graphql-transport-ws"


class GraphQLWS:
    def __init__(self, *, cookie: str | None = None, origin: str = "http://localhost:3000", host: str = "localhost"):
        from backend.asgi import application

        headers = [(b"origin", origin.encode()), (b"host", host.encode())]
        if cookie:
            headers.append((b"cookie", cookie.encode()))
        self.comm = WebsocketCommunicator(application, "/graphql/", headers=headers, subprotocols=[PROTOCOL])
        self.ids = itertools.count(1)

    async def connect(self, payload: dict | None = None) -> dict:
        connected, subprotocol = await self.comm.connect()
        assert connected, subprotocol
        await self.comm.send_to(text_data=json.dumps({"type": "connection_init", "payload": payload or {}}))
        return await self.receive()

    async def receive(self, timeout: float = 10) -> dict:
        message = await self.comm.receive_output(timeout)
        if message["type"] == "websocket.close":
            return {"type": "close", "code": message.get("code")}
        return json.loads(message["text"])

    async def subscribe(self, query: str | None, variables: dict | None = None, extensions: dict | None = None) -> str:
        op_id = str(next(self.ids))
        payload = {"query": query, "variables": variables or {}, **({"extensions": extensions} if extensions else {})}
        await self.comm.send_to(text_data=json.dumps({"id": op_id, "type": "subscribe", "payload": payload}))
        return op_id

    async def execute(self, query: str, variables: dict | None = None) -> dict:
        """A query or mutation over the socket: its single result payload."""
        op_id = await self.subscribe(query, variables)
        message = await self.receive()
        assert message["id"] == op_id, message
        if message["type"] == "next":
            complete = await self.receive()
            assert complete == {"id": op_id, "type": "complete"}, complete
        return message

    async def complete(self, op_id: str) -> None:
        await self.comm.send_to(text_data=json.dumps({"id": op_id, "type": "complete"}))

    async def close(self) -> None:
        await self.comm.disconnect()


def session_cookie(client) -> str:
    return f"sessionid={client.cookies['sessionid'].value}"
