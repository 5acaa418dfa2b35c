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
    assert body["checks"]["database"] == {"ok": True, "vendor": "sqlite"}
    assert body["checks"]["channel_layer"] == {"ok": True, "backend": "InMemoryChannelLayer"}
    assert body["checks"]["embedding_model"]["ok"] is True


@pytest.mark.django_db
def test_healthz_says_when_a_part_is_down(client, monkeypatch):
    from backend.core import health

    def broken():
        raise ConnectionError("down")

    monkeypatch.setattr(health, "_database", broken)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == {"ok": False, "error": "ConnectionError"}


def _manage(env_overrides, *args):
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_ENV"}}
    env.update(env_overrides, DJANGO_SETTINGS_MODULE="backend.settings")
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_production_refuses_to_start_without_secret_key_or_hosts(tmp_path):
    missing_key = _manage({"DJANGO_ENV": "production", "ALLOWED_HOSTS": "api.example.com", "DATA_DIR": str(tmp_path)}, "check")
    assert missing_key.returncode != 0 and "SECRET_KEY must be set" in missing_key.stderr
    missing_hosts = _manage({"DJANGO_ENV": "production", "SECRET_KEY": "x" * 60, "DATA_DIR": str(tmp_path)}, "check")
    assert missing_hosts.returncode != 0 and "ALLOWED_HOSTS must be set" in missing_hosts.stderr


def test_production_passes_the_deploy_check(tmp_path):
    result = _manage({"DJANGO_ENV": "production", "SECRET_KEY": "k3y-" + "a1B2c3D4e5" * 6,
                      "ALLOWED_HOSTS": "api.example.com", "DATA_DIR": str(tmp_path)},
                     "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr


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
