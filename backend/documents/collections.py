"""Collections: the default one, create, rename, delete, share with an address, leave; index
figures and rebuilds.

Visibility comes from ``visible_to`` / ``editable_by`` on the querysets, the same methods the
GraphQL types use.
"""

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from backend.core import events
from backend.core.errors import Forbidden, NotFound
from backend.core.scoping import require_user as _require

from . import engines, vectors
from .models import Collection, CollectionShare, Role
from .codes import DocumentErrorCode
from .events import ACCESS_CHANGED
from .files import remove_files
from .versions import storage_keys


# --- collections ----------------------------------------------------------------------------

def default_collection(user) -> Collection:
    _require(user)
    collection = Collection.objects.filter(owner=user, is_default=True).first()
    if collection is None:
        try:
            with transaction.atomic():
                collection = Collection.objects.create(owner=user, name="My documents", is_default=True)
        except IntegrityError:
            collection = Collection.objects.get(owner=user, is_default=True)
    return collection


def get_collection(user, pk, *, need: str = Role.VIEWER) -> Collection:
    """The collection if ``user`` may see it, checked for the role ``need``.

    A collection the user cannot see is NOT_FOUND (its existence is not revealed); one they can
    see but not change is FORBIDDEN.
    """
    _require(user)
    collection = Collection.objects.visible_to(user).filter(pk=pk).first()
    if collection is None:
        raise NotFound("No such collection.")
    role = collection.role_of(user)
    allowed = {Role.VIEWER: {Role.VIEWER, Role.EDITOR, Role.OWNER}, Role.EDITOR: {Role.EDITOR, Role.OWNER},
               Role.OWNER: {Role.OWNER}}[need]
    if role not in allowed:
        raise Forbidden("Your role in this collection does not allow this." if need != Role.OWNER
                        else "Only the collection's owner can do this.")
    return collection


def clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": ValidationError("Give the collection a name.", code=DocumentErrorCode.REQUIRED)})
    if len(name) > 200:
        raise ValidationError({"name": ValidationError("At most 200 characters.", code=DocumentErrorCode.TOO_LONG)})
    return name


def create_collection(user, *, name: str, description: str = "") -> Collection:
    _require(user)
    if len(description or "") > 5000:
        raise ValidationError({"description": ValidationError("At most 5000 characters.", code=DocumentErrorCode.TOO_LONG)})
    return Collection.objects.create(owner=user, name=clean_name(name), description=description or "")


def update_collection(user, pk, *, name=None, description=None) -> Collection:
    collection = get_collection(user, pk, need=Role.OWNER)
    if name is not None:
        collection.name = clean_name(name)
    if description is not None:
        if len(description) > 5000:
            raise ValidationError({"description": ValidationError("At most 5000 characters.", code=DocumentErrorCode.TOO_LONG)})
        collection.description = description
    collection.save()
    return collection


def delete_collection(user, pk) -> None:
    collection = get_collection(user, pk, need=Role.OWNER)
    if collection.is_default:
        raise ValidationError(ValidationError("Your default collection cannot be deleted.", code=DocumentErrorCode.DEFAULT_COLLECTION))
    purge(collection, storage_keys(collection.documents.all()))  # every version's file
    events.publish_group(events.collection_group(collection.pk), {"kind": ACCESS_CHANGED})  # (after commit)


def purge(collection: Collection, files) -> None:
    """Remove a collection's rows (documents, versions, chunks, shares), then, once that commits,
    its index file and the stored ``files``."""
    index_key = vectors.key_for(collection)
    with transaction.atomic():
        Collection.objects.filter(pk=collection.pk).delete()
        transaction.on_commit(lambda: remove_files(files))
        transaction.on_commit(lambda: vectors.drop(index_key))


def share_collection(user, pk, *, email: str, role: str) -> CollectionShare:
    """Share with an email address. The answer is the same whether or not an account has it: the
    share reaches the account whose verified address it is, now or when one verifies it."""
    from django.core.validators import validate_email

    from backend.users.models import User

    collection = get_collection(user, pk, need=Role.OWNER)
    if role not in (Role.VIEWER, Role.EDITOR):
        raise ValidationError({"role": ValidationError("Share as VIEWER or EDITOR.", code=DocumentErrorCode.INVALID_CHOICE)})
    email = (email or "").strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError({"email": ValidationError("Enter a valid email address.", code=DocumentErrorCode.INVALID_EMAIL)})
    if email == collection.owner.email.lower():
        raise ValidationError({"email": ValidationError("You own this collection already.", code=DocumentErrorCode.SELF_SHARE)})
    target = User.objects.filter(email__iexact=email, is_active=True, is_guest=False,
                                 email_verified_at__isnull=False).first()
    share, _ = CollectionShare.objects.update_or_create(collection=collection, email=email,
                                                        defaults={"role": role, "user": target})
    return share


def link_shares(user) -> None:
    """Shares waiting for ``user``'s address reach the account (its address was just verified)."""
    CollectionShare.objects.filter(email__iexact=user.email, user__isnull=True).update(user=user)


def unshare_collection(user, pk, *, email: str | None = None, user_id=None) -> Collection:
    """The owner removes a share (by its address); a member may leave (``user_id`` their own)."""
    _require(user)
    collection = Collection.objects.visible_to(user).filter(pk=pk).first()
    if collection is None:
        raise NotFound("No such collection.")
    shares = CollectionShare.objects.filter(collection=collection)
    if email is not None:
        shares = shares.filter(email__iexact=(email or "").strip())
    elif user_id is not None:
        shares = shares.filter(user_id=user_id)
    else:
        raise ValidationError({"email": ValidationError("Say whose access to remove.", code=DocumentErrorCode.REQUIRED)})
    if collection.owner_id != user.pk and not (shares.exists() and all(s.user_id == user.pk for s in shares)):
        raise Forbidden("Only the collection's owner can do this.")
    with transaction.atomic():
        deleted, _ = shares.delete()
        if not deleted:
            raise ValidationError({"email": ValidationError("This collection is not shared so.", code=DocumentErrorCode.NOT_SHARED)})
        # Subscribers of the collection's events check their access again: the removed member's end.
        events.publish_group(events.collection_group(collection.pk), {"kind": ACCESS_CHANGED})
    return collection


def rebuild_index(user, collection_id) -> vectors.Stats:
    collection = get_collection(user, collection_id, need=Role.EDITOR)
    engines.engine().vectors.rebuild(collection.pk)
    return engines.engine().stats(collection)


def vector_store_stats(user) -> list[vectors.Stats]:
    _require(user)
    return [engines.engine().stats(c) for c in Collection.objects.visible_to(user).order_by("pk")]
