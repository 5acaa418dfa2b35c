"""The rules of an account's fields, shared by registration, profile edits, guests and passwords;
and the uid of the emailed links."""

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.encoding import force_bytes, force_str
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode


from .models import User
from backend.users.codes import AccountErrorCode


USERNAME_MAX = 150
DISPLAY_NAME_MAX = 150
BIO_MAX = 2000


def normalize_email(email: str) -> str:
    email = (email or "").strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError({"email": ValidationError("Enter a valid email address.", code=AccountErrorCode.INVALID_EMAIL)})
    return email


def check_username(username: str, exclude_pk=None) -> str:
    username = (username or "").strip()
    if not username:
        raise ValidationError({"username": ValidationError("Choose a username.", code=AccountErrorCode.REQUIRED)})
    if len(username) > USERNAME_MAX:
        raise ValidationError({"username": ValidationError("At most 150 characters.", code=AccountErrorCode.TOO_LONG)})
    try:
        User.username_validator(username)
    except ValidationError:
        raise ValidationError({"username": ValidationError(
            "Use letters, digits and @/./+/-/_ only.", code=AccountErrorCode.INVALID_USERNAME)})
    if User.objects.filter(username__iexact=username).exclude(pk=exclude_pk).exists():
        raise ValidationError({"username": ValidationError("This username is taken.", code=AccountErrorCode.USERNAME_TAKEN)})
    return username


def check_email_free(email: str, exclude_pk=None) -> None:
    if User.objects.filter(email__iexact=email).exclude(pk=exclude_pk).exists():
        raise ValidationError({"email": ValidationError(
            "An account with this email already exists.", code=AccountErrorCode.EMAIL_TAKEN)})


def check_password(password: str, user: User, field: str = "password") -> None:
    try:
        password_validation.validate_password(password, user)
    except ValidationError as exc:
        raise ValidationError({field: [ValidationError(m, code=AccountErrorCode.WEAK_PASSWORD) for m in exc.messages]})


def uid_of(user: User) -> str:
    return urlsafe_base64_encode(force_bytes(user.pk))


def user_from_uid(uid: str) -> User | None:
    try:
        pk = force_str(urlsafe_base64_decode(uid))
        return User.objects.get(pk=pk, is_active=True)
    except (ValueError, TypeError, OverflowError, User.DoesNotExist):
        return None
