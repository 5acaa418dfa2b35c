"""Refusal calibration: at which similarity threshold does the RAG model refuse ("the documents I
found do not answer this") the questions it cannot answer, and answer those it can?

A RAG answer is a refusal when no passage's cosine similarity to the question reaches the
threshold (`rag.threshold`, default in `backend/rag/retrieval.py`). This script ingests the SciFact
abstracts through the documents service, then for every question asks the search service with the
chats' default strategy which passages it finds, and records the best similarity among them:

- answerable: SciFact's questions with judged abstracts in the corpus (refusing one is a miss);
- off-topic: 100 questions from other fields (`bench/data/off_topic_questions.txt`; answering one
  is a miss).

Both sets are split in two halves (SciFact by query id parity, off-topic by line parity). On the
calibration half, the thresholds where both shares are within the target form a band; the middle
of the band is chosen (the edges are where one side starts failing), and the held-out half gives
the figures. The best score of every question is kept in the results, so the figures can be
re-derived.

    .venv/bin/python bench/refusal.py [--smoke]
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import parser, setup_django, write  # noqa: E402
from bench.retrieval import SCIFACT, ingest, load  # noqa: E402

OFF_TOPIC = Path(__file__).resolve().parent / "data" / "off_topic_questions.txt"
GRID = [round(0.05 + 0.01 * i, 2) for i in range(46)]  # 0.05 .. 0.50


def off_topic_questions() -> list[str]:
    return [line.strip() for line in OFF_TOPIC.read_text().splitlines() if line.strip() and not line.startswith("#")]


def best_scores(user, questions: list[str], strategy: str, k: int) -> list[float]:
    from backend.documents import search

    best = []
    for text in questions:
        hits = search.search(user, text, k=k, threshold=-1.0, strategy=strategy)
        best.append(max((hit.score for hit in hits), default=-1.0))
    return best


def shares(answerable: list[float], off_topic: list[float], threshold: float) -> dict:
    return {"threshold": threshold,
            "answerable_refused": round(sum(s < threshold for s in answerable) / len(answerable), 4),
            "off_topic_answered": round(sum(s >= threshold for s in off_topic) / len(off_topic), 4)}


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--target", type=float, default=0.05, help="largest acceptable share of misses on each side")
    args = p.parse_args()

    docs, queries, judged = load(SCIFACT / "corpus.jsonl", SCIFACT / "queries.jsonl", SCIFACT / "qrels" / "train.tsv")
    off_topic = off_topic_questions()
    if args.smoke:
        queries = dict(list(queries.items())[:6])
        wanted = {d for q in queries for d in judged[q]}
        docs = [d for d in docs if d["_id"] in wanted] + [d for d in docs if d["_id"] not in wanted][:40]
        off_topic = off_topic[:6]
    setup_django(Path(tempfile.mkdtemp(prefix="bench-refusal-")))

    from backend.chats.services import RAG_DEFAULTS

    user, seconds, states, _ = ingest(docs)
    strategy, k = RAG_DEFAULTS["strategy"], RAG_DEFAULTS["k"]
    ids = sorted(queries, key=int)
    answerable = dict(zip(ids, best_scores(user, [queries[q] for q in ids], strategy, k)))
    off = best_scores(user, off_topic, strategy, k)

    calibration = ([s for q, s in answerable.items() if int(q) % 2 == 0], off[0::2])
    held_out = ([s for q, s in answerable.items() if int(q) % 2 == 1], off[1::2])
    curve = [shares(*calibration, t) for t in GRID]
    band = [c["threshold"] for c in curve
            if c["answerable_refused"] <= args.target and c["off_topic_answered"] <= args.target]
    if band:
        chosen = round((band[0] + band[-1]) / 2, 2)
    else:  # no threshold meets both: the one whose worse side is best
        chosen = min(curve, key=lambda c: max(c["answerable_refused"], c["off_topic_answered"]))["threshold"]
    current = RAG_DEFAULTS["threshold"]
    figures = {"documents": len(docs), "ingest_seconds": round(seconds, 1), "states": states,
               "strategy": strategy, "k": k, "answerable": len(answerable), "off_topic": len(off),
               "calibration_curve": curve, "band_on_calibration": [band[0], band[-1]] if band else None,
               "chosen_on_calibration": chosen,
               "held_out_at_chosen": shares(*held_out, chosen),
               "held_out_at_default": shares(*held_out, current), "default_threshold": current,
               "all_at_default": shares(list(answerable.values()), off, current),
               "best_scores": {"answerable": {q: round(v, 4) for q, v in answerable.items()},
                               "off_topic": dict(zip(off_topic, (round(v, 4) for v in off)))}}
    print(f"ingested {len(docs)} documents in {seconds:.0f} s; {len(answerable)} answerable, {len(off)} off-topic")
    for c in curve[::5]:
        print(f"  calibration  threshold {c['threshold']:.2f}: answerable refused {c['answerable_refused']:.1%}, "
              f"off-topic answered {c['off_topic_answered']:.1%}")
    for name in ("held_out_at_chosen", "held_out_at_default", "all_at_default"):
        c = figures[name]
        print(f"{name:20s} threshold {c['threshold']:.2f}: answerable refused {c['answerable_refused']:.1%}, "
              f"off-topic answered {c['off_topic_answered']:.1%}")
    write("refusal", args, figures)


if __name__ == "__main__":
    main()
