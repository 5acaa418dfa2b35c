"""Long writes (imports) in short transactions, so other users' writes get in between.

SQLite has one write lock for the whole database: a transaction of many thousand rows holds every
other user's write (a turn, an upload) for as long, and past its busy timeout they fail. A long
write is cut into batches, each its own transaction, with ``let_other_writers_in()`` between two.
"""

import time

from django.db import connection

PAUSE = 0.1  # longer than SQLite's busy-wait step (100 ms), so a waiting writer gets the lock


def let_other_writers_in() -> None:
    """Between two of a long write's transactions (PostgreSQL's writers do not queue on one lock)."""
    if connection.vendor == "sqlite":
        time.sleep(PAUSE)
