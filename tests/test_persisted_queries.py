"""Apollo's persisted queries, and a deployment that runs only the app's own operations."""

import hashlib
import json

import pytest
from django.test import Client

from .conftest import error_codes
from .ws import GraphQLWS, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

ME = "query Me { me { email } }"
OTHER = "query Other { me { username } }"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def post(client, query=None, digest=None, **extra):
    body = {"variables": {}, **extra}
    if query is not None:
        body["query"] = query
    if digest is not None:
        body["extensions"] = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    response = client.client.post("/graphql/", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def trusted(settings, tmp_path):
    """A persisted-documents.json as graphql-codegen writes it, holding ME only."""
    path = tmp_path / "persisted-documents.json"
    path.write_text(json.dumps({sha(ME): ME}))
    settings.GRAPHQL_PERSISTED_DOCUMENTS = str(path)
    return settings


def test_a_hash_the_server_does_not_know_is_sent_again_with_its_text_then_the_hash_alone_runs(alice):
    missing = post(alice, digest=sha(OTHER))
    assert error_codes(missing) == ["PERSISTED_QUERY_NOT_FOUND"]
    assert missing["errors"][0]["message"] == "PersistedQueryNotFound"  # what Apollo's link looks for
    assert post(alice, OTHER, sha(OTHER))["data"] == {"me": {"username": "alice"}}
    assert post(alice, digest=sha(OTHER))["data"] == {"me": {"username": "alice"}}  # registered: no text needed
    assert error_codes(post(alice, OTHER, sha(ME))) == ["BAD_USER_INPUT"]  # a text under another's hash
    bad = post(alice, digest="not-a-hash")
    assert error_codes(bad) == ["BAD_USER_INPUT"] and "sha256Hash" in bad["errors"][0]["message"]
    assert post(alice, ME)["data"] == {"me": {"email": "alice@example.com"}}  # plain text still runs


def test_a_query_by_hash_over_get_as_apollo_sends_it(alice):
    """useGETForHashedQueries: operationName, variables and extensions in the URL, no query."""
    params = {"operationName": "Me", "variables": "{}",
              "extensions": json.dumps({"persistedQuery": {"version": 1, "sha256Hash": sha(ME)}})}
    missing = alice.client.get("/graphql/", params)
    assert missing.status_code == 200 and error_codes(missing.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
    assert alice.client.get("/graphql/", {**params, "query": ME}).json() == {"data": {"me": {"email": "alice@example.com"}}}
    assert alice.client.get("/graphql/", params).json() == {"data": {"me": {"email": "alice@example.com"}}}


def test_the_apps_own_documents_run_by_hash_and_in_trusted_mode_nothing_else(alice, trusted):
    assert post(alice, digest=sha(ME))["data"] == {"me": {"email": "alice@example.com"}}  # no registration needed
    trusted.GRAPHQL_TRUSTED_DOCUMENTS_ONLY = True
    assert post(alice, digest=sha(ME))["data"] == {"me": {"email": "alice@example.com"}}
    for refused in (post(alice, OTHER), post(alice, digest=sha(OTHER)), post(alice, OTHER, sha(OTHER)),
                    post(alice, "{ me { email } }")):  # the same fields in another text are another document
        assert error_codes(refused) == ["PERSISTED_QUERY_NOT_ALLOWED"] and refused.get("data") is None, refused
    # Nothing ran, and the refusal registered nothing: the hash is still refused.
    assert error_codes(post(alice, digest=sha(OTHER))) == ["PERSISTED_QUERY_NOT_ALLOWED"]


async def test_websocket_operations_follow_the_same_rules(user, trusted):
    from asgiref.sync import sync_to_async

    trusted.GRAPHQL_TRUSTED_DOCUMENTS_ONLY = True
    client = Client()
    await sync_to_async(client.force_login)(user)
    ws = GraphQLWS(cookie=session_cookie(client))
    assert await ws.connect() == {"type": "connection_ack"}
    refused = await ws.subscribe(OTHER)
    message = await ws.receive()
    assert message["id"] == refused and message["type"] == "error"
    assert message["payload"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_ALLOWED"
    allowed = await ws.subscribe(None, extensions={"persistedQuery": {"version": 1, "sha256Hash": sha(ME)}})
    message = await ws.receive()
    assert message["id"] == allowed and message["payload"] == {"data": {"me": {"email": "alice@example.com"}}}
    await ws.close()


def test_trusted_mode_without_documents_does_not_start(monkeypatch):
    import subprocess
    import sys

    env = {"DJANGO_ENV": "test", "GRAPHQL_TRUSTED_DOCUMENTS_ONLY": "true", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "manage.py", "check"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0 and "GRAPHQL_PERSISTED_DOCUMENTS" in result.stderr
