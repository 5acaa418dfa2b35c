"""Throttles on the actions an abuser repeats, counted in the cache (Redis across processes), and
a cost limit per operation beside the depth, alias and token limits."""

import shutil
import subprocess
import sys

import pytest
from django.core import mail
from django.test import Client

from backend.documents import search as document_search

from .conftest import PASSWORD, GraphQLClient, error_codes
from .test_chats import alice_user, fake, openai  # noqa: F401
from .test_documents import PHOTOSYNTHESIS_MD, SEARCH, TRAINS_TXT, upload, wait

pytestmark = [pytest.mark.django_db(transaction=True)]

REGISTER = "mutation($e: String!) { register(email: $e, password: $p) { ... on User { id } } }".replace(
    "$p", f'"{PASSWORD}"')
GUEST = "mutation { startGuestSession { ... on User { id } } }"
RESET = "mutation($e: String!) { requestPasswordReset(email: $e) { ... on Ack { ok message } } }"


def from_address(address: str) -> GraphQLClient:
    return GraphQLClient(Client(REMOTE_ADDR=address))


def assert_rate_limited(result, action_words: str):
    assert error_codes(result) == ["RATE_LIMITED"], result
    error = result["errors"][0]
    assert 1 <= error["extensions"]["retryAfter"] <= 86400 and action_words in error["message"]


def test_registration_and_guest_sessions_per_address(settings):
    settings.THROTTLES = {**settings.THROTTLES, "register": "3/d", "guest": "2/d"}
    client = from_address("203.0.113.7")
    for i in range(3):
        assert client(REGISTER, {"e": f"user{i}@example.com"})["data"]["register"]["id"]
    assert_rate_limited(client(REGISTER, {"e": "user9@example.com"}), "accounts")
    assert from_address("203.0.113.8")(REGISTER, {"e": "user9@example.com"})["data"]["register"]["id"]
    for _ in range(2):
        assert from_address("203.0.113.9")(GUEST)["data"]["startGuestSession"]["id"]
    assert_rate_limited(from_address("203.0.113.9")(GUEST), "guest sessions")


def test_password_reset_mail_per_email_and_per_address_reveals_nothing(settings, make_user):
    settings.THROTTLES = {**settings.THROTTLES, "reset-mail-email": "3/d", "reset-mail-address": "10/d"}
    make_user("victim@example.com")
    answers = set()
    for i in range(20):  # from many addresses, as a botnet would
        result = from_address(f"198.51.100.{i}")(RESET, {"e": "victim@example.com"})
        answers.add(result["data"]["requestPasswordReset"]["message"])
        result = from_address(f"198.51.100.{i}")(RESET, {"e": "nobody@example.com"})
        answers.add(result["data"]["requestPasswordReset"]["message"])
    assert len(mail.outbox) == 3 and {m.to[0] for m in mail.outbox} == {"victim@example.com"}
    assert len(answers) == 1  # the same answer for an account, no account, and past the limit
    # One address asking for many emails is refused, whether or not they have accounts.
    client = from_address("192.0.2.1")
    for i in range(10):
        client(RESET, {"e": f"someone{i}@example.com"})
    assert_rate_limited(client(RESET, {"e": "victim@example.com"}), "password reset")
    assert_rate_limited(client(RESET, {"e": "nobody-at-all@example.com"}), "password reset")


def test_verification_mail_per_account(alice, settings):
    settings.THROTTLES = {**settings.THROTTLES, "verify-mail": "2/d"}
    verify = "mutation { requestEmailVerification { ... on Ack { ok } } }"
    mail.outbox.clear()
    for _ in range(2):
        assert alice(verify)["data"]["requestEmailVerification"]["ok"] is True
    assert_rate_limited(alice(verify), "verification")
    assert len(mail.outbox) == 2
    # Many accounts from one address: that address's own limit.
    settings.THROTTLES = {**settings.THROTTLES, "verify-mail": "100/d", "verify-mail-address": "3/d"}
    for _ in range(3):
        assert alice(verify)["data"]["requestEmailVerification"]["ok"] is True
    assert_rate_limited(alice(verify), "from your address")


def test_uploads_and_searches_per_account(alice, bob, settings):
    settings.THROTTLES = {**settings.THROTTLES, "upload": "2/d", "search": "3/d"}
    upload(alice, "plants.md", PHOTOSYNTHESIS_MD)
    upload(alice, "trains.txt", TRAINS_TXT)
    result = alice.upload("mutation($file: Upload!) { uploadDocument(file: $file) { __typename } }",
                          {"file": None}, {"variables.file": ("more.txt", b"more text", "text/plain")})
    assert_rate_limited(result, "uploads")
    wait()
    for _ in range(3):
        assert alice(SEARCH, {"q": "plants"})["data"]["searchDocuments"]
    assert_rate_limited(alice(SEARCH, {"q": "plants"}), "searches")
    assert bob(SEARCH, {"q": "plants"})["data"]["searchDocuments"] == []  # another account: its own count


@pytest.mark.asyncio
async def test_chat_stream_starts_per_account(alice_user, openai, settings):
    from .test_chats import STREAM, new_chat, socket_for, stream

    settings.THROTTLES = {**settings.THROTTLES, "turn": "2/d"}
    _, gid = await new_chat(alice_user, "gpt-3.5-turbo")
    ws = await socket_for(alice_user)
    for _ in range(2):
        await stream(ws, gid, "hi")
    await ws.subscribe(STREAM, {"chat": gid, "content": "hi"})
    message = await ws.receive()
    error = message["payload"]["errors"][0]
    assert error["extensions"]["code"] == "RATE_LIMITED" and error["extensions"]["retryAfter"] >= 1
    await ws.close()


@pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed (scripts/test.sh installs it)")
def test_a_throttle_holds_across_processes_on_redis(settings, tmp_path):
    from django.core.cache import cache

    from backend.core.throttle import throttle

    from .test_scale_out import Redis

    server = Redis(tmp_path)
    local = settings.CACHES
    try:
        url = server.url(1)
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}
        settings.THROTTLES = {**settings.THROTTLES, "search": "3/d"}
        for _ in range(3):
            throttle("search", "user:42")
        # Another process on the same Redis finds the throttle used up.
        code = ("import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'backend.settings'; django.setup()\n"
                "from backend.core.throttle import throttle\n"
                "from backend.core.errors import RateLimited\n"
                "try:\n    throttle('search', 'user:42')\nexcept RateLimited as e:\n    print('limited', e.extensions)\n")
        env = {"REDIS_URL": url, "THROTTLE_SEARCH": "3/d", "DJANGO_ENV": "development", "PATH": "/usr/bin:/bin",
               "DATA_DIR": str(tmp_path / "other")}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert out.stdout.startswith("limited"), out.stderr[-2000:]
        assert "retry_after" in out.stdout
        cache.clear()
    finally:
        settings.CACHES = local
        server.stop()


# --- the cost of an operation ------------------------------------------------------------------

def aliased_searches(n: int, strategy: str) -> str:
    return "query { " + " ".join(f's{i}: searchDocuments(query: "q{i}", strategy: {strategy}) {{ score }}'
                                 for i in range(n)) + " }"


def test_aliased_searches_past_the_cost_limit_are_refused_before_running(alice, monkeypatch):
    ran = []
    monkeypatch.setattr(document_search, "search", lambda *a, **k: ran.append(1) or [])
    result = alice(aliased_searches(30, "MULTI_QUERY"))
    assert error_codes(result) == ["BAD_USER_INPUT"] and result["data"] is None
    ext = result["errors"][0]["extensions"]
    assert ext["cost"] == 30 * 50 * 4 and ext["maxCost"] == 1000 and "costs 6000" in result["errors"][0]["message"]
    assert ran == []
    assert "errors" not in alice(aliased_searches(3, "HYBRID")) and len(ran) == 3


def test_pages_multiply_the_cost_of_what_is_inside_them(alice):
    nested = """query($n: Int) { collections(first: $n) { edges { node {
      documents(first: 100) { edges { node { chunks(first: 100) { edges { node { text } } } } } } } } } }"""
    result = alice(nested, {"n": 50})
    assert error_codes(result) == ["BAD_USER_INPUT"] and result["errors"][0]["extensions"]["cost"] > 1000
    small = alice(nested.replace("first: 100", "first: 3"), {"n": 5})
    assert "errors" not in small, small
