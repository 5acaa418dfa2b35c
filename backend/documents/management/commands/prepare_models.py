import time

from django.core.management.base import BaseCommand

from backend.rag import embeddings


class Command(BaseCommand):
    help = ("Make the ONNX exports of the embedding model (documents and queries) now, so the first upload "
            "and the first search do not wait for them. Safe to run again: existing files are reused.")

    def handle(self, *args, **options):
        started = time.monotonic()
        embedder = embeddings.get_embedder()
        embedder.embed_documents(["warm up"])
        embedder.embed_query("warm up")
        self.stdout.write(f"embedding model ready ({embedder.name}) in {time.monotonic() - started:.1f} s")
