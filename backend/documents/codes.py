"""Error codes of documents and collections: an upload or edit refused (payloads), and why a
document failed (``Document.errorCode``): the extraction codes, then the ingestion's own."""

from backend.core.codes import domain_codes
from backend.rag.loaders import ExtractionCode

DocumentErrorCode = domain_codes(
    "DocumentErrorCode",
    "DEFAULT_COLLECTION SELF_SHARE NOT_SHARED OTHER_OWNER EMPTY_FILE STILL_PROCESSING NO_SUCH_VERSION CURRENT_VERSION ARCHIVE_INVALID",
    ExtractionCode,
    "FILE_MISSING INTERRUPTED INTERNAL",
)
