"""manage.py backup and restore: a whole instance into an empty database, indexes rebuilt."""

import io

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError

from backend.chats import conversations
from backend.chats.models import Chat, Message
from backend.documents.models import Chunk, Document, DocumentVersion
from backend.users.models import User

from .conftest import PASSWORD, GraphQLClient
from .test_document_versions import handbook
from .test_documents import SEARCH, upload, wait

pytestmark = pytest.mark.django_db(transaction=True)


def wipe():
    """What a new server has: an empty, migrated database and no stored files."""
    keys = list(DocumentVersion.objects.values_list("storage_key", flat=True))
    call_command("flush", interactive=False, verbosity=0)
    for key in keys:
        default_storage.delete(key)


def test_an_instance_is_backed_up_and_restored_into_an_empty_database(alice, tmp_path):
    upload(alice, "handbook.md", handbook())
    wait()
    upload(alice, "handbook.md", handbook(Pool="The pool is closed for repairs until spring."))
    wait()
    chat = conversations.create_chat(alice.user, title="Holiday", model="rag-faiss")
    Message.objects.create(chat=chat, role=Message.Role.USER, content="Is the pool open?")
    stored = {v.storage_key: default_storage.open(v.storage_key).read() for v in DocumentVersion.objects.all()}
    path = tmp_path / "instance.zip"
    out = io.StringIO()
    call_command("backup", str(path), stdout=out)
    assert "2 files" in out.getvalue()  # both versions' files

    wipe()
    assert not User.objects.exists() and not Chunk.objects.exists()
    with pytest.raises(CommandError, match="ARCHIVE_INVALID"):
        call_command("restore", __file__)  # not an archive: refused, nothing loaded
    assert not User.objects.exists()
    call_command("restore", str(path), stdout=io.StringIO())

    client = GraphQLClient()
    login = client("mutation($p: String!) { login(email: \"alice@example.com\", password: $p) { __typename } }",
                   {"p": PASSWORD})
    assert login["data"]["login"]["__typename"] == "User"  # the password hash came back
    hits = client(SEARCH, {"q": "is the pool open?", "k": 1})["data"]["searchDocuments"]
    assert "closed for repairs" in hits[0]["text"]  # the index was rebuilt from the rows
    assert Chat.objects.get().title == "Holiday" and Message.objects.get().content == "Is the pool open?"
    document = Document.objects.get()
    assert document.version == 2 and document.versions.count() == 2
    assert all(default_storage.exists(v.storage_key) for v in document.versions.all())
    assert {key: default_storage.open(key).read() for key in stored} == stored  # each file as it was
    assert Chunk.objects.filter(superseded=True).exists()  # version 1's passages, for old citations

    with pytest.raises(CommandError, match="NOT_EMPTY"):
        call_command("restore", str(path))  # never over an instance in use


def test_a_backup_taken_while_the_server_writes_is_one_moment(alice, tmp_path, monkeypatch):
    """Chats are read, then a new chat and its message are written (by the server, in another
    connection), then messages are read: the archive holds neither, so its rows fit together and it
    restores (read table after table in autocommit, it held the message without its chat)."""
    from backend.documents import backups

    before = conversations.create_chat(alice.user, title="Before", model="rag-faiss")
    Message.objects.create(chat=before, role=Message.Role.USER, content="written before")
    models, seen = backups._models, []

    def writing_meanwhile():
        for model in models():
            if model is Message:
                assert Chat in seen  # the chats are read already
                during = conversations.create_chat(alice.user, title="During", model="rag-faiss")
                Message.objects.create(chat=during, role=Message.Role.USER, content="written during")
            seen.append(model)
            yield model

    monkeypatch.setattr(backups, "_models", writing_meanwhile)
    path = tmp_path / "instance.zip"
    call_command("backup", str(path), stdout=io.StringIO())
    assert Message.objects.count() == 2  # the write went through while the backup read
    monkeypatch.undo()

    wipe()
    call_command("restore", str(path), stdout=io.StringIO())
    assert list(Chat.objects.values_list("title", flat=True)) == ["Before"]
    assert list(Message.objects.values_list("content", flat=True)) == ["written before"]


def test_rows_restore_a_batch_at_a_time_with_their_links_and_from_the_first_format(alice, bob, tmp_path,
                                                                                   monkeypatch):
    """Batches smaller than a table (so each model spans several, and many-to-many links come back),
    and a version 1 archive (every row in one database.json) still restores."""
    import json
    import zipfile

    from django.contrib.auth.models import Group

    from backend.documents import backups

    monkeypatch.setattr(backups, "BATCH", 3)
    alice.user.groups.add(Group.objects.create(name="editors"))
    for n in range(7):
        chat = conversations.create_chat(bob.user if n % 2 else alice.user, title=f"chat {n}", model="rag-faiss")
        Message.objects.bulk_create([Message(chat=chat, role=Message.Role.USER, content=f"{n}.{i}") for i in range(5)])
    expected = sorted(Message.objects.values_list("chat__title", "content"))
    path = tmp_path / "instance.zip"
    call_command("backup", str(path), stdout=io.StringIO())
    first_format = tmp_path / "version-1.zip"  # what the first backups wrote
    with zipfile.ZipFile(path) as new, zipfile.ZipFile(first_format, "w") as old:
        manifest = json.loads(new.read("manifest.json"))
        assert manifest["version"] == 2 and manifest["rows"] == len(new.read("database.jsonl").splitlines())
        old.writestr("manifest.json", json.dumps({**manifest, "version": 1}))
        old.writestr("database.json", json.dumps([json.loads(line) for line in new.read("database.jsonl").splitlines()]))

    for archive in (path, first_format):
        wipe()
        call_command("restore", str(archive), stdout=io.StringIO())
        assert sorted(Message.objects.values_list("chat__title", "content")) == expected
        assert User.objects.get(email="alice@example.com").groups.get().name == "editors"
        assert User.objects.count() == 2
