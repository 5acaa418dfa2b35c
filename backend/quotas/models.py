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


class DailyTokens(models.Model):
    """Tokens a user's answers used, per model and UTC day: what tokens-per-day quotas count.

    Written as turns start (the prompt) and end (the completion). It outlives the chats: deleting
    a chat does not give its tokens back, as counting the stored answers did.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="daily_tokens")
    day = models.DateField()
    model = models.CharField(max_length=40)
    tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "day", "model"], name="one_token_count_per_day")]

    def __str__(self):
        return f"{self.tokens} {self.model} tokens of {self.user} on {self.day}"
