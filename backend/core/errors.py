"""Domain errors shared by every service.

Services raise these (or Django's ``ValidationError`` for input that a user can correct, which
becomes a typed mutation payload). The GraphQL layer maps each class below to a top-level error
whose ``extensions.code`` is one of a small fixed set. Nothing here imports GraphQL.
"""


class ServiceError(Exception):
    code = "INTERNAL"
    default_message = "Unexpected error."

    def __init__(self, message: str | None = None):
        super().__init__(message or self.default_message)
        self.message = message or self.default_message


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
    code = "RATE_LIMITED"
    default_message = "Too many attempts. Please wait a few minutes and try again."


TOP_LEVEL_CODES = ("UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND", "BAD_USER_INPUT", "RATE_LIMITED", "INTERNAL")


def field_error(field: str, message: str, code: str):
    """A Django ValidationError for one input field, with a stable code (a typed mutation payload)."""
    from django.core.exceptions import ValidationError

    return ValidationError({field: ValidationError(message, code=code)})
