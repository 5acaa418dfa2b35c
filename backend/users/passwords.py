"""Passwords: change, and reset by an emailed link."""

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction

from backend.core import throttle as throttles
from backend.core.scoping import require_user

from .models import User
from backend.users.codes import AccountErrorCode
from .rules import check_password, uid_of, user_from_uid
from .credentials import credentials_changed


# --- passwords ------------------------------------------------------------------------------

@transaction.atomic
def change_password(user: User, *, current_password: str, new_password: str) -> User:
    require_user(user)
    user = User.objects.select_for_update().get(pk=user.pk)
    if not user.check_password(current_password):
        raise ValidationError({"currentPassword": ValidationError("The current password is wrong.", code=AccountErrorCode.WRONG_PASSWORD)})
    check_password(new_password, user, field="newPassword")
    user.set_password(new_password)
    user.save(update_fields=["password"])
    credentials_changed(user)
    return user


def request_password_reset(email: str, client_address: str = "unknown") -> None:
    """Send a reset link if the account exists. The caller answers the same either way.

    Throttled per client address (``RateLimited``) and per email address: past its rate, no more
    mail goes to that address, silently, whether or not it has an account."""
    throttles.throttle("reset-mail-address", client_address, "Too many password reset requests from your address.")
    email = (email or "").strip().lower()
    if not throttles.allow("reset-mail-email", email):
        return
    user = User.objects.filter(email__iexact=email, is_active=True, is_guest=False).first()
    if user is None:
        return
    token = default_token_generator.make_token(user)
    link = f"{settings.FRONTEND_URL}/reset-password?uid={uid_of(user)}&token={token}"
    send_mail(
        "Reset your password",
        f"Someone asked to reset the password of your account.\n\n"
        f"Open this link to choose a new password:\n{link}\n\n"
        f"uid: {uid_of(user)}\ntoken: {token}\n\n"
        f"If it was not you, ignore this message; your password stays as it is.",
        settings.DEFAULT_FROM_EMAIL,
        [user.email],
    )


@transaction.atomic
def reset_password(*, uid: str, token: str, new_password: str) -> User:
    user = user_from_uid(uid)
    if user is None or not default_token_generator.check_token(user, token):
        raise ValidationError({"token": ValidationError(
            "This reset link is invalid or has expired. Ask for a new one.", code=AccountErrorCode.INVALID_TOKEN)})
    check_password(new_password, user, field="newPassword")
    user.set_password(new_password)  # changes the hash, so the token cannot be used again
    user.save(update_fields=["password"])
    credentials_changed(user)
    return user
