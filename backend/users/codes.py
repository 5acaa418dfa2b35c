"""Payload error codes of accounts: sign-up, sign-in, profile, preferences, tokens, data export."""

from backend.core.codes import domain_codes

AccountErrorCode = domain_codes(
    "AccountErrorCode",
    "INVALID_USERNAME USERNAME_TAKEN EMAIL_TAKEN WEAK_PASSWORD INVALID_CREDENTIALS WRONG_PASSWORD "
    "GUEST_ACCOUNT NOT_A_GUEST INVALID_TOKEN ALREADY_VERIFIED TOO_MANY_TOKENS "
    "IMAGE_TOO_LARGE UNSUPPORTED_IMAGE NOT_AN_IMAGE INVALID_LANGUAGE INVALID_TIMEZONE",
)
