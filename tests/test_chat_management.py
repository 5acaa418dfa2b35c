"""Chats over HTTP: list and search, export and import, ratings, presets, regenerate, retention, usage."""

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from backend.chats import conversations, keys, presets
from backend.chats.models import Chat, Message
from backend.rag.pipeline import groundedness, rewrite_follow_up
from backend.rag.retrieval import reciprocal_rank_fusion, score_fusion
from backend.rag.providers import ChatMessage, ExtractiveGenerator

from .conftest import error_codes

pytestmark = pytest.mark.django_db(transaction=True)
ERRORS = "... on ChatErrors { messages { field code message } }"


def _chat_with_messages(user, title, texts, model="gpt-4"):
    chat = Chat.objects.create(owner=user, title=title, model=model)
    for i, text in enumerate(texts):
        Message.objects.create(chat=chat, role="user" if i % 2 == 0 else "assistant", content=text, model=model)
    return chat


def test_chats_are_listed_pinned_first_and_searched_in_titles_and_content(alice, bob):
    _chat_with_messages(alice.user, "Holiday plans", ["Where to go in May?", "Lisbon is lovely."])
    pinned = _chat_with_messages(alice.user, "Tax questions", ["How do deductions work?", "It depends."])
    pinned.pinned = True
    pinned.save()
    _chat_with_messages(bob.user, "Bob's Lisbon trip", ["Lisbon?"])
    titles = lambda r: [e["node"]["title"] for e in r["data"]["chats"]["edges"]]  # noqa: E731
    assert titles(alice("{ chats { edges { node { title pinned } } } }")) == ["Tax questions", "Holiday plans"]
    assert titles(alice('{ chats(search: "lisbon") { edges { node { title } } } }')) == ["Holiday plans"]
    assert titles(alice('{ chats(search: "TAX") { edges { node { title } } } }')) == ["Tax questions"]


def test_create_update_and_delete_a_chat(alice):
    created = alice(f"""mutation {{ createChat(title: "Research", model: "rag-faiss",
        parameters: {{ temperature: 0.3, rag: {{ strategy: BM25, k: 3 }} }}) {{
        ... on Chat {{ id title model settings {{ temperature maxTokens rag {{ strategy k threshold }} }} }}
        {ERRORS} }} }}""")["data"]["createChat"]
    assert created["settings"] == {"temperature": 0.3, "maxTokens": None,  # null: your default applies
                                   "rag": {"strategy": "BM25", "k": 3, "threshold": None}}
    bad = alice(f'mutation {{ createChat(model: "gpt-9") {{ {ERRORS} }} }}')["data"]["createChat"]["messages"]
    assert bad[0]["field"] == "model" and bad[0]["code"] == "UNKNOWN_MODEL"
    too_hot = alice(f'mutation {{ createChat(model: "gpt-4", parameters: {{ temperature: 3 }}) {{ {ERRORS} }} }}')
    assert too_hot["data"]["createChat"]["messages"][0] == {"field": "settings.temperature", "code": "OUT_OF_RANGE",
                                                            "message": "Between 0 and 2."}
    updated = alice(f'mutation {{ updateChat(id: "{created["id"]}", title: "Renamed", pinned: true, archived: true) {{ ... on Chat {{ title pinned archived }} }} }}')
    assert updated["data"]["updateChat"] == {"title": "Renamed", "pinned": True, "archived": True}
    assert alice("{ chats { totalCount } }")["data"]["chats"]["totalCount"] == 0  # archived are hidden by default
    assert alice("{ chats(archived: true) { totalCount } }")["data"]["chats"]["totalCount"] == 1
    alice(f'mutation {{ deleteChat(id: "{created["id"]}") {{ ... on Deleted {{ id }} }} }}')
    assert not Chat.objects.exists()


def test_export_as_json_and_markdown_and_import_twice(alice, bob):
    chat = _chat_with_messages(alice.user, "Plants", ["How do plants eat?", "With light [1]."])
    answer = chat.messages.last()
    answer.sources = [{"number": 1, "title": "plants", "page": 2, "document_id": 1, "chunk_id": 1,
                       "chunk_position": 0, "snippet": "light", "score": 0.8}]
    answer.save()
    gid = alice(f'{{ chats {{ edges {{ node {{ id }} }} }} }}')["data"]["chats"]["edges"][0]["node"]["id"]
    markdown = alice(f'{{ exportChat(id: "{gid}", format: MARKDOWN) }}')["data"]["exportChat"]
    assert markdown.startswith("# Plants") and "## Assistant" in markdown and "[1] plants, page 2" in markdown
    exported = json.loads(alice(f'{{ exportChat(id: "{gid}") }}')["data"]["exportChat"])
    assert [m["content"] for m in exported["messages"]] == ["How do plants eat?", "With light [1]."]
    imp = "mutation($d: JSON!) { importChats(data: $d) { ... on ImportedChats { created } } }"
    assert bob(imp, {"d": exported})["data"]["importChats"]["created"] == 1
    assert bob(imp, {"d": exported})["data"]["importChats"]["created"] == 0
    assert alice(imp, {"d": [exported]})["data"]["importChats"]["created"] == 0  # alice has it already
    bob_chats = Chat.objects.filter(owner=bob.user)
    assert bob_chats.count() == 1 and bob_chats.get().messages.count() == 2
    assert Chat.objects.filter(owner=alice.user).count() == 1


def test_rate_a_message(alice, bob):
    chat = _chat_with_messages(alice.user, "t", ["q", "a"])
    answer_gid = alice(f'{{ chats {{ edges {{ node {{ messages {{ edges {{ node {{ id role }} }} }} }} }} }} }}')[
        "data"]["chats"]["edges"][0]["node"]["messages"]["edges"][1]["node"]["id"]
    rated = alice(f'mutation {{ rateMessage(id: "{answer_gid}", rating: -1, comment: "wrong year") {{ ... on Message {{ rating feedbackComment }} }} }}')
    assert rated["data"]["rateMessage"] == {"rating": -1, "feedbackComment": "wrong year"}
    bad = alice(f'mutation {{ rateMessage(id: "{answer_gid}", rating: 5) {{ {ERRORS} }} }}')
    assert bad["data"]["rateMessage"]["messages"][0]["code"] == "INVALID_CHOICE"
    assert error_codes(bob(f'mutation {{ rateMessage(id: "{answer_gid}", rating: 1) {{ __typename }} }}')) == ["NOT_FOUND"]
    assert chat.messages.get(role="assistant").rating == -1


def test_presets_and_a_chat_started_from_one(alice, bob, settings):
    settings.OPENAI_API_KEY = "sk-server"  # a chat on GPT-4 needs a key
    made = alice(f"""mutation {{ createAiPreset(name: "Precise", model: "gpt-4", temperature: 0.1, maxTokens: 500,
        systemPrompt: "Answer in one line.") {{ ... on AiPreset {{ id name temperature }} {ERRORS} }} }}""")
    preset = made["data"]["createAiPreset"]
    dup = alice(f'mutation {{ createAiPreset(name: "Precise", model: "gpt-4") {{ {ERRORS} }} }}')
    assert dup["data"]["createAiPreset"]["messages"][0]["code"] == "DUPLICATE"
    over = alice(f'mutation {{ createAiPreset(name: "Long", model: "llama-3", maxTokens: 99999) {{ {ERRORS} }} }}')
    assert over["data"]["createAiPreset"]["messages"][0]["code"] == "OUT_OF_RANGE"
    chat = alice(f'mutation {{ createChat(presetId: "{preset["id"]}") {{ ... on Chat {{ model '
                 f'settings {{ temperature maxTokens systemPrompt topP }} }} }} }}')
    assert chat["data"]["createChat"] == {"model": "gpt-4", "settings": {
        "temperature": 0.1, "maxTokens": 500, "systemPrompt": "Answer in one line.", "topP": None}}
    alice(f'mutation {{ updateAiPreset(id: "{preset["id"]}", temperature: 0.9) {{ ... on AiPreset {{ temperature }} }} }}')
    assert alice("{ aiPresets { edges { node { name temperature } } } }")["data"]["aiPresets"]["edges"] == [
        {"node": {"name": "Precise", "temperature": 0.9}}]
    assert bob("{ aiPresets { totalCount } }")["data"]["aiPresets"]["totalCount"] == 0
    assert error_codes(bob(f'mutation {{ deleteAiPreset(id: "{preset["id"]}") {{ __typename }} }}')) == ["NOT_FOUND"]
    alice(f'mutation {{ deleteAiPreset(id: "{preset["id"]}") {{ ... on Deleted {{ id }} }} }}')
    assert alice("{ aiPresets { totalCount } }")["data"]["aiPresets"]["totalCount"] == 0


def test_regenerate_makes_a_new_version_in_place_and_keeps_the_old_one(alice):
    import time

    from .test_documents import PHOTOSYNTHESIS_MD, upload, wait

    upload(alice, "plants.md", PHOTOSYNTHESIS_MD)
    wait()
    chat = _chat_with_messages(alice.user, "t", ["How do plants make sugar?", "No idea.", "And then?", "Later."],
                               model="rag-faiss")
    old = chat.messages.filter(role="assistant").first()
    Message.objects.filter(pk=old.pk).update(rating=-1)
    from strawberry import relay

    gid = str(relay.GlobalID("Message", str(old.pk)))
    result = alice(f'mutation {{ regenerateMessage(id: "{gid}") {{ ... on Message {{ id status current }} }} }}')
    new = result["data"]["regenerateMessage"]
    assert new["status"] == "STREAMING" and new["current"] is True  # followed with answerStream
    new_pk = relay.GlobalID.from_id(new["id"]).node_id
    for _ in range(200):
        answer = Message.objects.get(pk=new_pk)
        if answer.status != "STREAMING":
            break
        time.sleep(0.05)
    assert answer.status == "COMPLETE" and "chlorophyll" in answer.content and answer.sources[0]["title"] == "plants"
    listed = alice('query($id: ID!) { chat: node(id: $id) { ... on Chat { messages { edges { node { content '
                   'versions { content rating current } } } } } } }',
                   {"id": str(relay.GlobalID("Chat", str(chat.pk)))})
    rows = [edge["node"] for edge in listed["data"]["chat"]["messages"]["edges"]]
    # In place: the new answer between its question and the next question, the old one a version.
    assert [r["content"][:10] for r in rows] == ["How do pla", answer.content[:10], "And then?", "Later."]
    assert [(v["content"], v["rating"], v["current"]) for v in rows[1]["versions"]] == [
        ("No idea.", -1, False), (answer.content, None, True)]
    # Picking the old version shows it again.
    alice(f'mutation {{ selectMessageVersion(id: "{gid}") {{ ... on Message {{ current }} }} }}')
    assert list(Message.in_order(chat.messages.all()).values_list("content", flat=True)) == [
        "How do plants make sugar?", "No idea.", "And then?", "Later."]
    exported = json.loads(alice(f'{{ exportChat(id: "{relay.GlobalID("Chat", str(chat.pk))}") }}')["data"]["exportChat"])
    assert [m["content"] for m in exported["messages"]] == ["How do plants make sugar?", "No idea.", "And then?",
                                                           "Later."]  # the versions the chat shows
    streaming = alice(f'mutation {{ regenerateMessage(id: "{gid}") {{ ... on Message {{ id }} }} }}')
    second = relay.GlobalID.from_id(streaming["data"]["regenerateMessage"]["id"]).node_id
    refused = alice(f'mutation {{ regenerateMessage(id: "{streaming["data"]["regenerateMessage"]["id"]}") '
                    f'{{ ... on ChatErrors {{ messages {{ code }} }} }} }}')
    if Message.objects.get(pk=second).status == "STREAMING":  # still being written: stop it first
        assert refused["data"]["regenerateMessage"]["messages"][0]["code"] == "STILL_STREAMING"


def test_a_long_chat_is_deleted_with_its_messages_in_a_few_statements(alice, bob):
    """Deleting a chat does not read its messages first (it did: a query per few hundred, 3.4 s for
    20,000 on SQLite, holding the write lock), and leaves the other chats' messages alone; a question
    deleted without its answers is still refused by the database."""
    from django.db import IntegrityError, connection, transaction
    from django.test.utils import CaptureQueriesContext

    long, kept = (Chat.objects.create(owner=user, title=title, model="gpt-4")
                  for user, title in ((alice.user, "long"), (bob.user, "kept")))
    for chat in (long, kept):
        questions = Message.objects.bulk_create([Message(chat=chat, role="user", content=f"q{i}") for i in range(600)])
        Message.objects.bulk_create([Message(chat=chat, role="assistant", content=f"a{i}", reply_to=q)
                                     for i, q in enumerate(questions)])
    with CaptureQueriesContext(connection) as statements:
        conversations.delete_chat(alice.user, long.pk)
    assert len(statements) <= 6, [q["sql"][:80] for q in statements]
    assert not Message.objects.filter(chat_id=long.pk).exists() and Message.objects.filter(chat=kept).count() == 1200
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.filter(chat=kept, role="user")[:1].get().delete()


def test_old_chats_are_purged_by_each_users_retention(alice, bob, make_user):
    alice(f'mutation {{ updatePreferences(preferences: {{ privacy: {{ chatHistoryRetentionDays: 30 }} }}) {{ __typename }} }}')
    old = _chat_with_messages(alice.user, "old", ["q"])
    _chat_with_messages(alice.user, "new", ["q"])
    bobs_old = _chat_with_messages(bob.user, "bob old", ["q"])  # bob keeps chats forever (0)
    carol = make_user("carol@example.com")
    carol.preferences = {"privacy": {"chat_history_retention_days": 400}}
    carol.save()
    carols = [_chat_with_messages(carol, title, ["q"]) for title in ("carol 500 days", "carol 300 days")]
    Chat.objects.filter(pk__in=[old.pk, bobs_old.pk]).update(updated_at=timezone.now() - timedelta(days=31))
    for chat, days in zip(carols, (500, 300)):
        Chat.objects.filter(pk=chat.pk).update(updated_at=timezone.now() - timedelta(days=days))
    out = io.StringIO()
    call_command("purge_chats", stdout=out)
    assert "purged 2" in out.getvalue()
    assert set(Chat.objects.values_list("title", flat=True)) == {"new", "bob old", "carol 300 days"}


def test_usage_stats(alice):
    chat = Chat.objects.create(owner=alice.user, title="t", model="gpt-4")
    Message.objects.create(chat=chat, role="user", content="q", model="gpt-4", prompt_tokens=10)
    Message.objects.create(chat=chat, role="assistant", content="a", model="gpt-4", completion_tokens=20,
                           latency_ms=300, first_token_ms=100, rating=1)
    rag = Chat.objects.create(owner=alice.user, title="r", model="rag-faiss")
    Message.objects.create(chat=rag, role="assistant", content="none", model="rag-faiss",
                           retrieval={"query": "q", "passages": []}, latency_ms=100, rating=-1)
    Message.objects.create(chat=rag, role="assistant", content="found [1]", model="rag-faiss",
                           retrieval={"query": "q2", "passages": [{"number": 1, "title": "T"}]}, latency_ms=100)
    Message.objects.create(chat=rag, role="assistant", content="old trace", model="rag-faiss",
                           retrieval={"query": "q3"}, latency_ms=100)  # a trace from before passages were kept
    stats = alice("""{ usageStats { ragQuestions retrievalFoundNothing ratingsUp ratingsDown
      models { model messages promptTokens completionTokens averageLatencyMs averageFirstTokenMs } } }""")["data"]["usageStats"]
    assert stats["ragQuestions"] == 3 and stats["retrievalFoundNothing"] == 2
    assert (stats["ratingsUp"], stats["ratingsDown"]) == (1, 1)
    assert stats["models"][0] == {"model": "gpt-4", "messages": 1, "promptTokens": 10, "completionTokens": 20,
                                  "averageLatencyMs": 300.0, "averageFirstTokenMs": 100.0}


def test_account_export_carries_chats_and_presets(alice, bob):
    """Each chat with its current messages in conversation order (a regenerated answer in its
    question's place, the earlier version left out), the other users' chats not at all."""
    plants = _chat_with_messages(alice.user, "Plants", ["q", "a"])
    trains = _chat_with_messages(alice.user, "Trains", ["q1", "a1", "q2", "a2"])
    _chat_with_messages(bob.user, "Bob's", ["bob's question"])
    q1, a1 = trains.messages.order_by("id")[:2]
    Message.objects.filter(pk=a1.pk).update(reply_to=q1, superseded=True)
    Message.objects.create(chat=trains, role="assistant", content="a1, again", reply_to=q1)
    presets.create_preset(alice.user, name="P", model="gpt-4")
    exported = alice("{ exportMyData }")["data"]["exportMyData"]
    chats = {c["title"]: [(m["role"], m["content"]) for m in c["messages"]] for c in exported["chats"]["chats"]}
    assert chats == {"Plants": [("user", "q"), ("assistant", "a")],
                     "Trains": [("user", "q1"), ("assistant", "a1, again"), ("user", "q2"), ("assistant", "a2")]}
    first = exported["chats"]["chats"][[c["title"] for c in exported["chats"]["chats"]].index("Plants")]["messages"][0]
    assert first["uid"] == str(plants.messages.order_by("id")[0].uid) and first["created_at"].startswith("20")
    assert exported["chats"]["presets"][0]["name"] == "P"
    # The same export as a file (written chat by chat, any size in bounded memory).
    url = alice("{ exportMyDataUrl }")["data"]["exportMyDataUrl"]
    assert url == "http://testserver/me/export"
    download = alice.client.get(url)
    assert download.status_code == 200 and download["Content-Disposition"] == 'attachment; filename="my-data.json"'
    downloaded = json.loads(b"".join(download.streaming_content))
    assert {**downloaded, "exported_at": None} == {**exported, "exported_at": None}
    bobs = json.loads(b"".join(bob.client.get(url).streaming_content))
    assert [c["title"] for c in bobs["chats"]["chats"]] == ["Bob's"]  # each their own
    from .conftest import GraphQLClient

    assert GraphQLClient().client.get(url).status_code == 401
    imp = "mutation($d: JSON!) { importMyData(data: $d) { ... on ImportResult { chatsCreated presetsCreated } } }"
    first = bob(imp, {"d": exported})["data"]["importMyData"]
    second = bob(imp, {"d": exported})["data"]["importMyData"]
    assert first == {"chatsCreated": 2, "presetsCreated": 1}
    assert second == {"chatsCreated": 0, "presetsCreated": 0}


def test_an_account_import_is_checked_whole_and_writes_chats_without_holding_the_database(
        alice, bob, monkeypatch, writes_between_batches):
    """importMyData: a wrong message refuses everything before anything is written (the profile
    too); a good one writes its chats in short transactions, so another user writes between two
    batches (it waited for the whole import before: on SQLite one transaction held the only write
    lock, pauses included)."""
    from django.db import connection

    from backend.chats import imports

    imp = "mutation($d: JSON!) { importMyData(data: $d) { ... on ImportResult { chatsCreated } ... on AccountErrors { messages { code } } } }"
    alice('mutation { updateProfile(displayName: "Alice") { ... on User { id } } }')
    _chat_with_messages(alice.user, "Long", [f"message {i}" for i in range(30)])
    exported = alice("{ exportMyData }")["data"]["exportMyData"]
    broken = {**exported, "chats": {**exported["chats"], "chats": [{**exported["chats"]["chats"][0], "messages": [
        {"role": "robot", "content": "?"}]}]}}
    assert bob(imp, {"d": broken})["data"]["importMyData"]["messages"][0]["code"] == "INVALID_FORMAT"
    assert bob('{ me { displayName } }')["data"]["me"]["displayName"] != "Alice"  # nothing written
    assert not Chat.objects.filter(owner=bob.user).exists()

    monkeypatch.setattr(imports, "BATCH", 10)
    assert bob(imp, {"d": exported})["data"]["importMyData"]["chatsCreated"] == 1
    assert bob('{ me { displayName } }')["data"]["me"]["displayName"] == "Alice"
    assert Message.objects.filter(chat__owner=bob.user).count() == 30
    if connection.vendor == "sqlite":  # PostgreSQL's writers never waited on one lock
        assert writes_between_batches == ["written"] * 3


def test_a_chat_import_that_stopped_midway_is_removed_once_silent(alice, settings):
    from backend.chats import imports

    old = timezone.now() - timedelta(seconds=settings.IMPORT_STALE_AFTER + 1)
    stopped = _chat_with_messages(alice.user, "stopped midway", ["q", "a"])
    running = _chat_with_messages(alice.user, "still importing", ["q"])
    kept = _chat_with_messages(alice.user, "an old chat", ["q"])
    Chat.objects.filter(pk__in=[stopped.pk, running.pk]).update(importing=True)
    Chat.objects.filter(pk__in=[stopped.pk, kept.pk]).update(updated_at=old)
    assert imports.remove_abandoned_imports() == 1
    assert set(Chat.objects.values_list("title", flat=True)) == {"still importing", "an old chat"}
    assert not Message.objects.filter(chat_id=stopped.pk).exists()


# --- the RAG building blocks -----------------------------------------------------------------

def test_groundedness_lists_the_unsupported_sentences():
    passages = {1: "Chlorophyll captures light. Plants store energy as sugar.", 2: "Roots absorb water."}
    answer = "Plants store energy as sugar [1]. Roots absorb water [2]. The moon is made of cheese [1]. Nothing cited here."
    score, unsupported = groundedness(answer, passages)
    assert score == 0.5
    assert unsupported == ["The moon is made of cheese.", "Nothing cited here."]


def test_a_turns_history_is_the_current_complete_turns_in_conversation_order(alice):
    """What a prompt carries: a regenerated answer in its question's place (the earlier version
    left out), no system message, no failed or unfinished answer; before a question, what came
    before it; at most the last HISTORY_TURNS turns."""
    from backend.chats.turn import HISTORY_TURNS, _history

    chat = Chat.objects.create(owner=alice.user, title="t", model="gpt-4")
    made = lambda role, content, **extra: Message.objects.create(chat=chat, role=role, content=content, **extra)  # noqa: E731
    made("system", "be brief")
    q1 = made("user", "q1")
    made("assistant", "a1 (first version)", reply_to=q1, superseded=True)
    q2 = made("user", "q2")
    made("assistant", "a2", reply_to=q2)
    made("assistant", "a1 (regenerated)", reply_to=q1)
    made("assistant", "failed", reply_to=q2, status=Message.Status.FAILED, superseded=True)
    q3 = made("user", "q3")
    made("assistant", "still writing", reply_to=q3, status=Message.Status.STREAMING)
    assert [m.content for m in _history(chat)] == ["q1", "a1 (regenerated)", "q2", "a2", "q3"]
    assert [(m.role, m.content) for m in _history(chat, before=q2)] == [("user", "q1"), ("assistant", "a1 (regenerated)")]
    for i in range(HISTORY_TURNS * 2):
        made("user", f"later {i}")
    assert [m.content for m in _history(chat)] == [f"later {i}" for i in range(HISTORY_TURNS * 2)]


def test_follow_up_questions_are_rewritten_with_the_history():
    history = [ChatMessage("user", "How does photosynthesis work in plants?"), ChatMessage("assistant", "...")]
    rewritten = rewrite_follow_up("What about its speed?", history)
    assert "photosynthesis" in rewritten and "plants" in rewritten
    standalone = "Explain the difference between mitochondria and chloroplasts in eukaryotic cells"
    assert rewrite_follow_up(standalone, history) == standalone


def test_rank_fusion():
    fused = reciprocal_rank_fusion([[(1, 0.9), (2, 0.5)], [(2, 3.0), (3, 1.0)]])
    assert fused[0][0] == 2
    # Score fusion keeps distances: 1 is far ahead in the first ranking, barely behind in the second.
    fused = score_fusion([[(1, 0.9), (2, 0.2), (3, 0.1)], [(2, 10.0), (1, 9.8), (4, 1.0)]])
    assert [item for item, _ in fused][:2] == [1, 2] and fused[0][1] == pytest.approx(0.5 + 0.5 * 8.8 / 9)
    assert score_fusion([[], [(5, 2.0)]]) == [(5, 0.5)]


def test_extractive_generator_cites_the_passages_it_quotes():
    text = ExtractiveGenerator().answer("How do plants store energy?", ["Roots hold soil.", "Plants store energy as sugar."])
    assert text.startswith("Plants store energy as sugar. [2]")


@pytest.mark.parametrize("strategy", ["DENSE", "BM25", "HYBRID", "MULTI_QUERY"])
def test_search_documents_by_each_strategy(alice, strategy):
    from .test_documents import PHOTOSYNTHESIS_MD, SEARCH, TRAINS_TXT, upload, wait

    upload(alice, "plants.md", PHOTOSYNTHESIS_MD)
    upload(alice, "trains.txt", TRAINS_TXT)
    wait()
    query = SEARCH.replace("$filters: SearchFiltersInput)", "$filters: SearchFiltersInput, $s: RetrievalStrategy)").replace(
        "filters: $filters)", "filters: $filters, strategy: $s)")
    hits = alice(query, {"q": "chlorophyll sugar", "k": 2, "s": strategy})["data"]["searchDocuments"]
    assert hits[0]["document"]["title"] == "plants"


def test_rag_defaults_come_from_preferences_then_chat_then_turn(alice):
    from backend.chats.params import effective_params

    alice("mutation { updatePreferences(preferences: { rag: { strategy: BM25, k: 7 } }) { __typename } }")
    bad = alice("mutation { updatePreferences(preferences: { rag: { strategy: PSYCHIC } }) { __typename } }")
    assert error_codes(bad) == ["BAD_USER_INPUT"]  # not a RetrievalStrategy: refused before anything runs
    assert alice("{ me { preferences { rag { strategy k } } } }")["data"]["me"]["preferences"]["rag"] == {
        "strategy": "BM25", "k": 7}
    alice.user.refresh_from_db()
    chat = conversations.create_chat(alice.user, model="rag-faiss", settings_={"rag": {"k": 3}})
    params = effective_params(alice.user, chat, {"rag": {"threshold": 0.5}})
    assert (params["rag"]["strategy"], params["rag"]["k"], params["rag"]["threshold"]) == ("bm25", 3, 0.5)
