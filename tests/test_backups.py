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
