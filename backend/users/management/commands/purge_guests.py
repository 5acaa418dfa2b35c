from django.core.management.base import BaseCommand

from backend.users.guests import purge_expired_guests


class Command(BaseCommand):
    help = "Delete guest accounts whose time has run out, with everything they own."

    def handle(self, *args, **options):
        count = purge_expired_guests()
        self.stdout.write(f"purged {count} expired guest account(s)")
