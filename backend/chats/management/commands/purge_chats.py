from django.core.management.base import BaseCommand

from backend.chats.conversations import purge_expired_chats


class Command(BaseCommand):
    help = "Delete chats older than each user's chat history retention setting."

    def handle(self, *args, **options):
        self.stdout.write(f"purged {purge_expired_chats()} chat(s)")
