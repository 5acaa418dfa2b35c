"""A changed file uploaded again is a new version of its document: unchanged passages keep their
vectors, search sees the current version, old citations still resolve, versions can be restored."""

import pytest
from django.core.files.storage import default_storage
from strawberry import relay

from backend.documents.models import Chunk, Document, DocumentVersion
from backend.rag import embeddings

from .conftest import error_codes
from .test_documents import SEARCH, node, upload, wait

pytestmark = pytest.mark.django_db(transaction=True)

SECTIONS = {
    "Arrival": "Guests check in at the front desk from three in the afternoon and receive a brass room key.",
    "Breakfast": "Breakfast is served in the conservatory between seven and ten, with porridge and fresh figs.",
    "Pool": "The rooftop pool is heated to twenty-eight degrees and closes at nine in the evening.",
    "Departure": "Rooms are vacated by eleven; the porter carries luggage to the taxi rank by the fountain.",
}


def handbook(**changes) -> bytes:
    body = {**SECTIONS, **changes}
    return ("# Guest handbook\n\n" + "\n\n".join(f"## {name}\n\n{text}" for name, text in body.items())).encode()


VERSIONS = """query($id: ID!) { node(id: $id) { ... on Document { id version originalName status chunkCount
  versions { number current originalName size restoredFrom chunkCount vectorsEmbedded vectorsReused createdAt
             uploadedBy { username } } } } }"""
RESTORE = """mutation($id: ID!, $v: Int!) { restoreDocumentVersion(id: $id, version: $v) {
  __typename ... on Document { version status } ... on DocumentErrors { messages { field code } } } }"""


@pytest.fixture
def embedded(monkeypatch):
    """Every text the embedding model is asked to embed (the counts a version reports are checked
    against what really ran)."""
    texts: list[str] = []
    embedder = embeddings.get_embedder()
    original = embedder.embed_documents

    def spy(batch):
        texts.extend(batch)
        return original(batch)

    monkeypatch.setattr(embedder, "embed_documents", spy)
    return texts


def titles(client, query):
    return [(h["document"]["title"], h["text"]) for h in
            client(SEARCH, {"q": query, "k": 3, "threshold": -1})["data"]["searchDocuments"]]


def test_a_changed_file_is_a_new_version_that_reuses_the_vectors_of_unchanged_passages(alice, embedded):
    first = upload(alice, "handbook.md", handbook())["document"]
    wait()
    question_v1 = "when is breakfast served and what is on the menu?"
    assert "porridge" in titles(alice, question_v1)[0][1]
    # An answer given now cites version 1's passage.
    from backend.chats.turn import _retrieve
    from backend.chats.params import RAG_DEFAULTS

    sources, _ = _retrieve(alice.user, question_v1, [], {**RAG_DEFAULTS, "strategy": "hybrid", "k": 2})
    cited = sources[0]
    assert cited["version"] == 1 and "porridge" in cited["text"]

    embedded.clear()
    second = upload(alice, "handbook.md", handbook(Breakfast="Breakfast is now a buffet on the terrace from six "
                                                              "until eleven, with pastries and eggs."))
    assert second["document"]["id"] == first["id"] and not second["duplicate"]  # the same document
    wait()
    doc = alice(VERSIONS, {"id": first["id"]})["data"]["node"]
    assert doc["version"] == 2 and doc["status"] == "READY" and Document.objects.count() == 1
    latest, original = doc["versions"]
    assert (latest["number"], latest["current"], original["number"], original["current"]) == (2, True, 1, False)
    assert latest["uploadedBy"] == {"username": "alice"} and latest["size"] == len(handbook(
        Breakfast="Breakfast is now a buffet on the terrace from six until eleven, with pastries and eggs."))
    # Only the changed passage was embedded; the others reused their vectors (and say so).
    assert latest["vectorsEmbedded"] == len(embedded) >= 1
    assert latest["vectorsReused"] == latest["chunkCount"] - latest["vectorsEmbedded"] >= 1
    assert all("porridge" not in text for text in embedded)

    # Search and answers see version 2 only.
    assert all("porridge" not in text for _, text in titles(alice, question_v1))
    assert "buffet on the terrace" in titles(alice, "is breakfast a buffet?")[0][1]
    # The old answer's citation still resolves, to the version it quoted.
    chunk = alice("query($id: ID!) { node(id: $id) { ... on Chunk { text version superseded } } }",
                  {"id": str(relay.GlobalID("Chunk", str(cited["chunk_id"])))})["data"]["node"]
    assert chunk["version"] == 1 and chunk["superseded"] is True and "porridge" in chunk["text"]
    current = node(alice, first["id"])["chunks"]["edges"]
    assert current and all("porridge" not in e["node"]["text"] for e in current)


def test_the_last_ready_version_answers_while_a_new_one_is_processed_and_after_it_fails(alice, monkeypatch):
    import threading

    from backend.documents import ingest as ingestion

    first = upload(alice, "handbook.md", handbook())["document"]
    wait()
    breakfast = "when is breakfast served and what is on the menu?"
    gate, real = threading.Event(), ingestion._process
    monkeypatch.setattr(ingestion, "_process", lambda document: gate.wait(30) and real(document))
    upload(alice, "handbook.md", handbook(Breakfast="Breakfast is now a buffet on the terrace from six until "
                                                    "eleven, with pastries and eggs."))
    try:
        assert node(alice, first["id"])["status"] in ("PENDING", "PROCESSING")
        # Version 2 is being read: version 1 still answers (before, the document vanished from search).
        assert "porridge" in titles(alice, breakfast)[0][1]
    finally:
        gate.set()
        wait()
    assert node(alice, first["id"])["status"] == "READY"
    assert "buffet on the terrace" in titles(alice, breakfast)[0][1]
    assert all("porridge" not in text for _, text in titles(alice, breakfast))

    # A version that fails leaves the last good one answering, and says why it failed.
    upload(alice, "handbook.md", b"\n\n   \n")
    wait()
    doc = alice(VERSIONS, {"id": first["id"]})["data"]["node"]
    assert (doc["version"], doc["status"]) == (3, "FAILED")
    assert "buffet on the terrace" in titles(alice, breakfast)[0][1]
    from backend.chats.params import RAG_DEFAULTS
    from backend.chats.turn import _retrieve

    sources, _ = _retrieve(alice.user, breakfast, [], {**RAG_DEFAULTS, "strategy": "hybrid", "k": 2})
    assert sources[0]["version"] == 2 and "buffet" in sources[0]["text"]  # cited as the version it quotes


def keyword_frequency(stem: str) -> int:
    """How many chunks keyword search counts as holding ``stem`` (BM25's document frequency; on
    PostgreSQL, in the collections that exist: a flushed test database leaves others' counts)."""
    from django.db import connection

    from backend.documents.engines.schema import FTS_VOCAB, STATS_TABLE
    from backend.documents.models import Collection

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"SELECT coalesce(sum(doc), 0) FROM {FTS_VOCAB} WHERE term = %s", [stem])
        else:
            ids = list(Collection.objects.values_list("pk", flat=True))
            cursor.execute(f"SELECT coalesce(sum(df), 0) FROM {STATS_TABLE} WHERE lexeme = %s "
                           "AND collection_id = ANY(%s)", [stem, ids])
        return int(cursor.fetchone()[0])


def test_an_earlier_versions_words_count_in_no_keyword_statistics(alice):
    from django.db import connection

    from backend.documents.engines import schema

    first = upload(alice, "handbook.md", handbook())["document"]
    wait()
    assert keyword_frequency("porridg") == 1 and keyword_frequency("buffet") == 0
    upload(alice, "handbook.md", handbook(Breakfast="Breakfast is now a buffet on the terrace from six until eleven, "
                                                    "with pastries and eggs."))
    wait()
    # Version 1's chunk is kept (old answers cite it) but no longer counts: BM25 scores the
    # current text against the current corpus, as if the document had only ever had version 2.
    assert keyword_frequency("porridg") == 0 and keyword_frequency("buffet") == 1
    assert keyword_frequency("rooftop") == 1  # an unchanged passage: counted once, not twice
    schema.ensure(connection)  # every migrate runs it again: the counts stay
    assert (keyword_frequency("porridg"), keyword_frequency("rooftop")) == (0, 1)
    # A database indexed before this rule (every version counted) is recounted by its next migrate.
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            table = schema.FTS_TABLE
            cursor.execute(f"DROP TRIGGER {table}_insert")
            cursor.execute(f"CREATE TRIGGER {table}_insert AFTER INSERT ON documents_chunk BEGIN "
                           f"INSERT INTO {table}(rowid, text) VALUES (new.id, new.text); END")
            cursor.execute(f"INSERT INTO {table}({table}) VALUES ('rebuild')")
        else:
            cursor.execute(schema._stats_function(versions=False))
            cursor.execute(f"INSERT INTO {schema.STATS_TABLE} (collection_id, lexeme, df) SELECT collection_id, "
                           "'porridg', 1 FROM documents_chunk LIMIT 1 ON CONFLICT (collection_id, lexeme) "
                           "DO UPDATE SET df = excluded.df")
    assert keyword_frequency("porridg") == 1
    schema.ensure(connection)
    assert (keyword_frequency("porridg"), keyword_frequency("buffet"), keyword_frequency("rooftop")) == (0, 1, 1)
    alice("mutation($id: ID!) { deleteDocument(id: $id) { __typename } }", {"id": first["id"]})
    assert keyword_frequency("rooftop") == keyword_frequency("buffet") == 0


def test_an_earlier_version_is_restored_without_embedding_and_the_rules_hold(alice, bob, embedded):
    first = upload(alice, "handbook.md", handbook())["document"]
    wait()
    upload(alice, "handbook.md", handbook(Pool="The pool is closed for repairs until spring."))
    wait()
    assert error_codes(bob(RESTORE, {"id": first["id"], "v": 1})) == ["NOT_FOUND"]  # not bob's
    assert alice(RESTORE, {"id": first["id"], "v": 9})["data"]["restoreDocumentVersion"]["messages"] == [
        {"field": "version", "code": "NO_SUCH_VERSION"}]
    assert alice(RESTORE, {"id": first["id"], "v": 2})["data"]["restoreDocumentVersion"]["messages"] == [
        {"field": "version", "code": "CURRENT_VERSION"}]
    embedded.clear()
    restored = alice(RESTORE, {"id": first["id"], "v": 1})["data"]["restoreDocumentVersion"]
    assert restored == {"__typename": "Document", "version": 3, "status": "PENDING"}
    wait()
    latest = alice(VERSIONS, {"id": first["id"]})["data"]["node"]["versions"][0]
    assert (latest["number"], latest["restoredFrom"], latest["vectorsEmbedded"]) == (3, 1, 0) and embedded == []
    assert "heated to twenty-eight degrees" in titles(alice, "how warm is the pool?")[0][1]


def test_version_of_names_the_document_and_deleting_it_removes_every_version(alice):
    first = upload(alice, "handbook.md", handbook())["document"]
    wait()
    result = alice.upload("""mutation($file: Upload!, $of: ID) { uploadDocument(file: $file, versionOf: $of) {
        ... on UploadedDocument { document { id version originalName } } } }""", {"file": None, "of": first["id"]},
        {"variables.file": ("handbook-2027.md", handbook(Arrival="Check-in opens at noon."), "text/markdown")})
    assert result["data"]["uploadDocument"]["document"] == {"id": first["id"], "version": 2,
                                                            "originalName": "handbook-2027.md"}
    wait()
    keys = list(DocumentVersion.objects.values_list("storage_key", flat=True))
    assert len(keys) == 2 and all(default_storage.exists(k) for k in keys)
    alice(f'mutation {{ deleteDocument(id: "{first["id"]}") {{ __typename }} }}')
    assert not any(default_storage.exists(k) for k in keys) and not Chunk.objects.exists()
