"""Prompt recipes: CRUD, sharing and copying, rendering, import/export, ownership."""

import pytest

from backend.recipes.models import Recipe

from .conftest import error_codes

pytestmark = pytest.mark.django_db(transaction=True)
ERRORS = "... on RecipeErrors { messages { field code message } }"
CREATE = f"""mutation($t: String!, $tpl: String!, $v: RecipeVisibility, $tags: [String!], $c: String) {{
  createRecipe(title: $t, template: $tpl, visibility: $v, tags: $tags, category: $c) {{
    ... on Recipe {{ id title variables visibility tags category isMine }} {ERRORS} }} }}"""
RENDER = f"""mutation($id: ID!, $v: JSON!) {{ renderRecipe(id: $id, variables: $v) {{
  ... on RenderedRecipe {{ text }} {ERRORS} }} }}"""


def create(client, title="Summarize", template="Summarize {{text}} in {{ words }} words.", **extra):
    return client(CREATE, {"t": title, "tpl": template, **extra})["data"]["createRecipe"]


def test_create_render_and_count_usage(alice):
    recipe = create(alice, tags=["Writing", "writing"], c="Text")
    assert recipe["variables"] == ["text", "words"] and recipe["tags"] == ["writing"] and recipe["category"] == "text"
    rendered = alice(RENDER, {"id": recipe["id"], "v": {"text": "this article", "words": 50}})
    assert rendered["data"]["renderRecipe"]["text"] == "Summarize this article in 50 words."
    missing = alice(RENDER, {"id": recipe["id"], "v": {"text": "x"}})["data"]["renderRecipe"]["messages"]
    assert missing == [{"field": "variables.words", "code": "MISSING_VARIABLE", "message": "Give a value for 'words'."}]
    assert Recipe.objects.get().usage_count == 1


def test_bad_templates_and_titles_are_field_errors(alice):
    bad = alice(CREATE, {"t": "x", "tpl": "Hello {{ not valid! }}"})["data"]["createRecipe"]["messages"]
    assert bad[0]["field"] == "template" and bad[0]["code"] == "INVALID_TEMPLATE"
    empty = alice(CREATE, {"t": " ", "tpl": "Hi"})["data"]["createRecipe"]["messages"]
    assert empty[0]["field"] == "title"


def test_shared_recipes_are_readable_and_copyable_but_not_editable(alice, bob):
    shared = create(alice, title="Shared one", v="SHARED")
    private = create(alice, title="Private one")
    listed = {e["node"]["title"]: e["node"]["isMine"] for e in
              bob("{ recipes { edges { node { title isMine } } } }")["data"]["recipes"]["edges"]}
    assert listed == {"Shared one": False}
    assert bob(RENDER, {"id": shared["id"], "v": {"text": "a", "words": 3}})["data"]["renderRecipe"]["text"]
    update = f'mutation($id: ID!) {{ updateRecipe(id: $id, title: "mine now") {{ __typename }} }}'
    assert error_codes(bob(update, {"id": shared["id"]})) == ["FORBIDDEN"]
    assert error_codes(bob(update, {"id": private["id"]})) == ["NOT_FOUND"]
    assert error_codes(bob(f'mutation {{ deleteRecipe(id: "{shared["id"]}") {{ __typename }} }}')) == ["FORBIDDEN"]
    assert error_codes(bob(f'mutation {{ copyRecipe(id: "{private["id"]}") {{ __typename }} }}')) == ["NOT_FOUND"]
    copy = bob(f'mutation {{ copyRecipe(id: "{shared["id"]}") {{ ... on Recipe {{ id title visibility isMine }} }} }}')
    assert copy["data"]["copyRecipe"] | {"id": None} == {"id": None, "title": "Shared one", "visibility": "PRIVATE",
                                                         "isMine": True}
    mine = bob('{ recipes(scope: MINE) { edges { node { title } } } }')["data"]["recipes"]["edges"]
    assert mine == [{"node": {"title": "Shared one"}}]
    assert Recipe.objects.get(pk=Recipe.objects.get(title="Shared one", owner=alice.user).pk).title == "Shared one"


def test_filters(alice):
    create(alice, title="Email reply", template="Reply to {{email}}", c="email", tags=["work"])
    create(alice, title="Poem", template="A poem about {{topic}}", c="fun", tags=["play"])
    titles = lambda r: [e["node"]["title"] for e in r["data"]["recipes"]["edges"]]  # noqa: E731
    assert titles(alice('{ recipes(category: "EMAIL") { edges { node { title } } } }')) == ["Email reply"]
    assert titles(alice('{ recipes(tag: "play") { edges { node { title } } } }')) == ["Poem"]
    assert titles(alice('{ recipes(text: "topic") { edges { node { title } } } }')) == ["Poem"]


def test_export_and_import_are_idempotent(alice, bob):
    create(alice, title="One")
    create(alice, title="Two", template="Two {{x}}")
    exported = alice("{ exportRecipes }")["data"]["exportRecipes"]
    imp = "mutation($d: JSON!) { importRecipes(data: $d) { ... on ImportedRecipes { created } } }"
    assert bob(imp, {"d": exported})["data"]["importRecipes"]["created"] == 2
    assert bob(imp, {"d": exported})["data"]["importRecipes"]["created"] == 0
    assert alice(imp, {"d": exported})["data"]["importRecipes"]["created"] == 0
    assert Recipe.objects.filter(owner=bob.user).count() == 2 and Recipe.objects.filter(owner=alice.user).count() == 2
    bad = bob(f'mutation {{ importRecipes(data: {{recipes: [{{title: "x"}}]}}) {{ {ERRORS} }} }}')
    assert bad["data"]["importRecipes"]["messages"][0]["code"] == "INVALID_FORMAT"
