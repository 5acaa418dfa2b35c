import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from backend.core.scoping import ScopedQuerySet


class Role(models.TextChoices):
    OWNER = "OWNER"
    EDITOR = "EDITOR"
    VIEWER = "VIEWER"


def _shared_with(user, roles=(Role.VIEWER, Role.EDITOR)):
    return CollectionShare.objects.filter(user=user, role__in=roles).values("collection_id")


class Collection(models.Model):
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="collections")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, max_length=5000)
    is_default = models.BooleanField(default=False)
    # Bumped in the same transaction as every change to the collection's vectors; the FAISS file
    # carries the version it was built at, so a file at another version is stale.
    index_version = models.PositiveIntegerField(default=0)
    # Being imported from an archive (transfer.py): written in short transactions, seen by no one
    # until the last one. One whose import stopped midway is removed by the ingestion sweep.
    importing = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-is_default", "name", "id"]
        # The sweep for imports that stopped midway: the few hidden collections, not the table.
        indexes = [models.Index(fields=["updated_at"], condition=Q(importing=True), name="collection_importing")]
        constraints = [
            models.UniqueConstraint(fields=["owner"], condition=Q(is_default=True), name="one_default_collection"),
        ]

    def __str__(self):
        return self.name

    @classmethod
    def visible_q(cls, user, prefix=""):
        """Collections a user owns or that were shared with them (and not still being imported)."""
        return (Q(**{f"{prefix}owner": user}) | Q(**{f"{prefix}pk__in": _shared_with(user)})) & Q(
            **{f"{prefix}importing": False})

    def role_of(self, user) -> str | None:
        """The one rule of what a user may do here (VIEWER reads, EDITOR changes documents, OWNER
        changes the collection): ``collections.get_collection(need=...)`` applies it everywhere."""
        if user is None or not user.is_authenticated:
            return None
        if self.owner_id == user.pk:
            return Role.OWNER
        share = next((s for s in self.shares.all() if s.user_id == user.pk), None)
        return share.role if share else None


class CollectionShare(models.Model):
    """A collection shared with an email address. It gives access once an account whose address
    is verified holds it (``user``); until then it waits, and nothing tells the owner which."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="shares")
    email = models.EmailField()
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="collection_shares",
                             null=True, blank=True)
    role = models.CharField(max_length=10, choices=[(Role.EDITOR, "Editor"), (Role.VIEWER, "Viewer")])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["collection", "email"], name="one_share_per_email")]


class Document(models.Model):
    class Status(models.TextChoices):
        PENDING = "PENDING"
        PROCESSING = "PROCESSING"
        READY = "READY"
        FAILED = "FAILED"

    class FileType(models.TextChoices):
        PDF = "pdf"
        DOCX = "docx"
        TXT = "txt"
        MD = "md"
        IMAGE = "image"  # PNG, JPEG, TIFF or WebP, read by OCR

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="documents")
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True,
                                    related_name="uploaded_documents")
    title = models.CharField(max_length=300)
    original_name = models.CharField(max_length=255)
    file_type = models.CharField(max_length=8, choices=FileType.choices)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    storage_key = models.CharField(max_length=255)
    page_count = models.PositiveIntegerField(null=True, blank=True)
    word_count = models.PositiveIntegerField(null=True, blank=True)
    tags = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    stage = models.CharField(max_length=20, blank=True)
    progress = models.PositiveSmallIntegerField(default=0)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    chunk_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    # Ingestion's lease: the task that claimed the document touches this while it works. A
    # PROCESSING document whose heartbeat is older than INGEST_STALE_AFTER has lost its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # The current version (DocumentVersion.number): its file is the one above, its chunks are searched.
    version = models.PositiveIntegerField(default=1)

    objects = ScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        # (collection, original_name): an upload looks for the document it is a new version of by
        # name; without it that lookup read every document of the collection (~10 ms at 20k).
        indexes = [models.Index(fields=["collection", "status"]), models.Index(fields=["collection", "sha256"]),
                   models.Index(fields=["collection", "original_name"]),
                   # The sweep for documents whose worker is gone (recovery.py), across collections.
                   models.Index(fields=["status"], name="document_status")]
        constraints = [models.UniqueConstraint(fields=["collection", "sha256"], name="one_copy_per_collection")]

    def __str__(self):
        return self.title

    @classmethod
    def visible_q(cls, user):
        return Collection.visible_q(user, prefix="collection__")


class DocumentVersion(models.Model):
    """One uploaded file of a document. The document holds its current version's file; earlier
    versions keep theirs (and their chunks, superseded) so that old citations still resolve."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    original_name = models.CharField(max_length=255)
    file_type = models.CharField(max_length=8, choices=Document.FileType.choices)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    storage_key = models.CharField(max_length=255)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True,
                                    related_name="uploaded_versions")
    restored_from = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Filled in by ingestion: its chunks, and how many vectors were embedded or reused from earlier text.
    chunk_count = models.PositiveIntegerField(null=True, blank=True)
    vectors_embedded = models.PositiveIntegerField(null=True, blank=True)
    vectors_reused = models.PositiveIntegerField(null=True, blank=True)

    objects = ScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-number"]
        constraints = [models.UniqueConstraint(fields=["document", "number"], name="one_version_number")]

    @classmethod
    def visible_q(cls, user):
        return Collection.visible_q(user, prefix="document__collection__")


class Chunk(models.Model):
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="chunks")
    position = models.PositiveIntegerField()
    text = models.TextField()
    text_hash = models.CharField(max_length=64, db_index=True)
    page_start = models.PositiveIntegerField(null=True)
    page_end = models.PositiveIntegerField(null=True)
    char_start = models.PositiveIntegerField()
    char_end = models.PositiveIntegerField()
    token_count = models.PositiveIntegerField()
    section = models.CharField(max_length=500, blank=True)
    vector = models.BinaryField()
    embedding_model = models.CharField(max_length=100)
    version = models.PositiveIntegerField(default=1)  # the document version it was cut from
    # A chunk of an earlier version: never searched, kept so that the answers citing it resolve.
    superseded = models.BooleanField(default=False)

    objects = ScopedQuerySet.as_manager()

    class Meta:
        ordering = ["document_id", "position"]
        constraints = [models.UniqueConstraint(fields=["document", "version", "position"],
                                               name="one_chunk_per_version_position")]

    @classmethod
    def visible_q(cls, user):
        return Collection.visible_q(user, prefix="collection__")
