"""Guest accounts: started without an address, claimed into full accounts, purged when expired."""

import uuid
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from backend.core import throttle as throttles
from backend.core.scoping import require_user

from .models import User
from backend.users.codes import AccountErrorCode
from .rules import check_email_free, check_password, check_username, normalize_email
from .accounts import delete_account_data
from .verification import send_verification_email


# --- guests ---------------------------------------------------------------------------------

@transaction.atomic
def start_guest_session(client_address: str = "unknown") -> User:
    throttles.throttle("guest", client_address, "Too many guest sessions started from your address.")
    ident = uuid.uuid4().hex[:12]
    user = User(
        email=f"guest-{ident}@guest.invalid",
        username=f"guest-{ident}",
        display_name="Guest",
        is_guest=True,
        guest_expires_at=timezone.now() + timedelta(hours=settings.GUEST_TTL_HOURS),
    )
    user.set_unusable_password()
    user.save()
    return user


@transaction.atomic
def claim_guest_account(user: User, *, email: str, password: str, username: str | None = None) -> User:
    require_user(user)
    user = User.objects.select_for_update().get(pk=user.pk)
    if not user.is_guest:
        raise ValidationError(ValidationError("This account is not a guest account.", code=AccountErrorCode.NOT_A_GUEST))
    email = normalize_email(email)
    check_email_free(email, exclude_pk=user.pk)
    if username:
        user.username = check_username(username, exclude_pk=user.pk)
    user.email = email
    check_password(password, user)
    user.set_password(password)
    user.is_guest = False
    user.guest_expires_at = None
    user.save()
    transaction.on_commit(lambda: send_verification_email(user))
    return user


def purge_expired_guests(now=None) -> int:
    now = now or timezone.now()
    count = 0
    for user in User.objects.filter(is_guest=True, guest_expires_at__lt=now):
        delete_account_data(user)
        count += 1
    return count
