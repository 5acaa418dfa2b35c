"""Error codes: the top-level ``extensions.code`` set, and the builder of each domain's payload codes.

Every code a client can receive is a member of one enum. Top-level codes (``ErrorCode``) say who
you are, what you may reach and what the server can do now; payload codes (one enum per domain,
built with ``domain_codes``) say which input to correct. Input rules shared by every domain
(``InputCode``: required, too long, out of range, ...) are members of each domain's enum, so a
client switches on one enum per payload. Nothing here imports an app or GraphQL.
"""

from enum import StrEnum


class ErrorCode(StrEnum):
    """``extensions.code`` of a top-level GraphQL error (and of HTTP error bodies)."""

    UNAUTHENTICATED = "UNAUTHENTICATED"  # sign in (or the token/session is no longer valid)
    FORBIDDEN = "FORBIDDEN"  # signed in, but not allowed (a viewer editing, a guest where accounts are needed)
    NOT_FOUND = "NOT_FOUND"  # no such object, or not one you may see (the two are not told apart)
    BAD_USER_INPUT = "BAD_USER_INPUT"  # the operation itself is wrong: syntax, types, limits, malformed ids
    RATE_LIMITED = "RATE_LIMITED"  # too many attempts; extensions.retryAfter (seconds)
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"  # a quota of your plan is used up; extensions.quota, limit, used, resetsAt
    MODEL_UNAVAILABLE = "MODEL_UNAVAILABLE"  # the model cannot answer for you; extensions.model, reason
    PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"  # send the query text with its hash once
    PERSISTED_QUERY_NOT_ALLOWED = "PERSISTED_QUERY_NOT_ALLOWED"  # this server runs only the app's own operations
    UNAVAILABLE = "UNAVAILABLE"  # the server is overloaded or a dependency is down: retry (HTTP 503)
    INTERNAL = "INTERNAL"  # a bug: reported, never explained


class InputCode(StrEnum):
    """Input rules every domain shares; each domain's payload enum includes them."""

    REQUIRED = "REQUIRED"
    TOO_LONG = "TOO_LONG"
    TOO_MANY = "TOO_MANY"
    INVALID_LENGTH = "INVALID_LENGTH"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    INVALID_CHOICE = "INVALID_CHOICE"
    INVALID_FORMAT = "INVALID_FORMAT"
    INVALID_EMAIL = "INVALID_EMAIL"
    WRONG_TYPE = "WRONG_TYPE"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    DUPLICATE = "DUPLICATE"
    UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
    FILE_TOO_LARGE = "FILE_TOO_LARGE"


def domain_codes(name: str, *own: str | type[StrEnum]) -> type[StrEnum]:
    """A domain's payload enum: the shared input codes, then the domain's own (names, or enums whose
    members it includes)."""
    members = {member.name: member.value for member in InputCode}
    for item in own:
        if isinstance(item, str):
            members.update({code: code for code in item.split()})
        else:
            members.update({member.name: member.value for member in item})
    return StrEnum(name, members)
