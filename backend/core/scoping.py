"""Object visibility, defined once per model as a Q object.

A model defines ``visible_q(user)`` (and, where it can be changed by others than its owner,
``editable_q(user)``); ``ScopedQuerySet.visible_to`` applies it. The GraphQL base type applies the
same Q to any queryset of the model (related managers and optimizer prefetches included), and the
services use ``Model.objects.visible_to(user)``.
"""

from django.db import models


def is_signed_in(user) -> bool:
    return user is not None and getattr(user, "is_authenticated", False)


class ScopedQuerySet(models.QuerySet):
    def visible_to(self, user):
        if not is_signed_in(user):
            return self.none()
        return self.filter(self.model.visible_q(user))

    def editable_by(self, user):
        if not is_signed_in(user):
            return self.none()
        return self.filter(self.model.editable_q(user))


def scope(queryset, user):
    """Restrict any queryset of a scoped model to what ``user`` may see."""
    if not is_signed_in(user):
        return queryset.none()
    return queryset.filter(queryset.model.visible_q(user))


def require_user(user):
    """The signed-in user, or ``Unauthenticated``."""
    from .errors import Unauthenticated

    if not is_signed_in(user):
        raise Unauthenticated()
    return user
