from django.apps import AppConfig


class UsersConfig(AppConfig):
    name = "backend.users"
    label = "users"

    def ready(self):
        from . import services  # noqa: F401  registers the profile part of data export
