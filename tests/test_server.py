"""The server as deployed: schema file, health report, production settings."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_checked_in_schema_matches_the_code():
    from backend.schema import schema

    exported = schema.as_str().strip()
    checked_in = (ROOT / "schema.graphql").read_text().strip()
    assert exported == checked_in, "schema.graphql is stale: run `python manage.py export_schema backend.schema --path schema.graphql`"


@pytest.mark.django_db
def test_healthz_reports_each_part(client):
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    from django.db import connection

    assert body["checks"]["database"] == {"ok": True, "vendor": connection.vendor}
    assert body["checks"]["channel_layer"] == {"ok": True, "backend": "InMemoryChannelLayer"}
    assert body["checks"]["embedding_model"]["ok"] is True
    assert body["checks"]["cache"] == {"ok": True, "backend": "LocMemCache"}
    assert body["checks"]["storage"] == {"ok": True, "backend": "FileSystemStorage"}


@pytest.mark.django_db
def test_readiness_fails_when_the_bucket_cannot_be_reached(client, settings):
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        "bucket_name": "uploads", "endpoint_url": "http://127.0.0.1:1", "region_name": "us-east-1",
        "access_key": "testing", "secret_key": "testing"}}}
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["storage"]["ok"] is False


@pytest.mark.django_db
def test_liveness_needs_nothing_but_the_process_and_readiness_reports_the_broker(client, monkeypatch, settings):
    from backend.core import health

    def broken():
        raise ConnectionError("down")

    monkeypatch.setattr(health, "_database", broken)
    assert client.get("/livez").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["broker"] == {"ok": True, "backend": "in-process"}
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    assert client.get("/readyz").json()["checks"]["broker"] == {"ok": False, "error": "OperationalError"}


@pytest.mark.django_db
def test_healthz_says_when_a_part_is_down(client, monkeypatch):
    from backend.core import health

    def broken():
        raise ConnectionError("down")

    monkeypatch.setattr(health, "_database", broken)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == {"ok": False, "error": "ConnectionError"}


@pytest.mark.django_db
def test_a_web_process_is_not_ready_while_it_loads_the_query_encoder(client):
    """A load balancer sends no search to a process still loading its model (seconds at start)."""
    from backend.rag import embeddings

    embeddings._warming.set()
    try:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["embedding_model"]["warming"] is True
    finally:
        embeddings._warming.clear()
    assert client.get("/readyz").status_code == 200
    assert client.get("/livez").status_code == 200  # alive all along: no restart for a warm-up


def _manage(env_overrides, *args):
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_ENV",
                                                            "BEHIND_TLS_PROXY"}}
    env.update(env_overrides, DJANGO_SETTINGS_MODULE="backend.settings")
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_production_refuses_to_start_without_secret_key_or_hosts(tmp_path):
    missing_key = _manage({"DJANGO_ENV": "production", "ALLOWED_HOSTS": "api.example.com", "DATA_DIR": str(tmp_path)}, "check")
    assert missing_key.returncode != 0 and "SECRET_KEY must be set" in missing_key.stderr
    missing_hosts = _manage({"DJANGO_ENV": "production", "SECRET_KEY": "x" * 60, "DATA_DIR": str(tmp_path)}, "check")
    assert missing_hosts.returncode != 0 and "ALLOWED_HOSTS must be set" in missing_hosts.stderr


def test_production_passes_the_deploy_check(tmp_path):
    production = {"DJANGO_ENV": "production", "SECRET_KEY": "k3y-" + "a1B2c3D4e5" * 6,
                  "ALLOWED_HOSTS": "api.example.com", "DATA_DIR": str(tmp_path)}
    result = _manage({**production, "BEHIND_TLS_PROXY": "true"}, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    # Plain HTTP without a TLS proxy (compose's default) is allowed, and the check says so.
    plain = _manage(production, "check", "--deploy", "--fail-level", "WARNING")
    assert plain.returncode != 0 and "security.W008" in plain.stderr
    assert "security.W0" not in plain.stderr.replace("security.W008", "")


def test_production_hides_introspection_and_graphiql(tmp_path):
    code = ("import django; django.setup();"
            "from django.test import Client;"
            "c = Client(HTTP_HOST='api.example.com', HTTP_X_FORWARDED_PROTO='https');"
            "r = c.post('/graphql/', {'query': '{ __schema { types { name } } }'}, content_type='application/json');"
            "print(r.json()['errors'][0]['extensions']['code']);"
            "print(c.get('/graphql/', headers={'Accept': 'text/html'}).status_code)")
    env = {k: v for k, v in os.environ.items()}
    env.update({"DJANGO_ENV": "production", "SECRET_KEY": "s" * 60, "ALLOWED_HOSTS": "api.example.com",
                "DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "backend.settings"})
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    code_line, ide_status = result.stdout.split()
    assert code_line == "BAD_USER_INPUT"
    assert ide_status != "200"


def _settings_of(env_overrides, *names):
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_ENV", "BEHIND_TLS_PROXY"}}
    env.update(env_overrides, DJANGO_SETTINGS_MODULE="backend.settings", DJANGO_ENV="production",
               SECRET_KEY="k3y-" + "a1B2c3D4e5" * 6, ALLOWED_HOSTS="localhost")
    code = "from django.conf import settings as s; print(repr([getattr(s, n, None) for n in %r]))" % (names,)
    result = subprocess.run([sys.executable, "-c", "import django; django.setup(); " + code], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return eval(result.stdout.strip().splitlines()[-1])


def test_production_without_a_tls_proxy_answers_plain_http(tmp_path):
    redirect, proxy_header, exempt = _settings_of({"DATA_DIR": str(tmp_path)}, "SECURE_SSL_REDIRECT",
                                                  "SECURE_PROXY_SSL_HEADER", "SECURE_REDIRECT_EXEMPT")
    assert redirect is False and proxy_header is None
    redirect, proxy_header, exempt = _settings_of({"DATA_DIR": str(tmp_path), "BEHIND_TLS_PROXY": "true"},
                                                  "SECURE_SSL_REDIRECT", "SECURE_PROXY_SSL_HEADER",
                                                  "SECURE_REDIRECT_EXEMPT")
    assert redirect is True and proxy_header == ("HTTP_X_FORWARDED_PROTO", "https")
    assert r"^healthz$" in exempt  # probes speak plain HTTP to the process itself


def test_postgresql_connections_are_pooled_and_bounded(tmp_path):
    databases, concurrency = _settings_of({"DATA_DIR": str(tmp_path), "DATABASE_URL": "postgres://u:p@db:5432/chat",
                                           "DB_POOL_MAX_SIZE": "6"}, "DATABASES", "HTTP_MAX_CONCURRENCY")
    assert databases["default"]["CONN_MAX_AGE"] == 0
    assert databases["default"]["OPTIONS"]["pool"]["max_size"] == 6 and concurrency == 6


def test_the_compose_file_runs_the_worker_the_tests_run_and_can_scale_the_api():
    import yaml

    from bench.services import COMPOSE_WORKER

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["worker"]["command"] == COMPOSE_WORKER
    assert "ports" not in services["backend"]  # replicas behind the proxy: no fixed host port
    assert services["proxy"]["volumes"][0].split(":")[0] == "./deploy/nginx.conf"
    assert (ROOT / "deploy" / "nginx.conf").exists()
    assert "BEHIND_TLS_PROXY:-false" in services["backend"]["environment"]["BEHIND_TLS_PROXY"]
    assert "pgvector" in services["db"]["image"]
    assert services["backend"]["environment"]["VECTOR_BACKEND"] == "pgvector"  # as tests/test_deployment.py runs


def test_the_dockerfile_copies_and_runs_only_what_exists():
    """No Docker engine here: the image's recipe is checked against the repository instead. Every
    file it copies exists, every management command it runs is one, its server and worker
    commands name modules that load, it runs as a non-root user, and the compose file's health
    check asks a path the app serves."""
    import importlib
    import re
    import shlex

    import yaml
    from django.core.management import get_commands
    from django.urls import resolve

    text = (ROOT / "Dockerfile").read_text()
    instructions = [line.strip() for line in re.sub(r"\\\n\s*", " ", text).splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    stages = 0
    for line in instructions:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stages += 1
        if keyword == "COPY" and "--from=" not in rest:
            sources = [part for part in shlex.split(rest) if not part.startswith("--")][:-1]
            for source in sources:
                # The first stage copies from backend/graphiql/ relative to the repository root.
                assert (ROOT / source).exists(), f"COPY {source}: no such file"
        for command in re.findall(r"manage\.py (\w+)", line):
            assert command in get_commands(), f"manage.py {command}: no such command"
    assert stages == 2
    cmd = next(line for line in instructions if line.upper().startswith("CMD"))
    module, _, attribute = re.search(r"-m backend\.serve .*? ([\w.]+:\w+)", cmd).group(1).partition(":")
    assert hasattr(importlib.import_module(module), attribute)
    users = [line.split()[1] for line in instructions if line.upper().startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert (ROOT / "backend" / "graphiql" / "copy-assets.mjs").exists()

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    worker = compose["services"]["worker"]["command"]
    assert worker[:3] == ["celery", "-A", "backend"] and importlib.util.find_spec("backend.celery")
    check = " ".join(compose["services"]["backend"]["healthcheck"]["test"])
    path = re.search(r"http://127\.0\.0\.1:8000(/\w+)", check).group(1)
    resolve(path)  # a path the app serves
    assert compose["services"]["backend"]["healthcheck"]["test"][1] == "python"  # in the image
