"""Backup and restore of a whole instance (``manage.py backup`` / ``manage.py restore``).

The archive is a zip like a knowledge-base archive: ``manifest.json`` (format, version, the
embedding model, the applied migrations, the counts), ``database.jsonl`` (every app's rows, one a
line, as Django's serializer writes them: users, chats, documents, chunks and their vectors, ...)
and ``files/<storage key>`` (every stored file: documents of every version, avatars). Index files
are never in it: a restored instance rebuilds them from the database.

Both ways run in bounded memory, a batch of rows at a time, whatever the instance's size: a backup
reads one consistent snapshot of the database (``core/snapshot.py``) while the server writes on, a
restore goes into an empty, migrated database, all or nothing: rows in one transaction, inserted
a batch at a time, files removed again if it fails. Version 1 archives (all rows in one
``database.json``) still restore.
"""

import io
import json
import zipfile
from datetime import datetime, timezone
from itertools import groupby, islice

from django.core import serializers
from django.core.serializers.json import DjangoJSONEncoder
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.migrations.recorder import MigrationRecorder

from backend.core.snapshot import snapshot
from backend.rag import embeddings

from . import engines
from .archive import ArchiveError, add_file
from .models import Collection, DocumentVersion

FORMAT = "chat-backend.backup"
VERSION = 2
READS = {1: "database.json", 2: "database.jsonl"}  # archive version -> its rows
BATCH = 2000  # rows read, written or inserted at a time
# Rows that belong to this server and are made again where it is restored.
SKIP = {"contenttypes", "auth.permission", "sessions", "admin.logentry", "axes"}


def _models():
    from django.apps import apps

    for model in apps.get_models():
        label = model._meta.label_lower
        if model._meta.app_label in SKIP or label in SKIP or model._meta.proxy or not model._meta.managed:
            continue
        yield model


def _stored_keys(alias: str) -> list[str]:
    from backend.users.models import User

    keys = set(DocumentVersion.objects.using(alias).values_list("storage_key", flat=True))  # every version's file
    keys |= {name for name in User.objects.using(alias).exclude(avatar="").values_list("avatar", flat=True) if name}
    return sorted(keys)


def _write_rows(out, alias: str) -> int:
    """Every row of every model into ``out`` (binary), one JSON object a line; returns how many."""
    count = 0
    for model in _models():
        rows = model._default_manager.using(alias).order_by("pk").iterator(chunk_size=BATCH)
        while batch := list(islice(rows, BATCH)):
            lines = [json.dumps(row, cls=DjangoJSONEncoder) for row in serializers.serialize("python", batch)]
            out.write(("\n".join(lines) + "\n").encode())
            count += len(lines)
    return count


def backup(target) -> dict:
    """Write the instance to ``target`` (a path or a binary file); returns the counts."""
    missing = 0
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        with snapshot() as alias:  # the rows, the files they name and the schema: one moment's
            with archive.open(READS[VERSION], "w", force_zip64=True) as out:
                rows = _write_rows(out, alias)
            keys = _stored_keys(alias)
            migrations = sorted(f"{app}.{name}" for app, name in
                                MigrationRecorder.Migration.objects.using(alias).values_list("app", "name"))
        for key in keys:  # a stored file never changes under its key
            try:
                with default_storage.open(key, "rb") as handle:
                    add_file(archive, f"files/{key}", handle)
            except FileNotFoundError:
                missing += 1
        archive.writestr("manifest.json", json.dumps({  # last: it counts what the archive holds
            "format": FORMAT, "version": VERSION, "created_at": datetime.now(timezone.utc).isoformat(),
            "embedding": {"model": embeddings.MODEL_NAME, "dimension": embeddings.DIMENSION},
            "migrations": migrations, "rows": rows, "files": len(keys) - missing,
        }, indent=1))
    return {"rows": rows, "files": len(keys) - missing, "missing_files": missing}


def _read_rows(archive: zipfile.ZipFile, version: int):
    """The archive's rows as deserialized objects, a batch of one model at a time."""
    if version == 1:  # one JSON document: read whole, as it was written
        objects = serializers.deserialize("json", archive.read(READS[1]))
    else:
        lines = io.TextIOWrapper(archive.open(READS[2]), encoding="utf-8")
        objects = serializers.deserialize("python", (json.loads(line) for line in lines if line.strip()))
    for _, same_model in groupby(objects, key=lambda obj: type(obj.object)):
        while batch := list(islice(same_model, BATCH)):
            yield batch


def _insert(batch) -> None:
    """One model's deserialized rows, inserted together (with their many-to-many links)."""
    model = type(batch[0].object)
    model._default_manager.bulk_create([obj.object for obj in batch], batch_size=BATCH)
    for obj in batch:
        for name, values in (obj.m2m_data or {}).items():
            if values:
                getattr(obj.object, name).set(values)


def restore(source) -> dict:
    """Load a backup into this (empty, migrated) instance; ArchiveError when it cannot."""
    from backend.users.models import User

    try:
        archive = zipfile.ZipFile(source)
        manifest = json.loads(archive.read("manifest.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ArchiveError("ARCHIVE_INVALID", f"This is not a backup of this service ({type(exc).__name__}).")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArchiveError("ARCHIVE_INVALID", "This is not a backup of this service.")
    version = manifest.get("version")
    if version not in READS:
        raise ArchiveError("UNSUPPORTED_VERSION", f"This backup is of version {version!r}.")
    applied = {f"{app}.{name}" for app, name in MigrationRecorder.Migration.objects.values_list("app", "name")}
    unknown = sorted(set(manifest.get("migrations") or []) - applied)
    if unknown:
        raise ArchiveError("UNSUPPORTED_VERSION", f"The backup comes from a newer schema ({unknown[0]}, ...): "
                                                  "update this server first.")
    if User.objects.exists():
        raise ArchiveError("NOT_EMPTY", "This database holds accounts already: restore into an empty, migrated "
                                        "database.")
    written: list[str] = []
    rows = 0
    try:
        with transaction.atomic():
            for batch in _read_rows(archive, version):
                _insert(batch)
                rows += len(batch)
            for name in archive.namelist():
                if name.startswith("files/") and not name.endswith("/"):
                    key = name[len("files/"):]
                    with archive.open(name) as entry:  # streamed into storage, not read into memory
                        saved = default_storage.save(key, File(entry))
                    written.append(saved)
                    if saved != key:
                        raise ArchiveError("ARCHIVE_INVALID", f"The file {key} exists already in storage.")
            _reset_sequences()
    except ArchiveError:
        _remove(written)
        raise
    except Exception as exc:
        _remove(written)
        raise ArchiveError("ARCHIVE_INVALID", f"This backup could not be loaded ({type(exc).__name__}: {exc}).")
    for collection_id in Collection.objects.values_list("pk", flat=True):  # derived indexes, made again
        engines.engine().vectors.rebuild(collection_id)
    return {"rows": rows, "files": len(written)}


def _remove(keys) -> None:
    for key in keys:
        try:
            default_storage.delete(key)
        except Exception:  # noqa: BLE001 - best effort; the restore's own error is what matters
            pass


def _reset_sequences() -> None:
    """After rows with explicit ids, PostgreSQL's sequences must move past them."""
    if connection.vendor != "postgresql":
        return
    from django.core.management.color import no_style

    statements = connection.ops.sequence_reset_sql(no_style(), list(_models()))
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
