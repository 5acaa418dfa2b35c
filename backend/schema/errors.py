"""Top-level errors carry ``extensions.code`` from a fixed set; anything unexpected is masked."""

import logging
import re

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
import strawberry
from graphql.error import GraphQLError
from strawberry.extensions import MaskErrors
from strawberry.relay.types import GlobalIDValueError
from strawberry.utils.str_converters import to_camel_case

from backend.core import unavailable
from backend.core.errors import ServiceError
from backend.core.codes import ErrorCode

logger = logging.getLogger("backend.graphql")

INTERNAL_MESSAGE = "Unexpected error."
TopLevelErrorCode = strawberry.enum(ErrorCode, name="ErrorCode", description=(
    "extensions.code of a top-level error: who you are, what you may reach, limits, and what the server can "
    "do now. Input a user can correct is a payload error instead (<Domain>Errors, with its own code enum)."))
# graphql-core names schema members it guesses at ("Did you mean 'first'?"); with introspection off
# (production) the schema is not for strangers to read, so no error names what was not asked.
SUGGESTION = re.compile(r" ?Did you mean [^?]*\?")


def extensions_of(error: GraphQLError) -> dict:
    """A service error's details (``retryAfter``, ``quota``, ...), with camelCase keys."""
    original = error.original_error
    details = getattr(original, "extensions", None) if isinstance(original, ServiceError) else None
    return {to_camel_case(key): value for key, value in (details or {}).items()}


def classify(error: GraphQLError) -> tuple[str, str]:
    """(code, message) for a GraphQL error."""
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        # Parse and validation errors, depth/alias/token limits, bad variables.
        return ErrorCode.BAD_USER_INPUT, error.message
    if isinstance(original, ServiceError):
        return original.code, original.message
    if isinstance(original, (GlobalIDValueError, )):
        return ErrorCode.BAD_USER_INPUT, "Malformed ID."
    if isinstance(original, ValidationError):
        return ErrorCode.BAD_USER_INPUT, "; ".join(original.messages)
    if isinstance(original, ObjectDoesNotExist):
        return ErrorCode.NOT_FOUND, "Not found."
    if isinstance(original, PermissionDenied):
        return ErrorCode.FORBIDDEN, "You are not allowed to do this."
    if unavailable.is_unavailable(original):
        return ErrorCode.UNAVAILABLE, unavailable.MESSAGE
    return ErrorCode.INTERNAL, INTERNAL_MESSAGE


class ErrorCodes(MaskErrors):
    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        processed = []
        for error in errors:
            if (error.extensions or {}).get("code"):
                processed.append(error)
                continue
            code, message = classify(error)
            if not settings.GRAPHQL_INTROSPECTION:
                message = SUGGESTION.sub("", message)
            if code == ErrorCode.INTERNAL:
                logger.error("unexpected error in GraphQL operation", exc_info=error.original_error)
            processed.append(GraphQLError(
                message=message,
                nodes=error.nodes,
                source=error.source,
                positions=error.positions,
                path=error.path,
                original_error=None,
                extensions={**(error.extensions or {}), **extensions_of(error), "code": code},
            ))
        return processed
