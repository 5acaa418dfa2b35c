"""A collection exported as one archive and imported elsewhere: READY without re-embedding with
the same model, re-embedded otherwise; a damaged or foreign archive is refused whole."""

import io
import json
import zipfile

import pytest
from django.core.files.storage import default_storage

from backend.documents.models import Chunk, Collection, Document, DocumentVersion
from backend.rag import embeddings

from .test_document_versions import embedded, handbook  # noqa: F401  (the embedding spy fixture)
from .test_documents import upload, wait

pytestmark = pytest.mark.django_db(transaction=True)

IMPORT = """mutation($file: Upload!, $name: String) { importCollection(file: $file, name: $name) {
  __typename ... on Collection { id name documents(first: 10) { edges { node { id title status version
  versions { number } } } } } ... on DocumentErrors { messages { field code message } } } }"""
SEARCH = """query($q: String!, $ids: [ID!]) { searchDocuments(query: $q, collectionIds: $ids, k: 2) {
  text document { title } } }"""


def import_archive(client, data: bytes, name="Imported"):
    return client.upload(IMPORT, {"file": None, "name": name},
                         {"variables.file": ("kb.zip", data, "application/zip")})["data"]["importCollection"]


def exported(client) -> bytes:
    """alice's default collection with two documents, one of them in two versions, as its archive."""
    upload(client, "handbook.md", handbook())
    wait()
    upload(client, "handbook.md", handbook(Pool="The pool is closed for repairs until spring."))
    upload(client, "trains.txt", b"The night train to Vienna leaves platform nine at eleven; couchettes sleep four.")
    wait()
    url = client("{ collections(first: 5) { edges { node { exportUrl isDefault } } } }")[
        "data"]["collections"]["edges"][0]["node"]["exportUrl"]
    assert url.startswith("http://testserver/collections/") and url.endswith("/export")
    response = client.client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith("attachment")
    return b"".join(response.streaming_content)


def test_an_exported_collection_imports_ready_with_its_vectors_versions_and_answers(alice, bob, embedded):  # noqa: F811
    data = exported(alice)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["embedding"]["model"] == embeddings.get_embedder().name
    assert manifest["chunking"] == {"size": 1000, "overlap": 150} and len(manifest["documents"]) == 2
    assert bob.client.get(  # bob cannot fetch alice's archive
        alice("{ collections(first: 1) { edges { node { exportUrl } } } }")["data"][
        "collections"]["edges"][0]["node"]["exportUrl"]).status_code == 404

    # As on a fresh instance: nothing of the exported collection is left here (rows, vectors,
    # files), so whatever the import finds comes from the archive.
    from backend.documents.collections import purge
    from backend.documents.versions import storage_keys

    for collection in Collection.objects.all():
        purge(collection, storage_keys(collection.documents.all()))
    assert not Chunk.objects.exists() and not DocumentVersion.objects.exists()

    embedded.clear()
    imported = import_archive(bob, data, "Alice's handbook")
    assert imported["__typename"] == "Collection" and imported["name"] == "Alice's handbook"
    documents = {e["node"]["title"]: e["node"] for e in imported["documents"]["edges"]}
    assert {d["status"] for d in documents.values()} == {"READY"}  # at once: no ingestion ran
    assert documents["handbook"]["version"] == 2 and [v["number"] for v in documents["handbook"]["versions"]] == [2, 1]
    wait()
    assert embedded == []  # the same model: every vector came from the archive
    hits = bob(SEARCH, {"q": "which platform does the night train leave from?", "ids": [imported["id"]]})
    assert hits["data"]["searchDocuments"][0]["document"]["title"] == "trains"
    # An answer over the imported collection cites it.
    from backend.chats.params import RAG_DEFAULTS
    from backend.chats.turn import _retrieve

    collection = Collection.objects.get(name="Alice's handbook")
    sources, _ = _retrieve(bob.user, "is the pool open?", [], {**RAG_DEFAULTS, "collection_ids": [str(collection.pk)]})
    assert "closed for repairs" in sources[0]["text"] and sources[0]["title"] == "handbook"
    # Its files are stored for bob (every version's), and downloadable.
    assert all(default_storage.exists(v.storage_key) for v in DocumentVersion.objects.filter(
        document__collection=collection))


def test_another_embedding_model_is_re_embedded_in_the_background(alice, bob):
    import base64

    import numpy as np

    data = exported(alice)
    source = zipfile.ZipFile(io.BytesIO(data))
    manifest = json.loads(source.read("manifest.json"))
    manifest["embedding"]["model"] = "another-model-v9"
    zero = base64.b64encode(bytes(4 * embeddings.DIMENSION)).decode()

    def foreign_vectors(body: bytes) -> bytes:  # what another model's vectors are to this one: noise
        rows = [json.loads(line) for line in body.decode().splitlines()]
        return "\n".join(json.dumps({**row, "vector": zero}) for row in rows).encode()

    rewritten = io.BytesIO()
    with zipfile.ZipFile(rewritten, "w") as target:
        for entry in source.infolist():
            body = source.read(entry.filename)
            target.writestr(entry.filename, json.dumps(manifest) if entry.filename == "manifest.json"
                            else foreign_vectors(body) if entry.filename.startswith("chunks/") else body)
    imported = import_archive(bob, rewritten.getvalue())
    assert {e["node"]["status"] for e in imported["documents"]["edges"]} <= {"PENDING", "PROCESSING"}
    wait()
    chunks = Chunk.objects.filter(collection__name="Imported")
    assert Document.objects.filter(collection__name="Imported", status="READY").count() == 2 and chunks.exists()
    assert all(c.embedding_model == embeddings.get_embedder().name for c in chunks)
    assert all(np.linalg.norm(embeddings.from_bytes(bytes(c.vector))) > 0.5 for c in chunks)  # not the archive's


@pytest.mark.parametrize("damage,code", [
    ("truncated", "ARCHIVE_INVALID"), ("foreign", "ARCHIVE_INVALID"), ("tampered file", "ARCHIVE_INVALID"),
    ("bad vector", "ARCHIVE_INVALID"), ("newer version", "UNSUPPORTED_VERSION"), ("not a zip", "ARCHIVE_INVALID"),
])
def test_a_damaged_or_foreign_archive_is_refused_whole(alice, bob, damage, code):
    data = exported(alice)
    source = zipfile.ZipFile(io.BytesIO(data))
    manifest = json.loads(source.read("manifest.json"))

    def rewrite(change):
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as target:
            for entry in source.infolist():
                target.writestr(entry.filename, change(entry.filename, source.read(entry.filename)))
        return out.getvalue()

    broken = {
        "truncated": lambda: data[: len(data) // 2],
        "foreign": lambda: rewrite(lambda n, b: json.dumps({**manifest, "format": "someone-else"}).encode()
                                   if n == "manifest.json" else b),
        "tampered file": lambda: rewrite(lambda n, b: b + b"!" if n.startswith("files/") else b),
        "bad vector": lambda: rewrite(lambda n, b: b.replace(b'"vector": "', b'"vector": "AAAA', 1)
                                      if n.startswith("chunks/") else b),
        "newer version": lambda: rewrite(lambda n, b: json.dumps({**manifest, "version": 99}).encode()
                                         if n == "manifest.json" else b),
        "not a zip": lambda: b"PK\x03\x04 this is not really an archive",
    }[damage]()
    before = (Collection.objects.count(), Document.objects.count(), Chunk.objects.count(),
              sorted(default_storage.listdir("documents")[0]))
    result = import_archive(bob, broken)
    assert result["__typename"] == "DocumentErrors" and result["messages"][0]["code"] == code, result
    after = (Collection.objects.count(), Document.objects.count(), Chunk.objects.count(),
             sorted(default_storage.listdir("documents")[0]))
    assert after == before  # nothing half-imported: no collection, row or stored file


def _stored_files() -> set[str]:
    folders = default_storage.listdir("documents")[0]
    return {f"{folder}/{name}" for folder in folders for name in default_storage.listdir(f"documents/{folder}")[1]}


def test_a_large_import_is_written_in_batches_hidden_until_whole(alice, bob, monkeypatch, writes_between_batches):
    """Documents and their passages are written a batch per transaction: between two, another user
    writes (SQLite: the one write lock is free; an import of 20,000 passages held it ~7 s before),
    and the collection is seen by no one, its importer included, until its last batch."""
    from django.db import connection

    from backend.documents import transfer

    data = exported(alice)
    writes_between_batches.checks.append(
        lambda: not Collection.objects.visible_to(bob.user).filter(name="Imported").exists())
    monkeypatch.setattr(transfer, "IMPORT_BATCH", 1)  # a transaction per document
    imported = import_archive(bob, data)
    assert imported["__typename"] == "Collection" and len(imported["documents"]["edges"]) == 2
    if connection.vendor == "sqlite":  # PostgreSQL's writers never waited on one lock
        assert writes_between_batches == ["written", "written"]
    hits = bob(SEARCH, {"q": "which platform does the night train leave from?", "ids": [imported["id"]]})
    assert hits["data"]["searchDocuments"][0]["document"]["title"] == "trains"


def test_an_import_that_fails_midway_or_dies_leaves_nothing(alice, bob, monkeypatch, settings):
    from datetime import timedelta

    from django.utils import timezone

    from backend.documents import recovery, transfer

    data = exported(alice)
    before = (Collection.objects.count(), Document.objects.count(), Chunk.objects.count(), _stored_files())
    made = []

    def second_fails(*args, **kwargs):  # a database error after the first batch was committed
        if made:
            raise RuntimeError("the database went away")
        made.append(real(*args, **kwargs))
        return made[-1]

    real = transfer._create_document
    monkeypatch.setattr(transfer, "IMPORT_BATCH", 1)
    monkeypatch.setattr(transfer, "_create_document", second_fails)
    from django.core.files.uploadedfile import SimpleUploadedFile

    with pytest.raises(RuntimeError):
        transfer.import_collection(bob.user, SimpleUploadedFile("kb.zip", data))
    assert made and (Collection.objects.count(), Document.objects.count(), Chunk.objects.count(),
                     _stored_files()) == before

    # A process killed midway leaves its collection hidden, and the files it stored (no cleanup
    # ran); the sweep removes both once the collection is silent.
    made.clear()
    monkeypatch.setattr(transfer, "discard", lambda collection, files: None)
    with pytest.raises(RuntimeError):
        transfer.import_collection(bob.user, SimpleUploadedFile("kb.zip", data))
    monkeypatch.undo()
    left = Collection.objects.get(importing=True)
    assert not Collection.objects.visible_to(bob.user).filter(pk=left.pk).exists()
    assert recovery.sweep()["abandoned_imports"] == 0  # still fresh: perhaps running
    Collection.objects.filter(pk=left.pk).update(
        updated_at=timezone.now() - timedelta(seconds=settings.IMPORT_STALE_AFTER + 1))
    assert recovery.sweep()["abandoned_imports"] == 1
    assert (Collection.objects.count(), Document.objects.count(), Chunk.objects.count(), _stored_files()) == before
