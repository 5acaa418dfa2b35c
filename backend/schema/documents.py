"""Documents and collections: types and thin resolvers over the documents app's services."""

import enum
from typing import TYPE_CHECKING, Annotated
from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry
import strawberry_django
from asgiref.sync import sync_to_async
from strawberry import relay
from strawberry.file_uploads import Upload
from strawberry.scalars import JSON

from backend.core import events
from backend.documents import search as document_search
from backend.documents import collections, library
from backend.documents.events import DELETED, DOCUMENT, document_as_told
from backend.documents.models import Chunk, Collection, CollectionShare, Document, Role
from backend.rag import retrieval

from backend.documents.codes import DocumentErrorCode

from .base import Connection, Deleted, ScopedNode, decode_id
from .context import Info
from .payloads import error_types, mutation_of

if TYPE_CHECKING:
    from .document_versions import DocumentVersionType

DocumentErrors = error_types("Document", DocumentErrorCode, "Why a document or collection operation refused its input, or why a document failed.")
mutation = mutation_of(DocumentErrors)


DocumentStatus = strawberry.enum(Document.Status, name="DocumentStatus")
DocumentEventStatus = strawberry.enum(
    enum.Enum("DocumentEventStatus", {**{s.name: s.value for s in Document.Status}, DELETED: DELETED}),
    description="The document's status after the event; DELETED when it is gone.")
FileType = strawberry.enum(enum.Enum("FileType", {t.upper(): t for t in Document.FileType.values}), name="FileType")
CollectionRole = strawberry.enum(Role, name="CollectionRole")


@strawberry.enum
class ShareRole(enum.Enum):
    VIEWER = "VIEWER"
    EDITOR = "EDITOR"


# The strategies of backend.rag.retrieval, as a GraphQL enum (their one definition is there).
RetrievalStrategy = strawberry.enum(
    enum.Enum("RetrievalStrategy", {name.upper(): name for name in retrieval.STRATEGIES}),
    description="DENSE: vectors; BM25: keywords; HYBRID (the default): both, scores fused; MULTI_QUERY: "
                "rephrasings, fused.")


@strawberry.enum
class DocumentOrder(enum.Enum):
    NEWEST = "-created_at"
    OLDEST = "created_at"
    TITLE = "title"
    TITLE_DESC = "-title"
    LARGEST = "-size"


@strawberry.type
class PublicUser:
    """Another user as a collaborator sees them."""

    id: relay.GlobalID = strawberry.field(description="The same global ID as this user's me.id.")
    username: str
    display_name: str


def _public(user) -> PublicUser:
    return PublicUser(id=relay.GlobalID("User", str(user.pk)), username=user.username,
                      display_name=user.display_name)


@strawberry_django.type(CollectionShare, name="CollectionShare",
                        description="A share with an email address; whether an account holds it is not told.")
class CollectionShareType:
    email: str
    role: ShareRole
    created_at: datetime


@strawberry_django.type(Chunk, name="Chunk")
class ChunkType(ScopedNode):
    position: int
    text: str
    page_start: int | None
    page_end: int | None
    char_start: int
    char_end: int
    token_count: int
    section: str
    embedding_model: str
    version: int = strawberry_django.field(description="The document version it was cut from.")
    superseded: bool = strawberry_django.field(
        description="Whether it belongs to an earlier version (kept for the answers that cite it, never searched).")


@strawberry_django.type(Document, name="Document")
class DocumentType(ScopedNode):
    title: str
    original_name: str
    size: int
    sha256: str
    page_count: int | None
    word_count: int | None
    tags: list[str]
    metadata: JSON
    status: DocumentStatus
    stage: str
    progress: int

    @strawberry_django.field(only=["error_code"], description="Why the document FAILED (null otherwise).")
    def error_code(self) -> DocumentErrorCode | None:
        return DocumentErrorCode(self.error_code) if self.error_code else None

    error_message: str | None
    chunk_count: int
    created_at: datetime
    updated_at: datetime
    processed_at: datetime | None
    collection: "CollectionType"
    version: int = strawberry_django.field(description="Its current version's number (see versions).")

    @strawberry_django.connection(Connection[ChunkType], description="Its current version's passages, in order.")
    def chunks(self, root: Document) -> list[ChunkType]:
        return root.chunks.filter(superseded=False).order_by("position")

    @strawberry_django.field(prefetch_related=["versions__uploaded_by"], description="Every version, newest first.")
    def versions(self, root: Document) -> list[Annotated["DocumentVersionType",
                                                        strawberry.lazy("backend.schema.document_versions")]]:
        # Prefetched for a whole list of documents at once (DocumentVersion's ordering: newest first).
        return list(root.versions.all())

    @strawberry_django.field(only=["file_type"])
    def file_type(self, root: Document) -> FileType:
        return FileType(root.file_type)

    @strawberry_django.field(only=["uid"], description="Authenticated download of the original file (an absolute "
                                                        "URL; send the session cookie or the Bearer token).")
    def download_url(self, root: Document, info: Info) -> str:
        return info.context.absolute_url(f"/documents/{root.uid}/download")


@strawberry_django.type(Collection, name="Collection")
class CollectionType(ScopedNode):
    name: str
    description: str
    is_default: bool
    created_at: datetime
    updated_at: datetime
    documents: Connection[DocumentType] = strawberry_django.connection()

    @strawberry_django.field(only=["owner__username", "owner__display_name"], select_related=["owner"])
    def owner(self, root: Collection) -> PublicUser:
        return _public(root.owner)

    @strawberry_django.field(only=["uid"], description="Its knowledge-base archive (files, versions, passages and "
                                                        "vectors; an absolute URL, for the session cookie or the "
                                                        "Bearer token), for importCollection on any instance.")
    def export_url(self, root: Collection, info: Info) -> str:
        return info.context.absolute_url(f"/collections/{root.uid}/export")

    @strawberry_django.field(prefetch_related=["shares"], description="Your role here: OWNER, EDITOR or VIEWER.")
    def my_role(self, root: Collection, info: Info) -> CollectionRole:
        return Role(root.role_of(info.context.get_user()))

    @strawberry_django.field(prefetch_related=["shares"], description="Who it is shared with, oldest first (owner only).")
    def shares(self, root: Collection, info: Info) -> list[CollectionShareType]:
        if root.owner_id != info.context.get_user().pk:
            return []
        return sorted(root.shares.all(), key=lambda share: (share.created_at, share.pk))


@strawberry.type
class UploadedDocument:
    document: DocumentType
    duplicate: bool
    code: DocumentErrorCode | None = strawberry.field(
        description="DUPLICATE when this file was already in the collection.")


@strawberry.type
class UploadFailure:
    file_name: str
    code: DocumentErrorCode
    message: str


@strawberry.type
class UploadBatch:
    uploaded: list[UploadedDocument]
    failed: list[UploadFailure]


@strawberry.type
class SearchHit:
    score: float
    text: str
    page: int | None
    chunk: ChunkType
    document: DocumentType


@strawberry.type
class VectorStoreStats:
    collection: CollectionType
    vectors: int
    dimension: int
    model: str
    bytes_on_disk: int
    built_at: datetime | None
    version: int
    stale: bool


@strawberry.input
class SearchFiltersInput:
    file_types: list[FileType] | None = None
    tags: list[str] | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    document_ids: list[relay.GlobalID] | None = None


@strawberry.type
class DocumentEvent:
    document_id: relay.GlobalID
    status: DocumentEventStatus
    stage: str
    progress: int
    error_code: DocumentErrorCode | None
    document: DocumentType | None


def _stats(s) -> VectorStoreStats:
    return VectorStoreStats(collection=s.collection, vectors=s.vectors, dimension=s.dimension, model=s.model,
                            bytes_on_disk=s.bytes_on_disk, built_at=s.built_at, version=s.version, stale=s.stale)


def _filters(value: SearchFiltersInput | None):
    if value is None:
        return None
    return document_search.SearchFilters(
        file_types=[f.value for f in value.file_types] if value.file_types else None,
        tags=value.tags, created_after=value.created_after, created_before=value.created_before,
        document_ids=[decode_id(d, "Document") for d in value.document_ids] if value.document_ids else None)


def _collection_pk(value):
    return decode_id(value, "Collection") if value is not None else None


def _uploaded(result) -> UploadedDocument:
    return UploadedDocument(document=result.document, duplicate=result.duplicate,
                            code=DocumentErrorCode.DUPLICATE if result.duplicate else None)


@strawberry.type
class Query:
    document: DocumentType | None = strawberry_django.node(description="A document you may read, or null.")
    collection: CollectionType | None = strawberry_django.node(description="A collection you may read, or null.")

    @strawberry_django.connection(Connection[DocumentType], description="Documents you may read.")
    def documents(
        self, info: Info, collection_id: relay.GlobalID | None = None, status: DocumentStatus | None = None,
        file_type: FileType | None = None, tags: list[str] | None = None, created_after: datetime | None = None,
        created_before: datetime | None = None, title_contains: str | None = None,
        order_by: DocumentOrder = DocumentOrder.NEWEST,
    ) -> list[DocumentType]:
        return library.list_documents(
            info.context.get_user(), collection_id=_collection_pk(collection_id), status=status and status.value,
            file_type=file_type and file_type.value, tags=tags, created_after=created_after,
            created_before=created_before, title_contains=title_contains, order_by=order_by.value)

    @strawberry_django.connection(Connection[CollectionType], description="Collections you may read.")
    def collections(self, info: Info) -> list[CollectionType]:
        collections.default_collection(info.context.get_user())
        return Collection.objects.all()

    @strawberry_django.field
    def search_documents(self, info: Info, query: str, collection_ids: list[relay.GlobalID] | None = None,
                         k: int = retrieval.DEFAULTS["k"], threshold: float = retrieval.SEARCH_THRESHOLD, filters: SearchFiltersInput | None = None,
                         strategy: RetrievalStrategy = RetrievalStrategy(retrieval.DEFAULTS["strategy"])
                         ) -> list[SearchHit]:
        hits = document_search.search_documents(info.context.get_user(), query,
                               collection_ids=[_collection_pk(c) for c in collection_ids or []],
                               k=k, threshold=threshold, filters=_filters(filters), strategy=strategy.value)
        return [SearchHit(score=h.score, text=h.chunk.text, page=h.chunk.page_start, chunk=h.chunk,
                          document=h.document) for h in hits]

    @strawberry_django.field(description="Index figures for each collection you may read.")
    def vector_store_stats(self, info: Info) -> list[VectorStoreStats]:
        return [_stats(s) for s in collections.vector_store_stats(info.context.get_user())]


def _still_readable(context, collection_pk) -> bool:
    user = context.get_user(required=False)
    return user is not None and Collection.objects.visible_to(user).filter(pk=collection_pk).exists()


@strawberry.type
class Mutation:
    @mutation(description="Upload a PDF, DOCX, TXT or MD file, or an image (PNG, JPEG, TIFF, WebP: read by OCR); it is processed in the background.")
    def upload_document(self, info: Info, file: Upload, collection_id: relay.GlobalID | None = None,
                        tags: list[str] | None = None, title: str | None = None,
                        version_of: Annotated[relay.GlobalID | None, strawberry.argument(
                            description="Upload it as this document's new version. Without it, a file named as a "
                                        "document of the collection is that document's new version.")] = None,
                        ) -> UploadedDocument:
        return _uploaded(library.upload_document(
            info.context.get_user(), file, collection_id=_collection_pk(collection_id), tags=tags, title=title,
            version_of=decode_id(version_of, "Document") if version_of is not None else None))

    @mutation(description="Several files at once; each succeeds or fails on its own.")
    def upload_documents(self, info: Info, files: list[Upload], collection_id: relay.GlobalID | None = None,
                         tags: list[str] | None = None) -> UploadBatch:
        from django.core.exceptions import ValidationError

        user = info.context.get_user()
        uploaded, failed = [], []
        for upload in files:
            try:
                uploaded.append(_uploaded(library.upload_document(
                    user, upload, collection_id=_collection_pk(collection_id), tags=tags)))
            except ValidationError as exc:
                error = next(iter(exc.error_dict.values()))[0] if hasattr(exc, "error_dict") else exc.error_list[0]
                failed.append(UploadFailure(file_name=library.sanitize_filename(upload.name),
                                            code=DocumentErrorCode(error.code), message=error.messages[0]))
        return UploadBatch(uploaded=uploaded, failed=failed)

    @mutation
    def update_document(self, info: Info, id: relay.GlobalID, title: str | None = None, tags: list[str] | None = None,
                        collection_id: relay.GlobalID | None = None) -> DocumentType:
        return library.update_document(info.context.get_user(), decode_id(id, "Document"), title=title, tags=tags,
                                        collection_id=_collection_pk(collection_id))

    @mutation(description="Delete the document, its file and its vectors.")
    def delete_document(self, info: Info, id: relay.GlobalID) -> Deleted:
        library.delete_document(info.context.get_user(), decode_id(id, "Document"))
        return Deleted(id=id)

    @mutation
    def create_collection(self, info: Info, name: str, description: str = "") -> CollectionType:
        return collections.create_collection(info.context.get_user(), name=name, description=description)

    @mutation
    def update_collection(self, info: Info, id: relay.GlobalID, name: str | None = None,
                          description: str | None = None) -> CollectionType:
        return collections.update_collection(info.context.get_user(), decode_id(id, "Collection"), name=name,
                                          description=description)

    @mutation(description="Delete the collection with its documents, files and vectors.")
    def delete_collection(self, info: Info, id: relay.GlobalID) -> Deleted:
        collections.delete_collection(info.context.get_user(), decode_id(id, "Collection"))
        return Deleted(id=id)

    @mutation
    def share_collection(self, info: Info, id: relay.GlobalID, email: str, role: ShareRole) -> CollectionType:
        share = collections.share_collection(info.context.get_user(), decode_id(id, "Collection"), email=email,
                                          role=role.value)
        return share.collection

    @mutation(description="Owner: remove a share by its email. Member: leave (userId: your me.id).")
    def unshare_collection(self, info: Info, id: relay.GlobalID, email: str | None = None,
                           user_id: relay.GlobalID | None = None) -> CollectionType:
        return collections.unshare_collection(info.context.get_user(), decode_id(id, "Collection"), email=email,
                                           user_id=decode_id(user_id, "User") if user_id is not None else None)

    @mutation
    def rebuild_index(self, info: Info, collection_id: relay.GlobalID) -> VectorStoreStats:
        return _stats(collections.rebuild_index(info.context.get_user(), _collection_pk(collection_id)))


DOCUMENT_KINDS = {DOCUMENT}


@strawberry.type
class Subscription:
    @strawberry.subscription(description="Status and progress of the documents of a collection you may read.")
    async def document_events(self, info: Info, collection_id: relay.GlobalID) -> AsyncGenerator[DocumentEvent, None]:
        user = info.context.get_user()
        collection = await sync_to_async(collections.get_collection)(user, _collection_pk(collection_id))
        group = events.collection_group(collection.pk)
        async with info.context.ws.listen_to_channel("app.event", groups=[group]) as messages:
            async for message in messages:
                # Access is checked again before every event: a member removed from the collection
                # (or a user whose credential was revoked) receives nothing more, and the stream ends.
                if not await sync_to_async(_still_readable)(info.context, collection.pk):
                    return
                if message.get("kind") not in DOCUMENT_KINDS:
                    continue
                document = await sync_to_async(document_as_told)(user, message)
                if document is None and message["status"] != DELETED:
                    continue  # deleted or moved away since: nothing to tell
                yield DocumentEvent(
                    document_id=relay.GlobalID("Document", str(message["document_id"])),
                    status=DocumentEventStatus[message["status"]], stage=message["stage"], progress=message["progress"],
                    error_code=DocumentErrorCode(message["error_code"]) if message["error_code"] else None,
                    document=document)
