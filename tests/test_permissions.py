"""One permission check applied to every node type (NetBox-style): anonymous, a stranger, a viewer
and an editor of the owner's shared collection, and the owner, each asking for every object by its
global ID and trying to change or delete it. A new node type without a row here fails the test."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from strawberry import relay

from backend.chats import conversations, presets
from backend.chats.models import Message
from backend.core.tasks import runner
from backend.documents import collections, library
from backend.documents.models import Chunk, Role
from backend.recipes import services as recipes
from backend.schema import schema
from backend.users import credentials

from .conftest import GraphQLClient, error_codes
from .test_documents import PHOTOSYNTHESIS_MD

pytestmark = [pytest.mark.django_db(transaction=True)]

ROLES = ("anonymous", "stranger", "viewer", "editor", "owner")
COLLECTION_MEMBERS = {"viewer", "editor", "owner"}
# Who sees each type of object: the visibility rule of the model, stated once more by hand.
SEES = {
    "Chat": {"owner"}, "Message": {"owner"}, "AiPreset": {"owner"}, "ApiToken": {"owner"}, "User": {"owner"},
    "Recipe": {"owner"}, "Collection": COLLECTION_MEMBERS, "Document": COLLECTION_MEMBERS,
    "Chunk": COLLECTION_MEMBERS,
}
# Who may change each object through its mutation (the others get NOT_FOUND, FORBIDDEN or a payload
# error, and the object is unchanged).
CHANGES = {
    "Chat": ("mutation($id: ID!) { updateChat(id: $id, title: \"x\") { __typename ... on Chat { title } } }", {"owner"}),
    "AiPreset": ("mutation($id: ID!) { updateAiPreset(id: $id, name: \"x\") { __typename ... on AiPreset { name } } }",
                 {"owner"}),
    "ApiToken": ("mutation($id: ID!) { revokeApiToken(id: $id) { __typename ... on ApiToken { name } } }", {"owner"}),
    "Recipe": ("mutation($id: ID!) { updateRecipe(id: $id, title: \"x\") { __typename ... on Recipe { title } } }",
               {"owner"}),
    "Collection": ("mutation($id: ID!) { updateCollection(id: $id, name: \"x\") { __typename ... on Collection "
                   "{ name } } }", {"owner"}),
    "Document": ("mutation($id: ID!) { updateDocument(id: $id, title: \"x\") { __typename ... on Document "
                 "{ title } } }", {"editor", "owner"}),
    "Message": ("mutation($id: ID!) { rateMessage(id: $id, rating: 1) { __typename ... on Message { rating } } }",
                {"owner"}),
}


@pytest.fixture
def world(make_user):
    from django.utils import timezone

    owner, stranger = make_user("owner@example.com"), make_user("stranger@example.com")
    viewer = make_user("viewer@example.com", email_verified_at=timezone.now())
    editor = make_user("editor@example.com", email_verified_at=timezone.now())
    shared = collections.create_collection(owner, name="Shared")
    collections.share_collection(owner, shared.pk, email="viewer@example.com", role=Role.VIEWER)
    collections.share_collection(owner, shared.pk, email="editor@example.com", role=Role.EDITOR)
    document = library.upload_document(owner, SimpleUploadedFile("plants.md", PHOTOSYNTHESIS_MD),
                                         collection_id=shared.pk).document
    assert runner().wait_idle(timeout=120)
    chat = conversations.create_chat(owner, model="rag-faiss")
    answer = Message.objects.create(chat=chat, role="assistant", content="an answer")
    token, _ = credentials.create_api_token(owner, name="t")
    objects = {
        "Chat": chat, "Message": answer, "AiPreset": presets.create_preset(owner, name="p", model="rag-faiss"),
        "ApiToken": token, "User": owner, "Recipe": recipes.create_recipe(owner, title="r", template="Hi {{x}}"),
        "Collection": shared, "Document": document, "Chunk": Chunk.objects.filter(document=document).first(),
    }
    clients = {"anonymous": GraphQLClient()}
    for name, user in (("stranger", stranger), ("viewer", viewer), ("editor", editor), ("owner", owner)):
        clients[name] = GraphQLClient()
        clients[name].client.force_login(user)
    return objects, clients


def test_every_node_type_has_a_rule():
    node_types = {t.name for t in schema._schema.type_map.values()
                  if any(i.name == "Node" for i in getattr(t, "interfaces", ()) or ())}
    assert node_types == set(SEES), node_types ^ set(SEES)


def test_every_node_type_is_scoped_and_identified_by_its_primary_key():
    from backend.schema.base import ScopedNode

    for name in SEES:
        origin = schema.get_type_by_name(name).origin
        assert issubclass(origin, ScopedNode), name  # the one mechanism that scopes objects
        assert origin.resolve_id_attr() == "pk", name


@pytest.mark.parametrize("role", ROLES)
def test_who_sees_each_object_by_its_global_id(world, role):
    objects, clients = world
    for type_name, obj in objects.items():
        gid = str(relay.GlobalID(type_name, str(obj.pk)))
        result = clients[role]("query($id: ID!) { node(id: $id) { id } }", {"id": gid})
        seen = (result.get("data") or {}).get("node")
        assert (seen is not None) == (role in SEES[type_name]), (type_name, role, result)


@pytest.mark.parametrize("role", ROLES)
def test_who_changes_each_object(world, role):
    objects, clients = world
    for type_name, (mutation, allowed) in CHANGES.items():
        gid = str(relay.GlobalID(type_name, str(objects[type_name].pk)))
        result = clients[role](mutation, {"id": gid})
        payload = (result.get("data") or {}).get(mutation.split("{ ", 1)[1].split("(")[0])
        changed = payload is not None and payload.get("__typename") == type_name
        assert changed == (role in allowed), (type_name, role, result)
        if not changed:  # refused with a code: a top-level one, or a payload of the domain errors
            codes = error_codes(result)
            assert "INTERNAL" not in codes, (type_name, role, result)
            assert codes or payload["__typename"].endswith("Errors"), (type_name, role, result)


def test_an_editor_cannot_move_the_owners_document_to_a_collection_the_owner_cannot_see(world):
    objects, clients = world
    editor_own = clients["editor"]('mutation { createCollection(name: "Mine") { ... on Collection { id } } }')
    target = editor_own["data"]["createCollection"]["id"]
    gid = str(relay.GlobalID("Document", str(objects["Document"].pk)))
    result = clients["editor"]("mutation($id: ID!, $c: ID!) { updateDocument(id: $id, collectionId: $c) "
                               "{ __typename ... on DocumentErrors { messages { code } } } }", {"id": gid, "c": target})
    assert result["data"]["updateDocument"]["messages"][0]["code"] == "OTHER_OWNER"
    objects["Document"].refresh_from_db()
    assert objects["Document"].collection_id == objects["Collection"].pk
