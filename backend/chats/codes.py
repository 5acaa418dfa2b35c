"""Payload error codes of chats: chats, turns, answers and their versions, presets, provider keys.

Why an answer failed (``Message.errorCode``, ``StreamFailed.code``) is the state of an answer, not
an operation's error: its enum is the providers' ``ProviderErrorCode``.
"""

from backend.core.codes import domain_codes

ChatErrorCode = domain_codes(
    "ChatErrorCode",
    "UNKNOWN_MODEL NOT_AN_ANSWER NO_QUESTION NO_ANSWER STILL_STREAMING NOT_STREAMING "
    "INVALID_CLIENT_ID CLIENT_ID_REUSED",
)
