"""Background work behind a small interface, chosen by settings.

A task is a function declared with ``@task("app.name")``; ``that_function.enqueue(*args)``
schedules it once the current transaction commits (callers hold the task itself, never its
name: the name only travels to Celery, which finds the function by it). The
embedded default runs it on an in-process thread pool; with ``CELERY_BROKER_URL`` set it is sent
to Celery workers, which run the very same function (see ``backend/celery.py``). Tasks must be
idempotent: a task may run again after a crash or a redelivery.
"""

import contextvars
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Callable

from django.conf import settings
from django.db import close_old_connections, transaction

from . import events

logger = logging.getLogger(__name__)

REGISTRY: dict[str, Callable] = {}

# Set as the interpreter begins to exit (a server stopped or restarted), before it joins the
# threads still running: a task that fails from then on (thread pools refuse new work) was stopped,
# not broken. Registered like concurrent.futures' own hook, and after it, so it runs first.
_exiting = threading.Event()
threading._register_atexit(_exiting.set)


def stopping() -> bool:
    """Whether this process is exiting: a task ending now should leave its work for the next start."""
    return _exiting.is_set()


class Task:
    """A registered background function: call it to run it here and now, ``enqueue`` to queue it."""

    def __init__(self, name: str, fn: Callable):
        self.name, self.fn = name, fn
        self.__doc__, self.__name__ = fn.__doc__, fn.__name__

    def __call__(self, *args):
        return self.fn(*args)

    def enqueue(self, *args) -> None:
        """Queue it once the current transaction commits (at once outside one)."""
        transaction.on_commit(lambda: self.submit(*args))

    def submit(self, *args) -> None:
        """Queue it now, whatever transaction is open."""
        runner().submit(self.name, *args)


def task(name: str):
    def register(fn) -> Task:
        if name in REGISTRY and REGISTRY[name] is not fn:
            raise ValueError(f"two tasks named {name}")
        REGISTRY[name] = fn
        return Task(name, fn)
    return register


class InProcessRunner:
    def __init__(self, workers: int):
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="task")
        self.pending: set[Future] = set()
        self.lock = threading.Lock()
        # At exit, the queued tasks are dropped (their rows say what is left: the next start
        # resumes them) rather than each run then, against pools that refuse work.
        if not stopping():  # (registering is refused once the exit began)
            threading._register_atexit(lambda: self.executor.shutdown(wait=False, cancel_futures=True))

    def _run(self, name: str, args: tuple) -> None:
        close_old_connections()
        try:
            REGISTRY[name](*args)
        except Exception:  # a failing task must not take the worker down
            logger.exception("task %s%r failed", name, args)
        finally:
            close_old_connections()

    def submit(self, name: str, *args) -> None:
        if stopping():  # the next start picks it up from its row
            logger.warning("task %s%r not queued: the process is exiting", name, args)
            return
        # In the submitter's context: the task's logs carry its request or operation id.
        future = self.executor.submit(contextvars.copy_context().run, self._run, name, args)
        with self.lock:
            self.pending.add(future)
        future.add_done_callback(lambda f: self._forget(f))

    def _forget(self, future: Future) -> None:
        with self.lock:
            self.pending.discard(future)

    def wait_idle(self, timeout: float = 60) -> bool:
        """Wait until every submitted task has finished and its events are sent (tests and shutdown)."""
        while True:
            with self.lock:
                pending = set(self.pending)
            if not pending:
                return events.flush(timeout)
            done, not_done = wait(pending, timeout=timeout)
            if not_done:
                return False


class CeleryRunner:
    def submit(self, name: str, *args) -> None:
        from backend.celery import app

        from .logs import current_ids

        app.send_task(name, args=list(args), headers={"log_ids": current_ids()})

    def wait_idle(self, timeout: float = 60) -> bool:
        return True


_runner = None
_runner_lock = threading.Lock()


def runner():
    global _runner
    if _runner is None:
        with _runner_lock:
            if _runner is None:
                if settings.CELERY_BROKER_URL:
                    _runner = CeleryRunner()
                else:
                    _runner = InProcessRunner(settings.TASK_WORKERS)
    return _runner
