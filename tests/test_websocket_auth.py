"""Websocket authentication on /graphql/: session cookie, connection_init token, refusals."""

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from backend.users import credentials, profile

from .conftest import PASSWORD
from .ws import GraphQLWS, session_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

ME = "query { me { email } }"
EVENTS = "subscription { accountEvents { kind } }"


@pytest.fixture
def alice(make_user):
    return make_user("alice@example.com")


async def test_session_cookie_authenticates_the_socket(alice):
    client = Client()
    await sync_to_async(client.force_login)(alice)
    ws = GraphQLWS(cookie=session_cookie(client))
    assert await ws.connect() == {"type": "connection_ack"}
    result = await ws.execute(ME)
    assert result["payload"] == {"data": {"me": {"email": "alice@example.com"}}}
    await ws.close()


async def test_connection_init_token_authenticates_the_socket(alice):
    _, secret = await sync_to_async(credentials.create_api_token)(alice, name="ws")
    ws = GraphQLWS()
    assert (await ws.connect({"authorization": f"Bearer {secret}"}))["type"] == "connection_ack"
    assert (await ws.execute(ME))["payload"]["data"]["me"]["email"] == "alice@example.com"
    await ws.close()


async def test_a_bad_or_revoked_token_closes_the_socket(alice):
    token, secret = await sync_to_async(credentials.create_api_token)(alice, name="ws")
    await sync_to_async(credentials.revoke_api_token)(alice, token.pk)
    for header in (f"Bearer {secret}", "Bearer cbk_made-up", "Basic abc"):
        ws = GraphQLWS()
        assert await ws.connect({"authorization": header}) == {"type": "close", "code": 4403}


async def test_anonymous_socket_sees_no_user_and_is_refused_private_subscriptions(db):
    ws = GraphQLWS()
    await ws.connect()
    assert (await ws.execute(ME))["payload"] == {"data": {"me": None}}
    op = await ws.subscribe(EVENTS)
    message = await ws.receive()
    assert message["id"] == op and message["type"] == "next"
    assert message["payload"]["data"] is None
    assert message["payload"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    await ws.close()


async def test_account_events_reach_every_socket_of_the_user(alice, make_user):
    _, secret = await sync_to_async(credentials.create_api_token)(alice, name="ws")
    ws = GraphQLWS()
    await ws.connect({"authorization": f"Bearer {secret}"})
    op = await ws.subscribe(EVENTS)
    # Give the subscription a moment to join its group before acting elsewhere.
    import asyncio

    await asyncio.sleep(0.2)
    other = await sync_to_async(make_user)("bob@example.com")
    await sync_to_async(profile.update_profile)(other, bio="not alice")  # another user's change: not delivered
    await sync_to_async(profile.update_preferences)(alice, {"theme": "dark"})
    message = await ws.receive()
    assert message == {"id": op, "type": "next", "payload": {"data": {"accountEvents": {"kind": "PREFERENCES_UPDATED"}}}}
    await ws.complete(op)
    await ws.close()


async def test_foreign_origins_are_refused(alice):
    ws = GraphQLWS(origin="https://evil.example")
    connected, _ = await ws.comm.connect()
    assert not connected


async def test_login_is_refused_over_the_socket(alice):
    ws = GraphQLWS()
    await ws.connect()
    result = await ws.execute(f'mutation {{ login(email: "alice@example.com", password: "{PASSWORD}") {{ __typename }} }}')
    assert result["payload"]["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    await ws.close()


async def test_the_sockets_credential_checks_run_on_the_request_threads_not_the_shared_sync_thread(alice, monkeypatch):
    """The token of a connection_init and the check when a credential changes ran on the one thread
    that ``sync_to_async`` shares, one socket after another in a burst of clients; they run on the
    request threads (``in_thread_pool``), as the operations' checks do."""
    import asyncio
    import threading

    from backend.schema import views

    threads = []

    def recorded(original):
        def run(*args):
            threads.append((original.__name__, threading.current_thread().name))
            return original(*args)
        return run

    monkeypatch.setattr(views, "_user_for_secret", recorded(views._user_for_secret))
    monkeypatch.setattr(credentials, "credential_valid", recorded(credentials.credential_valid))
    token, secret = await sync_to_async(credentials.create_api_token)(alice, name="ws")
    ws = GraphQLWS()
    assert (await ws.connect({"authorization": f"Bearer {secret}"}))["type"] == "connection_ack"
    assert (await ws.execute(ME))["payload"]["data"]["me"]["email"] == "alice@example.com"
    await ws.subscribe(EVENTS)
    await asyncio.sleep(0.2)
    await sync_to_async(credentials.revoke_api_token)(alice, token.pk)  # the socket checks again, and closes
    assert await ws.receive() == {"type": "close", "code": 4401}
    names = [name for name, _ in threads]  # the token at connection_init; the credential per operation and at the revocation
    assert names[0] == "_user_for_secret" and names.count("credential_valid") >= 2, names
    assert all(thread.startswith("db") for _, thread in threads), threads
