from django.contrib import admin

from .models import DailyTokens, QuotaOverride


@admin.register(QuotaOverride)
class QuotaOverrideAdmin(admin.ModelAdmin):
    list_display = ["user", "unlimited", "turns_per_minute", "documents", "stored_bytes", "updated_at"]
    search_fields = ["user__email"]
    autocomplete_fields = ["user"]


@admin.register(DailyTokens)
class DailyTokensAdmin(admin.ModelAdmin):
    """What users used, per day and model: read-only (turns write it)."""

    list_display = ["day", "user", "model", "tokens"]
    list_filter = ["model", "day"]
    search_fields = ["user__email"]
    ordering = ["-day", "-tokens"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class QuotaOverrideInline(admin.StackedInline):
    model = QuotaOverride
    can_delete = True
    extra = 0
