"""Tables and code stay whole in their chunks, with their headers and language tags."""

import io

import pytest

from backend.rag.chunking import chunk
from backend.rag.loaders import Extracted

from .test_documents import CORPUS, node, upload, wait

pytestmark = pytest.mark.django_db(transaction=True)

SEARCH = """query($q: String!) { searchDocuments(query: $q, k: 3) { text chunk { section } document { title } } }"""


def docx_with_table() -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Ferry timetable", level=1)
    document.add_paragraph("Crossings from the harbour to the island, every day of the summer season.")
    table = document.add_table(rows=1, cols=3)
    for cell, text in zip(table.rows[0].cells, ("Departure", "Arrival", "Vessel")):
        cell.text = text
    for row in (("07:15", "08:05", "Northern Star"), ("12:40", "13:30", "Sea Lark"), ("18:20", "19:10", "Puffin")):
        for cell, text in zip(table.add_row().cells, row):
            cell.text = text
    document.add_paragraph("Tickets are sold on board; bicycles travel free of charge.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def one_table(client, name: str, data: bytes) -> tuple[dict, list[str]]:
    """The document ``data`` becomes once READY, and the lines of its one table chunk."""
    doc = upload(client, name, data)["document"]
    wait()
    doc = node(client, doc["id"])
    assert doc["status"] == "READY", doc
    tables = [e["node"] for e in doc["chunks"]["edges"] if e["node"]["section"].endswith("table")]
    assert len(tables) == 1
    return doc, tables[0]["text"].splitlines()


def test_a_docx_table_becomes_markdown_rows_in_one_chunk_search_can_cite(alice):
    _, lines = one_table(alice, "ferries.docx", docx_with_table())
    header = lines.index("| Departure | Arrival | Vessel |")
    assert lines[header + 1] == "| --- | --- | --- |" and "| 12:40 | 13:30 | Sea Lark |" in lines
    hits = alice(SEARCH, {"q": "which vessel leaves at 12:40?"})["data"]["searchDocuments"]
    assert hits[0]["chunk"]["section"].endswith("table") and "Sea Lark" in hits[0]["text"]  # a citation of the table


def test_a_pdf_table_becomes_markdown_rows_with_its_columns_and_search_cites_it(alice):
    """A Google Docs export: pdfium alone gave the cells as a run of words, the columns lost."""
    doc, lines = one_table(alice, "countries.pdf", (CORPUS / "pdf" / "google-doc-document.pdf").read_bytes())
    header = lines.index("|  | Indonesia | Germany | Austria | France | Vatican |")
    assert lines[header + 1] == "| --- | --- | --- | --- | --- | --- |"
    assert "| Capital | Jakarta | Berlin | Vienna | Paris | Vatican City |" in lines
    texts = [e["node"]["text"] for e in doc["chunks"]["edges"]]
    assert sum(t.count("Jakarta") for t in texts) == 1  # the cells are not also left as loose text
    assert any("Readability counts." in t for t in texts)  # the prose above the table is kept
    hits = alice(SEARCH, {"q": "What is the capital of Austria?"})["data"]["searchDocuments"]
    assert hits[0]["chunk"]["section"].endswith("table") and "Vienna" in hits[0]["text"]


def test_a_framed_paragraph_in_a_pdf_is_not_taken_for_a_table():
    from backend.rag.pdf import text_layer

    extracted = text_layer((CORPUS / "pdf" / "002-trivial-libre-office-writer.pdf").read_bytes(), 100)
    assert "table_pages" not in extracted.metadata and "|" not in extracted.pages[0][1]
    assert extracted.pages[0][1].startswith("Lorem ipsum dolor sit amet")


def test_code_stays_whole_with_its_language_and_long_tables_repeat_their_header():
    code = "\n".join(f"    total += price_{i} * quantity_{i}  # line {i}" for i in range(30))
    markdown = (f"# Billing\n\nHow the invoice total is computed:\n\n```python\ndef invoice_total():\n    total = 0\n"
                f"{code}\n    return total\n```\n\nThe total includes taxes.\n\n## Rates\n\n| Plan | Rate |\n"
                "| --- | --- |\n" + "\n".join(f"| plan {i} | {i * 3} |" for i in range(80)) + "\n")
    chunks = chunk(Extracted("md", [(1, markdown)], {}), size=600, overlap=80)
    code_chunks = [c for c in chunks if c.section.endswith("code")]
    assert code_chunks and all("```python" in c.text and c.text.rstrip().endswith("```") for c in code_chunks)
    assert "".join(c.text for c in code_chunks).count("line 29") == 1  # every line once, none cut
    assert "How the invoice total is computed:" in code_chunks[0].text  # the lead-in goes with the code
    table_chunks = [c for c in chunks if c.section == "Billing > Rates > table"]
    assert len(table_chunks) > 1
    for piece in table_chunks:
        rows = [line for line in piece.text.splitlines() if line.startswith("|")]
        assert rows[:2] == ["| Plan | Rate |", "| --- | --- |"] and len(piece.text) <= 600 + len("## Rates\n\n")
    assert sum(len([r for r in c.text.splitlines() if r.startswith("| plan ")]) for c in table_chunks) == 80
    for c in chunks:  # offsets still point at the text, pieces of a long block at their first line
        assert markdown[c.char_start:].startswith(c.text.split("\n", 1)[0])


def test_table_finding_stops_at_its_time_budget_and_the_page_keeps_its_text(monkeypatch):
    from backend.rag import pdf_tables
    from backend.rag.pdf import text_layer

    monkeypatch.setattr(pdf_tables, "TIME_BUDGET", 0.0)
    extracted = text_layer((CORPUS / "pdf" / "google-doc-document.pdf").read_bytes(), 100)
    assert "table_pages" not in extracted.metadata and "| Capital |" not in extracted.pages[0][1]
    assert "Jakarta" in extracted.pages[0][1] and "Readability counts." in extracted.pages[0][1]
