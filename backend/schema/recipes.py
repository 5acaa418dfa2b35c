"""Prompt recipes: types and thin resolvers over ``backend.recipes.services``."""

import enum
from datetime import datetime

import strawberry
import strawberry_django
from strawberry import relay
from strawberry.scalars import JSON

from backend.recipes import services
from backend.recipes.codes import RecipeErrorCode
from backend.recipes.models import Recipe

from .base import Connection, Deleted, ScopedNode, decode_id
from .context import Info
from .payloads import error_types, mutation_of

RecipeErrors = error_types("Recipe", RecipeErrorCode, "Why a recipe operation refused its input.")
mutation = mutation_of(RecipeErrors)


Visibility = strawberry.enum(Recipe.Visibility, name="RecipeVisibility")


@strawberry.enum
class RecipeScope(enum.Enum):
    ALL = "all"
    MINE = "mine"
    SHARED = "shared"


@strawberry_django.type(Recipe, name="Recipe")
class RecipeType(ScopedNode):
    title: str
    description: str
    template: str
    category: str
    tags: list[str]
    visibility: Visibility
    usage_count: int
    created_at: datetime
    updated_at: datetime

    @strawberry_django.field(only=["template"], description="The {{variables}} the template needs.")
    def variables(self, root: Recipe) -> list[str]:
        return services.variables(root.template)

    @strawberry_django.field(only=["owner_id"])
    def is_mine(self, root: Recipe, info: Info) -> bool:
        return root.owner_id == info.context.get_user().pk


@strawberry.type
class RenderedRecipe:
    text: str


@strawberry.type
class ImportedRecipes:
    created: int


def _pk(value):
    return decode_id(value, "Recipe")


@strawberry.type
class Query:
    recipe: RecipeType | None = strawberry_django.node()

    @strawberry_django.connection(Connection[RecipeType], description="Your recipes and shared ones.")
    def recipes(self, info: Info, scope: RecipeScope = RecipeScope.ALL, category: str | None = None,
                tag: str | None = None, text: str | None = None) -> list[RecipeType]:
        return services.list_recipes(info.context.get_user(), scope=scope.value, category=category, tag=tag,
                                     text=text)

    @strawberry_django.field(description="Your recipes as JSON, for importRecipes.")
    def export_recipes(self, info: Info) -> JSON:
        return services.export_recipes(info.context.get_user())


@strawberry.type
class Mutation:
    @mutation
    def create_recipe(self, info: Info, title: str, template: str, description: str = "", category: str = "",
                      tags: list[str] | None = None, visibility: Visibility = Recipe.Visibility.PRIVATE) -> RecipeType:
        return services.create_recipe(info.context.get_user(), title=title, template=template,
                                      description=description, category=category, tags=tags or [],
                                      visibility=Recipe.Visibility(visibility).value)

    @mutation
    def update_recipe(self, info: Info, id: relay.GlobalID, title: str | None = None, template: str | None = None,
                      description: str | None = None, category: str | None = None, tags: list[str] | None = None,
                      visibility: Visibility | None = None) -> RecipeType:
        return services.update_recipe(info.context.get_user(), _pk(id), title=title, template=template,
                                      description=description, category=category, tags=tags,
                                      visibility=Recipe.Visibility(visibility).value if visibility else None)

    @mutation
    def delete_recipe(self, info: Info, id: relay.GlobalID) -> Deleted:
        services.delete_recipe(info.context.get_user(), _pk(id))
        return Deleted(id=id)

    @mutation(description="Copy a recipe (yours or a shared one) into your own, private.")
    def copy_recipe(self, info: Info, id: relay.GlobalID) -> RecipeType:
        return services.copy_recipe(info.context.get_user(), _pk(id))

    @mutation(description="Fill in the template; a missing variable is a field error.")
    def render_recipe(self, info: Info, id: relay.GlobalID, variables: JSON) -> RenderedRecipe:
        if not isinstance(variables, dict):
            from django.core.exceptions import ValidationError

            raise ValidationError({"variables": ValidationError("An object of name: value.", code=RecipeErrorCode.WRONG_TYPE)})
        return RenderedRecipe(text=services.render_recipe(info.context.get_user(), _pk(id), variables))

    @mutation(description="Import an exportRecipes document; importing twice adds nothing.")
    def import_recipes(self, info: Info, data: JSON) -> ImportedRecipes:
        return ImportedRecipes(created=services.import_recipes(info.context.get_user(), data))
