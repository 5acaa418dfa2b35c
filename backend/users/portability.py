"""A user's data export and import, walking every app's registered part."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from backend.core import jsonstream, userdata
from backend.core.scoping import require_user

from . import preferences as prefs
from .models import User
from backend.users.codes import AccountErrorCode
from .rules import BIO_MAX, DISPLAY_NAME_MAX


EXPORT_FORMAT = "chat-backend.user-export"
EXPORT_VERSION = 1


def _export_profile(user: User) -> dict:
    return {
        "email": user.email,
        "username": user.username,
        "display_name": user.display_name,
        "bio": user.bio,
        "preferences": prefs.effective(user.preferences),
        "date_joined": user.date_joined.isoformat(),
    }


def _import_profile(user: User, data) -> dict:
    if not isinstance(data, dict):
        raise ValidationError({"data.profile": ValidationError("Must be an object.", code=AccountErrorCode.WRONG_TYPE)})
    fields = {k: data[k] for k in ("display_name", "bio") if isinstance(data.get(k), str)}
    patch = data.get("preferences")
    if patch is not None:
        clean = prefs.validate_patch(patch)
        user.preferences = prefs.merge(prefs.effective(user.preferences), clean)
    for key, value in fields.items():
        setattr(user, key, value[: BIO_MAX if key == "bio" else DISPLAY_NAME_MAX])
    user.save()
    return {"updated": 1}


userdata.register(userdata.UserDataPart(name="profile", export=_export_profile, import_=_import_profile))


def _document(user: User) -> dict:
    """The export, its long lists (a user's chats) as generators (``core/jsonstream.py``)."""
    require_user(user)
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": timezone.now().isoformat(),
        **{part.name: part.export(user) for part in userdata.parts()},
    }


def export_data(user: User) -> dict:
    """Everything this service holds about the user, as one value (``exportMyData``)."""
    return jsonstream.materialize(_document(user))


def write_export(user: User, out) -> None:
    """The same export as JSON text through ``out(str)``, a chat at a time (the download)."""
    jsonstream.write(_document(user), out)


def import_data(user: User, data) -> dict:
    """Apply an export. Every part upserts by stable keys, so importing twice adds nothing. Every
    part's data is checked before anything is written; the small parts are written in one
    transaction, then the large ones (a part with ``check``: chats) in short transactions of their
    own, so an import of many messages never holds the database's write lock for long."""
    require_user(user)
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise ValidationError({"data": ValidationError("This is not a data export of this service.", code=AccountErrorCode.INVALID_FORMAT)})
    if data.get("version") != EXPORT_VERSION:
        raise ValidationError({"data": ValidationError("Unsupported export version.", code=AccountErrorCode.UNSUPPORTED_VERSION)})
    present = [part for part in userdata.parts() if part.name in data]
    for part in present:
        if part.check is not None:
            part.check(data[part.name])
    summary = {}
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        for part in present:
            if part.check is None:
                summary[part.name] = part.import_(user, data[part.name])
    for part in present:
        if part.check is not None:
            summary[part.name] = part.import_(user, data[part.name])
    return summary
