"""Split extracted text into chunks that remember their pages, offsets and section heading.

LangChain's RecursiveCharacterTextSplitter does the splitting; Markdown is first cut at its
headings (MarkdownHeaderTextSplitter) so that no chunk straddles two sections and each knows its
heading.
"""

import re
from dataclasses import dataclass

from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

from .loaders import MD, Extracted

PAGE_SEPARATOR = "\n\n"
TOKEN_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)
HEADINGS = [("#", "h1"), ("##", "h2"), ("###", "h3"), ("####", "h4")]


@dataclass
class ChunkData:
    position: int
    text: str
    page_start: int
    page_end: int
    char_start: int
    char_end: int
    token_count: int
    section: str = ""


def count_tokens(text: str) -> int:
    """Words and punctuation marks: close to a word-piece count for English prose."""
    return len(TOKEN_RE.findall(text))


def _page_at(offsets: list[tuple[int, int]], position: int) -> int:
    page = offsets[0][1] if offsets else 1
    for start, number in offsets:
        if start > position:
            break
        page = number
    return page


def _sections(text: str, kind: str) -> list[tuple[int, str, str]]:
    """(offset, heading, text) spans: one per Markdown section, or the whole text."""
    if kind != MD:
        return [(0, "", text)]
    splitter = MarkdownHeaderTextSplitter(HEADINGS, strip_headers=False)
    spans, cursor = [], 0
    for doc in splitter.split_text(text):
        content = doc.page_content
        heading = " > ".join(doc.metadata[key] for _, key in HEADINGS if key in doc.metadata)
        # The splitter normalises whitespace; anchor the section on its first line.
        first_line = content.split("\n", 1)[0]
        found = text.find(first_line, cursor)
        offset = found if found >= 0 else cursor
        spans.append((offset, heading, content))
        cursor = offset + len(first_line)
    return spans or [(0, "", text)]


def chunk(extracted: Extracted, *, size: int = 1000, overlap: int = 150) -> list[ChunkData]:
    text_parts, offsets, cursor = [], [], 0
    for number, page_text in extracted.pages:
        if not page_text:
            continue
        offsets.append((cursor, number))
        text_parts.append(page_text)
        cursor += len(page_text) + len(PAGE_SEPARATOR)
    full = PAGE_SEPARATOR.join(text_parts)

    splitter = RecursiveCharacterTextSplitter(chunk_size=size, chunk_overlap=overlap, add_start_index=True)
    chunks: list[ChunkData] = []
    for base, heading, section_text in _sections(full, extracted.kind):
        for doc in splitter.create_documents([section_text]):
            body = doc.page_content.strip()
            if not body:
                continue
            start = base + max(doc.metadata.get("start_index", 0), 0)
            located = full.find(body, max(0, start - 10))
            if located >= 0 and located - start < len(body):
                start = located
            end = start + len(body)
            chunks.append(ChunkData(
                position=len(chunks),
                text=body,
                page_start=_page_at(offsets, start),
                page_end=_page_at(offsets, max(start, end - 1)),
                char_start=start,
                char_end=end,
                token_count=count_tokens(body),
                section=heading,
            ))
    return chunks
