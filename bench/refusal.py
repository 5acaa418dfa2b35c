"""Refusal calibration: when does the RAG model refuse ("the documents I found do not answer this")
the questions it cannot answer, and answer those it can?

A RAG answer is a refusal when no retrieved passage is relevant. A passage is relevant when its
cosine similarity to the question reaches the threshold (`rag.threshold`), or, with lexical
evidence, when it contains most of the question's content words (`pipeline.relevant`). This
script ingests the SciFact abstracts through the documents service, asks the search service (the
chats' default strategy and k) for every question's passages, and records each passage's
similarity and term coverage:

- answerable: SciFact's questions with judged abstracts in the corpus (refusing one is a miss);
- off-topic: 100 questions from other fields (`bench/data/off_topic_questions.txt`; answering one
  is a miss);
- multi-topic: 21 answerable questions about documents whose chunks hold many topics (this
  README and a PDF of the Zen of Python, `bench/data/multi_topic_questions.txt`), asked by another
  user who has only those documents. Never used to choose: it checks that a rule chosen on
  SciFact's one-topic abstracts holds on documents of another shape.

SciFact and off-topic are split in two halves (query id parity, line parity). On the calibration
half, the thresholds where both shares are within the target form a band; the middle of the band
is chosen, and the held-out half (and the multi-topic set) give the figures.

    .venv/bin/python bench/refusal.py [--smoke] [--reuse DATA_DIR]
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import CORPUS, ROOT, parser, setup_django, write  # noqa: E402
from bench.retrieval import SCIFACT, ingest, load  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
GRID = [round(0.05 + 0.01 * i, 2) for i in range(46)]  # 0.05 .. 0.50


def questions(name: str) -> list[str]:
    lines = (DATA / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def passages(user, texts: list[str], strategy: str, k: int) -> list[list[tuple[float, float]]]:
    """For each question, its retrieved passages as (similarity, term coverage)."""
    from backend.documents import search
    from backend.rag.pipeline import term_coverage

    found = []
    for text in texts:
        hits = search.search(user, text, k=k, threshold=-1.0, strategy=strategy)
        found.append([(round(hit.score, 4), round(term_coverage(text, hit.chunk.text), 3)) for hit in hits])
    return found


def answered(hits: list[tuple[float, float]], threshold: float) -> bool:
    from backend.rag.pipeline import relevant

    return any(relevant(score, coverage, threshold) for score, coverage in hits)


def shares(answerable, off_topic, threshold: float) -> dict:
    return {"threshold": threshold,
            "answerable_refused": round(sum(not answered(h, threshold) for h in answerable) / len(answerable), 4),
            "off_topic_answered": round(sum(answered(h, threshold) for h in off_topic) / len(off_topic), 4)}


def multi_topic_user():
    from django.core.files.uploadedfile import SimpleUploadedFile

    from backend.core.tasks import runner
    from backend.documents import library
    from backend.users.accounts import register

    user = register(email="multi@example.com", password="bench passphrase 123")
    library.upload_document(user, SimpleUploadedFile("README.md", (ROOT / "README.md").read_bytes()))
    pdf = CORPUS / "pdf" / "google-doc-document.pdf"
    library.upload_document(user, SimpleUploadedFile(pdf.name, pdf.read_bytes()))
    runner().wait_idle(timeout=600)
    return user


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--target", type=float, default=0.05, help="largest acceptable share of misses on each side")
    p.add_argument("--reuse", type=Path, help="a DATA_DIR of an earlier run: its ingested corpus is used as is")
    args = p.parse_args()

    docs, queries, judged = load(SCIFACT / "corpus.jsonl", SCIFACT / "queries.jsonl", SCIFACT / "qrels" / "train.tsv")
    off_topic, multi = questions("off_topic_questions.txt"), questions("multi_topic_questions.txt")
    if args.smoke:
        queries = dict(list(queries.items())[:6])
        wanted = {d for q in queries for d in judged[q]}
        docs = [d for d in docs if d["_id"] in wanted] + [d for d in docs if d["_id"] not in wanted][:40]
        off_topic, multi = off_topic[:6], multi[:4]
    data_dir = args.reuse or Path(tempfile.mkdtemp(prefix="bench-refusal-"))
    setup_django(data_dir)
    print(f"data in {data_dir}", flush=True)

    from backend.chats.params import RAG_DEFAULTS
    from backend.users.models import User

    if args.reuse:
        scifact_user, seconds = User.objects.get(email="bench@example.com"), 0.0
        states = {"reused": str(args.reuse)}
        other = User.objects.filter(email="multi@example.com").first() or multi_topic_user()
    else:
        scifact_user, seconds, states, _ = ingest(docs)
        other = multi_topic_user()
    strategy, k = RAG_DEFAULTS["strategy"], RAG_DEFAULTS["k"]
    ids = sorted(queries, key=int)
    answerable = dict(zip(ids, passages(scifact_user, [queries[q] for q in ids], strategy, k)))
    off = passages(scifact_user, off_topic, strategy, k)
    multi_hits = passages(other, multi, strategy, k)

    calibration = ([h for q, h in answerable.items() if int(q) % 2 == 0], off[0::2])
    held_out = ([h for q, h in answerable.items() if int(q) % 2 == 1], off[1::2])
    curve = [shares(*calibration, t) for t in GRID]
    band = [c["threshold"] for c in curve
            if c["answerable_refused"] <= args.target and c["off_topic_answered"] <= args.target]
    if band:
        chosen = round((band[0] + band[-1]) / 2, 2)
    else:  # no threshold meets both: the one whose worse side is best
        chosen = min(curve, key=lambda c: max(c["answerable_refused"], c["off_topic_answered"]))["threshold"]
    current = RAG_DEFAULTS["threshold"]

    def multi_refused(threshold):
        return round(sum(not answered(h, threshold) for h in multi_hits) / len(multi_hits), 4)

    figures = {"documents": len(docs), "ingest_seconds": round(seconds, 1), "states": states,
               "strategy": strategy, "k": k, "answerable": len(answerable), "off_topic": len(off),
               "multi_topic": len(multi), "calibration_curve": curve,
               "band_on_calibration": [band[0], band[-1]] if band else None, "chosen_on_calibration": chosen,
               "held_out_at_chosen": {**shares(*held_out, chosen), "multi_topic_refused": multi_refused(chosen)},
               "held_out_at_default": {**shares(*held_out, current), "multi_topic_refused": multi_refused(current)},
               "default_threshold": current,
               "all_at_default": shares(list(answerable.values()), off, current),
               "passages": {"answerable": answerable, "off_topic": dict(zip(off_topic, off)),
                            "multi_topic": dict(zip(multi, multi_hits))}}
    print(f"{len(docs)} documents ({seconds:.0f} s); {len(answerable)} answerable, {len(off)} off-topic, "
          f"{len(multi)} multi-topic questions")
    for c in curve[::5]:
        print(f"  calibration  threshold {c['threshold']:.2f}: answerable refused {c['answerable_refused']:.1%}, "
              f"off-topic answered {c['off_topic_answered']:.1%}, multi-topic refused "
              f"{multi_refused(c['threshold']):.1%}")
    print(f"band on calibration: {figures['band_on_calibration']}, chosen {chosen}")
    for name in ("held_out_at_chosen", "held_out_at_default"):
        c = figures[name]
        print(f"{name:20s} threshold {c['threshold']:.2f}: answerable refused {c['answerable_refused']:.1%}, "
              f"off-topic answered {c['off_topic_answered']:.1%}, multi-topic refused {c['multi_topic_refused']:.1%}")
    write("refusal", args, figures)


if __name__ == "__main__":
    main()
