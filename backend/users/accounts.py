"""Accounts: registration, sign-in, last activity, and deletion with everything the account owns.

Input a user can correct raises Django's ``ValidationError`` (a field and an ``AccountErrorCode``);
everything else raises one of ``backend.core.errors``. No GraphQL here.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from backend.core import events, userdata
from backend.core import throttle as throttles
from backend.core.errors import RateLimited
from backend.core.scoping import require_user

from .models import User
from backend.users.codes import AccountErrorCode

logger = logging.getLogger(__name__)
from .rules import DISPLAY_NAME_MAX, check_email_free, check_password, check_username, normalize_email
from .verification import send_verification_email
from .credentials import usable


@transaction.atomic
def register(*, email: str, password: str, username: str | None = None, display_name: str = "",
             client_address: str = "unknown") -> User:
    throttles.throttle("register", client_address, "Too many accounts created from your address.")
    email = normalize_email(email)
    username = check_username(username or email.split("@")[0])
    check_email_free(email)
    user = User(email=email, username=username, display_name=(display_name or "").strip()[:DISPLAY_NAME_MAX])
    check_password(password, user)
    user.set_password(password)
    try:
        user.save()
    except IntegrityError:  # a concurrent registration won the race
        raise ValidationError({"email": ValidationError(
            "An account with this email already exists.", code=AccountErrorCode.EMAIL_TAKEN)})
    transaction.on_commit(lambda: send_verification_email(user))
    return user


def authenticate(request, *, email: str, password: str) -> User:
    """Check credentials through Django's authentication, under django-axes' lockout per account
    and client address (the admin's login is under the same), and a per-address limit across
    accounts (credential stuffing).

    A wrong email and a wrong password get the same answer; a locked-out pair, or an address past
    its limit, gets ``RateLimited`` whether or not the attempt would have succeeded.
    """
    from django.contrib import auth

    email = (email or "").strip().lower()
    address = request.META.get("REMOTE_ADDR") or "unknown"
    # Past the address's limit, only accounts already signed in from this address may try: a
    # credential-stuffing run is stopped, the people behind the same proxy are not locked out.
    failures = f"{settings.LOGIN_RATE_LIMIT_PER_ADDRESS}/{settings.LOGIN_RATE_LIMIT_WINDOW}s"
    if (throttles.count("login-address", address, failures) >= settings.LOGIN_RATE_LIMIT_PER_ADDRESS
            and not throttles.count("login-known", f"{email}|{address}", KNOWN_ADDRESS)):
        raise RateLimited()
    user = auth.authenticate(request, username=email, password=password)
    if getattr(request, "axes_locked_out", False):
        request.axes_locked_out = False  # the API answers RATE_LIMITED itself, not axes' HTML page
        raise RateLimited()
    if user is None or not usable(user):
        throttles.record("login-address", address, failures)
        raise ValidationError(ValidationError("Invalid email or password.", code=AccountErrorCode.INVALID_CREDENTIALS))
    throttles.record("login-known", f"{email}|{address}", KNOWN_ADDRESS)
    return user


KNOWN_ADDRESS = "1/90d"  # a successful sign-in makes its address known for (the rest of) 90 days


def last_active_stale(user: User) -> bool:
    """Whether ``touch_last_active`` would write (an async caller skips the thread hop if not)."""
    return user.last_active_at is None or timezone.now() - user.last_active_at > timedelta(minutes=5)


def touch_last_active(user: User) -> None:
    if last_active_stale(user):
        now = timezone.now()
        User.objects.filter(pk=user.pk).update(last_active_at=now)
        user.last_active_at = now


# --- deletion, export and import ------------------------------------------------------------

def delete_account_data(user: User) -> None:
    """Delete the user and everything they own; files go once the rows are gone."""
    files = [(default_storage, user.avatar.name)] if user.avatar else []
    for part in userdata.parts():
        files.extend(part.files(user))
    with transaction.atomic():
        User.objects.filter(pk=user.pk).delete()
        events.publish_auth_change(user.pk)

        def remove_files():
            for storage, name in files:
                try:
                    storage.delete(name)
                except Exception:
                    logger.exception("could not delete file %s", name)

        transaction.on_commit(remove_files)


def delete_account(user: User, *, password: str) -> None:
    require_user(user)
    if not user.is_guest and not user.check_password(password or ""):
        raise ValidationError({"password": ValidationError("The password is wrong.", code=AccountErrorCode.WRONG_PASSWORD)})
    delete_account_data(user)
