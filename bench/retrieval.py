"""Retrieval quality on a BEIR-format dataset (SciFact by default): nDCG@10, recall@10, MRR@10.

The corpus goes through the project's own pipeline: each abstract is uploaded as a text document
(its title, a blank line, its text) with the documents service, ingested by the task runner
(chunking, embeddings, FAISS), and every query is answered by the same search service that
`searchDocuments` calls, once per strategy. Passages are folded into documents in rank order (a
document ranks where its best passage does), as the qrels judge documents.

    .venv/bin/python bench/retrieval.py [--corpus C --queries Q --qrels R] [--strategies dense,bm25,...]
                                        [--backend onnx-int8|onnx|torch] [--engine sqlite|postgresql]
"""

import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import EVAL, Timer, parser, setup_django, write  # noqa: E402

SCIFACT = EVAL / "scifact"


def load(corpus: Path, queries: Path, qrels: Path):
    docs = [json.loads(line) for line in corpus.read_text().splitlines() if line.strip()]
    qs = {q["_id"]: q["text"] for q in map(json.loads, queries.read_text().splitlines()) if q}
    judged: dict[str, dict[str, int]] = {}
    for line in qrels.read_text().splitlines()[1:]:
        qid, did, score = line.split("\t")
        if int(score) > 0:
            judged.setdefault(qid, {})[did] = int(score)
    return docs, {qid: text for qid, text in qs.items() if qid in judged}, judged


def scores(ranked: list[str], relevant: dict[str, int], k: int = 10) -> dict[str, float]:
    top = ranked[:k]
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(top))
    ideal = sum(g / math.log2(i + 2) for i, g in enumerate(sorted(relevant.values(), reverse=True)[:k]))
    first = next((i for i, d in enumerate(top) if d in relevant), None)
    return {"ndcg@10": dcg / ideal if ideal else 0.0,
            "recall@10": len(set(top) & set(relevant)) / len(relevant),
            "mrr@10": 1 / (first + 1) if first is not None else 0.0}


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--corpus", type=Path, default=SCIFACT / "corpus.jsonl")
    p.add_argument("--queries", type=Path, default=SCIFACT / "queries.jsonl")
    p.add_argument("--qrels", type=Path, default=SCIFACT / "qrels" / "train.tsv")
    p.add_argument("--strategies", default="dense,bm25,hybrid,multi_query")
    p.add_argument("--passages", type=int, default=40, help="passages asked of the search per query")
    p.add_argument("--backend", default="onnx-int8", choices=["torch", "onnx", "onnx-int8"],
                   help="the project's EMBEDDING_BACKEND (default: the settings' default)")
    p.add_argument("--engine", default="sqlite", choices=["sqlite", "postgresql"],
                   help="sqlite: SQLite + FAISS + FTS5 (embedded default); postgresql: pgvector + full-text search")
    p.add_argument("--query-backend", default="", choices=["", "torch", "onnx", "onnx-int8"],
                   help="the project's QUERY_EMBEDDING_BACKEND (default: the settings' default, the documents' graph)")
    args = p.parse_args()

    docs, queries, judged = load(args.corpus, args.queries, args.qrels)
    if args.smoke:  # the judged documents of 5 queries among 40 others
        queries = dict(list(queries.items())[:5])
        wanted = {d for q in queries for d in judged[q]}
        docs = [d for d in docs if d["_id"] in wanted] + [d for d in docs if d["_id"] not in wanted][:40]

    import tempfile

    from bench.services import database

    work = Path(tempfile.mkdtemp(prefix="bench-retrieval-"))
    extra, stop_database = database(args.engine, work / "postgres")
    setup_django(work, EMBEDDING_BACKEND=args.backend, QUERY_EMBEDDING_BACKEND=args.query_backend, **extra)
    try:
        run(args, docs, queries, judged)
    finally:
        stop_database()


def bm25s_reference(passages: int):
    """Okapi BM25 of the bm25s library (Snowball stemmer, English stop words) over the same
    chunks: the reference the engines' keyword search is measured against; not served."""
    import bm25s
    import Stemmer

    from backend.documents.models import Chunk

    rows = list(Chunk.objects.filter(document__status="READY").values_list("pk", "text"))
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([t for _, t in rows], stopwords="en", stemmer=stemmer, show_progress=False),
                    show_progress=False)
    ids = [pk for pk, _ in rows]

    def search(text: str) -> list[int]:
        tokens = bm25s.tokenize([text], stopwords="en", stemmer=stemmer, show_progress=False)
        found, scores = retriever.retrieve(tokens, k=min(passages, len(ids)), show_progress=False)
        return [ids[i] for i, s in zip(found[0], scores[0]) if s > 0]

    return search


def ingest(docs):
    """Every document uploaded by one user through the documents service and ingested by the task
    runner: (user, seconds, {status: count}, {document pk: corpus id})."""
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.db.models import Count

    from backend.core.tasks import runner
    from backend.documents import library
    from backend.documents.models import Document
    from backend.users.accounts import register

    user = register(email="bench@example.com", password="bench passphrase 123")
    print(f"ingesting {len(docs)} documents through the documents service ...", flush=True)
    with Timer() as timer:
        for d in docs:
            body = f"{d['title']}\n\n{d['text']}".encode()
            library.upload_document(user, SimpleUploadedFile(f"{d['_id']}.txt", body), title=d["title"][:200] or None)
        runner().wait_idle(timeout=24 * 3600)
    states = dict(Document.objects.values_list("status").annotate(n=Count("id")))
    corpus_id = {pk: name.rsplit(".", 1)[0] for pk, name in Document.objects.values_list("pk", "original_name")}
    print(f"  {timer.seconds:.0f} s, {states}", flush=True)
    return user, timer.seconds, states, corpus_id


def run(args, docs, queries, judged):
    from backend.documents import search

    user, ingest_seconds, states, corpus_id = ingest(docs)

    from backend.documents.engines import engine
    from backend.documents.models import Chunk

    figures = {"engine": args.engine, "vectors": engine().vectors.name, "keywords": engine().keywords.name,
               "backend": args.backend, "query_backend": args.query_backend, "dataset": str(args.corpus.parent.name), "documents": len(docs), "queries": len(queries),
               "ingest_seconds": round(ingest_seconds, 1), "document_states": states, "strategies": {}}
    chunk_document = dict(Chunk.objects.values_list("pk", "document_id"))
    reference = bm25s_reference(args.passages)
    for strategy in args.strategies.split(",") + ["bm25s-reference"]:
        totals = {"ndcg@10": 0.0, "recall@10": 0.0, "mrr@10": 0.0}
        started = time.perf_counter()
        for qid, text in queries.items():
            if strategy == "bm25s-reference":
                documents = [chunk_document[c] for c in reference(text)]
            else:
                hits = search.search(user, text, k=args.passages, threshold=-1.0, strategy=strategy)
                documents = [hit.chunk.document_id for hit in hits]
            ranked: list[str] = []
            for document_id in documents:
                doc = corpus_id[document_id]
                if doc not in ranked:
                    ranked.append(doc)
            for name, value in scores(ranked, judged[qid]).items():
                totals[name] += value
        elapsed = time.perf_counter() - started
        result = {name: round(total / len(queries), 4) for name, total in totals.items()}
        result["ms_per_query"] = round(1000 * elapsed / len(queries), 1)
        figures["strategies"][strategy] = result
        print(f"{strategy:12s} nDCG@10 {result['ndcg@10']:.3f}  recall@10 {result['recall@10']:.3f}  "
              f"MRR@10 {result['mrr@10']:.3f}  {result['ms_per_query']} ms/query", flush=True)
    name = "retrieval" if args.backend == "onnx-int8" else f"retrieval-{args.backend}"
    name += "" if args.engine == "sqlite" else f"-{args.engine}"
    write(f"{name}-query-{args.query_backend}" if args.query_backend else name, args, figures)


if __name__ == "__main__":
    main()
