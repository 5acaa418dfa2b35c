"""A large chat import beside another user's writes: how long does the other user wait?

One user imports a chat of 100,000 messages (importChats' service, or with --account the same chat
in a whole account's data, importMyData's service) while another renames a chat every 50 ms; the
figures are the import's duration and the other user's write latencies (the target: none over
1 s). Embedded default (SQLite, WAL).

    .venv/bin/python bench/import_lock.py [--smoke] [--messages 100000] [--account]
"""

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import parser, percentile, setup_django, write  # noqa: E402


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--account", action="store_true", help="import the chat as part of a whole account's data")
    args = p.parse_args()
    count = 2000 if args.smoke else args.messages
    setup_django()
    from django.db import connection

    from backend.chats import conversations, imports
    from backend.users import portability
    from backend.users.accounts import register

    importer = register(email="a@example.com", password="bench passphrase 123")
    other = register(email="b@example.com", password="bench passphrase 123")
    chat = conversations.create_chat(other, model="rag-faiss")
    data = [{"title": "big", "model": "gpt-4", "messages": [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message number {i} " * 5} for i in range(count)]}]
    done, waits = threading.Event(), []

    def writer():
        while not done.is_set():
            started = time.perf_counter()
            conversations.update_chat(other, chat.pk, title=f"t{len(waits)}")
            waits.append(time.perf_counter() - started)
            time.sleep(0.05)
        connection.close()

    thread = threading.Thread(target=writer)
    thread.start()
    started = time.perf_counter()
    if args.account:
        exported = portability.export_data(importer)
        portability.import_data(importer, {**exported, "chats": {"chats": data, "presets": []}})
    else:
        imports.import_chats(importer, data)
    seconds = time.perf_counter() - started
    done.set()
    thread.join()
    ms = [w * 1000 for w in waits]
    figures = {"messages": count, "via": "importMyData" if args.account else "importChats", "import_seconds": round(seconds, 1), "other_writes": len(ms),
               "other_write_max_ms": round(max(ms), 1), "other_write_p50_ms": round(percentile(ms, 50), 1),
               "other_write_p95_ms": round(percentile(ms, 95), 1)}
    print(figures)
    write("import_lock-account" if args.account else "import_lock", args, figures)


if __name__ == "__main__":
    main()
