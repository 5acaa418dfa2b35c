from django.apps import AppConfig


class UsersConfig(AppConfig):
    name = "backend.users"
    label = "users"

    def ready(self):
        from backend.core import auth

        from . import credentials, portability  # noqa: F401  portability registers the profile part of exports

        auth.token_owner = credentials.user_for_token
