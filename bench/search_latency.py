"""Search latency and memory: the FAISS index alone, and `searchDocuments` end to end over HTTP.

For each size (10k, 100k, 1M vectors by default) the vectors are synthetic (random unit vectors of
the model's dimension; text made of random words), stored as the pipeline stores them: chunk rows
with their vectors in the database, the collection's FAISS file built from them. Then:

- index alone: the project's FaissStore search, top 5, p50/p95 over many queries, and the
  process memory the index adds (per 100k vectors);
- end to end: daphne on that database, `searchDocuments(query, k: 5)` over HTTP with an API
  token, one request at a time (the query embedded by the real model each time), p50/p95, and the
  server's memory.

    .venv/bin/python bench/search_latency.py [--sizes 10000,100000,1000000] [--queries 200]
"""

import gc
import hashlib
import os
import random
import sys
import tempfile
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


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:start + len(block)] = block
    return out


def index_alone(n: int, dim: int, queries: int) -> dict:
    from backend.rag.index import FaissStore

    store = FaissStore(Path(tempfile.mkdtemp(prefix="bench-index-")))
    vectors = unit_vectors(n, dim, seed=n)
    store.build("bench", 1, np.arange(n, dtype=np.int64), vectors, model="synthetic", dimension=dim)
    del vectors
    gc.collect()
    index, info = store.load("bench", 1)
    # What the loaded index holds in memory: the vectors and the id map (its serialized size).
    memory = info.bytes_on_disk
    probes = unit_vectors(queries, dim, seed=7)
    store.search(index, probes[0], 5)
    times = []
    for q in probes:
        started = time.perf_counter()
        store.search(index, q, 5)
        times.append(time.perf_counter() - started)
    return {**summary_ms(times), "bytes_on_disk": info.bytes_on_disk,
            "mib_per_100k": round(memory / 2**20 * 100_000 / n, 1)}


def fill_database(n: int, dim: int):
    """n chunk rows with synthetic vectors in one collection, and its FAISS file."""
    from django.db import transaction

    from backend.documents import vectors as vector_index
    from backend.documents.models import Chunk, Collection, Document
    from backend.documents.services import default_collection
    from backend.rag.embeddings import to_bytes
    from backend.users.services import create_api_token, register

    user = register(email=f"bench-{n}@example.com", password="bench passphrase 123")
    collection: Collection = default_collection(user)
    rng = random.Random(n)
    per_document = 100
    matrix = unit_vectors(n, dim, seed=n + 1)
    for start in range(0, n, 20_000):
        with transaction.atomic():
            docs = Document.objects.bulk_create([
                Document(collection=collection, uploaded_by=user, title=f"Synthetic {i}", original_name=f"s{i}.txt",
                         file_type="TXT", size=1, sha256=hashlib.sha256(str(i).encode()).hexdigest(),
                         storage_key=f"bench/{i}", status="READY", stage="ready", progress=100,
                         chunk_count=per_document)
                for i in range(start // per_document, min(n, start + 20_000) // per_document)
            ])
            chunks = []
            for d_index, doc in enumerate(docs):
                for position in range(per_document):
                    row = start + d_index * per_document + position
                    text = " ".join(rng.choices(WORDS, k=40))
                    chunks.append(Chunk(document=doc, collection=collection, position=position, text=text,
                                        text_hash=hashlib.sha256(text.encode()).hexdigest(), char_start=0,
                                        char_end=len(text), token_count=60, vector=to_bytes(matrix[row]),
                                        embedding_model=vector_index.MODEL_NAME))
            Chunk.objects.bulk_create(chunks, batch_size=5000)
    Collection.objects.filter(pk=collection.pk).update(index_version=1)
    with Timer() as build:
        vector_index.rebuild(collection.pk)
    _, secret = create_api_token(user, name="bench")
    return secret, build.seconds


def end_to_end(data_dir: Path, secret: str, queries: int) -> dict:
    import httpx

    server = Daphne(data_dir)
    try:
        url = f"{server.http}/graphql/"
        body = "query($q: String!) { searchDocuments(query: $q, k: 5) { score page document { title } chunk { id } } }"
        with httpx.Client(headers={"Authorization": f"Bearer {secret}"}, timeout=300) as client:
            def ask(question):
                started = time.perf_counter()
                response = client.post(url, json={"query": body, "variables": {"q": question}})
                elapsed = time.perf_counter() - started
                data = response.json()
                assert response.status_code == 200 and "errors" not in data, data
                assert len(data["data"]["searchDocuments"]) == 5
                return elapsed

            with Timer() as first:  # loads the model and the index
                ask(QUESTIONS[0])
            times = [ask(f"{QUESTIONS[i % len(QUESTIONS)]} ({i})") for i in range(queries)]
        return {**summary_ms(times), "first_request_ms": round(first.seconds * 1000, 1),
                "server_rss_mib": rss_mib(server.pid)}
    finally:
        server.stop()


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--queries", type=int, default=200)
    args = p.parse_args()
    sizes = [1000] if args.smoke else [int(s) for s in args.sizes.split(",")]
    queries = 20 if args.smoke else args.queries
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count()))

    figures = {"queries": queries, "k": 5, "sizes": {}}
    data_dir = setup_django()  # one database; each size is its own user's collection
    from backend.rag.embeddings import DIMENSION

    for n in sizes:
        alone = index_alone(n, DIMENSION, queries)
        print(f"{n:>9,} vectors  index alone: p50 {alone['p50_ms']} ms, p95 {alone['p95_ms']} ms, "
              f"{alone['mib_per_100k']} MiB per 100k", flush=True)
        with Timer() as fill:
            secret, build_seconds = fill_database(n, DIMENSION)
        e2e = end_to_end(data_dir, secret, queries)
        print(f"{'':>9}          end to end:  p50 {e2e['p50_ms']} ms, p95 {e2e['p95_ms']} ms, "
              f"server RSS {e2e['server_rss_mib']} MiB (fill {fill.seconds:.0f} s, index build {build_seconds:.1f} s)",
              flush=True)
        figures["sizes"][str(n)] = {"index_alone": alone, "end_to_end": e2e,
                                    "fill_seconds": round(fill.seconds, 1), "index_build_seconds": round(build_seconds, 1)}
    write("search_latency", args, figures)


if __name__ == "__main__":
    main()
