"""What a collection's subscribers are told: a document's progress, an access change."""

from backend.core import events

from .models import Document

DOCUMENT = "DOCUMENT"  # a document's status, stage or progress changed
ACCESS_CHANGED = "ACCESS_CHANGED"  # who may read the collection changed: subscribers check again
DELETED = "DELETED"  # a document's status in its last event


def document_event(document: Document, *, deleted: bool = False) -> dict:
    return {"kind": DOCUMENT, "document_id": document.pk, "status": DELETED if deleted else str(document.status),
            "stage": "" if deleted else document.stage, "progress": 100 if deleted else document.progress,
            "error_code": "" if deleted else document.error_code}


def publish_document_event(document: Document, *, deleted: bool = False) -> None:
    events.publish_group(events.collection_group(document.collection_id), document_event(document, deleted=deleted))


def document_as_told(user, event: dict) -> Document | None:
    """The document an event is about, as ``user`` may see it, in the state the event tells (the
    event is newer than the row: a run writes its progress at intervals); None when it is gone or
    out of the user's sight."""
    document = Document.objects.visible_to(user).filter(pk=event["document_id"]).first()
    if document is not None and event["status"] != DELETED:
        document.status, document.stage, document.progress, document.error_code = (
            event["status"], event["stage"], event["progress"], event["error_code"])
    return document
