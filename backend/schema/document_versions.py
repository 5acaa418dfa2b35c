"""A document's versions (the history, restoring one), and knowledge bases moved between instances."""

from datetime import datetime

import strawberry
import strawberry_django
from strawberry import relay
from strawberry.file_uploads import Upload

from backend.documents import transfer, versions
from backend.documents.models import DocumentVersion

from .base import decode_id
from .context import Info
from .documents import CollectionType, DocumentType, FileType, PublicUser, _public, mutation


@strawberry_django.type(DocumentVersion, name="DocumentVersion",
                        description="One uploaded file of a document; the document shows its current version.")
class DocumentVersionType:
    number: int = strawberry_django.field(description="1 for the first upload, then one more for each.")
    original_name: str = strawberry_django.field(description="The file's name.")
    size: int = strawberry_django.field(description="The file's size in bytes.")
    created_at: datetime = strawberry_django.field(description="When it was uploaded (or restored).")
    restored_from: int | None = strawberry_django.field(description="The version it restores (null otherwise).")
    chunk_count: int | None = strawberry_django.field(description="Its passages (null until ingested).")
    vectors_embedded: int | None = strawberry_django.field(
        description="Passages whose text was new, embedded for this version (null until ingested).")
    vectors_reused: int | None = strawberry_django.field(
        description="Passages whose text an earlier version had: their vectors were reused, not embedded again.")

    @strawberry_django.field(only=["file_type"], description="Its kind of file.")
    def file_type(self, root: DocumentVersion) -> FileType:
        return FileType(root.file_type)

    @strawberry_django.field(select_related=["uploaded_by"], description="Who uploaded it (null once their account "
                                                                          "is gone).")
    def uploaded_by(self, root: DocumentVersion) -> PublicUser | None:
        return _public(root.uploaded_by) if root.uploaded_by is not None else None

    @strawberry_django.field(description="Whether it is the document's current version.")
    def current(self, root: DocumentVersion) -> bool:
        return root.number == root.document.version


@strawberry.type
class Mutation:
    @mutation(description="A new collection from a knowledge-base archive (Collection.exportUrl): READY at once "
                          "with the same embedding model, re-embedded in the background with another. A damaged or "
                          "foreign archive is refused whole.")
    def import_collection(self, info: Info, file: Upload, name: str | None = None) -> CollectionType:
        return transfer.import_collection(info.context.get_user(), file, name=name)

    @mutation(description="Make an earlier version current again (as a new version with its file; its passages "
                          "reuse their vectors).")
    def restore_document_version(self, info: Info, id: relay.GlobalID, version: int) -> DocumentType:
        return versions.restore_version(info.context.get_user(), decode_id(id, "Document"), version)
