"""Prometheus metrics at /metrics, read as Prometheus reads them."""

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from .test_chats import alice_user, fake, new_chat, openai, socket_for, stream  # noqa: F401
from .test_documents import PHOTOSYNTHESIS_MD, SEARCH, upload, wait

pytestmark = [pytest.mark.django_db(transaction=True)]


def scrape(client=None, **headers) -> dict:
    response = (client or Client()).get("/metrics", headers=headers)
    assert response.status_code == 200, response.status_code
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_operations_searches_and_documents(alice):
    before = scrape()
    upload(alice, "plants.md", PHOTOSYNTHESIS_MD)
    wait()
    alice("query Find($q: String!) { searchDocuments(query: $q) { score } }", {"q": "chlorophyll"})
    alice("query Bad { node(id: \"x\") { id } }")
    after = scrape()
    assert value(after, "chat_graphql_operations_total", operation="Find", type="query", outcome="ok") == \
        value(before, "chat_graphql_operations_total", operation="Find", type="query", outcome="ok") + 1
    assert value(after, "chat_graphql_operations_total", operation="Bad", type="query", outcome="BAD_USER_INPUT") >= 1
    assert value(after, "chat_search_seconds_count", strategy="hybrid") >= \
        value(before, "chat_search_seconds_count", strategy="hybrid") + 1
    assert value(after, "chat_documents", status="READY", code="") == 1
    assert value(after, "chat_ingestion_queue") == 0
    assert value(after, "chat_http_responses_total", status="2xx") > value(before, "chat_http_responses_total",
                                                                         status="2xx")


@pytest.mark.asyncio
async def test_streams_tokens_first_token_and_outcomes(alice_user, openai):
    before = await sync_to_async(scrape)()
    _, gid = await new_chat(alice_user, "gpt-4")
    ws = await socket_for(alice_user)
    await stream(ws, gid, "hi")
    openai.mode = "rate_limit"
    await stream(ws, gid, "again")
    during = await sync_to_async(scrape)()
    assert value(during, "chat_websockets_active") >= 1
    await ws.close()
    after = await sync_to_async(scrape)()
    delta = lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)  # noqa: E731
    assert delta("chat_tokens_streamed_total", generator="gpt-4") == len(openai.tokens)
    assert delta("chat_first_token_seconds_count", generator="gpt-4") == 1
    assert delta("chat_turns_total", status="COMPLETE", code="") == 1
    assert delta("chat_turns_total", status="FAILED", code="RATE_LIMITED") == 1
    assert value(after, "chat_streams_active") == 0


def test_production_needs_the_metrics_token(settings):
    settings.PRODUCTION = True
    settings.METRICS_TOKEN = ""
    assert Client().get("/metrics").status_code == 404
    settings.METRICS_TOKEN = "scrape-secret"
    assert Client().get("/metrics").status_code == 404
    assert Client().get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 404
    assert "chat_ingestion_queue" in str(scrape(Authorization="Bearer scrape-secret"))
