import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from backend.core.scoping import ScopedQuerySet


class Recipe(models.Model):
    class Visibility(models.TextChoices):
        PRIVATE = "PRIVATE"
        SHARED = "SHARED"

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="recipes")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True, max_length=2000)
    template = models.TextField(max_length=20000)
    category = models.CharField(max_length=50, blank=True)
    tags = models.JSONField(default=list, blank=True)
    visibility = models.CharField(max_length=8, choices=Visibility.choices, default=Visibility.PRIVATE)
    usage_count = models.PositiveIntegerField(default=0)
    copied_from = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at", "-id"]

    @classmethod
    def visible_q(cls, user):
        """Your recipes, and every user's shared ones (readable and copyable, not editable)."""
        return Q(owner=user) | Q(visibility=cls.Visibility.SHARED)

    @classmethod
    def editable_q(cls, user):
        return Q(owner=user)
