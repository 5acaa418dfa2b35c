"""Revocation that reaches live sockets: a revoked token, a logout, a password change or reset, a
deleted account, an expired guest and a lost collection end the affected subscriptions within a
second; every operation on a socket checks its credential again."""

import asyncio
import json
import time
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.utils import timezone

from backend.users import accounts, credentials, passwords, rules
from backend.users.models import ApiToken, User

from .conftest import PASSWORD
from .ws import GraphQLWS, session_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

ME = "query { me { email } }"
EVENTS = "subscription { accountEvents { kind } }"


@pytest.fixture
def alice(make_user):
    return make_user("alice@example.com")


async def token_socket(user):
    token, secret = await sync_to_async(credentials.create_api_token)(user, name="ws")
    ws = GraphQLWS()
    assert (await ws.connect({"authorization": f"Bearer {secret}"}))["type"] == "connection_ack"
    await live_subscription(ws)
    return token, secret, ws


async def live_subscription(ws):
    """A subscription that would run for ever, surely started (a query answered after it)."""
    await ws.subscribe(EVENTS)
    assert (await ws.execute(ME))["payload"]["data"]["me"] is not None
    await asyncio.sleep(0.05)


async def session_socket(user):
    client = Client()
    await sync_to_async(client.force_login)(user)
    ws = GraphQLWS(cookie=session_cookie(client))
    assert await ws.connect() == {"type": "connection_ack"}
    await live_subscription(ws)
    return client, ws


async def closed_within(ws, seconds: float = 1.0) -> None:
    started = time.monotonic()
    message = await ws.receive(timeout=seconds)
    assert message == {"type": "close", "code": 4401}, message
    assert time.monotonic() - started < seconds


async def test_revoking_a_token_closes_its_sockets_and_not_the_others(alice):
    token, _, ws = await token_socket(alice)
    _, _, other = await token_socket(alice)
    await sync_to_async(credentials.revoke_api_token)(alice, token.pk)
    await closed_within(ws)
    assert (await other.execute(ME))["payload"]["data"]["me"]["email"] == "alice@example.com"
    await other.close()


async def test_logging_out_closes_the_sockets_of_that_session(alice):
    client, ws = await session_socket(alice)
    await sync_to_async(client.get)("/graphql/", {"query": "{ __typename }"})  # the CSRF cookie, as a browser
    response = await sync_to_async(client.post)("/graphql/", data=json.dumps({"query": "mutation { logout }"}),
                                                content_type="application/json",
                                                headers={"X-CSRFToken": client.cookies["csrftoken"].value})
    assert response.json() == {"data": {"logout": True}}
    await closed_within(ws)


async def test_a_password_change_revokes_tokens_and_closes_every_socket(alice):
    _, secret, token_ws = await token_socket(alice)
    _, session_ws = await session_socket(alice)
    await sync_to_async(passwords.change_password)(alice, current_password=PASSWORD, new_password="a whole new passphrase")
    await closed_within(token_ws)
    await closed_within(session_ws)
    assert await sync_to_async(credentials.user_for_token)(secret) is None
    assert not await sync_to_async(ApiToken.objects.filter(user=alice, revoked_at__isnull=True).exists)()
    again = GraphQLWS()
    assert await again.connect({"authorization": f"Bearer {secret}"}) == {"type": "close", "code": 4403}


async def test_a_password_reset_does_the_same(alice):
    from django.contrib.auth.tokens import default_token_generator

    _, secret, ws = await token_socket(alice)
    token = await sync_to_async(default_token_generator.make_token)(alice)
    await sync_to_async(passwords.reset_password)(uid=rules.uid_of(alice), token=token,
                                                 new_password="a whole new passphrase")
    await closed_within(ws)
    assert await sync_to_async(credentials.user_for_token)(secret) is None


async def test_deleting_the_account_closes_its_sockets(alice):
    _, _, ws = await token_socket(alice)
    await sync_to_async(accounts.delete_account)(alice, password=PASSWORD)
    await closed_within(ws)


async def test_every_operation_checks_the_credential_again(alice):
    """Even when no event arrives (a token revoked behind the service's back), the next operation
    on the socket is anonymous."""
    token, secret, ws = await token_socket(alice)
    await sync_to_async(ApiToken.objects.filter(pk=token.pk).update)(revoked_at=timezone.now())
    result = await ws.execute("mutation { createChat(model: \"rag-faiss\") { __typename } }")
    assert [e["extensions"]["code"] for e in result["payload"]["errors"]] == ["UNAUTHENTICATED"]
    assert (await ws.execute(ME))["payload"]["data"]["me"] is None
    await ws.close()


async def test_an_expired_guest_signs_in_nowhere(db):
    from .conftest import GraphQLClient

    client = GraphQLClient()
    call = sync_to_async(client)
    started = await call("mutation { startGuestSession { ... on User { id } } }")
    assert started["data"]["startGuestSession"]["id"] and (await call(ME))["data"]["me"] is not None
    user = await sync_to_async(lambda: User.objects.get(is_guest=True))()
    # A socket of the guest closes when the account expires, with no operation on it.
    await sync_to_async(User.objects.filter(pk=user.pk).update)(
        guest_expires_at=timezone.now() + timedelta(seconds=1))
    ws = GraphQLWS(cookie=session_cookie(client.client))
    assert await ws.connect() == {"type": "connection_ack"}
    await live_subscription(ws)
    await asyncio.sleep(0.9)
    await closed_within(ws, 2.0)
    # Over HTTP it is anonymous, and cannot claim the account.
    assert (await call(ME))["data"]["me"] is None
    claim = await call('mutation { claimGuestAccount(email: "late@example.com", password: "a long passphrase") '
                       '{ __typename } }')
    assert [e["extensions"]["code"] for e in claim["errors"]] == ["UNAUTHENTICATED"]


async def test_a_member_removed_from_a_collection_stops_receiving_its_events(alice, make_user):
    from backend.documents import collections

    bob = await sync_to_async(make_user)("bob@example.com", email_verified_at=timezone.now())
    collection = await sync_to_async(collections.create_collection)(alice, name="Shared")
    await sync_to_async(collections.share_collection)(alice, collection.pk, email="bob@example.com", role="VIEWER")
    client, ws = await session_socket(bob)
    from strawberry import relay

    gid = str(relay.GlobalID("Collection", str(collection.pk)))
    op = await ws.subscribe("subscription($c: ID!) { documentEvents(collectionId: $c) { status } }", {"c": gid})
    await asyncio.sleep(0.2)
    await sync_to_async(collections.unshare_collection)(alice, collection.pk, email="bob@example.com")
    started = time.monotonic()
    while True:
        message = await ws.receive(timeout=1.0)
        if message.get("id") == op:
            break
    assert message == {"id": op, "type": "complete"} and time.monotonic() - started < 1.0
    await ws.close()
