"""PDF text: pypdf first; pdfium (pypdfium2) for a file or a page pypdf cannot read; OCR for
pages with no text layer at all. Page numbers are kept for citations whichever reader gave a page.

Measured on the project's corpus (bench/README.md): pypdf and pdfium find the same text on every
readable file; pdfium also opens files whose page tree pypdf refuses (a cyclic /Kids, say), and
renders pages for OCR. pypdf stays first: its text keeps the reading order of multi-column pages
the existing chunks were made from.
"""

import io
import zipfile
from datetime import datetime

from . import ocr as ocr_engine
from .loaders import PDF, ExtractionCode, ExtractionError, Extracted, clean

PYPDF_ERRORS = (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError, AssertionError, OSError,
                zipfile.BadZipFile)


class _Unreadable(Exception):
    """pypdf could not read the file as a whole (pdfium tries next)."""


def _date(value) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def _pypdf(data: bytes, max_pages: int) -> tuple[list[tuple[int, str]], dict]:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError, PdfStreamError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                if not reader.decrypt(""):
                    raise FileNotDecryptedError
            except Exception:
                raise ExtractionError(ExtractionCode.ENCRYPTED, "This PDF is protected by a password. Remove the "
                                      "password (print or export it to a new PDF) and upload it again.")
        count = len(reader.pages)
        _check_count(count, max_pages)
        pages = []
        for number, page in enumerate(reader.pages, start=1):
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
            if created := _date(getattr(info, "creation_date", None)):
                metadata["created"] = created
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


def _open_pdfium(data: bytes, why: str):
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise ExtractionError(ExtractionCode.ENCRYPTED, "This PDF is protected by a password. Remove the password "
                                  "(print or export it to a new PDF) and upload it again.")
        raise ExtractionError(ExtractionCode.CORRUPT, "This PDF is damaged and cannot be read. Try saving it again "
                              f"from the program that made it. ({why})")


def _pdfium_text(document, index: int) -> str | None:
    """The text layer of one page, or None when pdfium cannot load the page."""
    try:
        page = document[index]
        return clean(page.get_textpage().get_text_range())
    except Exception:  # noqa: BLE001 - a broken page of an otherwise readable file
        return None


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


def text_layer(data: bytes, max_pages: int) -> Extracted:
    """Every page's text layer: pypdf's, else pdfium's. Pages left without text are listed in
    ``metadata["needs_ocr"]`` (page numbers) for ``read_by_ocr``."""
    metadata: dict = {}
    try:
        pages, metadata = _pypdf(data, max_pages)
        document = None
    except _Unreadable as exc:  # pdfium reads what it can; a page it cannot load stays empty
        document = _open_pdfium(data, str(exc))
        _check_count(len(document), max_pages)
        pages = [(i + 1, _pdfium_text(document, i) or "") for i in range(len(document))]
        metadata["reader"] = "pdfium"
    empty = [i for i, (_, text) in enumerate(pages) if not text.strip()]
    if empty and document is None:
        document = _open_pdfium(data, "pdfium")
        for i in empty:
            pages[i] = (pages[i][0], _pdfium_text(document, i) or "")
    needs = [number for number, text in pages if not text.strip()]
    if needs:
        metadata["needs_ocr"] = needs
    return Extracted(PDF, pages, metadata)


def read_by_ocr(data: bytes, numbers: list[int], options: ocr_engine.OcrOptions) -> tuple[dict[int, str], int]:
    """The text OCR reads on these pages (numbers from 1), and how many it had to skip (past the
    page limit or the time budget)."""
    document = _open_pdfium(data, "pdfium")
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
