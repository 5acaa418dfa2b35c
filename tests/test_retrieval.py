"""Retrieval engines: filters before the top k, keyword ranking, engine choice, moving vectors.

Runs on whichever database the suite has (SQLite + FAISS by default; the README's test command
runs this file again on PostgreSQL + pgvector), so both engines pass the same tests.
"""

import hashlib
from pathlib import Path

import numpy as np
import pytest
from strawberry import relay
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from backend.documents import collections, engines, search
from backend.documents.models import Chunk, Collection, Document
from backend.rag.embeddings import DIMENSION, get_embedder, to_bytes

from .conftest import on_postgresql
from .test_documents import PHOTOSYNTHESIS_MD, TRAINS_TXT, upload, wait

pytestmark = pytest.mark.django_db(transaction=True)

WORDS = "protein cell gene tumor patients risk study clinical receptor pathway immune blood therapy dose".split()


def fill(user, documents: int, per_document: int, *, rare_every: int = 0, seed: int = 1) -> Collection:
    """Synthetic READY documents with random unit vectors, stored as ingestion stores them."""
    collection = collections.default_collection(user)
    rng = np.random.default_rng(seed)
    with transaction.atomic():
        for d in range(documents):
            rare = bool(rare_every) and d % rare_every == 0
            document = Document.objects.create(
                collection=collection, uploaded_by=user, title=f"doc {d}", original_name=f"d{d}.md",
                file_type="md" if rare else "txt", size=1, sha256=hashlib.sha256(f"{seed}-{d}".encode()).hexdigest(),
                storage_key=f"x/{d}", status="READY", tags=["rare"] if rare else ["common"], chunk_count=per_document)
            matrix = rng.standard_normal((per_document, DIMENSION)).astype(np.float32)
            matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
            chunks = Chunk.objects.bulk_create([
                Chunk(document=document, collection=collection, position=p,
                      text=" ".join(rng.choice(WORDS, 12)), text_hash=f"{seed}-{d}-{p}", char_start=0, char_end=1,
                      token_count=12, vector=to_bytes(matrix[p]), embedding_model="all-MiniLM-L6-v2")
                for p in range(per_document)])
            engines.engine().vectors.add(collection.pk, [c.pk for c in chunks], matrix)
        Collection.objects.filter(pk=collection.pk).update(index_version=F("index_version") + 1)
    return collection


@pytest.fixture
def small_graph(settings):
    settings.FAISS_HNSW_MIN_VECTORS = 100  # the FAISS engine builds its approximate index from 100 vectors
    settings.PGVECTOR_EXACT_BELOW = 100  # pgvector walks its graph for more than 100 chunks


@pytest.mark.parametrize("strategy", ["dense", "bm25", "hybrid", "multi_query"])
def test_a_filter_matching_one_percent_of_chunks_still_returns_k_hits(make_user, small_graph, strategy):
    user = make_user()
    fill(user, documents=100, per_document=20, rare_every=100)  # 2000 chunks, 20 of them (1%) in a "rare" document
    for filters in (search.SearchFilters(tags=["rare"]), search.SearchFilters(file_types=["md"])):
        hits = search.search(user, "tumor receptor therapy", k=8, threshold=-1.0, filters=filters, strategy=strategy)
        assert len(hits) == 8
        assert {h.document.title for h in hits} == {"doc 0"}
    narrow = search.search(user, "gene", k=50, threshold=-1.0, filters=search.SearchFilters(tags=["rare"]),
                             strategy=strategy)
    rare = Chunk.objects.filter(document__title="doc 0")
    expected = sum("gene" in c.text.split() for c in rare) if strategy == "bm25" else rare.count()
    assert len(narrow) == expected  # all there are


def test_dense_search_over_the_approximate_index_finds_what_exact_search_finds(make_user, small_graph):
    from backend.rag.embeddings import get_embedder

    user = make_user()
    collection = fill(user, documents=30, per_document=100, seed=3)
    query = get_embedder().embed_query("immune response in the blood")
    matrix = np.vstack([np.frombuffer(bytes(v), dtype=np.float32)
                        for v in Chunk.objects.order_by("pk").values_list("vector", flat=True)])
    ids = list(Chunk.objects.order_by("pk").values_list("pk", flat=True))
    exact = {ids[i] for i in np.argsort(-(matrix @ query))[:10]}
    where = search.where_for([collection], None)
    found = {cid for cid, _ in engines.engine().vectors.search(query, 10, where)}
    assert len(found & exact) >= 9


def test_on_pgvector_a_small_knowledge_base_is_searched_exactly_in_one_query(make_user, settings):
    """The HNSW graph is one for the instance; a small collection among many rows was searched by
    walking it (iteratively, up to hnsw.max_scan_tuples) and then once more exactly."""
    if not on_postgresql():
        pytest.skip("the pgvector engine needs PostgreSQL (the README's test command runs this file there too)")
    from django.test.utils import CaptureQueriesContext

    stranger, user = make_user("big@example.com"), make_user("small@example.com")
    fill(stranger, documents=20, per_document=100, seed=5)  # 2000 chunks of someone else
    collection = fill(user, documents=2, per_document=5, seed=6)  # 10 of this user
    settings.PGVECTOR_EXACT_BELOW = 50
    query = get_embedder().embed_query("immune response in the blood")
    mine = Chunk.objects.filter(collection=collection).order_by("pk")
    matrix = np.vstack([np.frombuffer(bytes(v), dtype=np.float32) for v in mine.values_list("vector", flat=True)])
    ids = list(mine.values_list("pk", flat=True))
    best = [ids[i] for i in np.argsort(-(matrix @ query))[:8]]
    where = search.where_for([Collection.objects.get(pk=collection.pk)], None)
    vectors = engines.engine().vectors
    with CaptureQueriesContext(connection) as queries:
        assert [cid for cid, _ in vectors.search(query, 8, where)] == best
    searched = [q["sql"] for q in queries.captured_queries if "<#>" in q["sql"]]
    assert len(searched) == 1 and "+ 0" in searched[0]  # exact: the ordering hidden from the graph
    with CaptureQueriesContext(connection) as queries:  # counted once per index version
        vectors.search(query, 8, where)
    assert [("count(" in q["sql"], "<#>" in q["sql"]) for q in queries.captured_queries] == [(False, True)]
    settings.PGVECTOR_EXACT_BELOW = 5  # now "large": the graph first
    with CaptureQueriesContext(connection) as queries:
        assert [cid for cid, _ in vectors.search(query, 8, where)] == best
    searched = [q["sql"] for q in queries.captured_queries if "<#>" in q["sql"]]
    assert "+ 0" not in searched[0]


def test_keyword_search_stems_and_weighs_rare_words(alice):
    upload(alice, "plants.md", PHOTOSYNTHESIS_MD)
    upload(alice, "trains.txt", TRAINS_TXT)
    wait()
    user = Document.objects.first().uploaded_by
    hits = search.search(user, "reservations for the journeys", k=3, threshold=-1.0, strategy="bm25")
    assert hits and hits[0].document.title == "trains"  # reservation, journey: stemmed
    assert search.search(user, "the of and", k=3, threshold=-1.0, strategy="bm25") == []  # stop words only
    hits = search.search(user, "chlorophyll station", k=3, threshold=-1.0, strategy="bm25")
    assert {h.document.title for h in hits} == {"plants", "trains"}


def test_search_defaults_to_hybrid_like_the_chats(alice, monkeypatch):
    from backend.rag import retrieval

    upload(alice, "plants.md", PHOTOSYNTHESIS_MD)
    wait()
    seen = []
    real = retrieval.Retriever.rank
    monkeypatch.setattr(retrieval.Retriever, "rank", lambda self, strategy, *a: seen.append(strategy) or real(self, strategy, *a))
    result = alice('query { searchDocuments(query: "chlorophyll") { document { title } } }')
    assert result["data"]["searchDocuments"][0]["document"]["title"] == "plants"
    assert seen == ["hybrid"] == [retrieval.DEFAULTS["strategy"]]


def test_a_chat_turn_retrieves_outside_the_transaction_that_stores_the_question(make_user, monkeypatch):
    from backend.chats import conversations
    from backend.chats import turn as chat_turn
    from backend.rag import retrieval

    user = make_user()
    fill(user, documents=2, per_document=5)
    in_transaction = []
    real = retrieval.Retriever.rank
    monkeypatch.setattr(retrieval.Retriever, "rank",
                        lambda self, *a: in_transaction.append(connection.in_atomic_block) or real(self, *a))
    chat = conversations.create_chat(user, model="rag-faiss")
    turn = chat_turn.start_turn(user, chat.pk, "Which tumor genes matter?", parameters={"rag": {"threshold": -1.0}})
    assert in_transaction == [False]
    assert turn.answer.sources and turn.answer.retrieval["strategy"] == "hybrid"


def test_explicit_pgvector_needs_the_extension_and_auto_says_which_engine(settings):
    settings.VECTOR_BACKEND = "auto"
    chosen = engines.engine()
    if on_postgresql():
        assert chosen.vectors.name == "pgvector" and chosen.keywords.name == "postgresql-fts"
        with connection.cursor() as cursor:  # every session searches the HNSW graph iteratively
            cursor.execute("SHOW hnsw.iterative_scan")
            assert cursor.fetchone()[0] == "relaxed_order"
    else:
        assert chosen.vectors.name == "faiss" and chosen.keywords.name == "sqlite-fts5"
        settings.VECTOR_BACKEND = "pgvector"
        with pytest.raises(ImproperlyConfigured, match="extension `vector`"):
            engines.startup_check()
    settings.VECTOR_BACKEND = "bogus"
    with pytest.raises(ImproperlyConfigured, match="auto, faiss, pgvector"):
        engines.engine()


def test_on_pgvector_no_index_file_is_written(alice, settings, tmp_path):
    if not on_postgresql():
        pytest.skip("the pgvector engine needs PostgreSQL (the README's test command runs this file there too)")
    settings.INDEX_DIR = str(tmp_path / "no-indexes")
    upload(alice, "plants.md", PHOTOSYNTHESIS_MD)
    wait()
    hits = alice('query { searchDocuments(query: "chlorophyll", strategy: DENSE) { document { title } } }')
    assert hits["data"]["searchDocuments"][0]["document"]["title"] == "plants"
    assert not Path(settings.INDEX_DIR).exists()


def test_on_pgvector_each_chunk_row_is_written_once_with_its_vector(alice):
    if not on_postgresql():
        pytest.skip("the pgvector engine needs PostgreSQL (the README's test command runs this file there too)")

    def writes():
        with connection.cursor() as cursor:  # this transaction's own counts: exact, no stats delay
            cursor.execute("SELECT n_tup_ins, n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = 'documents_chunk'")
            return cursor.fetchone() or (0, 0)

    from backend.documents.engines import schema
    from backend.rag import loaders

    document = Document.objects.create(collection=collections.default_collection(alice.user), uploaded_by=alice.user, title="t",
                                       original_name="t.md", file_type=loaders.MD, size=1, storage_key="k")
    vectors = get_embedder().embed_documents(["the first passage", "the second passage"])
    with transaction.atomic():
        before = writes()
        created = engines.engine().create_chunks(document.collection_id, [
            Chunk(document=document, collection_id=document.collection_id, position=i, text=text, text_hash=str(i),
                  char_start=0, char_end=len(text), token_count=3, vector=to_bytes(v),
                  embedding_model="m") for i, (text, v) in enumerate(zip(["the first passage", "the second passage"],
                                                                          vectors))], vectors)
        after = writes()
    assert after[0] - before[0] == 2 and after[1] - before[1] == 0  # inserted with the vector, never updated
    assert [c.pk for c in created] == sorted(Chunk.objects.filter(document=document).values_list("pk", flat=True))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count({schema.VECTOR_COLUMN}) FROM documents_chunk WHERE document_id = %s",
                       [document.pk])
        assert cursor.fetchone()[0] == 2
    hits = search.search(alice.user, "the second passage", k=1, threshold=-1.0, strategy="dense")
    assert hits[0].chunk.text == "the second passage"


def test_move_vectors_between_engines(make_user, settings, tmp_path):
    user = make_user()
    collection = fill(user, documents=3, per_document=10)
    settings.INDEX_DIR = str(tmp_path / "indexes")
    call_command("move_vectors", "--to", "faiss")
    assert list(Path(settings.INDEX_DIR).glob("*.faiss"))
    if not on_postgresql():
        with pytest.raises(CommandError, match="PostgreSQL"):
            call_command("move_vectors", "--to", "pgvector")
        return
    with connection.cursor() as cursor:
        cursor.execute("UPDATE documents_chunk SET embedding = NULL")
    assert engines.engine().vectors.count(collection.pk) == 0
    call_command("move_vectors", "--to", "pgvector")
    assert engines.engine().vectors.count(collection.pk) == 30
    assert len(search.search(user, "tumor", k=5, threshold=-1.0, strategy="dense")) == 5


def test_auto_falls_back_to_faiss_and_says_why(settings, monkeypatch, caplog):
    from django.db import connection as conn

    settings.VECTOR_BACKEND = "auto"
    engines._engines.clear()
    monkeypatch.setattr(engines, "pgvector_ready", lambda: (False, "the PostgreSQL extension `vector` is not installed"))
    monkeypatch.setattr(conn, "vendor", "postgresql")
    with caplog.at_level("WARNING", logger="backend.documents.engines"):
        chosen = engines._resolve()
    assert chosen.vectors.name == "faiss"
    assert "extension `vector` is not installed" in caplog.text and "move_vectors" in caplog.text
    engines._engines.clear()


@pytest.mark.parametrize("query", ["zebrafish tumor gene", "tumor gene zebrafish okapi", "tumor gene cell"])
def test_keyword_search_reading_rare_terms_first_ranks_as_reading_every_term(make_user, settings, query):
    user = make_user()
    fill(user, documents=40, per_document=25)  # 1000 chunks of 14 common words
    for i, chunk in enumerate(Chunk.objects.order_by("pk")[:30]):
        chunk.text += " zebrafish" + (" okapi" if i % 3 == 0 else "")
        chunk.save(update_fields=["text"])
    Collection.objects.update(index_version=F("index_version") + 1)

    def ranking(budget):
        settings.KEYWORD_CANDIDATE_BUDGET = budget
        return [(h.chunk.pk, round(h.score, 6)) for h in
                search.search(user, query, k=10, threshold=-1.0, strategy="bm25")]

    everything = ranking(10**9)
    assert len(everything) == 10
    assert ranking(0) == everything
    if "zebrafish" in query:
        assert {pk for pk, _ in everything} <= set(Chunk.objects.filter(text__contains="zebrafish").values_list("pk", flat=True))


def test_keyword_statistics_follow_every_change_to_the_chunks(alice):
    if not on_postgresql():
        pytest.skip("FTS5 keeps its own vocabulary; the statistics table is PostgreSQL's")
    doc = upload(alice, "plants.md", PHOTOSYNTHESIS_MD)["document"]
    upload(alice, "trains.txt", TRAINS_TXT)
    wait()
    other = alice('mutation { createCollection(name: "Archive") { ... on Collection { id } } }')["data"]["createCollection"]["id"]
    alice(f'mutation {{ updateDocument(id: "{doc["id"]}", collectionId: "{other}") {{ __typename }} }}')

    def stats_and_recount():
        ours = list(Collection.objects.values_list("pk", flat=True))  # (the tests' flush truncates chunks)
        with connection.cursor() as cursor:
            cursor.execute("SELECT collection_id, lexeme, df FROM documents_keyword_stats "
                           "WHERE collection_id = ANY(%s)", [ours])
            kept = set(cursor.fetchall())
            cursor.execute("SELECT collection_id, lexeme, count(*) FROM documents_chunk, "
                           "unnest(tsvector_to_array(search_vector)) AS l(lexeme) GROUP BY 1, 2")
            return kept, set(cursor.fetchall())

    kept, recount = stats_and_recount()
    assert kept == recount and any(lexeme == "chlorophyl" for _, lexeme, _ in kept)
    alice(f'mutation {{ deleteDocument(id: "{doc["id"]}") {{ __typename }} }}')
    kept, recount = stats_and_recount()
    assert kept == recount and not any(lexeme == "chlorophyl" for _, lexeme, _ in kept)
    # A deleted collection (an expired guest's, say) leaves no rows behind, not even counts of 0.
    archive = relay.GlobalID.from_id(other).node_id
    upload(alice, "plants-again.md", PHOTOSYNTHESIS_MD, collection_id=other)
    wait()
    assert stats_and_recount()[0] & {(int(archive), "chlorophyl", 1)}
    alice(f'mutation {{ deleteCollection(id: "{other}") {{ __typename }} }}')
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM documents_keyword_stats WHERE collection_id = %s OR df <= 0", [archive])
        assert cursor.fetchone()[0] == 0


def test_hybrid_search_reads_only_the_rare_terms_postings_and_bm25_stays_exact(make_user, settings):
    """Hybrid's keyword pass stops after the rare terms' candidates (the dense side covers the
    rest); the bm25 strategy still proves its top k by reading every term when it must."""
    from backend.documents.search import where_for

    user = make_user()
    fill(user, documents=40, per_document=25)  # 1000 chunks of 14 common words
    rare = list(Chunk.objects.order_by("pk")[:3])
    for chunk in rare:
        chunk.text += " zebrafish"
        chunk.save(update_fields=["text"])
    Collection.objects.update(index_version=F("index_version") + 1)
    settings.KEYWORD_CANDIDATE_BUDGET = 0  # the rarest term alone is read first
    where = where_for(list(Collection.objects.all()), None)
    keywords = engines.engine().keywords
    bounded = keywords.search("zebrafish tumor gene cell", 10, where, exact=False)
    assert {pk for pk, _ in bounded} == {c.pk for c in rare}  # 3 candidates, no widening
    proven = keywords.search("zebrafish tumor gene cell", 10, where)
    assert len(proven) == 10 and {c.pk for c in rare} <= {pk for pk, _ in proven}
    hits = search.search(user, "zebrafish tumor gene cell", k=10, threshold=-1.0, strategy="hybrid")
    assert len(hits) == 10 and bounded[0][0] in {h.chunk.pk for h in hits}  # fused with the dense side


def test_the_query_vector_may_arrive_after_the_keyword_search_and_ranks_the_same():
    """A search embeds its query while the database answers: the retriever takes the vector as a
    callable and calls it only after the keyword search, with the same rankings as an array."""
    from backend.rag.retrieval import Filter, KeywordIndex, Retriever, VectorIndex

    calls = []

    class Vectors(VectorIndex):
        name = "fake"
        add = delete = count = rebuild = lambda *a: None

        def search(self, vector, k, where):
            calls.append("vectors")
            return [(1, float(vector[0])), (2, 0.5), (3, 0.1)][:k]

    class Keywords(KeywordIndex):
        name = "fake"

        def search(self, query, k, where, exact=True):
            calls.append("keywords")
            return [(3, 9.0), (4, 2.0)][:k]

    def later():
        calls.append("vector")
        return np.array([0.9], dtype=np.float32)

    retriever = Retriever(Vectors(), Keywords(), lambda texts: np.zeros((len(texts), 1), np.float32), lambda q: [q])
    where = Filter(collection_ids=(1,))
    for strategy in ("dense", "bm25", "hybrid", "multi_query"):
        calls.clear()
        lazily = retriever.rank(strategy, "q", later, where, 3)
        assert lazily == retriever.rank(strategy, "q", np.array([0.9], dtype=np.float32), where, 3)
        if strategy == "hybrid":
            assert calls[:3] == ["keywords", "vector", "vectors"]
        assert ("vector" in calls) == (strategy != "bm25")


def test_a_search_loads_its_k_best_passages_and_more_only_when_the_threshold_drops_some(make_user):
    """The ranking fetches 4k for fusion; a search loaded all of them to keep k."""
    from django.test.utils import CaptureQueriesContext

    user = make_user()
    fill(user, documents=10, per_document=10, seed=9)
    query = "immune blood therapy"
    ranked = search.search(user, query, k=30, threshold=-1.0, strategy="bm25")  # BM25 order, cosine scores
    with CaptureQueriesContext(connection) as queries:
        best = search.search(user, query, k=3, threshold=-0.5, strategy="bm25")
    loads = [q["sql"] for q in queries.captured_queries if "INNER JOIN" in q["sql"] and "documents_chunk" in q["sql"]]
    assert [h.chunk.pk for h in best] == [h.chunk.pk for h in ranked[:3]]
    assert len(loads) == 1
    cut = sorted(h.score for h in ranked[:20])[10]  # half of the 20 fetched under it
    with CaptureQueriesContext(connection) as queries:
        kept = search.search(user, query, k=3, threshold=cut, strategy="bm25")
    loads = [q["sql"] for q in queries.captured_queries if "INNER JOIN" in q["sql"] and "documents_chunk" in q["sql"]]
    assert [h.chunk.pk for h in kept] == [h.chunk.pk for h in ranked[:20] if h.score >= cut][:3]
    assert len(kept) == 3 and all(h.score >= cut for h in kept)
    assert not all(h.score >= cut for h in ranked[:3]) and len(loads) == 2  # the rest read once


def test_hits_are_loaded_as_the_orm_loads_them_and_only_from_the_searched_collections(make_user):
    """A search's hits come by one hand-written query (backend/documents/passages.py): each chunk
    and its document equal the ORM's, field by field (dates, JSON, booleans converted alike)."""
    from backend.documents import passages

    user, other = make_user(), make_user()
    mine, theirs = fill(user, documents=3, per_document=4, rare_every=2, seed=11), fill(other, 1, 2, seed=12)
    old = Chunk.objects.filter(collection=mine).order_by("pk").first()
    Chunk.objects.filter(pk=old.pk).update(superseded=True)
    wanted = list(Chunk.objects.filter(collection__in=[mine, theirs]).values_list("pk", flat=True))
    loaded = passages.load(wanted, [mine.pk])
    expected = {c.pk: c for c in Chunk.objects.filter(collection=mine, superseded=False).select_related("document")}
    assert set(loaded) == set(expected) and old.pk not in loaded and len(loaded) == 11
    for pk, chunk in loaded.items():
        for field in Chunk._meta.concrete_fields:
            assert getattr(chunk, field.attname) == getattr(expected[pk], field.attname), field.name
        for field in Document._meta.concrete_fields:
            assert getattr(chunk.document, field.attname) == getattr(expected[pk].document, field.attname), field.name
        assert chunk.document.tags in (["rare"], ["common"]) and chunk.document.created_at.tzinfo is not None
    with CaptureQueriesContext(connection) as queries:
        assert next(iter(loaded.values())).document.title.startswith("doc ")  # cached, not fetched
    assert not queries.captured_queries
    assert passages.load([], [mine.pk]) == {} and passages.load(wanted, []) == {}


def test_pgvector_candidate_list_grows_with_the_table():
    from backend.documents.engines.pgvector import ef_search_for

    assert [ef_search_for(n) for n in (0, 10_000, 100_000)] == [40, 40, 40]
    assert ef_search_for(1_000_000) == 150 and ef_search_for(10_000_000) == 260
    sizes = [ef_search_for(n) for n in range(100_000, 50_000_000, 250_000)]
    assert sizes == sorted(sizes) and max(sizes) <= 1000


def test_on_pgvector_a_search_sizes_the_graphs_candidate_list_to_the_table(make_user, settings, monkeypatch):
    if not on_postgresql():
        pytest.skip("the pgvector engine needs PostgreSQL (the README's test command runs this file there too)")
    import time

    from backend.documents.engines import pgvector

    def show() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SHOW hnsw.ef_search")
            return int(cursor.fetchone()[0])

    user = make_user()
    collection = fill(user, documents=4, per_document=50, seed=21)
    settings.PGVECTOR_EXACT_BELOW = 10  # the graph is walked
    where = search.where_for([Collection.objects.get(pk=collection.pk)], None)
    vectors, query = engines.engine().vectors, get_embedder().embed_query("immune response")
    with connection.cursor() as cursor:  # the statistics as autovacuum would leave them
        cursor.execute("ANALYZE documents_chunk")
    monkeypatch.setattr(pgvector, "_table_rows", {"rows": 0, "read_at": None})
    best = [cid for cid, _ in vectors.search(query, 5, where)]
    assert pgvector._table_rows["rows"] >= 200 and show() == 40  # read from PostgreSQL's statistics
    pgvector._table_rows.update(rows=1_000_000, read_at=time.monotonic())  # as a large table would give
    assert [cid for cid, _ in vectors.search(query, 5, where)] == best and show() == 150
    with CaptureQueriesContext(connection) as queries:  # set once per connection
        vectors.search(query, 5, where)
    assert not [q for q in queries.captured_queries if "set_config" in q["sql"]]
    pgvector._table_rows.update(rows=10_000_000)
    with transaction.atomic():  # for the transaction only: a rollback cannot leave the note wrong
        vectors.search(query, 5, where)
        assert show() == 260
    assert show() == 150
    settings.PGVECTOR_EF_SEARCH = 64  # fixed: set when the connection opens, never per search
    with CaptureQueriesContext(connection) as queries:
        vectors.search(query, 5, where)
    assert not [q for q in queries.captured_queries if "set_config" in q["sql"]]


def test_on_postgresql_a_search_runs_prepared_statements(alice):
    """Parameters bound by the server and repeated statements prepared (DB_PREPARE_THRESHOLD):
    PostgreSQL parses and plans a search's queries once per connection, not per search."""
    if not on_postgresql():
        pytest.skip("prepared statements are PostgreSQL's")
    upload(alice, "trains.txt", TRAINS_TXT)
    wait()
    for _ in range(6):
        assert search.search(alice.user, "night train reservation", k=3, threshold=-1.0, strategy="dense")
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any("<#>" in s for s in prepared) and any("documents_chunk" in s and "INNER JOIN" in s for s in prepared)
