"""A plain text PDF, written by hand: one Helvetica page per string, lines wrapped.

For benchmarks and tests that need a long text PDF of known content (the corpus's are short).
Characters outside Latin-1 are replaced.
"""

import io
import textwrap

LINE_CHARS = 95
LINES_PER_PAGE = 60


def _escape(line: str) -> bytes:
    raw = line.encode("latin-1", "replace")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def _stream(text: str) -> bytes:
    lines = [wrapped for paragraph in text.split("\n") for wrapped in (textwrap.wrap(paragraph, LINE_CHARS) or [""])]
    body = b"BT /F1 10 Tf 12 TL 50 760 Td " + b" ".join(b"(%s) '" % _escape(line) for line in lines[:LINES_PER_PAGE])
    return body + b" ET"


def text_pdf(pages: list[str]) -> bytes:
    """A PDF with one page per item of ``pages`` (at most ~60 lines of 95 characters each)."""
    count = len(pages)
    # 1 catalog, 2 page tree, 3 font, then a page and its content stream per page.
    kids = b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(count))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, count),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"]
    for i, text in enumerate(pages):
        stream = _stream(text)
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
                       b"/Resources << /Font << /F1 3 0 R >> >> >>" % (5 + 2 * i))
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    return pdf_file(objects)


def pdf_file(objects: list[bytes]) -> bytes:
    """A PDF of these objects (numbered from 1; the first is the catalog) with its cross-reference table."""
    out, offsets = io.BytesIO(), []
    out.write(b"%PDF-1.4\n")
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % offset for offset in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()
