"""Email verification: the token, the emails, and verifying an address."""

from django.conf import settings
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from backend.core import events
from backend.core import throttle as throttles
from backend.core.scoping import require_user

from .models import User
from backend.users.codes import AccountErrorCode
from .rules import check_email_free, uid_of, user_from_uid


class EmailVerificationTokenGenerator(PasswordResetTokenGenerator):
    """Valid until the email is verified or changed, then never again."""

    key_salt = "backend.users.EmailVerificationTokenGenerator"

    def _make_hash_value(self, user, timestamp):
        return f"{user.pk}{user.email}{user.pending_email}{user.email_verified_at}{timestamp}"

    def check_token(self, user, token):
        if not super().check_token(user, token):
            return False
        ts_b36 = token.split("-")[0]
        try:
            from django.utils.http import base36_to_int

            ts = base36_to_int(ts_b36)
        except ValueError:
            return False
        return (self._num_seconds(self._now()) - ts) <= settings.EMAIL_VERIFICATION_TIMEOUT


email_verification_tokens = EmailVerificationTokenGenerator()


# --- email verification ---------------------------------------------------------------------

def send_verification_email(user: User) -> None:
    if user.is_guest or user.email_verified:
        return
    token = email_verification_tokens.make_token(user)
    link = f"{settings.FRONTEND_URL}/verify-email?uid={uid_of(user)}&token={token}"
    send_mail(
        "Confirm your email address",
        f"Open this link to confirm your email address:\n{link}\n\nuid: {uid_of(user)}\ntoken: {token}\n",
        settings.DEFAULT_FROM_EMAIL,
        [user.email],
    )


def send_email_change(user: User) -> None:
    token = email_verification_tokens.make_token(user)
    link = f"{settings.FRONTEND_URL}/verify-email?uid={uid_of(user)}&token={token}"
    send_mail("Confirm your new email address",
              f"Open this link to make this your account's email address:\n{link}\n\nuid: {uid_of(user)}\n"
              f"token: {token}\n", settings.DEFAULT_FROM_EMAIL, [user.pending_email])
    send_mail("Your email address is being changed",
              f"Someone signed in to your account asked to change its email address to {user.pending_email}. "
              "If it was not you, change your password now: the change happens only once the new address "
              "confirms it.", settings.DEFAULT_FROM_EMAIL, [user.email])


def request_email_verification(user: User, client_address: str = "unknown") -> None:
    require_user(user)
    if user.email_verified:
        raise ValidationError(ValidationError("Your email address is already verified.", code=AccountErrorCode.ALREADY_VERIFIED))
    if user.is_guest:
        raise ValidationError(ValidationError("Claim your guest account first.", code=AccountErrorCode.GUEST_ACCOUNT))
    throttles.throttle("verify-mail-address", client_address, "Too many verification emails from your address.")
    throttles.throttle("verify-mail", f"user:{user.pk}", "Too many verification emails.")
    send_verification_email(user)


@transaction.atomic
def verify_email(*, uid: str, token: str) -> User:
    user = user_from_uid(uid)
    if user is None or not email_verification_tokens.check_token(user, token):
        raise ValidationError({"token": ValidationError(
            "This verification link is invalid or has expired. Ask for a new one.", code=AccountErrorCode.INVALID_TOKEN)})
    if user.pending_email:  # a change of address, confirmed by the new one
        check_email_free(user.pending_email, exclude_pk=user.pk)
        user.email, user.pending_email = user.pending_email, ""
    user.email_verified_at = timezone.now()
    user.save(update_fields=["email", "pending_email", "email_verified_at"])
    from backend.documents.collections import link_shares

    link_shares(user)  # collections shared with this address now reach the account
    events.publish(user.pk, {"kind": "EMAIL_VERIFIED"})
    return user
