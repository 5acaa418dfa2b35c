from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "backend.core"
    label = "core"

    def ready(self):
        from .middleware import run_as_one_sync_group

        run_as_one_sync_group()
