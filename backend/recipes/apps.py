from django.apps import AppConfig


class RecipesConfig(AppConfig):
    name = "backend.recipes"
    label = "recipes"

    def ready(self):
        from . import services  # noqa: F401  registers the recipes part of data export
