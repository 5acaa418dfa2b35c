"""The knowledge-base archive: one zip holding a collection's files, metadata, versions, chunks and
vectors, described by ``manifest.json``. Plain Python (no Django, no database).

Layout::

    manifest.json              format, version, embedding model and dimension, chunking settings,
                               the collection, and per document its versions and its chunks file
    files/<sha256>             each stored file once (every version of every document)
    chunks/<n>.jsonl           the current version's chunks of document n, one JSON object a line,
                               the vector as base64 of little-endian float32

Reading checks the archive from its directory before inflating anything (sizes, ratio, entry
count), then the manifest's shape, then that every file's bytes hash to the name it claims: a
damaged or foreign archive is refused whole (``ArchiveError`` with a code) before anything is made.
"""

import base64
import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass

FORMAT = "chat-backend.knowledge-base"
VERSION = 1
MAX_ENTRIES = 100_000
MAX_RATIO = 200  # uncompressed / compressed, for an entry over 1 MiB
SHA = re.compile(r"[0-9a-f]{64}")


class ArchiveError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class Archive:
    manifest: dict
    zip: zipfile.ZipFile

    def file(self, sha256: str) -> bytes:
        return self.zip.read(f"files/{sha256}")

    def chunks(self, index: int) -> list[dict]:
        name = f"chunks/{index}.jsonl"
        if name not in self.zip.namelist():
            return []
        return [json.loads(line) for line in self.zip.read(name).decode().splitlines() if line.strip()]


def vector_to_text(blob: bytes) -> str:
    return base64.b64encode(blob).decode()


def vector_from_text(text: str, dimension: int) -> bytes:
    blob = base64.b64decode(text, validate=True)
    if len(blob) != 4 * dimension:
        raise ValueError("vector of another dimension")
    return blob


def add_file(archive: zipfile.ZipFile, name: str, handle) -> None:
    """Copy a readable binary file into ``archive`` as ``name``, a megabyte at a time."""
    with archive.open(name, "w", force_zip64=True) as out:
        while block := handle.read(1 << 20):
            out.write(block)


def write(target, manifest: dict, files: dict[str, object], chunks) -> None:
    """``files``: sha256 -> a function opening a readable binary file (opened, read and closed here,
    one at a time); ``chunks``: (document index, its rows) pairs, each written as it comes."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        archive.writestr("manifest.json", json.dumps({"format": FORMAT, "version": VERSION, **manifest}, indent=1))
        for sha256, opener in files.items():
            with opener() as handle:
                add_file(archive, f"files/{sha256}", handle)
        for index, rows in chunks:
            archive.writestr(f"chunks/{index}.jsonl", "\n".join(json.dumps(row) for row in rows))


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ArchiveError("ARCHIVE_INVALID", f"This is not a knowledge-base archive of this service: {message}")


def read(source, *, max_bytes: int, file_types) -> Archive:
    """The archive in ``source`` (bytes, or a seekable binary file: an upload read where it lies),
    checked whole; ArchiveError (ARCHIVE_INVALID, ARCHIVE_TOO_LARGE, UNSUPPORTED_VERSION) otherwise."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
        entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArchiveError("ARCHIVE_INVALID", f"This file is not a zip archive, or it is damaged ({type(exc).__name__}).")
    if len(entries) > MAX_ENTRIES:
        raise ArchiveError("ARCHIVE_TOO_LARGE", f"This archive holds more than {MAX_ENTRIES} entries.")
    total = sum(e.file_size for e in entries)
    if total > max_bytes:
        raise ArchiveError("ARCHIVE_TOO_LARGE", f"This archive would inflate to {total // (1 << 20)} MB, more than "
                                                f"the {max_bytes // (1 << 20)} MB allowed.")
    for entry in entries:
        if entry.file_size > (1 << 20) and entry.file_size > MAX_RATIO * max(entry.compress_size, 1):
            raise ArchiveError("ARCHIVE_TOO_LARGE", f"An entry ({entry.filename}) would inflate "
                                                    f"{entry.file_size // max(entry.compress_size, 1)} times.")
    names = {e.filename for e in entries}
    _require("manifest.json" in names, "it has no manifest.json.")
    try:
        manifest = json.loads(archive.read("manifest.json"))
    except (ValueError, zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError("ARCHIVE_INVALID", f"Its manifest cannot be read ({type(exc).__name__}).")
    _require(isinstance(manifest, dict) and manifest.get("format") == FORMAT, "its manifest names another format.")
    if manifest.get("version") != VERSION:
        raise ArchiveError("UNSUPPORTED_VERSION", f"This archive is of version {manifest.get('version')!r}; this "
                                                  f"server reads version {VERSION}.")
    _check_manifest(manifest, names, file_types)
    found = Archive(manifest, archive)
    try:
        for sha256 in {v["sha256"] for d in manifest["documents"] for v in d["versions"]}:
            if hashlib.sha256(found.file(sha256)).hexdigest() != sha256:
                raise ArchiveError("ARCHIVE_INVALID", f"The file files/{sha256[:12]}... is damaged (its content "
                                                      "does not match its hash).")
        for index, document in enumerate(manifest["documents"]):
            for row in found.chunks(index):
                _check_chunk(row, manifest["embedding"]["dimension"])
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, TypeError) as exc:
        raise ArchiveError("ARCHIVE_INVALID", f"Part of this archive is damaged ({type(exc).__name__}).")
    return found


def _check_manifest(manifest: dict, names: set[str], file_types) -> None:
    embedding, collection, documents = manifest.get("embedding"), manifest.get("collection"), manifest.get("documents")
    _require(isinstance(embedding, dict) and isinstance(embedding.get("model"), str)
             and isinstance(embedding.get("dimension"), int) and 0 < embedding["dimension"] <= 8192,
             "its manifest names no embedding model.")
    _require(isinstance(collection, dict) and _is(collection.get("name"), str, limit=200)
             and _is(collection.get("description", ""), str, limit=5000), "it names no collection.")
    _require(isinstance(documents, list), "it lists no documents.")
    for document in documents:
        _require(isinstance(document, dict) and _is(document.get("title"), str, limit=300)
                 and isinstance(document.get("versions"), list) and document["versions"]
                 and _is(document.get("version"), int) and isinstance(document.get("tags", []), list)
                 and all(_is(t, str, limit=50) for t in document.get("tags", []))
                 and isinstance(document.get("metadata", {}), dict)
                 and all(_is(document.get(n), int, optional=True) for n in ("page_count", "word_count")),
                 "a document is malformed.")
        numbers = set()
        for version in document["versions"]:
            _require(isinstance(version, dict) and _is(version.get("number"), int)
                     and _is(version.get("original_name"), str, limit=255) and version.get("file_type") in file_types
                     and _is(version.get("size"), int) and _is(version.get("restored_from"), int, optional=True)
                     and isinstance(version.get("sha256"), str) and SHA.fullmatch(version["sha256"])
                     and f"files/{version['sha256']}" in names, "a document version is malformed or its file is "
                                                                 "missing.")
            numbers.add(version["number"])
        _require(document["version"] in numbers, "a document's current version is not among its versions.")


def _is(value, kind, *, optional: bool = False, limit: int | None = None) -> bool:
    if value is None:
        return optional
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31
    return isinstance(value, kind) and (limit is None or len(value) <= limit)


def _check_chunk(row: dict, dimension: int) -> None:
    ok = (isinstance(row, dict) and _is(row.get("text"), str, limit=1_000_000) and _is(row.get("position"), int)
          and all(_is(row.get(n), int) for n in ("char_start", "char_end", "token_count"))
          and all(_is(row.get(n), int, optional=True) for n in ("page_start", "page_end"))
          and _is(row.get("section"), str, limit=500) and _is(row.get("embedding_model"), str, limit=100)
          and isinstance(row.get("text_hash"), str) and SHA.fullmatch(row["text_hash"])
          and isinstance(row.get("vector"), str))
    if not ok:
        raise ValueError("malformed chunk")
    vector_from_text(row["vector"], dimension)
