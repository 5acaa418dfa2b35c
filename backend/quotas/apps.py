from django.apps import AppConfig


class QuotasConfig(AppConfig):
    name = "backend.quotas"
    label = "quotas"
