"""Prompt recipes: templates with {{variables}}, private or shared, copyable, importable."""

import re
import uuid

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q

from backend.core import userdata
from backend.core.errors import Forbidden, NotFound
from backend.core.jsonsql import contains_all
from backend.core.errors import field_error as _field
from backend.core.scoping import require_user as _require

from .models import Recipe
from .codes import RecipeErrorCode

VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
EXPORT_FORMAT = "chat-backend.recipes"




def variables(template: str) -> list[str]:
    seen = []
    for name in VARIABLE.findall(template):
        if name not in seen:
            seen.append(name)
    return seen


def _clean(fields: dict) -> dict:
    clean = {}
    if "title" in fields and fields["title"] is not None:
        title = fields["title"].strip()
        if not title or len(title) > 200:
            raise _field("title", "Between 1 and 200 characters.", RecipeErrorCode.INVALID_LENGTH)
        clean["title"] = title
    if fields.get("template") is not None:
        template = fields["template"]
        if not template.strip() or len(template) > 20000:
            raise _field("template", "Between 1 and 20000 characters.", RecipeErrorCode.INVALID_LENGTH)
        if template.count("{{") != template.count("}}") or len(VARIABLE.findall(template)) != template.count("{{"):
            raise _field("template", "Write variables as {{name}} (letters, digits, underscores).", RecipeErrorCode.INVALID_TEMPLATE)
        clean["template"] = template
    if fields.get("description") is not None:
        if len(fields["description"]) > 2000:
            raise _field("description", "At most 2000 characters.", RecipeErrorCode.TOO_LONG)
        clean["description"] = fields["description"]
    if fields.get("category") is not None:
        if len(fields["category"]) > 50:
            raise _field("category", "At most 50 characters.", RecipeErrorCode.TOO_LONG)
        clean["category"] = fields["category"].strip().lower()
    if fields.get("tags") is not None:
        tags = []
        for tag in fields["tags"]:
            tag = str(tag).strip().lower()
            if tag and tag not in tags:
                if len(tag) > 50:
                    raise _field("tags", "Tags have at most 50 characters.", RecipeErrorCode.TOO_LONG)
                tags.append(tag)
        if len(tags) > 20:
            raise _field("tags", "At most 20 tags.", RecipeErrorCode.TOO_MANY)
        clean["tags"] = tags
    if fields.get("visibility") is not None:
        if fields["visibility"] not in Recipe.Visibility.values:
            raise _field("visibility", "PRIVATE or SHARED.", RecipeErrorCode.INVALID_CHOICE)
        clean["visibility"] = fields["visibility"]
    return clean


def list_recipes(user, *, scope: str = "all", category: str | None = None, tag: str | None = None,
                 text: str | None = None):
    """The recipes ``user`` may read (``scope``: all, mine or shared by others), filtered."""
    _require(user)
    recipes = Recipe.objects.visible_to(user)
    if scope == "mine":
        recipes = recipes.filter(owner=user)
    elif scope == "shared":
        recipes = recipes.filter(visibility=Recipe.Visibility.SHARED).exclude(owner=user)
    if category:
        recipes = recipes.filter(category=category.strip().lower())
    if text:
        recipes = recipes.filter(Q(title__icontains=text) | Q(description__icontains=text) | Q(template__icontains=text))
    if tag:
        recipes = contains_all(recipes, "tags", [tag.strip().lower()])
    return recipes


def get_recipe(user, pk, *, edit: bool = False) -> Recipe:
    _require(user)
    recipe = Recipe.objects.visible_to(user).filter(pk=pk).first()
    if recipe is None:
        raise NotFound("No such recipe.")
    if edit and not Recipe.objects.editable_by(user).filter(pk=recipe.pk).exists():
        raise Forbidden("Only the recipe's owner can change it; copy it to make your own.")
    return recipe


def create_recipe(user, **fields) -> Recipe:
    _require(user)
    if not fields.get("title") or not fields.get("template"):
        raise _field("title" if not fields.get("title") else "template", "Required.", RecipeErrorCode.REQUIRED)
    return Recipe.objects.create(owner=user, **_clean(fields))


def update_recipe(user, pk, **fields) -> Recipe:
    recipe = get_recipe(user, pk, edit=True)
    for key, value in _clean(fields).items():
        setattr(recipe, key, value)
    recipe.save()
    return recipe


def delete_recipe(user, pk) -> None:
    get_recipe(user, pk, edit=True).delete()


def copy_recipe(user, pk) -> Recipe:
    source = get_recipe(user, pk)
    return Recipe.objects.create(owner=user, title=source.title, description=source.description,
                                 template=source.template, category=source.category, tags=list(source.tags),
                                 copied_from=source.uid)


def render_recipe(user, pk, values: dict) -> str:
    recipe = get_recipe(user, pk)
    missing = [name for name in variables(recipe.template) if values.get(name) in (None, "")]
    if missing:
        raise ValidationError({f"variables.{name}": ValidationError(f"Give a value for '{name}'.", code=RecipeErrorCode.MISSING_VARIABLE)
                               for name in missing})
    Recipe.objects.filter(pk=recipe.pk).update(usage_count=F("usage_count") + 1)
    return VARIABLE.sub(lambda m: str(values[m.group(1)]), recipe.template)


def _recipe_dict(r: Recipe) -> dict:
    return {"uid": str(r.uid), "title": r.title, "description": r.description, "template": r.template,
            "category": r.category, "tags": r.tags, "visibility": r.visibility}


def export_recipes(user) -> dict:
    _require(user)
    return {"format": EXPORT_FORMAT, "version": 1,
            "recipes": [_recipe_dict(r) for r in Recipe.objects.filter(owner=user)]}


def import_recipes(user, data) -> int:
    """Upsert by uid (another user's uid maps to a stable one of yours): importing twice adds nothing."""
    _require(user)
    items = data.get("recipes") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise _field("data", "Not a recipe export.", RecipeErrorCode.INVALID_FORMAT)
    created = 0
    with transaction.atomic():
        for item in items:
            if not isinstance(item, dict):
                raise _field("data", "Each recipe must be an object.", RecipeErrorCode.INVALID_FORMAT)
            fields = _clean({k: item.get(k) for k in ("title", "template", "description", "category", "tags",
                                                      "visibility")})
            if "title" not in fields or "template" not in fields:
                raise _field("data", "Each recipe needs a title and a template.", RecipeErrorCode.INVALID_FORMAT)
            try:
                uid = uuid.UUID(str(item.get("uid")))
            except ValueError:
                uid = uuid.uuid5(uuid.NAMESPACE_URL, f"recipe:{fields['title']}:{fields['template']}")
            if Recipe.objects.filter(uid=uid).exclude(owner=user).exists():
                uid = uuid.uuid5(uuid.NAMESPACE_URL, f"recipe-import:{user.pk}:{uid}")
            _, was_created = Recipe.objects.update_or_create(owner=user, uid=uid, defaults=fields)
            created += was_created
    return created


userdata.register(userdata.UserDataPart(
    name="recipes", export=lambda user: export_recipes(user)["recipes"],
    import_=lambda user, data: {"recipes_created": import_recipes(user, data)}))
