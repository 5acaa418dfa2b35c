"""Tables of PDF pages as Markdown rows, in their place on the page (pdfplumber's table finder).

pdfium reads a page's text layer fast but flattens a table into a run of cell texts, row after row
without columns. pdfplumber (on pdfminer.six) finds ruled tables from the lines a page draws and
gives their cells; on a page where it finds one, the page's text becomes the text above the table,
the table as Markdown rows (its first row the header) and the text below. Chunking keeps a Markdown
table whole, or cut between rows with its header repeated (``chunking``), so an answer cites the
table with its columns, as for DOCX tables.

pdfplumber is slow (it parses the page's content stream in Python), so it only reads pages that can
hold a ruled table: pdfium first counts the line segments a page draws (a text-only page has none),
and at most MAX_PAGES pages of a call, for at most TIME_BUDGET seconds a file, are examined.
"""

import io
import logging
import time

from .loaders import LIGATURES, markdown_rows

logging.getLogger("pdfminer").setLevel(logging.ERROR)  # a font without metrics is a warning per glyph

MIN_SEGMENTS = 8  # the path segments of four lines: fewer cannot rule a table of two rows and columns
MAX_PAGES = 300
TIME_BUDGET = 30.0  # seconds of table finding per file; later pages keep pdfium's text (the parse has 120 s)


def candidate_pages(document, indexes=None) -> list[int]:
    """Indexes of the pages of a pdfium document (among ``indexes``, else all) that draw enough
    lines to rule a table."""
    import pypdfium2.raw as raw

    found = []
    for index in (range(len(document)) if indexes is None else indexes):
        if len(found) >= MAX_PAGES:
            break
        try:
            segments = 0
            for path in document[index].get_objects(filter=[raw.FPDF_PAGEOBJ_PATH], max_depth=3):
                segments += max(0, raw.FPDFPath_CountSegments(path.raw))
                if segments >= MIN_SEGMENTS:
                    found.append(index)
                    break
        except Exception:  # noqa: BLE001 - a page pdfium cannot load keeps the text it has
            continue
    return found


def pages_with_tables(data: bytes, indexes: list[int], budget: float | None = None) -> dict[int, str]:
    """{page index: the page's text with its tables as Markdown} for the pages among ``indexes``
    where a table was found, within ``budget`` seconds (TIME_BUDGET by default); the others keep
    pdfium's text."""
    budget = TIME_BUDGET if budget is None else budget
    if not indexes or budget <= 0:
        return {}
    import pdfplumber

    texts = {}
    try:
        pdf = pdfplumber.open(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - pdfminer cannot read it: pdfium's text stays
        return {}
    deadline = time.monotonic() + budget
    with pdf:
        for index in indexes:
            if time.monotonic() >= deadline:
                break
            page = None
            try:
                page = pdf.pages[index]
                text = _page_text(page)
            except Exception:  # noqa: BLE001 - one page pdfminer cannot read keeps pdfium's text
                continue
            finally:
                if page is not None:
                    page.close()  # its parsed objects: a long file's pages are not all kept in memory
            if text is not None:
                texts[index] = text
    return texts


def _is_table(rows: list[list[str | None]]) -> bool:
    """Two rows and two columns with text at least: a framed paragraph is not a table."""
    filled = [sum(1 for cell in row if cell and cell.strip()) for row in rows]
    return len(rows) >= 2 and sum(1 for n in filled if n >= 2) >= 2


def _page_text(page) -> str | None:
    tables = []
    for table in page.find_tables():
        rows = table.extract()
        if _is_table(rows):
            tables.append((table.bbox, rows))
    if not tables:
        return None
    tables.sort(key=lambda t: (t[0][1], t[0][0]))
    rest = page
    for bbox, _ in tables:
        rest = rest.outside_bbox(bbox)
    x0, top, x1, bottom = page.bbox
    parts, cursor = [], top
    for (_, t_top, _, t_bottom), rows in tables:
        if t_top > cursor:
            parts.append(_text(rest, (x0, cursor, x1, t_top)))
        parts.append(markdown_rows(rows))
        cursor = max(cursor, t_bottom)
    if bottom > cursor:
        parts.append(_text(rest, (x0, cursor, x1, bottom)))
    return "\n\n".join(part for part in parts if part.strip())


def _text(page, bbox) -> str:
    return (page.crop(bbox).extract_text() or "").translate(LIGATURES).strip()
