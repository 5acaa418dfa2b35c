"""Run extraction in a child process with time and memory limits.

A hostile or pathological file can make a parser spin or allocate without bound; a thread cannot
be stopped, a process can. The child is a plain subprocess (``python -m backend.rag.parsing``),
not a multiprocessing child: Celery's prefork pool runs tasks in daemonic processes, which may not
start multiprocessing children ("daemonic processes are not allowed to have children"), while a
subprocess works in every pool, in daphne and in a thread. The child caps its own address space
(RLIMIT_AS) and asks Linux to kill it when its parent dies, so a killed server or worker leaves no
parser running. Requests and answers are length-prefixed JSON on the child's stdin and stdout
and raw bytes for the file (never pickle: the child reads untrusted files). Children are kept warm and reused, one per
concurrent extraction; a child that timed out or broke is killed and replaced.
"""

import dataclasses
import json
import os
import selectors
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from .loaders import PDF, ExtractionCode, ExtractionError, Extracted, extract, finish, read_by_ocr
from . import pdf_tables
from .ocr import OcrOptions

_HEADER = struct.Struct(">Q")
_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding the ``backend`` package


class _Broken(Exception):
    """The child died or spoke out of turn."""


class _Child:
    def __init__(self, memory_mb: int):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")])),
               "PARSER_PARENT_PID": str(os.getpid()), "PARSER_MEMORY_MB": str(memory_mb),
               # Tesseract's OpenMP threads, one per core by default, spun against each other and
               # the server: a page took 27 s instead of 3.4 s on 2 cores. One thread per page;
               # pages are read side by side in several children instead (``_read_by_ocr``).
               "OMP_THREAD_LIMIT": "1"}
        self.memory_mb = memory_mb
        self.process = subprocess.Popen([sys.executable, "-m", "backend.rag.parsing"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=_ROOT)

    def call(self, request: dict, data: bytes, timeout: float) -> list:
        deadline = time.monotonic() + timeout
        self.send(request, data)
        return self.receive(deadline)

    def send(self, request: dict, data: bytes) -> None:
        meta = json.dumps(request).encode()
        try:
            self.process.stdin.write(_HEADER.pack(len(meta)) + meta + _HEADER.pack(len(data)))
            self.process.stdin.write(data)
            self.process.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise _Broken() from exc

    def receive(self, deadline: float) -> list:
        size = _HEADER.unpack(self._read(_HEADER.size, deadline))[0]
        return json.loads(self._read(size, deadline).decode("utf-8", "surrogatepass"))

    def _read(self, size: int, deadline: float) -> bytes:
        fd = self.process.stdout.fileno()
        chunks, missing = [], size
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while missing:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise TimeoutError()
                chunk = os.read(fd, min(missing, 1 << 20))
                if not chunk:
                    raise _Broken()
                chunks.append(chunk)
                missing -= len(chunk)
        return b"".join(chunks)

    def kill(self) -> None:
        self.process.kill()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


_idle: list[_Child] = []
_lock = threading.Lock()


def _checkout(memory_mb: int) -> _Child:
    with _lock:
        while _idle:
            child = _idle.pop()
            if child.process.poll() is None and child.memory_mb == memory_mb:
                return child
            child.kill()
    return _Child(memory_mb)


def _checkin(child: _Child) -> None:
    with _lock:
        _idle.append(child)


def shutdown() -> None:
    """Kill the warm children (tests; a dying parent takes them with it anyway)."""
    with _lock:
        children, _idle[:] = list(_idle), []
    for child in children:
        child.kill()


OCR_BATCH = 4  # PDF pages read by OCR per call of the child process (progress is told in between)


def extract_with_timeout(data: bytes, kind: str, *, timeout: float, max_pages: int, max_chars: int,
                         memory_mb: int = 2048, ocr: OcrOptions | None = None, progress=None,
                         on_pages=None) -> Extracted:
    """The file's text, read in a child process: its text layer within ``timeout``; then, when
    ``ocr`` is given and pages have no text layer (or the file is an image), OCR of those pages
    within OCR's own page and time budget, a few pages per call, ``progress(done, total)`` after
    each. ``ocr`` None: no OCR (off, or not installed).

    ``on_pages(pages, total)``: a PDF longer than ``PAGE_RUN`` pages has its text layer read a run
    of pages at a time, and the caller is handed the pages read so far while the child reads the
    next run (chunking and embedding overlap extraction); the result is the same."""
    request = {"op": "extract", "kind": kind, "max_pages": max_pages}
    if kind == PDF and on_pages is not None:
        extracted = _text_layer_in_runs(request, data, timeout, memory_mb, on_pages)
    else:
        extracted = _call(request, data, timeout, memory_mb, "Reading this file")
    for key in ("page_total", "table_seconds"):  # the runs' bookkeeping
        extracted.metadata.pop(key, None)
    needs = extracted.metadata.get("needs_ocr")
    if ocr is not None and needs:
        extracted = _read_by_ocr(data, extracted, ocr, memory_mb, progress)
    return finish(extracted, max_chars=max_chars, ocr_ran=ocr is not None)


PAGE_RUN = 16  # pages of a long PDF's text layer per call of the child, when the caller reads along


def _text_layer_in_runs(request: dict, data: bytes, timeout: float, memory_mb: int, on_pages) -> Extracted:
    """A PDF's text layer in runs of pages on one child, each run asked for before the caller is
    handed the pages so far. ``timeout`` bounds the child's time: the time the caller spends in
    ``on_pages`` is added to the deadline. A child that breaks is replaced by one plain call."""
    child = _checkout(memory_mb)
    deadline = time.monotonic() + timeout
    pages: list[tuple[int, str]] = []
    metadata: dict = {}
    table_budget = pdf_tables.TIME_BUDGET
    error = None

    def ask(first: int) -> None:
        child.send({**request, "first": first, "last": first + PAGE_RUN - 1, "table_seconds": table_budget}, data)

    try:
        ask(1)
        while True:
            answer = child.receive(deadline)
            if answer[0] == "error":
                error = ExtractionError(ExtractionCode(answer[1]), answer[2])
                break
            run = answer[3]
            pages += [(number, text) for number, text in answer[2]]
            for key in ("needs_ocr", "table_pages"):  # lists that grow run by run
                run[key] = metadata.get(key, []) + run.get(key, [])
                if not run[key]:
                    del run[key]
            if "+" in metadata.get("reader", ""):  # a page of an earlier run needed the second reader
                run["reader"] = metadata["reader"]
            metadata = {**metadata, **run}
            table_budget = max(0.0, table_budget - run.get("table_seconds", 0.0))
            total = run.get("page_total", 0)
            if not pages or pages[-1][0] >= total:
                break
            ask(pages[-1][0] + 1)  # the child reads the next run meanwhile
            handed = time.monotonic()
            on_pages(list(pages), total)
            deadline += time.monotonic() - handed
    except TimeoutError:
        child.kill()
        raise _timed_out("Reading this file", timeout)
    except _Broken:
        child.kill()
        return _call(request, data, timeout, memory_mb, "Reading this file")
    except BaseException:
        child.kill()  # an answer may be on its way: the child cannot be reused
        raise
    _checkin(child)
    if error is not None:
        raise error
    return Extracted(PDF, pages, metadata)


def _read_by_ocr(data: bytes, extracted: Extracted, ocr: OcrOptions, memory_mb: int, progress) -> Extracted:
    needs = extracted.metadata["needs_ocr"]
    options = {k: v for k, v in dataclasses.asdict(ocr).items() if k not in ("started", "pages_read", "workers")}
    started = time.monotonic()

    def run(batch, pages, max_pages) -> Extracted:
        budget = max(0.0, ocr.time_budget - (time.monotonic() - started))
        request = {"op": "ocr", "kind": extracted.kind, "pages": pages,
                   "metadata": {**extracted.metadata, "needs_ocr": batch},
                   "ocr": {**options, "time_budget": budget, "max_pages": max_pages}}
        return _call(request, data, budget + ocr.page_timeout + 10, memory_mb, "Reading this file's pictures (OCR)")

    if not isinstance(needs, list):  # an image: its frames, in one call
        part = run(needs, extracted.pages, ocr.max_pages)
        return Extracted(part.kind, part.pages, {k: v for k, v in part.metadata.items() if k != "needs_ocr"})
    # A scan's pages: a few per call, the calls on every core (one child process each; Tesseract
    # itself runs one thread, see _Child), progress told as each call ends.
    readable = needs[: max(0, ocr.max_pages)]
    skipped = len(needs) - len(readable)
    text_of = dict(extracted.pages)
    batches = [readable[i:i + OCR_BATCH] for i in range(0, len(readable), OCR_BATCH)]
    texts, found, read = {}, [], 0
    pool = _ocr_pool(max(1, ocr.workers or os.cpu_count() or 1))
    futures = {pool.submit(run, batch, [(n, text_of.get(n, "")) for n in batch], len(batch)): batch
               for batch in batches}
    try:
        for future in as_completed(futures):
            part = future.result()
            batch = futures[future]
            texts.update((n, t) for n, t in part.pages if n in batch and t)
            found += part.metadata.get("ocr_pages", [])
            skipped += part.metadata.get("ocr_pages_skipped", 0)
            read += len(batch)
            if progress is not None:
                progress(read, len(readable))
    except BaseException:
        for future in futures:
            future.cancel()
        raise
    metadata = {k: v for k, v in extracted.metadata.items() if k != "needs_ocr"}
    metadata["ocr_pages"] = sorted(found)
    if skipped:
        metadata["ocr_pages_skipped"] = skipped  # past OCR_MAX_PAGES or OCR_TIME_BUDGET
    return Extracted(extracted.kind, [(n, texts.get(n) or t) for n, t in extracted.pages], metadata)


_ocr_pools: dict[int, ThreadPoolExecutor] = {}


def _ocr_pool(workers: int) -> ThreadPoolExecutor:
    """Threads that live as long as the process: a child is killed when the thread that started
    it ends (PR_SET_PDEATHSIG follows the thread), so children must not be started by threads that
    come and go."""
    with _lock:
        if workers not in _ocr_pools:
            _ocr_pools[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ocr")
        return _ocr_pools[workers]


def _timed_out(doing: str, timeout: float) -> ExtractionError:
    return ExtractionError(ExtractionCode.TIMEOUT, f"{doing} took longer than {timeout:g} seconds. It may be "
                           "malformed; try saving it again or splitting it.")


def _call(request: dict, data: bytes, timeout: float, memory_mb: int, doing: str) -> Extracted:
    for attempt in (1, 2):
        child = _checkout(memory_mb)
        try:
            answer = child.call(request, data, timeout)
        except TimeoutError:
            child.kill()
            raise _timed_out(doing, timeout)
        except _Broken:
            child.kill()
            if attempt == 2:
                raise ExtractionError(ExtractionCode.CORRUPT, "This file crashed the reader. Try saving it again.")
            continue
        _checkin(child)
        if answer[0] == "error":
            raise ExtractionError(ExtractionCode(answer[1]), answer[2])
        return Extracted(answer[1], [(number, text) for number, text in answer[2]], answer[3])
    raise AssertionError("unreachable")


# --- the child --------------------------------------------------------------------------------

def _die_with_parent() -> None:
    parent = int(os.environ.get("PARSER_PARENT_PID", "0"))
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass
    if parent and os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(0)


def _limit_memory() -> None:
    megabytes = int(os.environ.get("PARSER_MEMORY_MB", "0"))
    if megabytes > 0:
        import resource

        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _answer(request: dict, data: bytes) -> list:
    try:
        if request.get("op") == "ocr":
            extracted = Extracted(request["kind"], [(n, t) for n, t in request["pages"]], request["metadata"])
            result = read_by_ocr(data, extracted, OcrOptions(**request["ocr"]))
        else:
            runs = {k: request[k] for k in ("first", "last", "table_seconds") if k in request}
            result = extract(data, request["kind"], max_pages=request["max_pages"], **runs)
    except ExtractionError as exc:
        return ["error", exc.code, exc.message]
    except MemoryError:
        return ["error", ExtractionCode.TOO_LARGE.value, "Reading this file needs more memory than the limit allows. Split it or "
                "save it again with fewer images."]
    return ["ok", result.kind, result.pages, result.metadata]


def _serve() -> None:
    _die_with_parent()
    _limit_memory()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = stdin.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        request = json.loads(stdin.read(_HEADER.unpack(header)[0]))
        data = stdin.read(_HEADER.unpack(stdin.read(_HEADER.size))[0])
        body = json.dumps(_answer(request, data), ensure_ascii=False).encode("utf-8", "surrogatepass")
        stdout.write(_HEADER.pack(len(body)) + body)
        stdout.flush()


if __name__ == "__main__":
    _serve()
