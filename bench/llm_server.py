"""A local server speaking OpenAI's streaming chat-completions protocol, on asyncio, for load.

The tests' provider (``tests/fake_providers.py``) runs a thread per answer: with 500 answers paced
at 30 tokens a second, its own process was the bottleneck of the benchmark. This one writes the same
server-sent events (``chat.completion.chunk`` objects, then ``data: [DONE]``) from one event loop.

    python bench/llm_server.py PORT TOKENS DELAY
"""

import asyncio
import json
import sys


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tokens: int, delay: float):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = json.loads(await reader.readexactly(length) or b"{}")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                     b"Connection: close\r\n\r\n")
        base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": body.get("model")}

        def event(delta, finish=None):
            return f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': delta, 'finish_reason': finish}]})}\n\n".encode()

        writer.write(event({"role": "assistant", "content": ""}))
        for i in range(tokens):
            writer.write(event({"content": f" t{i}"}))
            if delay:
                await writer.drain()
                await asyncio.sleep(delay)
        writer.write(event({}, "stop") + b"data: [DONE]\n\n")
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main(port: int, tokens: int, delay: float):
    server = await asyncio.start_server(lambda r, w: handle(r, w, tokens, delay), "127.0.0.1", port, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
