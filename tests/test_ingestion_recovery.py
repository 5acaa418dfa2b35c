"""Ingestion never leaves a document stuck: leases, the sweep, unexpected errors, re-uploads."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from backend.core import tasks
from backend.documents import ingest, recovery
from backend.documents.models import Chunk, Document

from .test_documents import PHOTOSYNTHESIS_MD, TRAINS_TXT, node, upload, wait

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_document_whose_worker_died_is_requeued_and_finishes(alice, settings):
    doc = upload(alice, "plants.md", PHOTOSYNTHESIS_MD)["document"]
    wait()
    # As a worker killed mid-run leaves it: PROCESSING, half its chunks, a heartbeat that stopped.
    lapsed = timezone.now() - timedelta(seconds=settings.INGEST_STALE_AFTER + 1)
    Document.objects.update(status="PROCESSING", stage="embedding", progress=60, heartbeat_at=lapsed, chunk_count=0)
    Chunk.objects.all().delete()
    assert recovery.sweep() == {"requeued": 1, "failed": 0, "abandoned_imports": 0}
    wait()
    result = node(alice, doc["id"])
    assert result["status"] == "READY"
    document = Document.objects.get()
    assert document.chunk_count == Chunk.objects.count() > 0 and document.attempts == 2


def test_a_live_run_is_left_alone_and_a_redelivered_message_does_nothing(alice):
    upload(alice, "plants.md", PHOTOSYNTHESIS_MD)
    wait()
    Document.objects.update(status="PROCESSING", stage="embedding", heartbeat_at=timezone.now())
    assert recovery.sweep() == {"requeued": 0, "failed": 0, "abandoned_imports": 0}
    ingest.ingest(Document.objects.get().pk)  # a second delivery while the first run is alive
    assert Document.objects.get().attempts == 1


def test_a_document_that_keeps_killing_its_worker_fails_with_a_code(alice, settings):
    doc = upload(alice, "plants.md", PHOTOSYNTHESIS_MD)["document"]
    wait()
    lapsed = timezone.now() - timedelta(seconds=settings.INGEST_STALE_AFTER + 1)
    Document.objects.update(status="PROCESSING", heartbeat_at=lapsed, attempts=settings.INGEST_MAX_ATTEMPTS)
    assert recovery.sweep() == {"requeued": 0, "failed": 1, "abandoned_imports": 0}
    result = node(alice, doc["id"])
    assert (result["status"], result["errorCode"]) == ("FAILED", "INTERRUPTED")
    assert "interrupted 3 times" in result["errorMessage"]


def test_a_pending_document_nobody_picked_up_is_queued_again(alice, settings, monkeypatch):
    submitted = []
    monkeypatch.setattr(tasks.runner(), "submit", lambda name, *args: submitted.append((name, args)))
    doc = upload(alice, "plants.md", PHOTOSYNTHESIS_MD)["document"]
    assert Document.objects.get().status == "PENDING"
    Document.objects.update(updated_at=timezone.now() - timedelta(seconds=settings.INGEST_PENDING_STALE_AFTER + 1))
    submitted.clear()
    assert recovery.sweep()["requeued"] == 1
    assert submitted == [("documents.ingest", (Document.objects.get().pk,))]
    assert node(alice, doc["id"])["status"] == "PENDING"


def test_an_unexpected_error_ends_the_document_failed_not_processing(alice, monkeypatch):
    def broken(*args, **kwargs):
        raise AssertionError("daemonic processes are not allowed to have children")

    monkeypatch.setattr(ingest, "extract_with_timeout", broken)
    doc = upload(alice, "trains.txt", TRAINS_TXT)["document"]
    wait()
    result = node(alice, doc["id"])
    assert (result["status"], result["errorCode"]) == ("FAILED", "INTERNAL")


def test_uploading_a_failed_file_again_processes_it_again(alice, monkeypatch):
    monkeypatch.setattr(ingest, "extract_with_timeout", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("x")))
    first = upload(alice, "trains.txt", TRAINS_TXT)
    wait()
    assert node(alice, first["document"]["id"])["status"] == "FAILED"
    monkeypatch.undo()
    again = upload(alice, "trains.txt", TRAINS_TXT)
    assert again["duplicate"] is False and again["document"]["id"] == first["document"]["id"]
    wait()
    assert node(alice, first["document"]["id"])["status"] == "READY"
    assert Document.objects.count() == 1
    # A good document is a duplicate, as before.
    assert upload(alice, "trains.txt", TRAINS_TXT)["duplicate"] is True


def test_the_extraction_process_dies_with_its_parent(tmp_path):
    script = ("import sys, time; sys.path.insert(0, %r)\n"
              "from backend.rag import parsing\n"
              "child = parsing._checkout(512)\n"
              "print(child.process.pid, flush=True)\n"
              "time.sleep(60)\n") % str(os.getcwd())
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    time.sleep(0.5)  # the child arms its parent-death signal first thing
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(10)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            return
        try:  # reaped by init in a container, or a zombie of the test runner
            with open(f"/proc/{child_pid}/stat") as stat:
                if stat.read().split()[2] == "Z":
                    return
        except FileNotFoundError:
            return
        time.sleep(0.1)
    raise AssertionError("the extraction process outlived its parent")


def _run_counting_row_writes(alice, monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    monkeypatch.setattr(tasks.runner(), "submit", lambda name, *args: None)  # the test runs it here
    doc = upload(alice, "plants.md", PHOTOSYNTHESIS_MD)["document"]
    told = []
    monkeypatch.setattr(ingest, "publish_document_event", lambda document: told.append(document.stage))
    with CaptureQueriesContext(connection) as queries:
        ingest.ingest(Document.objects.get().pk)
    writes = [q["sql"] for q in queries.captured_queries
              if q["sql"].startswith('UPDATE "documents_document"')]
    return node(alice, doc["id"]), told, writes


def test_a_short_run_tells_every_stage_but_writes_its_row_at_the_claim_and_the_end(alice, monkeypatch, settings):
    settings.INGEST_PROGRESS_WRITE_INTERVAL = 3600
    result, told, writes = _run_counting_row_writes(alice, monkeypatch)
    assert (result["status"], result["stage"], result["progress"]) == ("READY", "ready", 100)
    assert result["pageCount"] == 1 and result["wordCount"] > 0 and result["chunkCount"] > 0  # written at the end
    assert told[0] == "extracting" and told[-1] == "ready"
    assert {"chunking", "embedding", "indexing"} <= set(told)
    assert len(writes) == 2, writes  # the claim, then READY with everything in between


def test_with_no_interval_every_stage_is_written(alice, monkeypatch, settings):
    settings.INGEST_PROGRESS_WRITE_INTERVAL = 0
    result, told, writes = _run_counting_row_writes(alice, monkeypatch)
    assert result["status"] == "READY"
    assert len(writes) == len(told) >= 5  # the claim and each change after it


STOPPED_SERVER = """
import os, sys, time
sys.path.insert(0, os.getcwd())
os.environ["DJANGO_SETTINGS_MODULE"] = "backend.settings"
import django
django.setup()
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from backend.core.tasks import runner
from backend.documents import ingest, library, recovery
from backend.documents.models import Document
from backend.users.models import User

call_command("migrate", verbosity=0)
if sys.argv[1] == "upload":  # three uploads, then the process ends while the first is embedded
    user = User.objects.create_user("a", email="a@example.com", password="x")
    real = ingest._embed
    def slow(*args, **kwargs):
        time.sleep(1.5)
        return real(*args, **kwargs)
    ingest._embed = slow
    for n in range(3):
        library.upload_document(user, SimpleUploadedFile(f"{n}.txt", f"Trains leave platform {n} at dawn.".encode()))
    time.sleep(0.5)
else:  # the next start: what the rows say, then the embedded runner's resume
    print(sorted(Document.objects.values_list("status", "attempts")), flush=True)
    recovery.resume_unfinished()
    runner().wait_idle(120)
    print(sorted(Document.objects.values_list("status", "attempts")), flush=True)
"""


def test_a_server_stopped_mid_ingestion_leaves_its_documents_for_the_next_start(tmp_path):
    """The embedded runner at a normal exit (a restart): the document being embedded and those
    queued behind it are neither FAILED nor counted as attempts (before, each was run against the
    encoder's closed pool and ended FAILED, 'something went wrong'); the next start finishes them."""
    env = {**os.environ, "DJANGO_ENV": "test", "DATA_DIR": str(tmp_path), "SQLITE_PATH": str(tmp_path / "db.sqlite3"),
           "MEDIA_ROOT": str(tmp_path / "media"), "INGEST_RESUME_ON_START": "0", "INGEST_SWEEP_INTERVAL": "0",
           "TASK_WORKERS": "1"}
    env.pop("DATABASE_URL", None)
    run = lambda step: subprocess.run([sys.executable, "-c", STOPPED_SERVER, step], env=env, cwd=os.getcwd(),  # noqa: E731
                                      capture_output=True, text=True, timeout=300)
    stopped = run("upload")
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert "stopped with the process" in stopped.stderr
    restarted = run("resume")
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    left, finished = restarted.stdout.splitlines()
    assert left == str([("PENDING", 0)] * 3)
    assert finished == str([("READY", 1)] * 3)
