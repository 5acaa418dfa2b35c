"""Run extraction in a child process with a time limit.

A hostile or pathological file can make a parser spin; a thread cannot be stopped, a process can.
One spawned worker process is kept warm and replaced when it has to be killed.
"""

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool

from .loaders import ExtractionError, Extracted, extract

_pool: ProcessPoolExecutor | None = None
_lock = threading.Lock()


def _get_pool() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        return _pool


def _kill_pool() -> None:
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is None:
        return
    for process in list(getattr(pool, "_processes", {}).values()):
        process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def _run(data: bytes, kind: str, max_pages: int, max_chars: int):
    try:
        return ("ok", extract(data, kind, max_pages=max_pages, max_chars=max_chars))
    except ExtractionError as exc:
        return ("error", exc.code, exc.message)


def extract_with_timeout(data: bytes, kind: str, *, timeout: float, max_pages: int, max_chars: int) -> Extracted:
    for attempt in (1, 2):
        future = _get_pool().submit(_run, data, kind, max_pages, max_chars)
        try:
            result = future.result(timeout=timeout)
        except FutureTimeout:
            _kill_pool()
            raise ExtractionError("TIMEOUT", f"Reading this file took longer than {timeout:g} seconds. It may be "
                                  "malformed; try saving it again or splitting it.")
        except BrokenProcessPool:
            _kill_pool()
            if attempt == 2:
                raise ExtractionError("CORRUPT", "This file crashed the reader. Try saving it again.")
            continue
        if result[0] == "error":
            raise ExtractionError(result[1], result[2])
        return result[1]
    raise AssertionError("unreachable")
