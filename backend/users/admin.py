from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from backend.quotas.admin import QuotaOverrideInline

from .models import ApiToken, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["-date_joined"]
    list_display = ["email", "username", "display_name", "is_guest", "email_verified_at", "is_staff", "date_joined"]
    list_filter = ["is_guest", "is_staff", "is_active"]
    search_fields = ["email", "username", "display_name"]
    fieldsets = BaseUserAdmin.fieldsets + (
        ("Profile", {"fields": ("display_name", "avatar", "bio", "preferences")}),
        ("Status", {"fields": ("email_verified_at", "is_guest", "guest_expires_at", "last_active_at")}),
    )
    inlines = [QuotaOverrideInline]
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "username", "password1", "password2")}),)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "user__email", "prefix"]
    readonly_fields = ["prefix", "token_hash", "created_at", "last_used_at"]
