"""OCR of a scanned PDF: the extraction step of ingestion for a file with no text layer.

The scan is made here: the corpus's 4-page pdflatex file rendered at 200 dpi (grey), its pages
repeated to ``--pages``, saved as an image-only PDF (dense text, as a scanned paper). It is read
by ``extract_with_timeout`` as ingestion reads it (warm extraction children, Tesseract with
English data), with one OCR worker and with the default (one per core); the text must be the same.

    .venv/bin/python bench/ocr.py [--pages 8]
"""

import io
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import CORPUS, Timer, parser, write  # noqa: E402


def scanned(pages: int) -> bytes:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(str(CORPUS / "pdf" / "pdflatex-4-pages.pdf"))
    images = [document[i % len(document)].render(scale=200 / 72).to_pil().convert("L") for i in range(pages)]
    buffer = io.BytesIO()
    images[0].save(buffer, "PDF", resolution=200, save_all=True, append_images=images[1:])
    return buffer.getvalue()


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--pages", type=int, default=8)
    args = p.parse_args()
    pages = 2 if args.smoke else args.pages

    from backend.rag.ocr import OcrOptions, unavailable
    from backend.rag.parsing import extract_with_timeout, shutdown

    if unavailable("eng"):
        sys.exit(f"OCR cannot run here: {unavailable('eng')}")
    data = scanned(pages)
    figures = {"pages": pages, "cores": os.cpu_count(), "runs": {}}
    texts = {}
    for workers in (1, 0):
        options = OcrOptions(max_pages=pages, page_timeout=600, time_budget=3600, workers=workers)
        with Timer() as t:
            extracted = extract_with_timeout(data, "pdf", timeout=600, max_pages=pages, max_chars=10**8, ocr=options)
        name = "one worker" if workers == 1 else "one worker per core (default)"
        texts[name] = [text for _, text in extracted.pages]
        figures["runs"][name] = {"seconds": round(t.seconds, 2), "seconds_per_page": round(t.seconds / pages, 2),
                                 "pages_read": len(extracted.metadata.get("ocr_pages", [])),
                                 "characters": sum(len(text) for text in texts[name])}
        print(f"{name}: {figures['runs'][name]}", flush=True)
    shutdown()
    figures["same_text"] = len({tuple(v) for v in texts.values()}) == 1
    write("ocr", args, figures)


if __name__ == "__main__":
    main()
