"""Local servers on 127.0.0.1 that speak the providers' real streaming wire protocols.

- OpenAI chat completions with ``stream: true``: server-sent events of ``chat.completion.chunk``
  objects, then ``data: [DONE]``; errors as OpenAI's JSON error bodies with their status codes.
- Cloudflare Workers AI ``/accounts/{id}/ai/run/{model}`` with ``stream: true``: events of
  ``{"response": "..."}``, then ``data: [DONE]``.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeProvider:
    def __init__(self):
        self.requests: list[dict] = []
        self.tokens = ["Hello", " from", " the", " model", "."]
        self.delay = 0.0
        # ok | auth (401) | rate_limit (429 with Retry-After: retry_after) | context (too long) |
        # stall (headers, then nothing for ``stall`` seconds) | mid_stall (two tokens, then nothing)
        self.mode = "ok"
        self.retry_after = "7"
        self.stall = 5.0
        self.disconnected = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                server.requests.append({"path": self.path, "body": body,
                                        "authorization": self.headers.get("Authorization")})
                if "/ai/run/" in self.path:
                    server._cloudflare(self, body)
                else:
                    server._openai(self, body)

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # hundreds of answers start at once in the benchmarks

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- protocol helpers -------------------------------------------------------------------

    def _error(self, handler, status, body, headers=None):
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _stalled(self, handler, events) -> bool:
        """``stall``: send the headers and then nothing; ``mid_stall``: two events, then nothing."""
        if self.mode not in ("stall", "mid_stall"):
            return False
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        try:
            if self.mode == "mid_stall":
                for event in list(events)[:2]:
                    handler.wfile.write(f"data: {event}\n\n".encode())
                handler.wfile.flush()
            time.sleep(self.stall)
        except (BrokenPipeError, ConnectionResetError):
            pass
        handler.close_connection = True
        return True

    def _sse(self, handler, events):
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Connection", "close")
        handler.end_headers()
        try:
            for event in events:
                handler.wfile.write(f"data: {event}\n\n".encode())
                handler.wfile.flush()
                if self.delay:
                    time.sleep(self.delay)
            handler.wfile.write(b"data: [DONE]\n\n")
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.disconnected.set()
        handler.close_connection = True

    def _openai(self, handler, body):
        if self.mode == "auth":
            return self._error(handler, 401, {"error": {
                "message": "Incorrect API key provided: sk-wrong. You can find your API key at "
                           "https://platform.openai.com/account/api-keys.", "type": "invalid_request_error",
                "param": None, "code": "invalid_api_key"}})
        if self.mode == "rate_limit":
            return self._error(handler, 429, {"error": {"message": "Rate limit reached", "type": "requests",
                                                        "code": "rate_limit_exceeded"}},
                               {"retry-after": self.retry_after})
        if self.mode == "context":
            return self._error(handler, 400, {"error": {
                "message": "This model's maximum context length is 8192 tokens.", "type": "invalid_request_error",
                "param": "messages", "code": "context_length_exceeded"}})
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": body.get("model")}

        def events():
            yield json.dumps({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                   "finish_reason": None}]})
            for token in self.tokens:
                yield json.dumps({**base, "choices": [{"index": 0, "delta": {"content": token},
                                                       "finish_reason": None}]})
            yield json.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})

        if not self._stalled(handler, events()):
            self._sse(handler, events())

    def _cloudflare(self, handler, body):
        if self.mode == "auth":
            return self._error(handler, 401, {"success": False, "errors": [
                {"code": 10000, "message": "Authentication error"}], "messages": [], "result": None})
        if self.mode == "rate_limit":
            return self._error(handler, 429, {"success": False, "errors": [{"code": 3040, "message": "Capacity"}]},
                               {"Retry-After": self.retry_after})
        if self.mode == "context":
            return self._error(handler, 400, {"success": False, "errors": [{"code": 5021, "message": (
                "AiError: AiError: The estimated number of input and maximum output tokens (9000) exceeded "
                "this model's context window limit (8192).")}], "messages": [], "result": None})
        events = (json.dumps({"response": token, "p": "abc"}) for token in self.tokens)
        if not self._stalled(handler, events):
            self._sse(handler, events)
