"""Backup and restore of a whole instance at scale: time and peak memory of `manage.py backup` and
`manage.py restore`, as an operator runs them (each its own process; its peak RSS read from the
kernel when it exits).

An instance (SQLite, embedded defaults) is filled with users' chats (--messages) and documents with
their passages and vectors (--chunks, 384 float32 each, the model's size), a small stored file per
document; it is backed up, the archive restored into a fresh, migrated instance, and the restored
rows counted against the original's.

    .venv/bin/python bench/backup_at_scale.py [--messages 200000] [--chunks 50000]
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import ROOT, Timer, bench_env, parser, setup_django, write  # noqa: E402


def fill(messages: int, chunks: int, per_document: int = 20, per_chat: int = 200) -> None:
    import numpy as np
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from backend.chats.models import Chat, Message
    from backend.documents.collections import default_collection
    from backend.documents.models import Chunk, Document, DocumentVersion
    from backend.users.accounts import register

    rng = np.random.default_rng(0)
    users = [register(email=f"user{n}@example.com", password="bench passphrase 123") for n in range(10)]
    for c in range(max(1, messages // per_chat)):
        chat = Chat.objects.create(owner=users[c % len(users)], title=f"chat {c}", model="gpt-4")
        Message.objects.bulk_create([
            Message(chat=chat, role="assistant" if i % 2 else "user", content=f"words about trains {i} " * 10,
                    generator="gpt-4" if i % 2 else "", prompt_tokens=5, completion_tokens=5)
            for i in range(per_chat)], batch_size=5000)
    for d in range(max(1, chunks // per_document)):
        user = users[d % len(users)]
        collection = default_collection(user)
        data = f"document {d}\n\n".encode() + b"A paragraph of text. " * 50
        key = default_storage.save(f"bench/{d}.txt", ContentFile(data))
        document = Document.objects.create(collection=collection, uploaded_by=user, title=f"document {d}",
                                           original_name=f"{d}.txt", file_type="txt", size=len(data),
                                           sha256=f"{d:064x}", storage_key=key, status=Document.Status.READY,
                                           stage="ready", progress=100, chunk_count=per_document)
        DocumentVersion.objects.create(document=document, number=1, original_name=f"{d}.txt", file_type="txt",
                                       size=len(data), sha256=f"{d:064x}", storage_key=key, uploaded_by=user)
        vectors = rng.standard_normal((per_document, 384)).astype(np.float32)
        Chunk.objects.bulk_create([
            Chunk(document=document, collection=collection, position=p, text=f"passage {p} of document {d}. " * 40,
                  text_hash=f"{d * per_document + p:064x}", char_start=0, char_end=1000, token_count=200,
                  vector=vectors[p].tobytes(), embedding_model="all-MiniLM-L6-v2")
            for p in range(per_document)])


def counts() -> dict:
    from backend.chats.models import Message
    from backend.documents.models import Chunk, Document
    from backend.users.models import User

    return {"users": User.objects.count(), "messages": Message.objects.count(), "documents": Document.objects.count(),
            "chunks": Chunk.objects.count()}


def manage(data_dir: Path, *args: str) -> dict:
    """Run ``manage.py args`` on the instance in ``data_dir``: its seconds and peak RSS (MiB)."""
    env = bench_env(data_dir)
    env["DJANGO_SETTINGS_MODULE"] = "backend.settings"
    with Timer() as t:
        process = subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed ({process.returncode})")
    return {"seconds": round(t.seconds, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=200_000)
    p.add_argument("--chunks", type=int, default=50_000)
    args = p.parse_args()
    if args.smoke:
        args.messages, args.chunks = 400, 40
    source = setup_django()
    with Timer() as seeding:
        fill(args.messages, args.chunks)
    original = counts()
    print(f"filled in {seeding.seconds:.1f} s: {original}", flush=True)
    path = Path(tempfile.mkdtemp(prefix="bench-backup-")) / "instance.zip"
    backup = manage(source, "backup", str(path))
    backup["archive_mib"] = round(path.stat().st_size / (1 << 20), 1)
    print(f"backup: {backup}", flush=True)
    target = Path(tempfile.mkdtemp(prefix="bench-restore-"))
    manage(target, "migrate", "--verbosity", "0")
    baseline = manage(target, "check")  # a manage.py process that loads Django and does nothing else
    restore = manage(target, "restore", str(path))
    print(f"restore: {restore} (a manage.py process doing nothing: {baseline['peak_rss_mib']} MiB)", flush=True)

    from django.conf import settings
    from django.db import connections

    connections["default"].close()
    settings.DATABASES["default"]["NAME"] = str(target / "db.sqlite3")
    restored = counts()
    assert restored == original, (restored, original)
    write("backup_at_scale", args, {"instance": original, "backup": backup, "restore": restore,
                                    "manage_py_alone_peak_rss_mib": baseline["peak_rss_mib"]})


if __name__ == "__main__":
    main()
