"""Credentials: API tokens, and whether a session, token or socket still stands."""

import functools
from importlib import import_module
import secrets
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from backend.core import events
from backend.core.errors import NotFound
from backend.core.scoping import require_user

from .models import ApiToken, User
from backend.users.codes import AccountErrorCode


TOKEN_NAME_MAX = 100
MAX_ACTIVE_TOKENS = 50


# --- API tokens -----------------------------------------------------------------------------

TOKEN_PREFIX = "cbk_"


@transaction.atomic
def create_api_token(user: User, *, name: str, expires_in_days: int | None = None) -> tuple[ApiToken, str]:
    require_user(user)
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": ValidationError("Give the token a name.", code=AccountErrorCode.REQUIRED)})
    if len(name) > TOKEN_NAME_MAX:
        raise ValidationError({"name": ValidationError("At most 100 characters.", code=AccountErrorCode.TOO_LONG)})
    if expires_in_days is not None and not 1 <= expires_in_days <= 3650:
        raise ValidationError({"expiresInDays": ValidationError("Between 1 and 3650 days.", code=AccountErrorCode.OUT_OF_RANGE)})
    if ApiToken.objects.visible_to(user).count() >= MAX_ACTIVE_TOKENS:
        raise ValidationError(ValidationError("Revoke an old token first (50 at most).", code=AccountErrorCode.TOO_MANY_TOKENS))
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=secret[: len(TOKEN_PREFIX) + 6],
        token_hash=ApiToken.hash_secret(secret),
        expires_at=timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    return token, secret


def usable(user) -> bool:
    """Whether an account may act: active, and not a guest past its expiry."""
    if user is None or not user.is_active:
        return False
    return not (user.is_guest and user.guest_expires_at is not None and user.guest_expires_at <= timezone.now())


def credentials_changed(user: User) -> None:
    """A password change or reset: the API tokens are revoked (a leaked password may have minted
    them) and every live socket of the user checks its credential again."""
    ApiToken.objects.filter(user=user, revoked_at__isnull=True).update(revoked_at=timezone.now())
    events.publish_auth_change(user.pk)


def signed_out(user) -> None:
    """A session ended: the sockets that it authenticated close."""
    if user is not None and user.is_authenticated:
        events.publish_auth_change(user.pk)


def credential_valid(credential) -> bool:
    """Whether a websocket's credential still stands: ("token", secret, user id) while the token
    is neither revoked nor expired; ("session", session key, user id) while that session still
    signs in that user with the current password; the account usable in both cases."""
    kind, secret, user_id = credential
    if kind == "token":
        user = user_for_token(secret)
        return user is not None and user.pk == user_id
    session = import_module(settings.SESSION_ENGINE).SessionStore(secret)
    if not session.exists(secret) or str(session.get(SESSION_KEY)) != str(user_id) or not session.get(BACKEND_SESSION_KEY):
        return False
    user = User.objects.filter(pk=user_id).first()
    return (usable(user) and constant_time_compare(session.get(HASH_SESSION_KEY) or "",
                                                   user.get_session_auth_hash()))


def user_for_token(secret: str) -> User | None:
    """The active user a bearer secret belongs to, or None (unknown, revoked or expired).

    Runs on every API request: one indexed SQL query (the ORM's compilation of the same
    lookup cost 2.9 ms against 1.2 ms for the raw query on PostgreSQL).
    """
    if not secret or not secret.startswith(TOKEN_PREFIX):
        return None
    now = timezone.now()
    found = list(User.objects.raw(_token_sql(), [ApiToken.hash_secret(secret),
                                                 connection.ops.adapt_datetimefield_value(now)]))
    if not found:
        return None
    user = found[0]
    last_used = user.token_last_used_at
    if isinstance(last_used, str):  # SQLite gives the extra column as text or a naive UTC datetime
        last_used = datetime.fromisoformat(last_used)
    if last_used is not None and last_used.tzinfo is None:
        last_used = last_used.replace(tzinfo=dt_timezone.utc)
    if not usable(user):  # a guest past its expiry
        return None
    if last_used is None or now - last_used > timedelta(minutes=1):
        ApiToken.objects.filter(pk=user.token_id).update(last_used_at=now)
    return user


@functools.cache
def _token_sql() -> str:
    qn = connection.ops.quote_name
    users, tokens = qn(User._meta.db_table), qn(ApiToken._meta.db_table)
    # The user's columns by name, not u.*: a prepared statement (DB_PREPARE_THRESHOLD) whose result
    # changes shape after a migration adds a column fails in the processes still running.
    columns = ", ".join(f"u.{qn(f.column)}" for f in User._meta.concrete_fields)
    return (f"SELECT {columns}, t.id AS token_id, t.last_used_at AS token_last_used_at FROM {tokens} t "
            f"JOIN {users} u ON u.id = t.user_id WHERE t.token_hash = %s AND t.revoked_at IS NULL "
            f"AND (t.expires_at IS NULL OR t.expires_at > %s) AND u.is_active")


@transaction.atomic
def revoke_api_token(user: User, token_id) -> ApiToken:
    require_user(user)
    token = ApiToken.objects.visible_to(user).select_for_update().filter(pk=token_id).first()
    if token is None:
        raise NotFound("No such token.")
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    events.publish_auth_change(user.pk)
    return token
