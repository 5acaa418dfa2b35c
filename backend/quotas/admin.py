from django.contrib import admin

from .models import QuotaOverride


@admin.register(QuotaOverride)
class QuotaOverrideAdmin(admin.ModelAdmin):
    list_display = ["user", "unlimited", "turns_per_minute", "documents", "stored_bytes", "updated_at"]
    search_fields = ["user__email"]
    autocomplete_fields = ["user"]


class QuotaOverrideInline(admin.StackedInline):
    model = QuotaOverride
    can_delete = True
    extra = 0
