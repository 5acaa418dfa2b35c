"""Domain errors shared by every service.

Services raise these (or Django's ``ValidationError`` for input that a user can correct, which
becomes a typed mutation payload). The GraphQL layer maps each class below to a top-level error
whose ``extensions.code`` is one of a small fixed set. Nothing here imports GraphQL.
"""

from enum import StrEnum

from .codes import ErrorCode


class ServiceError(Exception):
    code = ErrorCode.INTERNAL
    default_message = "Unexpected error."

    def __init__(self, message: str | None = None, **extensions):
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        # Details a client acts on (which quota, when to retry), sent beside the code.
        self.extensions = {k: v for k, v in extensions.items() if v is not None}


class Unauthenticated(ServiceError):
    code = ErrorCode.UNAUTHENTICATED
    default_message = "You must be signed in."


class Forbidden(ServiceError):
    code = ErrorCode.FORBIDDEN
    default_message = "You are not allowed to do this."


class NotFound(ServiceError):
    code = ErrorCode.NOT_FOUND
    default_message = "Not found."


class BadUserInput(ServiceError):
    code = ErrorCode.BAD_USER_INPUT
    default_message = "Invalid input."


class RateLimited(ServiceError):
    """A throttle: too many of one action in a short time (``retryAfter``: seconds)."""

    code = ErrorCode.RATE_LIMITED
    default_message = "Too many attempts. Please wait a few minutes and try again."


class QuotaExceeded(ServiceError):
    """A quota of the user's plan is used up (``quota``, ``limit``, ``used``, ``resetsAt``)."""

    code = ErrorCode.QUOTA_EXCEEDED
    default_message = "You have used up a quota of your account."


class ModelUnavailable(ServiceError):
    """The model cannot answer for this user (``model``, ``reason``: NO_KEY or NOT_CONFIGURED)."""

    code = ErrorCode.MODEL_UNAVAILABLE
    default_message = "This model is not available to you."


def field_error(field: str | None, message: str, code: StrEnum):
    """A Django ValidationError for one input field (None: the input as a whole), with a code of the
    domain's enum: a typed mutation payload."""
    from django.core.exceptions import ValidationError

    error = ValidationError(message, code=code)
    return ValidationError({field: error}) if field else ValidationError(error)
