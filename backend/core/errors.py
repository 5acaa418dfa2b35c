"""Domain errors shared by every service.

Services raise these (or Django's ``ValidationError`` for input that a user can correct, which
becomes a typed mutation payload). The GraphQL layer maps each class below to a top-level error
whose ``extensions.code`` is one of a small fixed set. Nothing here imports GraphQL.
"""


class ServiceError(Exception):
    code = "INTERNAL"
    default_message = "Unexpected error."

    def __init__(self, message: str | None = None, **extensions):
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        # Details a client acts on (which quota, when to retry), sent beside the code.
        self.extensions = {k: v for k, v in extensions.items() if v is not None}


class Unauthenticated(ServiceError):
    code = "UNAUTHENTICATED"
    default_message = "You must be signed in."


class Forbidden(ServiceError):
    code = "FORBIDDEN"
    default_message = "You are not allowed to do this."


class NotFound(ServiceError):
    code = "NOT_FOUND"
    default_message = "Not found."


class BadUserInput(ServiceError):
    code = "BAD_USER_INPUT"
    default_message = "Invalid input."


class RateLimited(ServiceError):
    """A throttle: too many of one action in a short time (``retryAfter``: seconds)."""

    code = "RATE_LIMITED"
    default_message = "Too many attempts. Please wait a few minutes and try again."


class QuotaExceeded(ServiceError):
    """A quota of the user's plan is used up (``quota``, ``limit``, ``used``, ``resetsAt``)."""

    code = "QUOTA_EXCEEDED"
    default_message = "You have used up a quota of your account."


class ModelUnavailable(ServiceError):
    """The model cannot answer for this user (``model``, ``reason``: NO_KEY or NOT_CONFIGURED)."""

    code = "MODEL_UNAVAILABLE"
    default_message = "This model is not available to you."


TOP_LEVEL_CODES = ("UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND", "BAD_USER_INPUT", "RATE_LIMITED", "QUOTA_EXCEEDED",
                   "MODEL_UNAVAILABLE", "UNAVAILABLE", "INTERNAL")


def field_error(field: str, message: str, code: str):
    """A Django ValidationError for one input field, with a stable code (a typed mutation payload)."""
    from django.core.exceptions import ValidationError

    return ValidationError({field: ValidationError(message, code=code)})
