"""Per-user quota overrides, set by an operator in the Django admin (defaults live in settings)."""

from django.conf import settings
from django.db import models


class QuotaOverride(models.Model):
    """A user's own limits where they differ from the defaults; an empty field keeps the default."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quota_override")
    tokens_per_day = models.JSONField(
        default=dict, blank=True,
        help_text='Per model, e.g. {"gpt-4": 200000}; a model left out keeps the default; null is unlimited.')
    turns_per_minute = models.PositiveIntegerField(null=True, blank=True)
    documents = models.PositiveIntegerField(null=True, blank=True)
    stored_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    unlimited = models.BooleanField(default=False, help_text="No quota applies to this user.")
    note = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"Quotas of {self.user}"
