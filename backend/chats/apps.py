from django.apps import AppConfig


class ChatsConfig(AppConfig):
    name = "backend.chats"
    label = "chats"

    def ready(self):
        from . import portability  # noqa: F401  registers the chats part of data export
