import json

import pytest
from django.core.cache import cache
from django.test import Client

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _isolated(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.DATA_DIR = tmp_path
    cache.clear()
    yield
    _stop_answers()
    _finish_background_tasks()
    cache.clear()


def _finish_background_tasks(timeout: float = 60) -> None:
    """A test that uploads without waiting leaves its ingestion running on the in-process runner:
    finished here, before the database is flushed, it cannot write into the next test's database
    or fail on a closed one (seen once in the PostgreSQL pass: test_quotas)."""
    from backend.core import tasks

    if tasks._runner is not None:
        tasks._runner.wait_idle(timeout=timeout)



def _stop_answers(timeout: float = 10) -> None:
    """Answers are written to their end whoever listens: one a test left running would still be
    writing when the next test's database is flushed. Stop them and wait (this fixture is torn
    down before pytest-django's database fixture)."""
    import time

    from backend.chats import generation

    for pk, job in list(generation._jobs.items()):
        if job.loop.is_closed() or not job.loop.is_running():  # its test's event loop has ended
            generation._jobs.pop(pk, None)
        else:
            generation.cancel_here(pk)
    deadline = time.monotonic() + timeout
    while generation._jobs and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.fixture(scope="session", autouse=True)
def _close_other_threads_connections(request):
    """Threads the tests leave behind (task workers, request and start-up pools, answers' loops)
    keep their own PostgreSQL connections, and the test database cannot be dropped while they are
    open ("being accessed by other users"). Closed here, before pytest-django drops it."""
    from django.db import connection

    if connection.vendor != "postgresql":
        yield
        return
    request.getfixturevalue("django_db_setup")  # torn down after this fixture
    yield
    with request.getfixturevalue("django_db_blocker").unblock(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    connection.close()


@pytest.fixture
def faiss_engine(settings):
    """Tests of the FAISS files themselves: that engine whatever the database (also on PostgreSQL)."""
    settings.VECTOR_BACKEND = "faiss"


def on_postgresql() -> bool:
    from django.db import connection

    return connection.vendor == "postgresql"


class GraphQLClient:
    """Posts GraphQL documents to /graphql/ the way a browser or Apollo would."""

    def __init__(self, client: Client | None = None, token: str | None = None):
        self.client = client or Client()
        self.token = token

    def _headers(self, headers):
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def raw(self, query, variables=None, headers=None):
        return self.client.post("/graphql/", data=json.dumps({"query": query, "variables": variables or {}}),
                                content_type="application/json", headers=self._headers(headers))

    def __call__(self, query, variables=None, headers=None):
        response = self.raw(query, variables, headers)
        assert response.status_code == 200, response.content
        return response.json()

    def upload(self, query, variables, files: dict, headers=None):
        """A GraphQL multipart request: ``files`` maps a variable path to (name, bytes, type)."""
        from django.core.files.uploadedfile import SimpleUploadedFile

        form = {"operations": json.dumps({"query": query, "variables": variables}),
                "map": json.dumps({str(i): [path] for i, path in enumerate(files)})}
        for i, (name, content, ctype) in enumerate(files.values()):
            form[str(i)] = SimpleUploadedFile(name, content, content_type=ctype)
        response = self.client.post("/graphql/", data=form, headers=self._headers(headers))
        assert response.status_code == 200, response.content
        return response.json()


def error_codes(result):
    return [e.get("extensions", {}).get("code") for e in result.get("errors") or []]


@pytest.fixture
def gql():
    return GraphQLClient()


@pytest.fixture
def make_user(db):
    from backend.users.models import User

    counter = {"n": 0}

    def make(email=None, password=PASSWORD, **extra):
        counter["n"] += 1
        email = email or f"user{counter['n']}@example.com"
        user = User(email=email, username=extra.pop("username", email.split("@")[0]), **extra)
        user.set_password(password)
        user.save()
        return user

    return make


@pytest.fixture
def user(make_user):
    return make_user("alice@example.com")


@pytest.fixture
def alice(user):
    client = GraphQLClient()
    client.client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def bob(make_user):
    user = make_user("bob@example.com")
    client = GraphQLClient()
    client.client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def writes_between_batches(monkeypatch, make_user):
    """A long write's pauses between two transactions (``core/writes.py``) each run one write of
    another user in another connection, with a short busy timeout (waiting for a held SQLite lock
    fails instead of waiting). Returns the outcomes: "written", or the error's type; the functions
    in its ``checks`` run after each write, a falsy result recorded as "check failed"."""
    import threading

    from django.db import connection

    from backend.chats import conversations
    from backend.core import writes

    class Outcomes(list):
        def __init__(self):
            super().__init__()
            self.checks = []

    other = make_user("carol@example.com")
    chat = conversations.create_chat(other, title="Carol's", model="rag-faiss")
    outcomes = Outcomes()

    def another_user_writes():
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute("PRAGMA busy_timeout = 300")
        try:
            conversations.update_chat(other, chat.pk, title=f"renamed {len(outcomes)}")
            outcomes.append("written" if all(check() for check in outcomes.checks) else "check failed")
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test asserts
            outcomes.append(type(exc).__name__)
        finally:
            connection.close()

    def pause(seconds):
        thread = threading.Thread(target=another_user_writes)
        thread.start()
        thread.join()

    monkeypatch.setattr(writes.time, "sleep", pause)
    return outcomes
