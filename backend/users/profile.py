"""The profile a user edits: names, bio, email address, preferences and avatar."""

import io
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from backend.core import events
from backend.core.scoping import require_user

from . import preferences as prefs
from .models import User
from backend.users.codes import AccountErrorCode
from .rules import BIO_MAX, DISPLAY_NAME_MAX, check_email_free, check_username, normalize_email
from .verification import send_email_change


# --- profile and preferences ----------------------------------------------------------------

@transaction.atomic
def update_profile(user: User, *, username=None, display_name=None, bio=None, email=None,
                   current_password=None) -> User:
    """An email change needs the current password, and takes effect when the new address opens
    the verification link sent to it (the old address is told); until then ``pending_email``."""
    require_user(user)
    user = User.objects.select_for_update().get(pk=user.pk)
    if username is not None:
        user.username = check_username(username, exclude_pk=user.pk)
    if display_name is not None:
        if len(display_name) > DISPLAY_NAME_MAX:
            raise ValidationError({"displayName": ValidationError("At most 150 characters.", code=AccountErrorCode.TOO_LONG)})
        user.display_name = display_name.strip()
    if bio is not None:
        if len(bio) > BIO_MAX:
            raise ValidationError({"bio": ValidationError("At most 2000 characters.", code=AccountErrorCode.TOO_LONG)})
        user.bio = bio
    if email is not None:
        new_email = normalize_email(email)
        if new_email != user.email:
            if user.is_guest:
                raise ValidationError({"email": ValidationError("Claim your guest account first.",
                                                                code=AccountErrorCode.GUEST_ACCOUNT)})
            if not current_password or not user.check_password(current_password):
                raise ValidationError({"currentPassword": ValidationError(
                    "Your current password is needed to change your email address.", code=AccountErrorCode.WRONG_PASSWORD)})
            check_email_free(new_email, exclude_pk=user.pk)
            user.pending_email = new_email
            transaction.on_commit(lambda: send_email_change(user))
        elif user.pending_email:
            user.pending_email = ""  # asking for the current address again cancels a pending change
    user.save()
    events.publish(user.pk, {"kind": "PROFILE_UPDATED"})
    return user


@transaction.atomic
def update_preferences(user: User, patch: dict) -> User:
    require_user(user)
    clean = prefs.validate_patch(patch)
    user = User.objects.select_for_update().get(pk=user.pk)
    user.preferences = prefs.merge(prefs.effective(user.preferences), clean)
    user.save(update_fields=["preferences"])
    events.publish(user.pk, {"kind": "PREFERENCES_UPDATED"})
    return user


def _read_image(data: bytes):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as probe:  # reads the header only
            width, height = probe.size
            if width * height > settings.AVATAR_MAX_PIXELS:
                raise ValidationError({"file": ValidationError(
                    f"The image is {width}×{height} pixels; at most {settings.AVATAR_MAX_PIXELS // 1_000_000} "
                    "megapixels.", code=AccountErrorCode.IMAGE_TOO_LARGE)})
            probe.verify()
        image = Image.open(io.BytesIO(data))
        if image.format not in {"PNG", "JPEG", "GIF", "WEBP"}:
            raise ValidationError({"file": ValidationError(
                "Use a PNG, JPEG, GIF or WebP image.", code=AccountErrorCode.UNSUPPORTED_IMAGE)})
        image.load()
        return image
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise ValidationError({"file": ValidationError("This file is not an image we can read.", code=AccountErrorCode.NOT_AN_IMAGE)})


@transaction.atomic
def upload_avatar(user: User, upload) -> User:
    """Store a resized PNG re-encoded from the upload (which strips metadata and payloads)."""
    from PIL import ImageOps

    require_user(user)
    if upload.size > settings.AVATAR_MAX_BYTES:
        raise ValidationError({"file": ValidationError(
            f"The image is larger than {settings.AVATAR_MAX_BYTES // 1024} KB.", code=AccountErrorCode.FILE_TOO_LARGE)})
    image = _read_image(upload.read(settings.AVATAR_MAX_BYTES + 1))
    image = ImageOps.exif_transpose(image).convert("RGBA")
    image = ImageOps.fit(image, (settings.AVATAR_SIZE, settings.AVATAR_SIZE))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)

    user = User.objects.select_for_update().get(pk=user.pk)
    old_name = user.avatar.name if user.avatar else None
    user.avatar.save(f"{uuid.uuid4().hex}.png", ContentFile(out.getvalue()), save=False)
    try:
        user.save(update_fields=["avatar"])
    except Exception:
        default_storage.delete(user.avatar.name)
        raise
    # Keep exactly one file: the old one goes once the new one is committed.
    if old_name:
        transaction.on_commit(lambda: default_storage.delete(old_name))
    events.publish(user.pk, {"kind": "PROFILE_UPDATED"})
    return user


@transaction.atomic
def remove_avatar(user: User) -> User:
    require_user(user)
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.avatar:
        name = user.avatar.name
        user.avatar = ""
        user.save(update_fields=["avatar"])
        transaction.on_commit(lambda: default_storage.delete(name))
    return user
