"""Documents beyond the text layer: scans and images read by OCR, PDFs pypdf cannot read."""

import io
import shutil

import pytest
from PIL import Image, ImageDraw, ImageFont

from backend.documents.models import Document
from bench.pdfwriter import pdf_file

from .test_documents import CORPUS, SEARCH, node, upload, wait

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(shutil.which("tesseract") is None,
                                 reason="tesseract-ocr is not installed (the test command installs it)")]

LINES = ["The lighthouse keeper logs the tide at dawn.", "Storm warnings are raised above force eight."]


def page_image(lines=LINES) -> Image.Image:
    """A page as a scanner gives it: text as pixels, no text layer."""
    image = Image.new("L", (1700, 600), 255)
    draw, font = ImageDraw.Draw(image), ImageFont.load_default(size=44)
    for i, line in enumerate(lines):
        draw.text((80, 120 + i * 110), line, fill=0, font=font)
    return image


def scanned_pdf(pages=1) -> bytes:
    buffer = io.BytesIO()
    images = [page_image([f"Page {n}: {LINES[0]}", LINES[1]]) for n in range(1, pages + 1)]
    images[0].save(buffer, "PDF", resolution=200, save_all=True, append_images=images[1:])
    return buffer.getvalue()


def png() -> bytes:
    buffer = io.BytesIO()
    page_image().save(buffer, "PNG")
    return buffer.getvalue()


def unreadable_by_pypdf() -> bytes:
    """A PDF whose page tree lists itself among its kids: pypdf refuses it ("cyclic page
    references"), pdfium reads the page it can."""
    text = b"BT /F1 18 Tf 72 720 Td (The solar inverter datasheet lists a peak efficiency of 97 percent.) Tj ET"
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R 2 0 R] /Count 2 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(text) + text + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    return pdf_file(objects)


def text_of(doc) -> str:
    return " ".join(e["node"]["text"] for e in doc["chunks"]["edges"])


def test_a_scanned_pdf_is_read_by_ocr_with_its_page_numbers(alice):
    doc = upload(alice, "scan.pdf", scanned_pdf(pages=2))["document"]
    wait()
    doc = node(alice, doc["id"])
    assert doc["status"] == "READY", doc
    assert "lighthouse keeper" in text_of(doc) and "Storm warnings" in text_of(doc)
    pages = [(e["node"]["pageStart"], e["node"]["pageEnd"]) for e in doc["chunks"]["edges"]]
    assert min(p[0] for p in pages) == 1 and max(p[1] for p in pages) == 2  # citations keep their pages
    assert doc["metadata"]["ocr_pages"] == [1, 2]
    hits = alice(SEARCH, {"q": "when does the keeper log the tide?", "k": 2})["data"]["searchDocuments"]
    assert hits and hits[0]["document"]["title"] == "scan" and hits[0]["page"] in (1, 2)


def test_an_uploaded_image_is_a_document(alice):
    uploaded = upload(alice, "notice.png", png())
    assert uploaded["document"]["fileType"] == "IMAGE", uploaded
    wait()
    doc = node(alice, uploaded["document"]["id"])
    assert doc["status"] == "READY" and "Storm warnings are raised" in text_of(doc), doc


def test_a_pdf_pypdf_cannot_read_is_read_by_pdfium(alice):
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    data = unreadable_by_pypdf()
    with pytest.raises(PdfReadError):
        [page.extract_text() for page in PdfReader(io.BytesIO(data)).pages]
    doc = upload(alice, "datasheet.pdf", data)["document"]
    wait()
    doc = node(alice, doc["id"])
    assert doc["status"] == "READY" and "peak efficiency of 97 percent" in text_of(doc), doc
    assert doc["pageCount"] == 2  # the page tree lists itself: its second "page" has no text


def test_a_picture_without_text_fails_no_text_after_ocr_tried(alice):
    doc = upload(alice, "grayscale-image.pdf", (CORPUS / "pdf" / "grayscale-image.pdf").read_bytes())["document"]
    wait()
    doc = node(alice, doc["id"])
    assert (doc["status"], doc["errorCode"]) == ("FAILED", "NO_TEXT") and "not even by OCR" in doc["errorMessage"]


def test_without_ocr_images_are_refused_and_scans_say_why(alice, settings):
    from backend.documents import ingest

    settings.OCR_ENABLED = False
    refused = upload(alice, "notice.png", png())
    assert refused["messages"][0]["code"] == "OCR_UNAVAILABLE" and refused["messages"][0]["field"] == "file"
    assert not Document.objects.exists()
    doc = upload(alice, "scan.pdf", scanned_pdf())["document"]
    wait()
    doc = node(alice, doc["id"])
    assert (doc["status"], doc["errorCode"]) == ("FAILED", "NO_TEXT") and "no OCR" in doc["errorMessage"]
    health = alice.client.get("/healthz").json()["checks"]["ocr"]
    assert health["ok"] is True and health["available"] is False  # unavailable, not broken
    settings.OCR_ENABLED = True
    assert ingest.ocr_options() is not None
    assert alice.client.get("/healthz").json()["checks"]["ocr"]["available"] is True


def test_an_image_too_large_to_decode_is_refused_from_its_header(alice):
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 1, 0, 0, 0, 0))
    bomb = b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")
    doc = upload(alice, "huge.png", bomb)["document"]
    wait()
    doc = node(alice, doc["id"])
    assert (doc["status"], doc["errorCode"]) == ("FAILED", "TOO_LARGE"), doc


def test_ocr_progress_shows_in_document_events_and_its_page_limit_holds(alice, settings, monkeypatch):
    from backend.documents import ingest

    told = []
    original = ingest.publish_document_event
    monkeypatch.setattr(ingest, "publish_document_event",
                        lambda document: (told.append((document.stage, document.progress)), original(document)))
    settings.OCR_MAX_PAGES = 5  # of 6 pages: the last is skipped, and the document says so
    doc = upload(alice, "scan.pdf", scanned_pdf(pages=6))["document"]
    wait()
    doc = node(alice, doc["id"])
    assert doc["status"] == "READY" and doc["metadata"]["ocr_pages"] == [1, 2, 3, 4, 5]
    assert doc["metadata"]["ocr_pages_skipped"] == 1 and "Page 6" not in text_of(doc)
    ocr_events = [progress for stage, progress in told if stage == "ocr"]
    assert len(ocr_events) == 2 and ocr_events == sorted(ocr_events) and ocr_events[-1] == 25  # 4 pages, then 6 of 6


def test_a_scans_pages_are_read_side_by_side_each_by_one_tesseract_thread():
    """Tesseract's OpenMP threads (one per core by default) spun against each other: a page took
    27 s instead of 3.4 s on 2 cores. Each child runs it on one thread, and a scan's pages are
    read by several children at once (OCR_WORKERS; one per core by default)."""
    from pathlib import Path

    from backend.rag import parsing
    from backend.rag.ocr import OcrOptions

    parsing.shutdown()  # no warm children: the ones left afterwards are those this read used
    extracted = parsing.extract_with_timeout(scanned_pdf(pages=8), "pdf", timeout=60, max_pages=100,
                                             max_chars=10**6, ocr=OcrOptions(workers=2))
    assert extracted.metadata["ocr_pages"] == list(range(1, 9))
    assert [n for n, _ in extracted.pages] == list(range(1, 9))
    assert all(f"Page {n}" in text for n, text in extracted.pages)  # each page's own text, in its place
    children = list(parsing._idle)
    assert len(children) == 2  # two calls ran at once
    for child in children:
        environ = Path(f"/proc/{child.process.pid}/environ").read_bytes().split(b"\0")
        assert b"OMP_THREAD_LIMIT=1" in environ
    parsing.shutdown()
