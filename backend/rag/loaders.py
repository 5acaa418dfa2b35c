"""Detect a file's type from its content and extract its text with page numbers.

Plain Python: pypdf for PDF, python-docx for DOCX (body, tables, headers and footers in reading
order), charset detection for TXT and MD. Every failure is an ``ExtractionError`` with a stable
code and a message that says what the user can do.
"""

import io
import re
import unicodedata
import zipfile
from dataclasses import dataclass, field
from enum import StrEnum

PDF, DOCX, TXT, MD, IMAGE = "pdf", "docx", "txt", "md", "image"
EXTENSIONS = {PDF: {".pdf"}, DOCX: {".docx"}, TXT: {".txt", ".text"}, MD: {".md", ".markdown"},
              IMAGE: {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"}}
CONTENT_TYPES = {
    PDF: "application/pdf",
    DOCX: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    TXT: "text/plain; charset=utf-8",
    MD: "text/markdown; charset=utf-8",
    IMAGE: "application/octet-stream",  # PNG, JPEG, TIFF or WebP: downloaded as the file it is
}
IMAGES_NEED_OCR = ("Images are read by OCR, which this server does not have. Upload the text as a PDF, DOCX, text or "
                   "Markdown file instead.")
IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*")


class ExtractionCode(StrEnum):
    """Why a file's text could not be read."""

    UNSUPPORTED_TYPE = "UNSUPPORTED_TYPE"  # not a PDF, DOCX, text or Markdown file
    EXTENSION_MISMATCH = "EXTENSION_MISMATCH"  # the content is one type, the name says another
    ENCRYPTED = "ENCRYPTED"  # a PDF protected by a password
    CORRUPT = "CORRUPT"  # damaged, or crashed the reader
    TOO_LARGE = "TOO_LARGE"  # more pages, text or memory than the limits allow
    ARCHIVE_TOO_LARGE = "ARCHIVE_TOO_LARGE"  # a DOCX that would inflate beyond the limits
    NO_TEXT = "NO_TEXT"  # no text to read
    TIMEOUT = "TIMEOUT"  # reading took longer than the limit
    OCR_UNAVAILABLE = "OCR_UNAVAILABLE"  # the file needs OCR, which this server does not have


class ExtractionError(Exception):
    def __init__(self, code: "ExtractionCode | str", message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Extracted:
    kind: str
    pages: list[tuple[int, str]]  # (page number from 1, text)
    metadata: dict = field(default_factory=dict)

    @property
    def page_count(self) -> int:
        return max((n for n, _ in self.pages), default=0)

    @property
    def text(self) -> str:
        return "\n\n".join(t for _, t in self.pages)


def extension_of(name: str) -> str:
    match = re.search(r"(\.[A-Za-z0-9]+)$", name or "")
    return match.group(1).lower() if match else ""


def _is_docx(data: bytes) -> bool:
    if not data.startswith(b"PK\x03\x04"):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except zipfile.BadZipFile:
        return False
    return "word/document.xml" in names and "[Content_Types].xml" in names


# A DOCX is a zip archive: its parts are checked from the archive's directory before any of them
# is inflated (a 3 MB file can declare a gigabyte of XML). Reads never exceed a part's declared
# size (zipfile stops there and fails the CRC), so the declared sizes bound the memory.
DOCX_MAX_UNCOMPRESSED = 256 * 1024 * 1024  # all parts together
DOCX_MAX_RATIO = 100  # uncompressed / compressed, for any part over 1 MiB
DOCX_MAX_PARTS = 5000


def check_archive(data: bytes) -> None:
    """Refuse a zip whose parts would inflate past the limits (ARCHIVE_TOO_LARGE)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        parts = archive.infolist()
    if len(parts) > DOCX_MAX_PARTS:
        raise ExtractionError(ExtractionCode.ARCHIVE_TOO_LARGE, f"This file holds more than {DOCX_MAX_PARTS} parts.")
    total = 0
    for part in parts:
        total += part.file_size
        if part.file_size > 1024 * 1024 and part.file_size > DOCX_MAX_RATIO * max(part.compress_size, 1):
            raise ExtractionError(ExtractionCode.ARCHIVE_TOO_LARGE, f"A part of this file ({part.filename}) would inflate "
                                  f"{part.file_size // max(part.compress_size, 1)} times: it is refused as a zip bomb.")
    if total > DOCX_MAX_UNCOMPRESSED:
        raise ExtractionError(ExtractionCode.ARCHIVE_TOO_LARGE, f"This file would inflate to {total // (1024 * 1024)} MB, more "
                              f"than the {DOCX_MAX_UNCOMPRESSED // (1024 * 1024)} MB allowed.")


def _looks_like_text(data: bytes) -> bool:
    head = data[:65536]
    if b"\x00" in head and not (head.startswith((b"\xff\xfe", b"\xfe\xff"))):
        return False
    return decode_text(head, strict=False) is not None


def decode_text(data: bytes, strict: bool = True) -> str | None:
    for bom, encoding in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            return data.decode(encoding, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not strict and exc.start > len(data) - 4:  # a multi-byte character cut by the probe
            return data[: exc.start].decode("utf-8")
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        return None
    text = str(best)
    controls = sum(1 for ch in text[:20000] if ord(ch) < 32 and ch not in "\t\n\r\f")
    return None if controls > max(5, len(text[:20000]) // 100) else text


def detect_type(data: bytes, filename: str) -> str:
    """The type by content; the file name's extension must agree with it."""
    ext = extension_of(filename)
    if data.lstrip()[:5] == b"%PDF-" or data[:1024].find(b"%PDF-") != -1:
        kind = PDF
    elif data.startswith(IMAGE_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        kind = IMAGE
    elif _is_docx(data):
        check_archive(data)
        kind = DOCX
    elif data and _looks_like_text(data):
        kind = MD if ext in EXTENSIONS[MD] else TXT
    else:
        raise ExtractionError(ExtractionCode.UNSUPPORTED_TYPE, "This file is not a PDF, DOCX, text, Markdown or image "
                              "(PNG, JPEG, TIFF, WebP) file.")
    if ext not in EXTENSIONS[kind]:
        expected = " or ".join(sorted(EXTENSIONS[kind]))
        raise ExtractionError(
            ExtractionCode.EXTENSION_MISMATCH, f"The file's content is {kind.upper()}, but its name ends in '{ext or 'nothing'}'. "
            f"Rename it to end in {expected} and upload it again.")
    return kind


# --- extraction -----------------------------------------------------------------------------

def _docx_blocks(container):
    """Paragraph and table texts of a body, header or footer, in document order."""
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    for child in container.iter_inner_content():
        if isinstance(child, Paragraph):
            yield child, child.text
        elif isinstance(child, Table):
            yield None, _markdown_table(child)


def _markdown_table(table) -> str:
    """A DOCX table as Markdown rows (the first row its header), so that chunking keeps it whole
    and a model reads its columns."""
    rows = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            if id(cell._tc) in seen:  # merged cells repeat
                continue
            seen.add(id(cell._tc))
            cells.append(" ".join(p.text for p in cell.paragraphs))
        rows.append(cells)
    return markdown_rows(rows)


LIGATURES = str.maketrans({"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
                           "\ufb05": "st", "\ufb06": "st"})


def markdown_rows(rows: list[list[str | None]]) -> str:
    """Rows of cell texts as a Markdown table, the first row its header ("" when no cell has text)."""
    cleaned = []
    for row in rows:
        cells = [_cell(cell) for cell in row]
        if any(cells):
            cleaned.append(cells)
    if not cleaned:
        return ""
    width = max(len(r) for r in cleaned)
    lines = ["| " + " | ".join(r + [""] * (width - len(r))) + " |" for r in cleaned]
    lines.insert(1, "| " + " | ".join(["---"] * width) + " |")
    return "\n".join(lines)


def _cell(text: str | None) -> str:
    if not text:
        return ""
    # Private-use characters are icon-font glyphs (flags, bullets): no text to read.
    text = "".join(ch for ch in text.translate(LIGATURES) if unicodedata.category(ch) != "Co")
    return re.sub(r"\s+", " ", text).strip().replace("|", "\\|")


def _page_breaks(paragraph) -> int:
    if paragraph is None:
        return 0
    xml = paragraph._p.xml
    return xml.count("<w:lastRenderedPageBreak") + len(re.findall(r'<w:br [^>]*w:type="page"', xml))


def extract_docx(data: bytes) -> Extracted:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    check_archive(data)  # also for a file stored before the check existed

    try:
        document = docx.Document(io.BytesIO(data))
        header_texts, footer_texts = [], []
        for section in document.sections:
            for part, out in ((section.header, header_texts), (section.footer, footer_texts)):
                if part is not None and not part.is_linked_to_previous:
                    text = "\n".join(t for _, t in _docx_blocks(part) if t.strip())
                    if text and text not in out:
                        out.append(text)
        pages: dict[int, list[str]] = {}
        page = 1
        for paragraph, text in _docx_blocks(document):
            breaks = _page_breaks(paragraph)
            if breaks and pages.get(page):
                page += breaks
            if text.strip():
                pages.setdefault(page, []).append(text)
        props = document.core_properties
        metadata = {}
        if props.author:
            metadata["author"] = props.author
        if props.title:
            metadata["title"] = props.title
        if props.created:
            metadata["created"] = props.created.isoformat()
    except (PackageNotFoundError, KeyError, ValueError, zipfile.BadZipFile, AttributeError, TypeError) as exc:
        raise ExtractionError(ExtractionCode.CORRUPT, "This DOCX file is damaged and cannot be read. Open it in Word or "
                              f"LibreOffice, save it again and upload the new file. ({type(exc).__name__})")
    result = [(n, clean("\n".join(parts))) for n, parts in sorted(pages.items())]
    if header_texts:
        first = result[0] if result else (1, "")
        result = [(first[0], clean("\n".join(header_texts) + "\n\n" + first[1]))] + result[1:]
    if footer_texts:
        last = result[-1]
        result = result[:-1] + [(last[0], clean(last[1] + "\n\n" + "\n".join(footer_texts)))]
    return Extracted(DOCX, result, metadata)


def extract_text(data: bytes, kind: str) -> Extracted:
    text = decode_text(data)
    if text is None:
        raise ExtractionError(ExtractionCode.CORRUPT, "We could not tell this file's text encoding. Save it as UTF-8 and "
                              "upload it again.")
    return Extracted(kind, [(1, clean(text))], {})


def clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = re.sub(r"[ \t\u00a0]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def read_image(data: bytes, ocr) -> Extracted:
    """An image's text, by OCR: one page per frame (a multi-page TIFF), up to OCR's page limit."""
    from PIL import ImageSequence, UnidentifiedImageError

    from . import ocr as ocr_engine

    try:
        image = ocr_engine.open_image(data, ocr)
        pages, skipped = [], 0
        for number, frame in enumerate(ImageSequence.Iterator(image), start=1):
            if not ocr.may_read():
                skipped += 1
                continue
            try:
                pages.append((number, clean(ocr_engine.read(frame, ocr))))
            except ocr_engine.PageTimeout:
                pages.append((number, ""))
    except ValueError as exc:
        raise ExtractionError(ExtractionCode.TOO_LARGE, f"This image is too large to read ({exc}).")
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ExtractionError(ExtractionCode.CORRUPT, f"This image is damaged and cannot be read. ({type(exc).__name__})")
    metadata = {"ocr_pages": [n for n, text in pages if text]}
    if skipped:
        metadata["ocr_pages_skipped"] = skipped
    return Extracted(IMAGE, pages, metadata)


def extract(data: bytes, kind: str, *, max_pages: int = 2000, **pdf_options) -> Extracted:
    """The text layer (no OCR). A PDF's pages without one are listed in ``metadata["needs_ocr"]``;
    an image needs OCR as a whole (``"needs_ocr": "all"``). ``pdf_options``: a PDF's run of pages
    (``pdf.text_layer``)."""
    if kind == PDF:
        from .pdf import text_layer

        return text_layer(data, max_pages, **pdf_options)
    if kind == DOCX:
        return extract_docx(data)
    if kind in (TXT, MD):
        return extract_text(data, kind)
    if kind == IMAGE:
        return Extracted(IMAGE, [], {"needs_ocr": "all"})
    raise ExtractionError(ExtractionCode.UNSUPPORTED_TYPE, "This file type is not supported.")


def read_by_ocr(data: bytes, extracted: Extracted, ocr) -> Extracted:
    """What OCR adds to ``extract``'s result: the pages it listed as needing OCR."""
    needs = extracted.metadata.get("needs_ocr")
    if not needs:
        return extracted
    if extracted.kind == IMAGE:
        return read_image(data, ocr)
    from .pdf import read_by_ocr as read_pdf_pages

    texts, skipped = read_pdf_pages(data, needs, ocr)
    metadata = {k: v for k, v in extracted.metadata.items() if k != "needs_ocr"}
    metadata["ocr_pages"] = [number for number in needs if texts.get(number)]
    if skipped:
        metadata["ocr_pages_skipped"] = skipped  # past OCR_MAX_PAGES or OCR_TIME_BUDGET
    pages = [(number, texts.get(number) or text) for number, text in extracted.pages]
    return Extracted(extracted.kind, pages, metadata)


def finish(extracted: Extracted, *, max_chars: int = 5_000_000, ocr_ran: bool = False) -> Extracted:
    """The checks of a whole extraction: the text limit, and text at all."""
    chars = sum(len(t) for _, t in extracted.pages)
    if chars > max_chars:
        raise ExtractionError(ExtractionCode.TOO_LARGE, f"This file holds {chars:,} characters of text; the limit is "
                              f"{max_chars:,}. Split it into smaller files.")
    if not any(t.strip() for _, t in extracted.pages):
        if extracted.kind == IMAGE and not ocr_ran:
            raise ExtractionError(ExtractionCode.OCR_UNAVAILABLE, IMAGES_NEED_OCR)
        if extracted.kind == PDF and not ocr_ran:  # the code stays NO_TEXT, as before OCR existed
            raise ExtractionError(ExtractionCode.NO_TEXT, "This PDF has no text layer (it may be a scan), and this "
                                  "server has no OCR to read it. Run it through OCR, then upload it again.")
        if extracted.kind in (PDF, IMAGE):
            raise ExtractionError(ExtractionCode.NO_TEXT, "No text was found in this file, not even by OCR: it may hold "
                                  "only pictures.")
        raise ExtractionError(ExtractionCode.NO_TEXT, "This file contains no extractable text.")
    extracted.metadata.pop("needs_ocr", None)
    return extracted
