"""manage.py backup <file.zip>: the whole instance (rows and stored files; no index files)."""

from django.core.management.base import BaseCommand

from backend.documents import backups


class Command(BaseCommand):
    help = "Write the whole instance (database rows and stored files) to a backup archive."

    def add_arguments(self, parser):
        parser.add_argument("path", help="the archive to write (a .zip)")

    def handle(self, *args, path, **options):
        counts = backups.backup(path)
        self.stdout.write(f"backup written to {path}: {counts['rows']} rows, {counts['files']} files"
                          + (f" ({counts['missing_files']} missing from storage)" if counts["missing_files"] else ""))
