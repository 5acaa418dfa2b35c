"""FAISS indexes on disk: one file per key (a collection), a derived cache of the database.

A file holds a small JSON header (format, version stamp, model, dimension, count, build time,
payload length) and the serialised FAISS index. It is written to a temporary file and moved into
place, so readers see the old file or the new one, never half of one. ``load`` returns None for a
missing, stale (other version), corrupt or older-format file; the caller rebuilds it from the
database.

Vectors are stored as float16 (FAISS's scalar quantizer): half the memory of float32. Below
``hnsw_min_vectors`` the index is exact search (one query scans every vector); from there on it is
an HNSW graph over the same float16 vectors (approximate; recall against exact in bench/). A
search may carry the ids it is allowed to return: few of them are scored exactly (their vectors
are read back from the index), many are filtered inside the index scan, so a selective filter
still returns k hits whenever k exist. Scores differ from float32 by about 1e-3; callers that
show a score recompute it from the database's float32 vector.
"""

import fcntl
import json
import os
import struct
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

# One query scans the index on one thread: splitting so small a job across OpenMP threads costs
# more than it saves, and in a server the other cores are busy with the encoder's own threads
# (measured: 0.6 ms instead of 21 ms at 10k vectors beside a loaded encoder; bench/). OpenMP's
# thread count is a per-thread setting, and a new thread starts from the process default: every
# request runs on a fresh thread, so it is set where a search runs, not once at import (from a
# fresh thread, 10k exact: 4 to 7 ms p50, 22 ms p95 with the default, 0.9 ms with one thread).

MAGIC = b"CBKFAISS"
FORMAT = 2  # 1: IndexFlatIP (float32); 2: float16 scalar quantizer


@dataclass
class IndexInfo:
    version: int
    model: str
    dimension: int
    vectors: int
    built_at: float
    bytes_on_disk: int


# At most this many allowed ids are scored exactly from their own vectors; more are filtered
# inside the index's scan (an allowed set that large is a large share of any index it narrows).
EXACT_SUBSET = 50_000


def is_graph(index: faiss.Index) -> bool:
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
    return isinstance(inner, faiss.IndexHNSW)


HEADER_FIELDS = {"format": int, "version": int, "model": str, "dimension": int, "vectors": int, "payload": int,
                 "built_at": (int, float)}


def _header_ok(info) -> bool:
    """A header of the shape this module writes: an object with each field of its type."""
    return isinstance(info, dict) and all(
        isinstance(info.get(name), kind) and not isinstance(info.get(name), bool) for name, kind in HEADER_FIELDS.items())


class FaissStore:
    def __init__(self, directory: str | os.PathLike, *, hnsw_min_vectors: int = 20_000, hnsw_m: int = 32,
                 ef_construction: int = 80, ef_search: int = 96):
        self.directory = Path(directory)
        self.hnsw_min_vectors, self.hnsw_m = hnsw_min_vectors, hnsw_m
        self.ef_construction, self.ef_search = ef_construction, ef_search
        self._cache: dict[str, tuple[int, float, faiss.Index, IndexInfo]] = {}
        self._lookups: dict[int, tuple[faiss.Index, np.ndarray, np.ndarray, np.ndarray]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    # --- files ------------------------------------------------------------------------------

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.faiss"

    def _thread_lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    @contextmanager
    def writing(self, key: str):
        """Serialise writers of one key across threads and processes."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._thread_lock(key):
            with open(self.directory / f"{key}.lock", "w") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def _write(self, key: str, index: faiss.Index, version: int, model: str) -> IndexInfo:
        payload = faiss.serialize_index(index).tobytes()
        info = {"format": FORMAT, "version": version, "model": model, "dimension": index.d,
                "vectors": int(index.ntotal), "built_at": time.time(), "payload": len(payload)}
        header = json.dumps(info).encode()
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{key}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(MAGIC + struct.pack("<I", len(header)) + header + payload)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path(key))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        stat = self.path(key).stat()
        meta = IndexInfo(version, model, index.d, int(index.ntotal), info["built_at"], stat.st_size)
        self._cache[key] = (version, stat.st_mtime_ns, index, meta)
        return meta

    def _read(self, key: str) -> tuple[faiss.Index, IndexInfo] | None:
        path = self.path(key)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        cached = self._cache.get(key)
        if cached and cached[1] == stat.st_mtime_ns:
            return cached[2], cached[3]
        try:
            data = path.read_bytes()
            if data[:8] != MAGIC:
                return None
            (length,) = struct.unpack("<I", data[8:12])
            info = json.loads(data[12:12 + length])
            payload = data[12 + length:]
            if not _header_ok(info) or info["format"] != FORMAT or len(payload) != info["payload"]:
                return None
            index = faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8))
            if index.ntotal != info["vectors"] or index.d != info["dimension"]:
                return None
        except (ValueError, KeyError, TypeError, struct.error, RuntimeError, UnicodeDecodeError):
            return None
        meta = IndexInfo(info["version"], info["model"], info["dimension"], info["vectors"], info["built_at"],
                         stat.st_size)
        self._cache[key] = (meta.version, stat.st_mtime_ns, index, meta)
        return index, meta

    # --- operations -------------------------------------------------------------------------

    def load(self, key: str, version: int) -> tuple[faiss.Index, IndexInfo] | None:
        found = self._read(key)
        if found is None or found[1].version != version:
            return None
        return found

    def info(self, key: str) -> IndexInfo | None:
        found = self._read(key)
        return found[1] if found else None

    def new_index(self, dimension: int, size: int) -> faiss.Index:
        """Exact below ``hnsw_min_vectors``, an HNSW graph from there on (both float16)."""
        fp16, inner_product = faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        if size < self.hnsw_min_vectors:
            return faiss.IndexIDMap2(faiss.IndexScalarQuantizer(dimension, fp16, inner_product))
        graph = faiss.IndexHNSWSQ(dimension, fp16, self.hnsw_m, inner_product)
        graph.hnsw.efConstruction = self.ef_construction
        return faiss.IndexIDMap2(graph)

    def build(self, key: str, version: int, ids: np.ndarray, vectors: np.ndarray, *, model: str,
              dimension: int) -> IndexInfo:
        index = self.new_index(dimension, len(ids))
        if len(ids) and is_graph(index):
            faiss.downcast_index(index.index).train(np.ascontiguousarray(vectors, dtype=np.float32))
        if len(ids):
            index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))
        return self._write(key, index, version, model)

    def update(self, key: str, from_version: int, to_version: int, *, add_ids=(), add_vectors=None,
               remove_ids=()) -> IndexInfo | None:
        """Apply a change to the file at ``from_version``; None if the file is not there (rebuild)."""
        found = self.load(key, from_version)
        if found is None:
            return None
        old, meta = found
        graph, size = is_graph(old), old.ntotal + len(add_ids) - len(remove_ids)
        if (graph and len(remove_ids)) or (not graph and size >= self.hnsw_min_vectors):
            return None  # rebuild: a graph cannot drop vectors; an exact index became large
        index = faiss.clone_index(old)  # readers keep the old object until the new file is in place
        if len(remove_ids):
            index.remove_ids(np.asarray(remove_ids, dtype=np.int64))
        if len(add_ids):
            index.add_with_ids(np.ascontiguousarray(add_vectors, dtype=np.float32), np.asarray(add_ids, dtype=np.int64))
        return self._write(key, index, to_version, meta.model)

    def search(self, index: faiss.Index, query: np.ndarray, k: int, allowed=None) -> list[tuple[int, float]]:
        """The k nearest ids (among ``allowed`` when given) with their inner products."""
        if index.ntotal == 0 or k <= 0:
            return []
        query = np.asarray(query, dtype=np.float32).reshape(1, -1)
        graph = is_graph(index)
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=np.int64)
            if len(allowed) == 0:
                return []
            if len(allowed) <= EXACT_SUBSET:
                return self._exact_subset(index, query[0], k, allowed)
            selector = faiss.IDSelectorBatch(allowed)
            params = (faiss.SearchParametersHNSW(sel=selector, efSearch=max(self.ef_search, 4 * k)) if graph
                      else faiss.SearchParameters(sel=selector))
        else:
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k)) if graph else None
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # this thread's setting (see above), put back after
        try:
            scores, ids = index.search(query, min(k, index.ntotal), params=params)
        finally:
            faiss.omp_set_num_threads(threads)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i != -1]

    def _lookup(self, index: faiss.Index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids by position, ids sorted, positions in that order), cached per loaded index."""
        entry = self._lookups.get(id(index))
        if entry is None or entry[0] is not index:
            ids = faiss.vector_to_array(index.id_map).astype(np.int64)
            order = np.argsort(ids, kind="stable")
            if len(self._lookups) > 64:
                self._lookups.clear()
            entry = self._lookups[id(index)] = (index, ids, ids[order], order)
        return entry[1], entry[2], entry[3]

    def _exact_subset(self, index: faiss.Index, query: np.ndarray, k: int, allowed: np.ndarray):
        ids, sorted_ids, order = self._lookup(index)
        allowed = np.unique(allowed)
        at = np.searchsorted(sorted_ids, allowed)
        inside = at < len(sorted_ids)
        at, allowed = at[inside], allowed[inside]
        positions = order[at[sorted_ids[at] == allowed]]
        if len(positions) == 0:
            return []
        inner = faiss.downcast_index(index.index)
        scores = inner.reconstruct_batch(np.ascontiguousarray(positions, dtype=np.int64)) @ query
        best = np.argsort(-scores)[:k] if len(scores) <= k else np.argpartition(-scores, k)[:k]
        best = best[np.argsort(-scores[best])]
        return [(int(ids[positions[i]]), float(scores[i])) for i in best]

    def delete(self, key: str) -> None:
        self._cache.pop(key, None)
        for suffix in (".faiss", ".lock"):
            try:
                (self.directory / f"{key}{suffix}").unlink()
            except FileNotFoundError:
                pass
