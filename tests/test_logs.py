"""Structured logs with ids, and error reports to Sentry, never carrying secrets or users' text."""

import io
import json
import logging
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backend.core import logs
from backend.core.tasks import runner

from .conftest import PASSWORD
from .test_chats import alice_user, fake, openai  # noqa: F401 - fixtures


pytestmark = pytest.mark.django_db(transaction=True)

SECRET_TEXT = "The vault combination is seven eleven twenty-three."


@pytest.fixture
def json_logs():
    """The production set-up: every record through structlog's formatter, as JSON lines."""
    import backend.asgi  # noqa: F401 - its django.setup() configures logging again: before our handler

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.make_formatter("json"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


def lines(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_logs_carry_the_request_id_into_the_background_task_and_no_secrets(alice, json_logs):
    from backend.chats import keys

    from .test_documents import UPLOAD

    keys.set_provider_key(alice.user, provider="openai", api_key="sk-never-logged-123")
    alice.client.logout()
    logged_in = alice.raw(f'mutation {{ login(email: "{alice.user.email}", password: "{PASSWORD}") '
                          f'{{ __typename }} }}', headers={"X-Request-ID": "req-login-0001"})
    assert logged_in["X-Request-ID"] == "req-login-0001"
    assert logged_in.json()["data"]["login"]["__typename"] == "User"
    uploaded = alice.upload(UPLOAD, {"file": None}, {"variables.file": ("vault.txt", SECRET_TEXT.encode(), "text/plain")},
                            headers={"X-Request-ID": "req-upload-0001"})
    assert uploaded["data"]["uploadDocument"]["document"]["status"] in ("PENDING", "PROCESSING", "READY")
    runner().wait_idle()
    records = lines(json_logs)
    assert records, "nothing was logged"
    assert all({"event", "level", "timestamp", "logger"} <= set(r) for r in records)
    ingested = [r for r in records if r["logger"] == "backend.documents.ingest" and "ingested" in r["event"]]
    assert ingested and ingested[-1]["request_id"] == "req-upload-0001", ingested  # carried into the task
    text = json_logs.getvalue()
    assert PASSWORD not in text and "sk-never-logged-123" not in text and "seven eleven" not in text
    # A request id that is not sane is replaced, never echoed.
    odd = alice.client.get("/healthz", headers={"X-Request-ID": "<script>"})
    assert odd["X-Request-ID"] != "<script>" and len(odd["X-Request-ID"]) == 32


def test_sensitive_keys_are_redacted_in_structured_fields(json_logs):
    logging.getLogger("backend.test").warning("provider call", extra={"api_key": "sk-abc", "password": "pw",
                                                                        "content": "a user's words", "model": "gpt-4"})
    (record,) = [r for r in lines(json_logs) if r["event"] == "provider call"]
    assert record["api_key"] == record["password"] == record["content"] == logs.REDACTED
    assert record["model"] == "gpt-4"


class SentryServer:
    """A local endpoint speaking Sentry's envelope protocol: it keeps what the SDK sends."""

    def __init__(self):
        self.envelopes: list[bytes] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
                server.envelopes.append(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.dsn = f"http://publickey@127.0.0.1:{self.httpd.server_address[1]}/1"

    def events(self) -> list[dict]:
        found = []
        for envelope in self.envelopes:
            for line in envelope.splitlines():
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                if isinstance(item, dict) and ("exception" in item or "logentry" in item or "message" in item):
                    found.append(item)
        return found

    def close(self):
        self.httpd.shutdown()


def test_errors_reach_sentry_scrubbed(alice, settings):
    import sentry_sdk

    sentry = SentryServer()
    key = "-".join(("sk", "sentry", "secret"))  # not in the source lines Sentry sends around a frame
    try:
        logs.init_sentry(sentry.dsn, environment="test")
        try:
            raise RuntimeError("the provider exploded")
        except RuntimeError:
            logging.getLogger("backend.chats.stream").exception(
                "the gpt-4 provider failed unexpectedly", extra={"api_key": key, "text": SECRET_TEXT})
        sentry_sdk.flush(5)
        deadline = time.monotonic() + 5
        while not sentry.events() and time.monotonic() < deadline:
            time.sleep(0.05)
        events = sentry.events()
        assert events, sentry.envelopes
        sent = json.dumps(events)
        assert "the provider exploded" in sent
        assert key not in sent and "seven eleven" not in sent
    finally:
        sentry_sdk.init(dsn=None)
        sentry.close()


def test_scrub_event_drops_credentials_from_requests():
    event = {"request": {"headers": {"Authorization": "Bearer abc", "Cookie": "sessionid=x", "Accept": "*/*"},
                         "data": {"password": "pw"}, "cookies": {"sessionid": "x"}},
             "extra": {"api_key": "sk-1", "model": "gpt-4"}}
    scrubbed = logs.scrub_event(event)
    assert scrubbed["request"]["headers"] == {"Authorization": logs.REDACTED, "Cookie": logs.REDACTED,
                                              "Accept": "*/*"}
    assert scrubbed["request"]["data"] == scrubbed["request"]["cookies"] == logs.REDACTED
    assert scrubbed["extra"] == {"api_key": logs.REDACTED, "model": "gpt-4"}


@pytest.mark.asyncio
async def test_an_answers_logs_carry_its_socket_and_operation_ids(alice_user, openai, json_logs):
    from .test_resumable_streams import SEND, rest, socket_for
    from .test_chats import new_chat

    _, gid = await new_chat(alice_user, "gpt-4")
    ws = await socket_for(alice_user)
    await ws.subscribe(SEND, {"chat": gid, "content": "Tell me a secret"})
    events = await rest(ws)
    await ws.close()
    answer_id = int(__import__("strawberry").relay.GlobalID.from_id(events[-1]["message"]["id"]).node_id)
    found = [r for r in lines(json_logs) if r.get("answer_id") == answer_id]
    assert len(found) == 1, [r["event"] for r in lines(json_logs)][-20:]
    record = found[0]
    assert record["status"] == "COMPLETE" and record["generator"] == "gpt-4"
    assert len(record["socket_id"]) == 32 and len(record["operation_id"]) == 32  # the job kept its operation's ids
    assert "Tell me a secret" not in json_logs.getvalue()
