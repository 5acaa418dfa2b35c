"""One consistent view of the whole database for a long read (a backup), while the server writes on.

Read table after table in autocommit, a backup taken from a running instance could hold a message
whose chat was created after the chats were read: an archive whose rows do not fit together, and a
restore that fails on its foreign keys. Inside ``snapshot()`` every query of the alias it yields
sees the database as it was at its first read, and writers are not blocked:

- PostgreSQL: a READ ONLY, REPEATABLE READ transaction (its own connection, outside the pool);
- SQLite: a deferred transaction in WAL mode (a reader's snapshot; the server's connections start
  theirs IMMEDIATE, which would hold the one write lock for the whole read).
"""

import copy
import itertools
from contextlib import contextmanager

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.utils import load_backend

_numbers = itertools.count()


@contextmanager
def snapshot():
    """Yields a database alias to read through (``Model.objects.using(alias)``)."""
    base = connections[DEFAULT_DB_ALIAS]
    alias = f"snapshot-{next(_numbers)}"
    settings_dict = copy.deepcopy(base.settings_dict)
    options = settings_dict.setdefault("OPTIONS", {})
    options.pop("pool", None)
    if base.vendor == "sqlite":
        options["transaction_mode"] = "DEFERRED"
    settings_dict["CONN_MAX_AGE"] = 0
    # This thread's own connection, not a configured alias: no other code (the request cleanup
    # that closes every configured connection, a test's allowed databases) takes it for its own.
    wrapper = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, alias)
    connections[alias] = wrapper
    try:
        with transaction.atomic(using=alias):
            if base.vendor == "postgresql":
                with connections[alias].cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield alias
    finally:
        wrapper.close()
        del connections[alias]
