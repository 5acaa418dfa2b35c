"""Search latency and memory on either engine: the index alone, and `searchDocuments` over HTTP.

For each size (10k, 100k, 1M vectors by default) the vectors are synthetic but shaped like a
corpus's (``corpus_vectors``: the model's embeddings of real text, each copy moved by noise) and
each chunk's text is a random 60-word window of the SciFact abstracts
(real words with their real frequencies, so keyword search meets common and rare terms as it
would), stored as the pipeline stores them: chunk rows
with their vectors in the database, and the engine's index (the collection's FAISS file, or
pgvector's HNSW index). One document in a hundred is tagged "rare" (a 1% filter). Then:

- index alone: the engine's vector search, top 10, p50/p95, for probes drawn like the
  vectors, and its recall@10 against exact search (the approximate index from FAISS_HNSW_MIN_VECTORS on FAISS; HNSW on pgvector);
- end to end: daphne on that database, `searchDocuments(query, k: 5)` over HTTP with an API
  token, one request at a time (the query embedded by the real model each time), with the
  default strategy (hybrid) and with DENSE, and a DENSE search filtered to the 1% "rare" tag
  (every answer must have its 5 hits); p50/p95, and the server's memory.

    .venv/bin/python bench/search_latency.py [--engine sqlite|postgresql] [--sizes 10000,100000,1000000]
"""

import hashlib
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import Daphne, Timer, parser, rss_mib, setup_django, summary_ms, write  # noqa: E402

WORDS = ("protein cell gene expression tumor patients risk study clinical mice receptor pathway signal "
         "immune response blood cancer therapy dose trial insulin brain neurons memory virus infection "
         "vaccine antibody heart disease mortality cohort diet obesity bone muscle stem tissue").split()
QUESTIONS = [
    "Which genes control tumor growth?", "Does vitamin D lower the risk of fractures?",
    "How do neurons store memory?", "What drives insulin resistance in obesity?",
    "Can vaccines prevent viral infection in the elderly?", "Which receptors mediate the immune response?",
    "Is a high salt diet linked to heart disease?", "How do stem cells repair muscle tissue?",
]


def text_source():
    """Words of the SciFact abstracts (or the small list above when the eval set is missing)."""
    import json

    from bench.common import EVAL

    corpus = EVAL / "scifact" / "corpus.jsonl"
    if not corpus.exists():
        return list(WORDS) * 100
    words = []
    for line in corpus.read_text().splitlines():
        if line.strip():
            words += json.loads(line)["text"].split()
    return words


_anchors: list[np.ndarray] = []
ANCHORS = {"count": 10_000}  # --smoke: a few hundred (embedding 10,000 texts takes minutes)


def corpus_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """Vectors shaped like a real corpus's: the project's embeddings of 10,000 SciFact text windows,
    each copy moved by Gaussian noise (norm ~0.75, cosine ~0.8 to its anchor) and normalised.
    Uniform random vectors in 384 dimensions have no neighbourhoods at all, so no approximate
    index finds their nearest neighbours (HNSW recall@10 0.2 at 100k on them): a figure about
    them says nothing about a knowledge base's."""
    if not _anchors:
        from backend.rag.embeddings import get_embedder

        source, rng = text_source(), random.Random(0)
        windows = [" ".join(source[i:i + 60]) for i in (rng.randrange(0, len(source) - 60) for _ in range(ANCHORS["count"]))]
        _anchors.append(np.asarray(get_embedder().embed_documents(windows), dtype=np.float32))
    anchors = _anchors[0]
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        size = min(100_000, n - start)
        block = anchors[rng.integers(0, len(anchors), size)] + rng.standard_normal((size, dim), dtype=np.float32) * (
            0.75 / np.sqrt(dim))
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:start + size] = block
    return out


def index_alone(collection_id: int, queries: int, dim: int) -> dict:
    """The engine's dense search alone (top 10) and its recall@10 against exact search."""
    from backend.documents import search
    from backend.documents.engines import engine
    from backend.documents.models import Chunk, Collection

    collection = Collection.objects.get(pk=collection_id)
    where = search.where_for([collection], None)
    vectors = engine().vectors
    probes = corpus_vectors(queries, dim, seed=7)
    vectors.search(probes[0], 10, where)  # loads the index
    times, found = [], []
    for q in probes:
        started = time.perf_counter()
        found.append([i for i, _ in vectors.search(q, 10, where)])
        times.append(time.perf_counter() - started)
    # Exact answers from the stored float32 vectors, in blocks.
    best = [[] for _ in probes]
    rows = Chunk.objects.filter(collection_id=collection_id).order_by("pk").values_list("pk", "vector")
    ids, block = [], []

    def flush():
        if not ids:
            return
        scores = np.vstack(block) @ probes.T
        for j in range(len(probes)):
            top = np.argpartition(-scores[:, j], min(10, len(ids) - 1))[:10]
            best[j] = sorted(best[j] + [(float(scores[t, j]), ids[t]) for t in top], reverse=True)[:10]
        ids.clear()
        block.clear()

    for pk, blob in rows.iterator(chunk_size=20_000):
        ids.append(pk)
        block.append(np.frombuffer(bytes(blob), dtype=np.float32))
        if len(ids) == 50_000:
            flush()
    flush()
    recall = float(np.mean([len(set(f) & {i for _, i in b}) / 10 for f, b in zip(found, best)]))
    figures = {**summary_ms(times), "recall@10_vs_exact": round(recall, 4), "engine": vectors.name,
               "vector_bytes": engine().stats(collection).bytes_on_disk}
    if vectors.name == "pgvector":  # one HNSW index over the whole table (every size so far)
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_relation_size('documents_chunk_embedding_hnsw'), count(*) FROM documents_chunk")
            figures["hnsw_index_bytes"], figures["table_rows"] = cursor.fetchone()
    return figures


def fill_database(n: int, dim: int):
    """n chunk rows with synthetic vectors in one collection, and the engine's index of them."""
    from django.db import connection, transaction

    from backend.documents import vectors as vector_index
    from backend.documents.engines import engine, schema
    from backend.documents.models import Chunk, Collection, Document
    from backend.documents.collections import default_collection
    from backend.rag.embeddings import to_bytes
    from backend.users.accounts import register
    from backend.users.credentials import create_api_token

    pgvector = engine().vectors.name == "pgvector"
    if pgvector:  # bulk load without the indexes, built once at the end (as after a restore)
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX IF EXISTS documents_chunk_embedding_hnsw")
            cursor.execute("DROP INDEX IF EXISTS documents_chunk_search_vector")
    user = register(email=f"bench-{n}@example.com", password="bench passphrase 123")
    collection: Collection = default_collection(user)
    rng = random.Random(n)
    source = text_source()
    per_document = 100
    matrix = corpus_vectors(n, dim, seed=n + 1)
    for start in range(0, n, 20_000):
        with transaction.atomic():
            docs = Document.objects.bulk_create([
                Document(collection=collection, uploaded_by=user, title=f"Synthetic {i}", original_name=f"s{i}.txt",
                         file_type="txt", size=1, tags=["rare"] if i % 100 == 0 else ["common"], sha256=hashlib.sha256(str(i).encode()).hexdigest(),
                         storage_key=f"bench/{i}", status="READY", stage="ready", progress=100,
                         chunk_count=per_document)
                for i in range(start // per_document, min(n, start + 20_000) // per_document)
            ])
            chunks = []
            for d_index, doc in enumerate(docs):
                for position in range(per_document):
                    row = start + d_index * per_document + position
                    at = rng.randrange(0, len(source) - 60)
                    text = " ".join(source[at:at + 60])
                    chunks.append(Chunk(document=doc, collection=collection, position=position, text=text,
                                        text_hash=hashlib.sha256(text.encode()).hexdigest(), char_start=0,
                                        char_end=len(text), token_count=60, vector=to_bytes(matrix[row]),
                                        embedding_model=vector_index.MODEL_NAME))
            if pgvector:  # COPY with the vector column: an UPDATE per row after the insert, as
                copy_chunks(connection, chunks, matrix[start:start + len(chunks)])  # ingestion does, was most of an hour at 1M
            else:
                Chunk.objects.bulk_create(chunks, batch_size=5000)
    Collection.objects.filter(pk=collection.pk).update(index_version=1)
    with Timer() as build:
        if pgvector:  # the HNSW index built once over the filled table (as `CREATE INDEX` after a load)
            with connection.cursor() as cursor:
                cursor.execute("SET maintenance_work_mem = '4GB'")
                cursor.execute("SET max_parallel_maintenance_workers = 2")
            schema.ensure(connection)  # creates the indexes as the migration does
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE documents_chunk")
        else:
            vector_index.rebuild(collection.pk)
    _, secret = create_api_token(user, name="bench")
    return secret, build.seconds, collection.pk


def copy_chunks(connection, chunks, matrix) -> None:
    """The rows of ``chunks`` written by COPY, each with its pgvector column."""
    from backend.documents.engines.pgvector import literal
    from backend.documents.engines.schema import VECTOR_COLUMN

    columns = ["document_id", "collection_id", "position", "text", "text_hash", "char_start", "char_end",
               "token_count", "section", "vector", "embedding_model", "version", "superseded", VECTOR_COLUMN]
    connection.ensure_connection()
    with connection.connection.cursor() as cursor:
        with cursor.copy(f"COPY documents_chunk ({', '.join(columns)}) FROM STDIN") as copy:
            for c, row in zip(chunks, matrix):
                copy.write_row([c.document_id, c.collection_id, c.position, c.text, c.text_hash, c.char_start,
                                c.char_end, c.token_count, c.section, c.vector, c.embedding_model, 1, False,
                                literal(row)])


SEARCH = """query($q: String!, $strategy: RetrievalStrategy, $filters: SearchFiltersInput) {
  searchDocuments(query: $q, k: 5, threshold: -1, strategy: $strategy, filters: $filters) {
    score page document { title } chunk { id } } }"""
CASES = {"hybrid": {}, "dense": {"strategy": "DENSE"},
         "dense_filtered_1pct": {"strategy": "DENSE", "filters": {"tags": ["rare"]}}}


def end_to_end(data_dir: Path, secret: str, queries: int, env: dict) -> dict:
    import httpx

    server = Daphne(data_dir, **env)
    try:
        url = f"{server.http}/graphql/"
        with httpx.Client(headers={"Authorization": f"Bearer {secret}"}, timeout=300) as client:
            def ask(question, variables):
                started = time.perf_counter()
                response = client.post(url, json={"query": SEARCH, "variables": {"q": question, **variables}})
                elapsed = time.perf_counter() - started
                data = response.json()
                assert response.status_code == 200 and "errors" not in data, data
                assert len(data["data"]["searchDocuments"]) == 5, data
                return elapsed

            figures = {}
            with Timer() as first:  # loads the model and the index
                ask(QUESTIONS[0], {})
            figures["first_request_ms"] = round(first.seconds * 1000, 1)
            for name, variables in CASES.items():
                times = [ask(f"{QUESTIONS[i % len(QUESTIONS)]} ({i})", variables) for i in range(queries)]
                figures[name] = summary_ms(times)
        figures["server_rss_mib"] = rss_mib(server.pid)
        return figures
    finally:
        server.stop()


def main():
    import tempfile

    from bench.services import database

    p = parser(__doc__.split("\n")[0])
    p.add_argument("--engine", default="sqlite", choices=["sqlite", "postgresql"])
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--queries", type=int, default=200)
    args = p.parse_args()
    sizes = [1000] if args.smoke else [int(s) for s in args.sizes.split(",")]
    if args.smoke:
        ANCHORS["count"] = 300
    queries = 20 if args.smoke else args.queries
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count()))

    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    env, stop_database = database(args.engine, work / "postgres")
    try:
        figures = {"engine": args.engine, "queries": queries, "k": 5, "sizes": {}}
        data_dir = setup_django(work, **env)  # one database; each size is its own user's collection
        from backend.documents.engines import engine
        from backend.rag.embeddings import DIMENSION

        figures["vectors"], figures["keywords"] = engine().vectors.name, engine().keywords.name
        for n in sizes:
            with Timer() as fill:
                secret, build_seconds, collection_id = fill_database(n, DIMENSION)
            alone = index_alone(collection_id, queries, DIMENSION)
            print(f"{n:>9,} vectors  index alone: p50 {alone['p50_ms']} ms, p95 {alone['p95_ms']} ms, "
                  f"recall@10 {alone['recall@10_vs_exact']} (fill {fill.seconds:.0f} s, index build {build_seconds:.1f} s)",
                  flush=True)
            e2e = end_to_end(data_dir, secret, queries, env)
            for name in CASES:
                print(f"{'':>9}          {name:20s} p50 {e2e[name]['p50_ms']} ms, p95 {e2e[name]['p95_ms']} ms", flush=True)
            print(f"{'':>9}          server RSS {e2e['server_rss_mib']} MiB", flush=True)
            figures["sizes"][str(n)] = {"index_alone": alone, "end_to_end": e2e, "fill_seconds": round(fill.seconds, 1),
                                        "index_build_seconds": round(build_seconds, 1)}
            # after each size: a long run stopped at 1M keeps the smaller sizes' figures
            write("search_latency" + ("" if args.engine == "sqlite" else f"-{args.engine}"), args, figures)
    finally:
        stop_database()


if __name__ == "__main__":
    main()
