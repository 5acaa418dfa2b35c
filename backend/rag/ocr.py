"""Text from pictures: Tesseract (through pytesseract) on uploaded images and on PDF pages that
have no text layer. Plain Python; runs inside the extraction subprocess, under its memory limit.

OCR is optional: where the ``tesseract`` program or its language data is missing, ``unavailable``
says why, files that need OCR fail with OCR_UNAVAILABLE, and everything else works as before.
"""

import functools
import io
import logging
import shutil
import time
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass
class OcrOptions:
    languages: str = "eng"  # Tesseract's language codes, joined with "+" (eng+deu)
    max_pages: int = 50  # pages (or image frames) one document may have read by OCR
    page_timeout: float = 30.0  # seconds for one page
    time_budget: float = 300.0  # seconds for all the pages of one document
    dpi: int = 200  # PDF pages are rendered at this resolution
    max_pixels: int = 60_000_000  # an image (or rendered page) larger than this is refused, not decoded
    workers: int = 0  # a scan's pages read side by side in this many processes (0: one per core)
    started: float = field(default_factory=time.monotonic)
    pages_read: int = 0

    def may_read(self) -> bool:
        return self.pages_read < self.max_pages and time.monotonic() - self.started < self.time_budget


@functools.lru_cache(maxsize=8)
def unavailable(languages: str = "eng") -> str | None:
    """None when OCR can run with these languages, else why it cannot (for people). Asked of the
    installation once per process (it runs ``tesseract``): installing it takes a restart."""
    reason = _why_unavailable(languages)
    if reason:
        logger.warning("OCR is unavailable: %s", reason)
    return reason


def _why_unavailable(languages: str) -> str | None:
    if shutil.which("tesseract") is None:
        return "Tesseract is not installed on this server."
    try:
        import pytesseract

        installed = set(pytesseract.get_languages(config=""))
    except Exception as exc:  # noqa: BLE001 - a broken installation is reported, not raised
        return f"Tesseract does not run here ({type(exc).__name__})."
    missing = [code for code in languages.split("+") if code and code not in installed]
    if missing:
        return f"Tesseract has no language data for {', '.join(missing)}."
    return None


class PageTimeout(Exception):
    pass


def read(image, options: OcrOptions) -> str:
    """The text of one image (a PIL image), read in ``options.languages``."""
    import pytesseract

    options.pages_read += 1
    remaining = options.time_budget - (time.monotonic() - options.started)
    try:
        return pytesseract.image_to_string(image.convert("L"), lang=options.languages,
                                           timeout=max(1.0, min(options.page_timeout, remaining)))
    except RuntimeError as exc:  # pytesseract's "Tesseract process timeout"
        if "timeout" in str(exc).lower():
            raise PageTimeout() from exc
        raise


def open_image(data: bytes, options: OcrOptions):
    """A PIL image of ``data``, its size checked from the header before any pixel is decoded."""
    from PIL import Image

    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:  # Pillow's own guard, past twice its pixel limit
        raise ValueError("more pixels than an image may have") from exc
    width, height = image.size
    if width * height > options.max_pixels:
        raise ValueError(f"{width}×{height} pixels")
    return image
