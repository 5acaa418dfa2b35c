"""PDF text: pdfium (pypdfium2) first; pypdf for a file or a page pdfium cannot read; OCR for
pages with no text layer at all. Page numbers are kept for citations whichever reader gave a page.
Pages that draw ruled tables get them as Markdown rows (``pdf_tables``).

Measured (bench/README.md): on a 117-page text PDF pdfium reads the text in 0.26 s where pypdf
takes 3.3 s, in the same reading order (the corpus's two-column file included), with ligatures
expanded ("filled", not "ﬁlled") and line-end hyphenation marked, so words cut at a line end are
joined again. pypdf reads some files pdfium refuses, and the reverse (a page tree listing itself:
pypdf fails, pdfium reads its page).
"""

import io
import time
import zipfile
from datetime import datetime

from . import ocr as ocr_engine
from . import pdf_tables
from .loaders import PDF, ExtractionCode, ExtractionError, Extracted, clean

PYPDF_ERRORS = (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError, AssertionError, OSError,
                zipfile.BadZipFile)


class _Unreadable(Exception):
    """A reader could not open the file as a whole (the other one tries)."""


def _pypdf(data: bytes, max_pages: int, wanted: set[int] | None = None) -> tuple[list[tuple[int, str]], dict]:
    """Every page's text (or the ``wanted`` page numbers' only) and the file's metadata."""
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError, PdfStreamError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                if not reader.decrypt(""):
                    raise FileNotDecryptedError
            except Exception:
                raise ExtractionError(ExtractionCode.ENCRYPTED, ENCRYPTED_MESSAGE)
        count = len(reader.pages)
        _check_count(count, max_pages)
        pages = []
        for number, page in enumerate(reader.pages, start=1):
            if wanted is not None and number not in wanted:
                continue
            try:
                text = page.extract_text() or ""
            except (PdfReadError, PdfStreamError, *PYPDF_ERRORS):
                text = ""  # this page is read by pdfium (or OCR) below
            pages.append((number, clean(text)))
        metadata = {}
        try:
            info = reader.metadata
        except Exception:  # noqa: BLE001 - metadata is optional
            info = None
        if info:
            if info.author:
                metadata["author"] = str(info.author)
            if info.title:
                metadata["title"] = str(info.title)
            created = getattr(info, "creation_date", None)
            if isinstance(created, datetime):
                metadata["created"] = created.isoformat()
        return pages, metadata
    except ExtractionError:
        raise
    except (PdfReadError, PdfStreamError, *PYPDF_ERRORS) as exc:
        raise _Unreadable(type(exc).__name__) from exc


def _check_count(count: int, max_pages: int) -> None:
    if count > max_pages:
        raise ExtractionError(ExtractionCode.TOO_LARGE, f"This PDF has {count} pages; the limit is {max_pages}. "
                              "Split it into smaller files.")
    if count == 0:
        raise ExtractionError(ExtractionCode.CORRUPT, "This PDF has no pages.")


ENCRYPTED_MESSAGE = ("This PDF is protected by a password. Remove the password (print or export it to a new PDF) "
                     "and upload it again.")


def _open_pdfium(data: bytes):
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise ExtractionError(ExtractionCode.ENCRYPTED, ENCRYPTED_MESSAGE)
        raise _Unreadable(str(exc)) from exc


def _pdfium_text(document, index: int) -> str | None:
    """The text layer of one page, or None when pdfium cannot load the page."""
    try:
        text = document[index].get_textpage().get_text_range()
    except Exception:  # noqa: BLE001 - a broken page of an otherwise readable file
        return None
    # pdfium marks a word cut at a line end with U+FFFE (or a soft hyphen): the word is joined again.
    text = text.replace("\ufffe\r\n", "").replace("\ufffe", "").replace("\u00ad\r\n", "").replace("\u00ad", "")
    return clean(text)


def _pdf_date(value: str) -> str | None:
    """A PDF date (D:YYYYMMDDHHmmSS...) as ISO 8601, or None."""
    digits = "".join(ch for ch in (value or "")[:16] if ch.isdigit())
    if len(digits) < 8:
        return None
    try:
        return datetime.strptime(digits[:14].ljust(14, "0"), "%Y%m%d%H%M%S").isoformat()
    except ValueError:
        return None


def _pdfium_metadata(document) -> dict:
    try:
        info = document.get_metadata_dict(skip_empty=True)
    except Exception:  # noqa: BLE001 - metadata is optional
        return {}
    metadata = {key: info[name] for key, name in (("author", "Author"), ("title", "Title")) if info.get(name)}
    if created := _pdf_date(info.get("CreationDate", "")):
        metadata["created"] = created
    return metadata


def _ocr_page(document, index: int, options: ocr_engine.OcrOptions) -> str:
    page = document[index]
    width, height = page.get_size()
    scale = options.dpi / 72
    if width * height * scale * scale > options.max_pixels:
        scale = (options.max_pixels / (width * height)) ** 0.5
    try:
        return clean(ocr_engine.read(page.render(scale=scale).to_pil(), options))
    except ocr_engine.PageTimeout:
        return ""


def text_layer(data: bytes, max_pages: int, first: int = 1, last: int | None = None,
               table_seconds: float | None = None) -> Extracted:
    """The text layer of pages ``first`` to ``last`` (all by default): pdfium's, else pypdf's
    (pypdf reads the whole file at once: then every page is returned). Pages left without text
    are listed in ``metadata["needs_ocr"]`` (page numbers) for ``read_by_ocr``. ``page_total`` and
    ``table_seconds`` (spent finding tables, of ``table_seconds`` allowed: the file's whole budget
    by default) tell a caller that reads a long file in runs where it stands."""
    try:
        document = _open_pdfium(data)
    except _Unreadable as why:  # pypdf reads what it can
        try:
            pages, metadata = _pypdf(data, max_pages)
        except _Unreadable as exc:
            raise ExtractionError(ExtractionCode.CORRUPT, "This PDF is damaged and cannot be read. Try saving it "
                                  f"again from the program that made it. ({exc}; {why})")
        metadata["reader"] = "pypdf"
        metadata["page_total"] = len(pages)
    else:
        _check_count(len(document), max_pages)
        indexes = range(max(0, first - 1), min(len(document), last or len(document)))
        texts = {i: _pdfium_text(document, i) for i in indexes}
        metadata = _pdfium_metadata(document)
        metadata["page_total"] = len(document)
        missing = {i + 1 for i, text in texts.items() if text is None}
        if missing:  # pages pdfium cannot load: pypdf's text of those pages, when it has some
            try:
                fallback = dict(_pypdf(data, max_pages, missing)[0])
                metadata["reader"] = "pdfium+pypdf"
            except (_Unreadable, ExtractionError):
                fallback = {}
            texts = {i: text if text is not None else fallback.get(i + 1, "") for i, text in texts.items()}
        started = time.monotonic()
        tabled = pdf_tables.pages_with_tables(data, pdf_tables.candidate_pages(document, indexes), table_seconds)
        metadata["table_seconds"] = time.monotonic() - started
        for index, text in tabled.items():
            texts[index] = clean(text)
        if tabled:
            metadata["table_pages"] = sorted(index + 1 for index in tabled)
        pages = [(i + 1, text) for i, text in texts.items()]
    needs = [number for number, text in pages if not text.strip()]
    if needs:
        metadata["needs_ocr"] = needs
    return Extracted(PDF, pages, metadata)


def read_by_ocr(data: bytes, numbers: list[int], options: ocr_engine.OcrOptions) -> tuple[dict[int, str], int]:
    """The text OCR reads on these pages (numbers from 1), and how many it had to skip (past the
    page limit or the time budget)."""
    try:
        document = _open_pdfium(data)
    except _Unreadable:
        return {}, 0  # no reader renders it: its pages stay without text
    texts, skipped = {}, 0
    for number in numbers:
        if not options.may_read():
            skipped += 1
            continue
        try:
            texts[number] = _ocr_page(document, number - 1, options)
        except ocr_engine.PageTimeout:
            texts[number] = ""
        except Exception:  # noqa: BLE001 - a page pdfium cannot render stays empty
            texts[number] = ""
    return texts, skipped
