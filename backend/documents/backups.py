"""Backup and restore of a whole instance (``manage.py backup`` / ``manage.py restore``).

The archive is a zip like a knowledge-base archive: ``manifest.json`` (format, version, the
embedding model, the applied migrations), ``database.json`` (every app's rows, as Django's
serializer writes them: users, chats, documents, chunks and their vectors, ...) and
``files/<storage key>`` (every stored file: documents of every version, avatars). Index files are
never in it: a restored instance rebuilds them from the database. A restore goes into an empty,
migrated database, all or nothing: rows in one transaction, files removed again if it fails.
"""

import json
import zipfile
from datetime import datetime, timezone

from django.core import serializers
from django.core.serializers.json import DjangoJSONEncoder
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.migrations.recorder import MigrationRecorder

from backend.rag import embeddings

from . import engines
from .archive import ArchiveError, add_file
from .models import Collection, DocumentVersion

FORMAT = "chat-backend.backup"
VERSION = 1
# Rows that belong to this server and are made again where it is restored.
SKIP = {"contenttypes", "auth.permission", "sessions", "admin.logentry", "axes"}


def _models():
    from django.apps import apps

    for model in apps.get_models():
        label = model._meta.label_lower
        if model._meta.app_label in SKIP or label in SKIP or model._meta.proxy or not model._meta.managed:
            continue
        yield model


def _stored_keys() -> list[str]:
    from backend.users.models import User

    keys = set(DocumentVersion.objects.values_list("storage_key", flat=True))  # documents' files, all versions
    keys |= {name for name in User.objects.exclude(avatar="").values_list("avatar", flat=True) if name}
    return sorted(keys)


def backup(target) -> dict:
    """Write the instance to ``target`` (a path or a binary file); returns the counts."""
    models = list(_models())
    rows = []
    for model in models:  # the json serializer's rows, without a round trip through a JSON string
        rows.extend(serializers.serialize("python", model._default_manager.order_by("pk")))
    keys = _stored_keys()
    manifest = {
        "format": FORMAT, "version": VERSION, "created_at": datetime.now(timezone.utc).isoformat(),
        "embedding": {"model": embeddings.MODEL_NAME, "dimension": embeddings.DIMENSION},
        "migrations": sorted(f"{app}.{name}" for app, name in
                             MigrationRecorder.Migration.objects.values_list("app", "name")),
        "rows": len(rows), "files": len(keys),
    }
    missing = 0
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=1))
        archive.writestr("database.json", json.dumps(rows, cls=DjangoJSONEncoder))
        for key in keys:
            try:
                with default_storage.open(key, "rb") as handle:
                    add_file(archive, f"files/{key}", handle)
            except FileNotFoundError:
                missing += 1
    return {"rows": len(rows), "files": len(keys) - missing, "missing_files": missing}


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
    if manifest.get("version") != VERSION:
        raise ArchiveError("UNSUPPORTED_VERSION", f"This backup is of version {manifest.get('version')!r}.")
    applied = {f"{app}.{name}" for app, name in MigrationRecorder.Migration.objects.values_list("app", "name")}
    unknown = sorted(set(manifest.get("migrations") or []) - applied)
    if unknown:
        raise ArchiveError("UNSUPPORTED_VERSION", f"The backup comes from a newer schema ({unknown[0]}, ...): "
                                                  "update this server first.")
    if User.objects.exists():
        raise ArchiveError("NOT_EMPTY", "This database holds accounts already: restore into an empty, migrated "
                                        "database.")
    written: list[str] = []
    try:
        with transaction.atomic():
            objects = list(serializers.deserialize("json", archive.read("database.json")))
            for obj in objects:
                obj.save()
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
    return {"rows": len(objects), "files": len(written)}


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
