"""manage.py restore <file.zip>: a backup into an empty, migrated database (all or nothing)."""

from django.core.management.base import BaseCommand, CommandError

from backend.documents import backups
from backend.documents.archive import ArchiveError


class Command(BaseCommand):
    help = "Load a backup archive into this instance (empty and migrated); search indexes are rebuilt."

    def add_arguments(self, parser):
        parser.add_argument("path", help="the archive manage.py backup wrote")

    def handle(self, *args, path, **options):
        try:
            with open(path, "rb") as source:
                counts = backups.restore(source)
        except ArchiveError as exc:
            raise CommandError(f"{exc.code}: {exc.message}")
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc}")
        self.stdout.write(f"restored {counts['rows']} rows and {counts['files']} files; search indexes rebuilt")
