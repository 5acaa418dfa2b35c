"""A long PDF's text layer is read in runs of pages, and its chunks are embedded while the later
pages are still being read: the same text, chunks and vectors as reading it whole, each text
embedded once, the child's time limit unchanged."""

import time

import pytest
from strawberry import relay

from backend.documents import ingest
from backend.documents.models import Chunk, DocumentVersion
from backend.rag import loaders
from backend.rag.parsing import PAGE_RUN, extract_with_timeout
from bench.pdfwriter import text_pdf

from .test_document_versions import VERSIONS, embedded  # noqa: F401 - a fixture
from .test_documents import SEARCH, upload, wait

CREATURES = ["otter", "heron", "badger", "falcon", "marten", "plover", "stoat", "curlew", "vole", "kestrel"]
PLACES = ["estuary", "hedgerow", "moorland", "reedbed", "orchard", "quarry", "saltmarsh", "copse", "meadow"]


def page(n: int, creature: str | None = None) -> str:
    """About 1,500 characters of prose that differ from page to page."""
    who, where = creature or CREATURES[n % len(CREATURES)], PLACES[n % len(PLACES)]
    return " ".join(f"Survey note {n}.{i}: a {who} was counted near the {where} at dawn, {3 * n + i} metres from "
                    f"transect {n % 7} while the tide stood at {i} tenths." for i in range(12))


PAGES = 40
LIMITS = {"timeout": 60, "max_pages": 100, "max_chars": 1_000_000}


def long_pdf(changed: dict[int, str] | None = None) -> bytes:
    return text_pdf([page(n, (changed or {}).get(n)) for n in range(1, PAGES + 1)])


def test_a_long_pdf_is_read_in_runs_and_the_pages_so_far_are_handed_over_as_they_come():
    data = long_pdf()
    told = []
    whole = extract_with_timeout(data, loaders.PDF, **LIMITS)
    in_runs = extract_with_timeout(data, loaders.PDF, **LIMITS,
                                   on_pages=lambda pages, total: told.append(([n for n, _ in pages], total)))
    assert in_runs.pages == whole.pages and in_runs.metadata == whole.metadata
    assert [n for n, _ in whole.pages] == list(range(1, PAGES + 1)) and "Survey note 40.11" in " ".join(whole.pages[-1][1].split())
    assert told == [(list(range(1, PAGE_RUN + 1)), PAGES), (list(range(1, 2 * PAGE_RUN + 1)), PAGES)]


def test_the_time_the_caller_spends_with_the_pages_does_not_count_against_the_childs_limit():
    def slow(pages, total):
        time.sleep(1.5)

    extracted = extract_with_timeout(long_pdf(), loaders.PDF, **{**LIMITS, "timeout": 2}, on_pages=slow)
    assert len(extracted.pages) == PAGES


def test_a_pdf_over_the_page_limit_fails_with_its_code_before_any_pages_are_handed_over():
    told = []
    with pytest.raises(loaders.ExtractionError) as failed:
        extract_with_timeout(long_pdf(), loaders.PDF, **{**LIMITS, "max_pages": 30},
                             on_pages=lambda pages, total: told.append(total))
    assert failed.value.code == loaders.ExtractionCode.TOO_LARGE and told == []


@pytest.mark.django_db(transaction=True)
def test_a_long_pdf_is_embedded_while_it_is_read_and_each_passage_once(alice, embedded, monkeypatch):
    read, events = ingest.extract_with_timeout, []

    def reading(*args, **kwargs):
        try:
            return read(*args, **kwargs)
        finally:
            events.append(("read", len(embedded)))

    monkeypatch.setattr(ingest, "extract_with_timeout", reading)
    doc = upload(alice, "survey.pdf", long_pdf())["document"]
    wait()
    chunks = list(Chunk.objects.filter(document_id=relay.GlobalID.from_id(doc["id"]).node_id))
    assert len(chunks) > 40 and all(c.page_start for c in chunks)
    # Most passages were embedded before the last pages were read; none twice, none lost.
    assert events[0][1] > len(chunks) // 2
    assert sorted(embedded) == sorted(c.text for c in chunks)
    versions = alice(VERSIONS, {"id": doc["id"]})["data"]["node"]["versions"]
    assert versions[0]["vectorsEmbedded"] == len(chunks) and versions[0]["vectorsReused"] == 0
    hits = alice(SEARCH, {"q": "a kestrel was counted near the estuary", "k": 1})["data"]["searchDocuments"]
    assert hits[0]["page"] == 9 and "kestrel was counted near the estuary" in " ".join(hits[0]["text"].split())


@pytest.mark.django_db(transaction=True)
def test_a_new_version_of_a_long_pdf_embeds_only_the_passages_of_its_changed_page(alice, embedded):
    first = upload(alice, "survey.pdf", long_pdf())["document"]
    wait()
    embedded.clear()
    second = upload(alice, "survey.pdf", long_pdf({30: "wildcat"}))["document"]
    wait()
    assert second["id"] == first["id"]
    version = DocumentVersion.objects.get(document_id=relay.GlobalID.from_id(first["id"]).node_id, number=2)
    assert 1 <= version.vectors_embedded <= 3 and version.vectors_reused == version.chunk_count - version.vectors_embedded
    assert embedded and all("wildcat" in text for text in embedded)


def test_a_page_pdfium_cannot_load_gets_pypdfs_text_of_that_page(monkeypatch):
    from backend.rag import pdf

    loads = pdf._pdfium_text
    monkeypatch.setattr(pdf, "_pdfium_text", lambda document, index: None if index == 2 else loads(document, index))
    extracted = pdf.text_layer(long_pdf(), 100, first=1, last=PAGE_RUN)
    assert [n for n, _ in extracted.pages] == list(range(1, PAGE_RUN + 1))
    assert extracted.metadata["reader"] == "pdfium+pypdf" and "needs_ocr" not in extracted.metadata
    assert "Survey note 3.0" in " ".join(extracted.pages[2][1].split())
