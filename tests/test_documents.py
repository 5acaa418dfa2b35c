"""Documents through the GraphQL API: upload, background ingestion, search, sharing, deletion."""

import os
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from backend.core.tasks import runner
from backend.documents import vectors
from backend.documents.models import Chunk, Collection, Document

from .conftest import GraphQLClient, error_codes

pytestmark = pytest.mark.django_db(transaction=True)

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
if not CORPUS.exists():
    CORPUS = Path("/work/shared/corpus")

ERRORS = "... on DocumentErrors { messages { field code message } }"
UPLOAD = f"""mutation($file: Upload!, $collectionId: ID, $tags: [String!]) {{
  uploadDocument(file: $file, collectionId: $collectionId, tags: $tags) {{
    ... on UploadedDocument {{ duplicate code document {{ id title status fileType size tags collection {{ id }} }} }}
    {ERRORS}
  }}
}}"""
DOCUMENT = """query($id: ID!) { node(id: $id) { ... on Document {
  id title status stage progress errorCode errorMessage fileType pageCount wordCount chunkCount metadata downloadUrl
  chunks(first: 100) { totalCount edges { node { position text pageStart pageEnd section tokenCount } } }
} } }"""
SEARCH = """query($q: String!, $k: Int, $ids: [ID!], $threshold: Float, $filters: SearchFiltersInput) {
  searchDocuments(query: $q, k: $k, collectionIds: $ids, threshold: $threshold, filters: $filters) {
    score text page document { id title } chunk { position } } }"""
COLLECTIONS = "query { collections { edges { node { id name isDefault myRole } } } }"

PDF_TEXT = {
    "002-trivial-libre-office-writer.pdf": "Lorem ipsum dolor sit amet",
    "google-doc-document.pdf": "Beautiful is better than ugly",
    "habibi.pdf": "habibi",
    "minimal-document.pdf": "Lorem ipsum dolor sit amet",
    "multicolumn.pdf": "Two-Column Document",
    "pdflatex-4-pages.pdf": "Hello, here is some text without a meaning",
    "pdflatex-forms.pdf": "Name",
    "pdflatex-outline.pdf": "Foo",
    "par-known-paragraphs.docx": "Normal paragraph",
    "par-rendered-page-breaks.docx": "followed by more text",
    "test.docx": "python-docx was here",
}
EXPECTED_FAILURES = {
    "libreoffice-writer-password.pdf": "ENCRYPTED",
    "grayscale-image.pdf": "NO_TEXT",
    "blk-containing-table.docx": "NO_TEXT",
    "doc-coreprops.docx": "NO_TEXT",
    "doc-default.docx": "NO_TEXT",
    "having-images.docx": "NO_TEXT",
    "tbl-having-tables.docx": "NO_TEXT",
}

PHOTOSYNTHESIS_MD = b"""# Plant biology

## Photosynthesis

Green plants capture light with chlorophyll in their chloroplasts and turn carbon dioxide and water
into glucose and oxygen. This is how they store the energy of sunlight as sugar.

## Roots

Roots anchor the plant in the soil and absorb water and mineral nutrients.
"""
TRAINS_TXT = ("The night train leaves the station at eleven. Sleeping cars have couchettes and a dining "
              "car serves caf\u00e9 au lait at dawn. Passengers need a reservation for each journey.\n").encode("latin-1")


def upload(client, name, content, collection_id=None, tags=None, ctype="application/octet-stream"):
    return client.upload(UPLOAD, {"file": None, "collectionId": collection_id, "tags": tags},
                         {"variables.file": (name, content, ctype)})["data"]["uploadDocument"]


def wait():
    assert runner().wait_idle(timeout=180), "ingestion did not finish"


def node(client, gid):
    return client(DOCUMENT, {"id": gid})["data"]["node"]


def default_collection_id(client):
    edges = client(COLLECTIONS)["data"]["collections"]["edges"]
    return next(e["node"]["id"] for e in edges if e["node"]["isDefault"])


def test_every_corpus_file_ends_ready_with_its_text_or_failed_with_the_right_code(alice):
    files = sorted(CORPUS.glob("pdf/*.pdf")) + sorted(CORPUS.glob("docx/*.docx"))
    assert len(files) == len(PDF_TEXT) + len(EXPECTED_FAILURES)
    ids = {}
    for path in files:
        result = upload(alice, path.name, path.read_bytes())
        assert result["document"]["status"] == "PENDING", result  # returned at once, processed later
        ids[path.name] = result["document"]["id"]
    wait()
    for name, gid in ids.items():
        doc = node(alice, gid)
        if name in EXPECTED_FAILURES:
            assert (doc["status"], doc["errorCode"]) == ("FAILED", EXPECTED_FAILURES[name]), (name, doc)
            assert doc["errorMessage"] and doc["chunkCount"] == 0
        else:
            assert doc["status"] == "READY", (name, doc)
            text = " ".join(e["node"]["text"] for e in doc["chunks"]["edges"])
            assert PDF_TEXT[name] in text, (name, text[:200])
            assert doc["chunkCount"] == doc["chunks"]["totalCount"] > 0
            assert all(e["node"]["pageStart"] >= 1 for e in doc["chunks"]["edges"])
    four = node(alice, ids["pdflatex-4-pages.pdf"])
    assert four["pageCount"] == 4 and {e["node"]["pageStart"] for e in four["chunks"]["edges"]} == {1, 2, 3, 4}
    assert node(alice, ids["test.docx"])["metadata"]["author"] == "Cisco Employee"


def test_markdown_keeps_sections_and_text_encoding_is_detected(alice):
    md = upload(alice, "plants.md", PHOTOSYNTHESIS_MD)["document"]
    txt = upload(alice, "trains.txt", TRAINS_TXT)["document"]
    assert (md["fileType"], txt["fileType"]) == ("MD", "TXT")
    wait()
    sections = {e["node"]["section"] for e in node(alice, md["id"])["chunks"]["edges"]}
    assert "Plant biology > Photosynthesis" in sections
    text = node(alice, txt["id"])["chunks"]["edges"][0]["node"]["text"]
    assert "caf\u00e9 au lait" in text


def test_search_finds_a_passage_by_meaning(alice):
    upload(alice, "plants.md", PHOTOSYNTHESIS_MD)
    upload(alice, "trains.txt", TRAINS_TXT)
    wait()
    hits = alice(SEARCH, {"q": "how do leaves turn sunshine into food?", "k": 3})["data"]["searchDocuments"]
    assert hits[0]["document"]["title"] == "plants" and "chlorophyll" in hits[0]["text"]
    assert hits[0]["score"] > hits[-1]["score"]
    trains = alice(SEARCH, {"q": "overnight rail travel with beds", "k": 1})["data"]["searchDocuments"]
    assert trains[0]["document"]["title"] == "trains"
    strict = alice(SEARCH, {"q": "overnight rail travel with beds", "k": 5, "threshold": 0.99})
    assert strict["data"]["searchDocuments"] == []


def test_search_filters_by_type_and_tags(alice):
    upload(alice, "plants.md", PHOTOSYNTHESIS_MD, tags=["Biology"])
    upload(alice, "trains.txt", TRAINS_TXT, tags=["travel"])
    wait()
    # (threshold -1: the travel notes do not answer the question, the filter is what is tested)
    only_txt = alice(SEARCH, {"q": "plants and sunlight", "k": 5, "threshold": -1, "filters": {"fileTypes": ["TXT"]}})
    assert {h["document"]["title"] for h in only_txt["data"]["searchDocuments"]} == {"trains"}
    tagged = alice(SEARCH, {"q": "plants", "k": 5, "filters": {"tags": ["biology"]}})
    assert {h["document"]["title"] for h in tagged["data"]["searchDocuments"]} == {"plants"}
    listed = alice('query { documents(tags: ["travel"]) { totalCount edges { node { title tags } } } }')
    assert listed["data"]["documents"]["edges"] == [{"node": {"title": "trains", "tags": ["travel"]}}]


def test_same_content_twice_is_answered_with_the_existing_document(alice):
    first = upload(alice, "plants.md", PHOTOSYNTHESIS_MD)
    second = upload(alice, "renamed.md", PHOTOSYNTHESIS_MD)
    assert (second["duplicate"], second["code"]) == (True, "DUPLICATE")
    assert second["document"]["id"] == first["document"]["id"]
    wait()
    assert Document.objects.count() == 1 and len(os.listdir(default_storage.path("documents/" + os.listdir(default_storage.path("documents"))[0]))) == 1


@pytest.mark.parametrize("name,content,code", [
    ("report.txt", (CORPUS / "pdf" / "minimal-document.pdf").read_bytes() if CORPUS.exists() else b"%PDF-1.4", "EXTENSION_MISMATCH"),
    ("notes.pdf", b"just some words, not a PDF at all", "EXTENSION_MISMATCH"),
    ("program.gif", b"GIF89a\x01\x00\x01\x00" + bytes(range(256)) * 4, "UNSUPPORTED_TYPE"),  # images: PNG, JPEG, TIFF, WebP
    ("empty.txt", b"", "EMPTY_FILE"),
])
def test_bad_uploads_are_refused_by_content(alice, name, content, code):
    result = upload(alice, name, content)
    assert result["messages"][0]["code"] == code and result["messages"][0]["field"] == "file"
    assert Document.objects.count() == 0


def test_upload_size_cap(alice, settings):
    settings.DOCUMENT_MAX_BYTES = 100
    result = upload(alice, "plants.md", PHOTOSYNTHESIS_MD)
    assert result["messages"][0]["code"] == "FILE_TOO_LARGE"
    assert not default_storage.exists("documents")


def test_upload_documents_reports_each_file(alice):
    query = """mutation($files: [Upload!]!) { uploadDocuments(files: $files) {
      ... on UploadBatch { uploaded { document { title } } failed { fileName code message } } } }"""
    result = alice.upload(query, {"files": [None, None]}, {
        "variables.files.0": ("plants.md", PHOTOSYNTHESIS_MD, "text/markdown"),
        "variables.files.1": ("../../etc/evil.pdf", b"not a pdf", "application/pdf"),
    })["data"]["uploadDocuments"]
    assert [u["document"]["title"] for u in result["uploaded"]] == ["plants"]
    assert result["failed"][0]["fileName"] == "evil.pdf" and result["failed"][0]["code"] == "EXTENSION_MISMATCH"
    wait()


def test_file_is_stored_under_an_opaque_key_and_downloaded_as_an_attachment(alice, bob, settings):
    doc = upload(alice, "<script>plants.md", PHOTOSYNTHESIS_MD)["document"]
    stored = Document.objects.get()
    assert "plants" not in stored.storage_key and stored.original_name == "<script>plants.md"
    wait()
    url = node(alice, doc["id"])["downloadUrl"]
    assert url == f"http://testserver/documents/{stored.uid}/download"  # absolute: the API's origin, not the app's
    settings.PUBLIC_URL = "https://api.example.com"
    assert node(alice, doc["id"])["downloadUrl"] == f"https://api.example.com/documents/{stored.uid}/download"
    response = alice.client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"".join(response.streaming_content) == PHOTOSYNTHESIS_MD
    assert bob.client.get(url).status_code == 404
    assert GraphQLClient().client.get(url).status_code == 401


def test_a_download_is_streamed_a_block_at_a_time_under_asgi(alice, bob):
    """Under ASGI (daphne) a download reads its file through an asynchronous iterator, a block at
    a time: Django reads a synchronous one (a FileResponse) whole into memory before sending it
    (a 40 MB file raised the server's memory by ~80 MiB for the download)."""
    from asgiref.sync import async_to_sync
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.test import AsyncClient

    from backend.core.downloads import BLOCK
    from backend.documents.collections import default_collection

    data = b"0123456789abcdef" * (BLOCK // 16 * 3 + 1)
    key = default_storage.save("documents/test/big", ContentFile(data))
    doc = Document.objects.create(collection=default_collection(alice.user), uploaded_by=alice.user, title="big",
                                  original_name="big.txt", file_type="txt", size=len(data), sha256="0" * 64,
                                  storage_key=key, status="READY")

    async def fetch(user):
        client = AsyncClient()
        await client.aforce_login(user)
        response = await client.get(f"/documents/{doc.uid}/download")
        blocks = [part async for part in response.streaming_content] if response.status_code == 200 else []
        return response, blocks

    response, blocks = async_to_sync(fetch)(alice.user)
    assert response.status_code == 200 and response.is_async
    assert b"".join(blocks) == data and [len(b) for b in blocks] == [BLOCK] * 3 + [16]
    assert response["Content-Length"] == str(len(data))
    assert response["Content-Disposition"] == 'attachment; filename="big.txt"'
    assert async_to_sync(fetch)(bob.user)[0].status_code == 404

    async def avatar():  # public, inline
        response = await AsyncClient().get("/media/avatars/big.png")
        return response, [part async for part in response.streaming_content]

    default_storage.save("avatars/big.png", ContentFile(data))
    response, blocks = async_to_sync(avatar)()
    assert response.is_async and b"".join(blocks) == data and "Content-Disposition" not in response


def test_a_spooled_download_under_asgi_has_its_length_and_stays_in_memory():
    """An export is built in a spooled temporary file: measuring it for Content-Length must not
    write a small one to disk (``fileno()`` would)."""
    import tempfile

    from django.test import AsyncRequestFactory

    from backend.core.downloads import file_response

    target = tempfile.SpooledTemporaryFile(max_size=8 << 20)
    target.write(b"x" * 1000)
    target.seek(0)
    response = file_response(AsyncRequestFactory().get("/me/export"), target, filename="my-data.json",
                             content_type="application/json")
    assert response["Content-Length"] == "1000" and response.is_async
    assert not target._rolled
    target.close()


def test_viewer_can_search_but_not_delete_and_editor_can_upload(alice, bob, make_user):
    carol = GraphQLClient()
    carol.client.force_login(make_user("carol@example.com"))
    collection = alice('mutation { createCollection(name: "Team") { ... on Collection { id } } }')["data"]["createCollection"]["id"]
    doc = upload(alice, "plants.md", PHOTOSYNTHESIS_MD, collection_id=collection)["document"]
    wait()
    from backend.users.models import User

    User.objects.filter(email__in=["bob@example.com", "carol@example.com"]).update(email_verified_at=timezone.now())
    share = """mutation($id: ID!, $email: String!, $role: ShareRole!) { shareCollection(id: $id, email: $email, role: $role) {
      ... on Collection { shares { email role } } } }"""
    shared = alice(share, {"id": collection, "email": "Bob@Example.com", "role": "VIEWER"})["data"]["shareCollection"]
    assert shared["shares"] == [{"email": "bob@example.com", "role": "VIEWER"}]
    alice(share, {"id": collection, "email": "carol@example.com", "role": "EDITOR"})

    hits = bob(SEARCH, {"q": "chlorophyll", "ids": [collection]})["data"]["searchDocuments"]
    assert hits and hits[0]["document"]["id"] == doc["id"]
    delete = f"mutation($id: ID!) {{ deleteDocument(id: $id) {{ ... on Deleted {{ id }} {ERRORS} }} }}"
    assert error_codes(bob(delete, {"id": doc["id"]})) == ["FORBIDDEN"]
    viewer_upload = bob.upload(UPLOAD, {"file": None, "collectionId": collection},
                               {"variables.file": ("trains.txt", TRAINS_TXT, "text/plain")})
    assert error_codes(viewer_upload) == ["FORBIDDEN"]
    assert Document.objects.count() == 1

    assert upload(carol, "trains.txt", TRAINS_TXT, collection_id=collection)["document"]["status"] == "PENDING"
    wait()
    roles = {e["node"]["name"]: e["node"]["myRole"] for e in bob(COLLECTIONS)["data"]["collections"]["edges"]}
    assert roles == {"My documents": "OWNER", "Team": "VIEWER"}

    # Unsharing takes the access away.
    alice(f'mutation {{ unshareCollection(id: "{collection}", email: "bob@example.com") {{ ... on Collection {{ id }} }} }}')
    assert error_codes(bob(SEARCH, {"q": "chlorophyll", "ids": [collection]})) == ["NOT_FOUND"]


def test_sharing_does_not_tell_whether_an_email_has_an_account(alice, make_user):
    """The owner gets the same answer for a registered address, an unverified one and an unknown
    one; the share reaches an account when its address is verified."""
    from backend.users import rules, verification

    collection = alice('mutation { createCollection(name: "Team") { ... on Collection { id } } }')["data"]["createCollection"]["id"]
    verified = make_user("known@example.com", email_verified_at=timezone.now())
    unverified = make_user("claimed@example.com")
    share = """mutation($id: ID!, $email: String!) { shareCollection(id: $id, email: $email, role: VIEWER) {
      ... on Collection { shares { email role } } ... on DocumentErrors { messages { code } } } }"""
    answers = [alice(share, {"id": collection, "email": e})["data"]["shareCollection"]
               for e in ("known@example.com", "claimed@example.com", "nobody@example.com")]
    assert all("shares" in a for a in answers), answers
    assert [s["email"] for s in answers[-1]["shares"]] == ["known@example.com", "claimed@example.com",
                                                           "nobody@example.com"]
    readable = lambda user: Collection.objects.visible_to(user).filter(name="Team").exists()  # noqa: E731
    assert readable(verified) and not readable(unverified)  # someone who only typed the address gets nothing
    verification.verify_email(uid=rules.uid_of(unverified), token=verification.email_verification_tokens.make_token(unverified))
    assert readable(unverified)
    newcomer = make_user("nobody@example.com")
    assert not readable(newcomer)
    verification.verify_email(uid=rules.uid_of(newcomer), token=verification.email_verification_tokens.make_token(newcomer))
    assert readable(newcomer)


def test_a_stranger_sees_nothing_even_by_guessing_global_ids(alice, bob):
    doc = upload(alice, "plants.md", PHOTOSYNTHESIS_MD)["document"]
    wait()
    collection_id = doc["collection"]["id"]
    chunk_id = alice(f'query {{ node(id: "{doc["id"]}") {{ ... on Document {{ chunks {{ edges {{ node {{ id }} }} }} }} }} }}'
                     )["data"]["node"]["chunks"]["edges"][0]["node"]["id"]
    for gid in (doc["id"], collection_id, chunk_id):
        assert bob("query($id: ID!) { node(id: $id) { id } }", {"id": gid})["data"]["node"] is None
    assert bob("query($id: ID!) { document(id: $id) { title } }", {"id": doc["id"]})["data"]["document"] is None
    assert bob("query($id: ID!) { collection(id: $id) { name } }", {"id": collection_id})["data"]["collection"] is None
    assert alice("query($id: ID!) { document(id: $id) { title } }", {"id": doc["id"]})["data"]["document"] == {"title": "plants"}
    assert bob("query { documents { totalCount } }")["data"]["documents"]["totalCount"] == 0
    assert bob(SEARCH, {"q": "chlorophyll"})["data"]["searchDocuments"] == []
    assert error_codes(bob(SEARCH, {"q": "chlorophyll", "ids": [collection_id]})) == ["NOT_FOUND"]
    update = f'mutation {{ updateDocument(id: "{doc["id"]}", title: "mine") {{ ... on Document {{ id }} }} }}'
    assert error_codes(bob(update)) == ["NOT_FOUND"]
    assert error_codes(bob(f'mutation {{ deleteCollection(id: "{collection_id}") {{ ... on Deleted {{ id }} }} }}')) == ["NOT_FOUND"]
    assert error_codes(GraphQLClient()(SEARCH, {"q": "chlorophyll"})) == ["UNAUTHENTICATED"]
    assert Document.objects.get().title == "plants"


def test_after_delete_nothing_of_the_document_can_be_retrieved(alice):
    doc = upload(alice, "plants.md", PHOTOSYNTHESIS_MD)["document"]
    upload(alice, "trains.txt", TRAINS_TXT)
    wait()
    key = Document.objects.get(title="plants").storage_key
    assert default_storage.exists(key)
    assert any(h["document"]["title"] == "plants" for h in alice(SEARCH, {"q": "chlorophyll", "k": 5})["data"]["searchDocuments"])
    deleted = alice(f'mutation {{ deleteDocument(id: "{doc["id"]}") {{ ... on Deleted {{ id }} }} }}')
    assert deleted["data"]["deleteDocument"] == {"id": doc["id"]}
    hits = alice(SEARCH, {"q": "chlorophyll glucose photosynthesis", "k": 10, "threshold": -1})["data"]["searchDocuments"]
    assert all(h["document"]["title"] != "plants" for h in hits) and hits
    assert not default_storage.exists(key)
    assert not Chunk.objects.filter(document__title="plants").exists()
    stats = alice("query { vectorStoreStats { vectors stale } }")["data"]["vectorStoreStats"]
    assert stats[0] == {"vectors": Chunk.objects.count(), "stale": False}


def test_a_truncated_index_file_is_rebuilt_on_the_next_search(alice, faiss_engine):
    upload(alice, "plants.md", PHOTOSYNTHESIS_MD)
    wait()
    collection = Collection.objects.get()
    path = vectors.store().path(vectors.key_for(collection))
    assert alice(SEARCH, {"q": "chlorophyll"})["data"]["searchDocuments"]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    vectors.store()._cache.clear()
    hits = alice(SEARCH, {"q": "chlorophyll"})["data"]["searchDocuments"]
    assert hits and hits[0]["document"]["title"] == "plants"
    vectors.store()._cache.clear()
    assert vectors.store().info(vectors.key_for(collection)).vectors == Chunk.objects.count()
    path.unlink()
    vectors.store()._cache.clear()
    assert alice(SEARCH, {"q": "chlorophyll"})["data"]["searchDocuments"][0]["document"]["title"] == "plants"


@pytest.mark.parametrize("damage", ["header-not-an-object", "header-wrong-types", "future-version", "garbage"])
def test_an_index_file_that_fails_any_check_is_rebuilt(alice, faiss_engine, damage):
    import json as json_
    import struct

    upload(alice, "plants.md", PHOTOSYNTHESIS_MD)
    wait()
    collection = Collection.objects.get()
    store = vectors.store()
    path = store.path(vectors.key_for(collection))
    assert alice(SEARCH, {"q": "chlorophyll"})["data"]["searchDocuments"]
    data = path.read_bytes()
    (length,) = struct.unpack("<I", data[8:12])
    info, payload = json_.loads(data[12:12 + length]), data[12 + length:]
    if damage == "header-not-an-object":
        header = b"[1, 2, 3]"
    elif damage == "header-wrong-types":
        header = json_.dumps({**info, "version": "seven", "vectors": None}).encode()
    elif damage == "future-version":
        header = json_.dumps({**info, "version": info["version"] + 1000}).encode()
    else:
        header = b"\xff\xfe not json"
    path.write_bytes(data[:8] + struct.pack("<I", len(header)) + header + payload)
    store._cache.clear()
    hits = alice(SEARCH, {"q": "chlorophyll"})["data"]["searchDocuments"]
    assert hits and hits[0]["document"]["title"] == "plants"
    store._cache.clear()
    assert store.info(vectors.key_for(collection)).version == Collection.objects.get().index_version


def test_a_burst_of_documents_writes_the_index_once_or_twice_and_it_holds_every_chunk(user, monkeypatch,
                                                                                     faiss_engine):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.db import transaction

    from backend.documents import library
    from backend.rag.index import FaissStore

    writes = []
    real_write = FaissStore._write
    monkeypatch.setattr(FaissStore, "_write", lambda self, key, *a, **kw: writes.append(key) or real_write(self, key, *a, **kw))
    with transaction.atomic():  # the six ingestions are queued together, at commit
        for i in range(6):
            body = f"Note {i}. " + TRAINS_TXT.decode("latin-1") + f" Platform {i} is at the far end of the hall."
            library.upload_document(user, SimpleUploadedFile(f"note-{i}.txt", body.encode()))
    wait()
    assert Document.objects.filter(status="READY").count() == 6
    assert 1 <= len(writes) <= 2, writes  # not one write per document
    collection = Collection.objects.get()
    vectors.store()._cache.clear()
    info = vectors.store().info(vectors.key_for(collection))
    assert info.vectors == Chunk.objects.count() and info.version == collection.index_version


def test_rebuild_index_and_stats(alice, bob):
    upload(alice, "plants.md", PHOTOSYNTHESIS_MD)
    wait()
    collection_id = default_collection_id(alice)
    rebuilt = alice(f'mutation {{ rebuildIndex(collectionId: "{collection_id}") {{ ... on VectorStoreStats {{ vectors dimension model bytesOnDisk stale collection {{ name }} }} }} }}')
    stats = rebuilt["data"]["rebuildIndex"]
    assert stats["vectors"] == Chunk.objects.count() > 0 and stats["dimension"] == 384
    assert stats["model"] == "all-MiniLM-L6-v2" and stats["bytesOnDisk"] > 384 * 4 and stats["stale"] is False
    assert error_codes(bob(f'mutation {{ rebuildIndex(collectionId: "{collection_id}") {{ __typename }} }}')) == ["NOT_FOUND"]


def test_moving_a_document_moves_its_vectors(alice):
    doc = upload(alice, "plants.md", PHOTOSYNTHESIS_MD)["document"]
    wait()
    other = alice('mutation { createCollection(name: "Archive") { ... on Collection { id } } }')["data"]["createCollection"]["id"]
    moved = alice(f'mutation {{ updateDocument(id: "{doc["id"]}", collectionId: "{other}", tags: ["Old", "old"]) {{ ... on Document {{ tags collection {{ name }} }} }} }}')
    assert moved["data"]["updateDocument"] == {"tags": ["old"], "collection": {"name": "Archive"}}
    assert alice(SEARCH, {"q": "chlorophyll", "ids": [other]})["data"]["searchDocuments"][0]["document"]["id"] == doc["id"]
    assert alice(SEARCH, {"q": "chlorophyll", "ids": [default_collection_id(alice)]})["data"]["searchDocuments"] == []


def test_delete_collection_removes_documents_files_and_index(alice, faiss_engine):
    other = alice('mutation { createCollection(name: "Temp") { ... on Collection { id } } }')["data"]["createCollection"]["id"]
    upload(alice, "plants.md", PHOTOSYNTHESIS_MD, collection_id=other)
    wait()
    collection = Collection.objects.get(name="Temp")
    key = Document.objects.get().storage_key
    alice(SEARCH, {"q": "chlorophyll"})
    index_path = vectors.store().path(vectors.key_for(collection))
    assert index_path.exists()
    alice(f'mutation {{ deleteCollection(id: "{other}") {{ ... on Deleted {{ id }} }} }}')
    assert not Document.objects.exists() and not default_storage.exists(key) and not index_path.exists()
    default = default_collection_id(alice)
    result = alice(f'mutation {{ deleteCollection(id: "{default}") {{ {ERRORS} }} }}')
    assert result["data"]["deleteCollection"]["messages"][0]["code"] == "DEFAULT_COLLECTION"


def test_deleting_the_account_removes_document_files(alice):
    from .conftest import PASSWORD

    upload(alice, "plants.md", PHOTOSYNTHESIS_MD)
    wait()
    key = Document.objects.get().storage_key
    alice(f'mutation {{ deleteAccount(password: "{PASSWORD}") {{ ... on Ack {{ ok }} }} }}')
    assert not default_storage.exists(key) and not Document.objects.exists()


def test_unfinished_documents_are_resumed(alice):
    from backend.documents.recovery import resume_unfinished

    upload(alice, "plants.md", PHOTOSYNTHESIS_MD)
    wait()
    Document.objects.update(status="PROCESSING", stage="embedding", progress=60)
    Chunk.objects.all().delete()
    assert resume_unfinished() == 1
    wait()
    doc = Document.objects.get()
    assert doc.status == "READY" and doc.chunk_count == Chunk.objects.count() > 0


def test_documents_connection_filters_and_orders(alice):
    upload(alice, "plants.md", PHOTOSYNTHESIS_MD)
    upload(alice, "trains.txt", TRAINS_TXT)
    upload(alice, "locked.pdf", (CORPUS / "pdf" / "libreoffice-writer-password.pdf").read_bytes())
    wait()
    q = "query($s: DocumentStatus, $t: String, $o: DocumentOrder) { documents(status: $s, titleContains: $t, orderBy: $o) { totalCount edges { node { title } } } }"
    titles = lambda r: [e["node"]["title"] for e in r["data"]["documents"]["edges"]]  # noqa: E731
    assert titles(alice(q, {"o": "TITLE"})) == ["locked", "plants", "trains"]
    assert titles(alice(q, {"s": "FAILED"})) == ["locked"]
    assert titles(alice(q, {"t": "RAIN"})) == ["trains"]
    page = alice("query { documents(first: 2, orderBy: TITLE) { pageInfo { hasNextPage endCursor } edges { node { title } } } }")
    info = page["data"]["documents"]["pageInfo"]
    assert info["hasNextPage"] is True
    rest = alice(f'query {{ documents(first: 2, after: "{info["endCursor"]}", orderBy: TITLE) {{ edges {{ node {{ title }} }} }} }}')
    assert titles(rest) == ["trains"]


def test_parsing_has_a_time_limit(alice, settings):
    # Far below the ~0.1 s that reading four LaTeX pages takes.
    settings.DOCUMENT_PARSE_TIMEOUT = 0.001
    doc = upload(alice, "four.pdf", (CORPUS / "pdf" / "pdflatex-4-pages.pdf").read_bytes())["document"]
    wait()
    result = node(alice, doc["id"])
    assert (result["status"], result["errorCode"]) == ("FAILED", "TIMEOUT")
    assert "took longer than 0.001 seconds" in result["errorMessage"]
    # The worker process was replaced: the next file is read normally.
    settings.DOCUMENT_PARSE_TIMEOUT = 60
    other = upload(alice, "trains.txt", TRAINS_TXT)["document"]
    wait()
    assert node(alice, other["id"])["status"] == "READY"
