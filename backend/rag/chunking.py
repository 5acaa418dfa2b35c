"""Split extracted text into chunks that remember their pages, offsets and section heading.

LangChain's RecursiveCharacterTextSplitter does the splitting; Markdown is first cut at its
headings (MarkdownHeaderTextSplitter) so that no chunk straddles two sections and each knows its
heading. Tables (Markdown rows, as DOCX tables are extracted too) and code (fenced, or indented
after a blank line) are blocks the splitter never cuts: each is a chunk of its own, and one longer
than a chunk is cut between rows (each piece repeating the table's header) or between lines (each
piece fenced again with its language tag). Their chunks' section ends in "table" or "code".
"""

import re
from dataclasses import dataclass

from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

from .loaders import MD, TXT, Extracted

PAGE_SEPARATOR = "\n\n"
TOKEN_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)
HEADINGS = [("#", "h1"), ("##", "h2"), ("###", "h3"), ("####", "h4")]
LEAD_MAX = 200  # prose this short before a table or code block becomes the start of its chunk


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
    """(offset, heading, text) spans: one per Markdown section, or the whole text. Each span is
    the original text (the splitter finds the sections; its copy of them loses indentation)."""
    if kind != MD:
        return [(0, "", text)]
    splitter = MarkdownHeaderTextSplitter(HEADINGS, strip_headers=False)
    starts, cursor = [], 0
    for doc in splitter.split_text(text):
        heading = " > ".join(doc.metadata[key] for _, key in HEADINGS if key in doc.metadata)
        first_line = doc.page_content.split("\n", 1)[0].strip()
        found = text.find(first_line, cursor)
        offset = found if found >= 0 else cursor
        if first_line.startswith("#"):  # the section starts at its heading's line
            offset = text.rfind("\n", 0, offset) + 1
        starts.append((offset, heading))
        cursor = offset + len(first_line)
    if not starts:
        return [(0, "", text)]
    starts[0] = (0, starts[0][1])
    ends = [start for start, _ in starts[1:]] + [len(text)]
    return [(start, heading, text[start:end]) for (start, heading), end in zip(starts, ends)]


FENCE = re.compile(r"^(```|~~~)[ \t]*([\w+#.-]*)[^\n]*\n.*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
TABLE = re.compile(r"(?:^[ \t]*\|[^\n]*\|[ \t]*(?:\n|$)){2,}", re.MULTILINE)
INDENTED = re.compile(r"(?:(?<=\n\n)|\A)(?:(?:    |\t)[^\n]*(?:\n|$)(?:[ \t]*\n)*){2,}")


def _blocks(text: str, kind: str) -> list[tuple[int, int, str]]:
    """(start, end, "table" | "code") of the blocks of ``text`` that are kept whole."""
    found = [(m.start(), m.end(), "code") for m in FENCE.finditer(text)]
    taken = lambda a, b: any(a < e and s < b for s, e, _ in found)  # noqa: E731
    found += [(m.start(), m.end(), "table") for m in TABLE.finditer(text) if not taken(m.start(), m.end())]
    if kind in (MD, TXT):
        found += [(m.start(), m.end(), "code") for m in INDENTED.finditer(text) if not taken(m.start(), m.end())]
    return sorted(found)


def _pieces(block: str, kind: str, size: int) -> list[str]:
    """A block as chunks of at most ``size`` characters where it can be cut (never inside a row or a line)."""
    block = block.strip("\n")
    if len(block) <= size:
        return [block]
    lines = block.split("\n")
    if kind == "table":
        head, rows, tail = lines[:2], lines[2:], []
    elif lines[0].lstrip().startswith(("```", "~~~")):
        head, rows, tail = lines[:1], lines[1:-1], lines[-1:]
    else:
        head, rows, tail = [], lines, []
    pieces, current = [], []
    for row in rows:
        if current and len("\n".join(head + current + [row] + tail)) > size:
            pieces.append("\n".join(head + current + tail))
            current = []
        current.append(row)
    if current:
        pieces.append("\n".join(head + current + tail))
    return pieces


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

    def add(body: str, start: int, section: str) -> None:
        end = start + len(body)
        chunks.append(ChunkData(position=len(chunks), text=body, page_start=_page_at(offsets, start),
                                page_end=_page_at(offsets, max(start, end - 1)), char_start=start, char_end=end,
                                token_count=count_tokens(body), section=section))

    def prose(text: str, base: int, heading: str) -> None:
        for doc in splitter.create_documents([text]):
            body = doc.page_content.strip()
            if not body:
                continue
            start = base + max(doc.metadata.get("start_index", 0), 0)
            located = full.find(body, max(0, start - 10))
            if located >= 0 and located - start < len(body):
                start = located
            add(body, start, heading)

    for base, heading, section_text in _sections(full, extracted.kind):
        cursor = 0
        for start, end, block_kind in _blocks(section_text, extracted.kind):
            before = section_text[cursor:start]
            # A heading or a line that introduces the block ("Prices per plan:") goes with it.
            lead = before.strip() if len(before.strip()) <= LEAD_MAX else ""
            if not lead:
                prose(before, base + cursor, heading)
            label = f"{heading} > {block_kind}" if heading else block_kind
            for i, piece in enumerate(_pieces(section_text[start:end], block_kind, size)):
                located = full.find(piece.split("\n", 1)[0], base + start)
                piece_start = located if located >= 0 else base + start
                if i == 0 and lead:
                    piece, piece_start = f"{lead}\n\n{piece}", full.find(lead, base + cursor)
                add(piece, piece_start, label)
            cursor = end
        prose(section_text[cursor:], base + cursor, heading)
    return chunks
