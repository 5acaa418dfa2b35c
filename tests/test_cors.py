"""A frontend on another origin: CORS with credentials for the configured origins only, and the
CSRF token handed over in a header that origin may read."""

import json

import pytest
from django.test import Client

APP = "http://localhost:3000"
EVIL = "https://evil.example"
MUTATION = json.dumps({"query": "mutation { startGuestSession { __typename } }"})


def preflight(client, origin):
    return client.options("/graphql/", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-csrftoken,authorization"})


@pytest.mark.django_db
def test_the_frontend_origin_may_call_with_credentials():
    client = Client(enforce_csrf_checks=True)
    response = preflight(client, APP)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == APP
    assert response["Access-Control-Allow-Credentials"] == "true"
    allowed = response["Access-Control-Allow-Headers"].lower()
    assert "x-csrftoken" in allowed and "authorization" in allowed and "content-type" in allowed

    # The first GET hands over the CSRF token in a header the page may read.
    first = client.get("/graphql/", {"query": "{ me { id } }"}, headers={"Origin": APP})
    assert first.status_code == 200 and first.json() == {"data": {"me": None}}
    assert first["Access-Control-Allow-Origin"] == APP
    assert "x-csrftoken" in first["Access-Control-Expose-Headers"].lower()
    token = first["X-CSRFToken"]

    refused = client.post("/graphql/", MUTATION, content_type="application/json", headers={"Origin": APP})
    assert refused.status_code == 403  # no token: Django's CSRF check applies
    sent = client.post("/graphql/", MUTATION, content_type="application/json",
                       headers={"Origin": APP, "X-CSRFToken": token})
    assert sent.status_code == 200, sent.content
    assert sent.json() == {"data": {"startGuestSession": {"__typename": "User"}}}
    assert sent["Access-Control-Allow-Origin"] == APP


@pytest.mark.django_db
def test_other_origins_get_no_cors_headers_and_fail_csrf():
    client = Client(enforce_csrf_checks=True)
    response = preflight(client, EVIL)
    assert "Access-Control-Allow-Origin" not in response
    first = client.get("/graphql/", {"query": "{ me { id } }"}, headers={"Origin": EVIL})
    assert "Access-Control-Allow-Origin" not in first and "Access-Control-Allow-Credentials" not in first
    # Even with a valid token (stolen or guessed), a mutation from that origin is refused.
    forged = client.post("/graphql/", MUTATION, content_type="application/json",
                         headers={"Origin": EVIL, "X-CSRFToken": first["X-CSRFToken"]})
    assert forged.status_code == 403


@pytest.mark.django_db
def test_allowed_origins_come_from_settings(settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://chat.example.com"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.com"]
    client = Client(enforce_csrf_checks=True)
    assert preflight(client, "https://chat.example.com")["Access-Control-Allow-Origin"] == "https://chat.example.com"
    assert "Access-Control-Allow-Origin" not in preflight(client, APP)
    token = client.get("/graphql/", {"query": "{ me { id } }"})["X-CSRFToken"]
    sent = client.post("/graphql/", MUTATION, content_type="application/json",
                       headers={"Origin": "https://chat.example.com", "X-CSRFToken": token})
    assert sent.status_code == 200, sent.content


@pytest.mark.django_db(transaction=True)
def test_a_bearer_token_client_gets_no_csrf_cookie_or_header(user):
    from backend.users.credentials import create_api_token

    _, secret = create_api_token(user, name="api")
    client = Client(enforce_csrf_checks=True)
    answered = client.post("/graphql/", json.dumps({"query": "{ me { email } }"}), content_type="application/json",
                           headers={"Authorization": f"Bearer {secret}"})
    assert answered.json() == {"data": {"me": {"email": user.email}}}
    assert "X-CSRFToken" not in answered and "csrftoken" not in answered.cookies
    browser = Client(enforce_csrf_checks=True).get("/graphql/", {"query": "{ __typename }"})
    assert browser["X-CSRFToken"] and "csrftoken" in browser.cookies  # a browser still gets both
