"""Property-based operations generated from schema.graphql against a live server (daphne on the
embedded defaults): every query and mutation, with arguments drawn by hypothesis-graphql and ids
that are real, another user's, or decode to nonsense. Whatever the input, the server answers with
data or a typed error: never HTTP 500, never INTERNAL.

The example budget (FUZZ_EXAMPLES, default 600 split between queries and mutations) is fixed and
the generation derandomized, so a CI run is repeatable; raise it locally to search longer.
"""

import base64
import os
import tempfile
from pathlib import Path

import graphql
import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bench import services

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "600"))
SCHEMA = graphql.build_schema((ROOT / "schema.graphql").read_text())


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture(scope="module")
def live():
    data = Path(tempfile.mkdtemp(prefix="fuzz-"))
    env = {"THROTTLES_ENABLED": 0}  # the fuzzer is one client sending everything: explore, not throttle
    services.migrate(services.app_env(data, **env))
    web = services.daphne(data, data / "web.log", **env)
    try:
        token, other = services.api_token(web.http, "fuzz@example.com"), services.api_token(web.http, "o@example.com")
        ids = []
        for secret in (token, other):  # objects of the fuzzing user and of another one
            with httpx.Client(base_url=web.http, headers={"Authorization": f"Bearer {secret}"}, timeout=60) as c:
                for mutation in ('createChat(title: "x", model: "rag-faiss") { ... on Chat { id } }',
                                 'createCollection(name: "c") { ... on Collection { id } }',
                                 'createAiPreset(name: "p", model: "rag-faiss") { ... on AiPreset { id } }',
                                 'createRecipe(title: "r", template: "Hi {{name}}") { ... on Recipe { id } }'):
                    data_ = c.post("/graphql/", json={"query": f"mutation {{ {mutation} }}"}).json()["data"]
                    ids.append(next(iter(data_.values()))["id"])
        yield web, token, ids
    finally:
        web.stop()


def strategies(ids: list[str]):
    import hypothesis_graphql as hg
    from hypothesis_graphql import nodes

    nonsense = [b64("Document:abc"), b64("Chat:1.5"), b64("Chat:" + "9" * 5000), b64("Chat:-1"), b64("Nope:1"),
                b64("Message:0"), b64("User:1"), b64("Collection:99999999999999999999"), "%%%", ""]
    json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                               lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                          max_size=3), max_leaves=8)
    scalars = {
        "ID": (st.sampled_from(ids + nonsense) | st.text(max_size=12)).map(nodes.String),
        "DateTime": st.sampled_from(["2024-01-01T00:00:00Z", "2024-13-40", "nonsense", ""]).map(nodes.String),
        "JSON": json_values.map(lambda value: graphql.language.ast.StringValueNode(value=str(value))),
        "BigInt": st.integers().map(nodes.Int),
        "Upload": st.just(graphql.language.ast.NullValueNode()),
    }
    return hg.queries(SCHEMA, custom_scalars=scalars), hg.mutations(SCHEMA, custom_scalars=scalars)


def check(client: httpx.Client, query: str) -> None:
    response = client.post("/graphql/", json={"query": query})
    assert response.status_code < 500, (response.status_code, query, response.text[:500])
    codes = [(e.get("extensions") or {}).get("code") for e in response.json().get("errors") or []]
    assert "INTERNAL" not in codes, (query, response.text[:1000])


@pytest.mark.parametrize("kind", ["queries", "mutations"])
def test_generated_operations_never_get_a_server_error(live, kind):
    web, token, ids = live
    queries, mutations = strategies(ids)
    strategy = queries if kind == "queries" else mutations
    client = httpx.Client(base_url=web.http, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    @settings(max_examples=EXAMPLES // 2, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink])
    @given(query=strategy)
    def run(query):
        check(client, query)

    try:
        run()
    finally:
        client.close()
    log = Path(web.log_path).read_text(errors="replace")
    assert "unexpected error" not in log and "Internal Server Error" not in log, log[-4000:]
