"""The backend's real clients, run by the same test command: graphql-codegen and tsc on the
checked-in operations, Apollo Client end to end, GraphiQL in headless Chromium.

The Node project is ``client/`` (its tests start their own daphne on a fresh database); the
README's test command installs it with ``npm ci``.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "client"


def npm(*args, timeout=600):
    if not (CLIENT / "node_modules").is_dir():
        pytest.fail("client/node_modules is missing: run `npm ci --prefix client` (scripts/test.sh does)")
    env = {**os.environ, "BACKEND_PYTHON": sys.executable, "TEST_OUTPUT_DIR": str(ROOT / "test-output"),
           "NO_COLOR": "1"}
    result = subprocess.run(["npm", "run", "--silent", *args], cwd=CLIENT, env=env, capture_output=True,
                            text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    return output


def test_codegen_generates_types_that_compile():
    npm("codegen")
    generated = (CLIENT / "src" / "generated" / "graphql.ts").read_text()
    assert "export const ChatStreamDocument" in generated
    possible = (CLIENT / "src" / "generated" / "possible-types.ts").read_text()
    assert '"ChatStreamEvent"' in possible and '"Node"' in possible
    npm("typecheck")


def test_codegen_writes_the_trusted_documents_the_server_loads():
    import json

    from backend.schema import persisted

    npm("codegen")
    documents = json.loads((CLIENT / "src" / "generated" / "persisted-documents.json").read_text())
    assert len(documents) > 50
    for digest, text in documents.items():  # each key is the SHA-256 of its text, as the server checks
        assert persisted.sha256(text) == digest and "__typename" in text


def test_the_schema_linter_refuses_an_undocumented_field(tmp_path):
    """scripts/schema_checks.sh lints schema.graphql in the test command; here, that it can fail."""
    eslint = [str(CLIENT / "node_modules" / ".bin" / "eslint"), "--config", str(CLIENT / "eslint.config.mjs"),
              "schema.graphql"]
    (tmp_path / "schema.graphql").write_text('"""Reads."""\ntype Query {\n  """Documented."""\n  ok: Boolean\n'
                                             '  undocumented: Int\n}\n')
    result = subprocess.run(eslint, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "undocumented" in result.stdout, result.stdout + result.stderr
    assert "require-description" in result.stdout
    checked_in = subprocess.run(eslint, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert checked_in.returncode == 0, checked_in.stdout + checked_in.stderr


def test_operations_cover_the_schema():
    output = npm("test:operations")
    assert "# fail 0" in output and "# pass 4" in output


def test_apollo_client_end_to_end():
    npm("codegen")
    output = npm("test:apollo")
    assert "# fail 0" in output and "# pass 7" in output, output[-4000:]


def test_graphiql_in_headless_chromium():
    npm("codegen")
    output = npm("test:graphiql")
    assert "# fail 0" in output and "# pass 3" in output, output[-4000:]
    assert (ROOT / "test-output" / "graphiql.png").stat().st_size > 10_000
