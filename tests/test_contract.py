"""The typed contract: every error code a client can receive is a member of an enum in the schema."""

import ast
from pathlib import Path

import pytest
from graphql import build_schema

from backend.chats.codes import ChatErrorCode
from backend.core.codes import ErrorCode, InputCode
from backend.documents.codes import DocumentErrorCode
from backend.rag.loaders import ExtractionCode
from backend.recipes.codes import RecipeErrorCode
from backend.users.codes import AccountErrorCode

ROOT = Path(__file__).resolve().parent.parent
SDL = build_schema((ROOT / "schema.graphql").read_text())
ENUMS = {"ErrorCode": ErrorCode, "AccountErrorCode": AccountErrorCode, "ChatErrorCode": ChatErrorCode,
         "DocumentErrorCode": DocumentErrorCode, "RecipeErrorCode": RecipeErrorCode}


@pytest.mark.parametrize("name", ENUMS)
def test_each_domain_enum_is_in_the_checked_in_schema_with_the_same_codes(name):
    assert set(SDL.type_map[name].values) == {member.value for member in ENUMS[name]}
    if name != "ErrorCode":  # every domain accepts the shared input rules
        assert {member.value for member in InputCode} <= set(SDL.type_map[name].values)


def test_every_payload_error_is_typed_by_its_domain_enum():
    for domain in ("Account", "Chat", "Document", "Recipe"):
        error = SDL.type_map[f"{domain}Error"]
        assert str(error.fields["code"].type) == f"{domain}ErrorCode!"
        assert str(SDL.type_map[f"{domain}Errors"].fields["messages"].type) == f"[{domain}Error!]!"
    assert "OperationInfo" not in SDL.type_map
    assert str(SDL.type_map["Document"].fields["errorCode"].type) == "DocumentErrorCode"
    assert str(SDL.type_map["DocumentEvent"].fields["status"].type) == "DocumentEventStatus!"
    assert str(SDL.type_map["Message"].fields["errorCode"].type) == "StreamErrorCode"
    assert {m.value for m in ExtractionCode} <= set(SDL.type_map["DocumentErrorCode"].values)


def _bare_codes(tree: ast.AST):
    """String constants written where an error code goes: ``code="X"``, ``{"code": "X"}``, the code
    argument of ``field_error``/``_field``/``ExtractionError``/``fail``."""
    def upper(node):
        return isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isupper()

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            for keyword in node.keywords:
                if keyword.arg in ("code", "error_code") and upper(keyword.value):
                    yield node.lineno, keyword.value.value
            positional = {"field_error": 2, "_field": 2, "ExtractionError": 0, "fail": 1}.get(name)
            if positional is not None and len(node.args) > positional and upper(node.args[positional]):
                yield node.lineno, node.args[positional].value
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value in ("code", "error_code") and upper(value):
                    yield node.lineno, value.value


def test_no_error_code_is_a_bare_string_outside_its_enum():
    found = [f"{path.relative_to(ROOT)}:{line}: {code}"
             for path in sorted((ROOT / "backend").rglob("*.py")) if "migrations" not in path.parts
             for line, code in _bare_codes(ast.parse(path.read_text()))]
    assert found == []


@pytest.mark.django_db(transaction=True)
def test_users_have_the_global_ids_of_me_and_a_member_leaves_with_their_own(alice, bob):
    from django.utils import timezone

    bob.user.email_verified_at = timezone.now()
    bob.user.save()
    team = alice('mutation { createCollection(name: "Team") { ... on Collection { id } } }')["data"]["createCollection"]["id"]
    alice('mutation($id: ID!) { shareCollection(id: $id, email: "bob@example.com", role: VIEWER) { __typename } }',
          {"id": team})
    alice_id, bob_id = (c("{ me { id } }")["data"]["me"]["id"] for c in (alice, bob))
    owner = bob("query($id: ID!) { collection(id: $id) { owner { id username } } }", {"id": team})
    assert owner["data"]["collection"]["owner"] == {"id": alice_id, "username": "alice"}

    leave = "mutation($id: ID!, $u: ID) { unshareCollection(id: $id, userId: $u) { __typename } }"
    assert bob(leave, {"id": team, "u": "42"})["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert bob(leave, {"id": team, "u": bob_id})["data"]["unshareCollection"]["__typename"] == "Collection"
    assert bob("query($id: ID!) { collection(id: $id) { id } }", {"id": team})["data"]["collection"] is None


# Free-form data only: a file's own metadata, export and import files, a template's variables.
JSON_ALLOWED = {"Document.metadata", "Query.exportMyData", "Query.exportRecipes", "Mutation.importMyData(data)",
                "Mutation.importChats(data)", "Mutation.importRecipes(data)", "Mutation.renderRecipe(variables)"}


def test_json_only_where_data_is_free_form_and_every_count_is_non_null():
    found = set()
    for name, graphql_type in SDL.type_map.items():
        for field_name, field in (getattr(graphql_type, "fields", None) or {}).items():
            if "JSON" in str(field.type):
                found.add(f"{name}.{field_name}")
            found.update(f"{name}.{field_name}({arg})" for arg, value in (getattr(field, "args", None) or {}).items()
                         if "JSON" in str(value.type))
            if field_name == "totalCount":
                assert str(field.type) == "Int!", name
    assert found == JSON_ALLOWED
