"""A tiny run of each benchmark, so the scripts keep working. The figures themselves come from
full runs (bench/README.md), never from tests."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(script, tmp_path, *extra):
    result = subprocess.run([sys.executable, f"bench/{script}.py", "--smoke", "--out", str(tmp_path), *extra],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    record = json.loads((tmp_path / f"{script}.json").read_text())
    assert record["smoke"] is True and record["machine"]["cores"] >= 1
    return record


def test_retrieval(tmp_path):
    record = run("retrieval", tmp_path)
    assert record["document_states"] == {"READY": record["documents"]}
    for strategy in ("dense", "bm25", "hybrid", "multi_query"):
        figures = record["strategies"][strategy]
        assert 0 < figures["ndcg@10"] <= 1 and 0 < figures["recall@10"] <= 1 and 0 < figures["mrr@10"] <= 1


def test_ingest(tmp_path):
    record = run("ingest", tmp_path)
    for name in ("project", "langchain", "bare_encoder"):
        assert record[name]["chunks_per_second"] > 0
    assert record["ratios"]["project_vs_langchain_documents_per_second"] > 0


def test_search_latency(tmp_path):
    record = run("search_latency", tmp_path)
    size = record["sizes"]["1000"]
    assert size["index_alone"]["n"] == 20 and size["index_alone"]["recall@10_vs_exact"] > 0.9
    for case in ("hybrid", "dense", "dense_filtered_1pct"):  # each answer had its 5 hits
        assert size["end_to_end"][case]["n"] == 20
        assert size["end_to_end"][case]["p95_ms"] >= size["end_to_end"][case]["p50_ms"] > 0


def test_streaming(tmp_path):
    record = run("streaming", tmp_path)
    assert record["unpaced"]["completed"] == record["paced"]["completed"] == 5
    assert record["websocket"]["first_token"]["n"] == 2
    assert record["resume"]["exact"] == record["resume"]["clients"] == 3
    assert record["retries"]["duplicated"] == 0 and record["retries"]["subscriptions"] == 20
    assert record["provider_alone_paced"]["clients"] == 5


def test_load(tmp_path):
    record = run("load", tmp_path)
    search, mixed = record["phases"]
    assert search["traffic"] == "search" and set(search["requests_per_s"]) == {"search"}
    assert mixed["http_500"] == 0 and mixed["internal"] == 0
    assert 0 < record["peak_client_connections"] <= record["connection_bound"]


def test_ocr(tmp_path):
    import shutil

    import pytest

    if shutil.which("tesseract") is None:
        pytest.skip("Tesseract is not installed (the test command installs it)")
    record = run("ocr", tmp_path)
    assert record["same_text"] is True
    for figures in record["runs"].values():
        assert figures["pages_read"] == 2 and figures["characters"] > 1000


def test_small_collections(tmp_path):
    record = run("small_collections", tmp_path)
    assert record["table_rows"] == 2000
    for figures in record["collections"].values():
        assert len(figures["graph_first_ms"]) == len(figures["exact_ms"]) == 2 and min(figures["exact_ms"]) > 0


def test_queries_at_scale(tmp_path):
    record = run("queries_at_scale", tmp_path)
    assert record["engine"] == "sqlite" and record["heavy_user"]["messages"] == 200
    for name in ("quota_check_before_a_turn_ms", "sweep_streaming_answers_ms", "sweep_lost_documents_ms",
                 "upload_lookups_ms", "chat_search_ms", "usage_stats_ms"):
        assert record[name] > 0


def test_backup_at_scale(tmp_path):
    record = run("backup_at_scale", tmp_path)
    assert record["instance"]["messages"] == 400 and record["instance"]["chunks"] == 40
    for step in ("backup", "restore"):
        assert record[step]["seconds"] > 0 and record[step]["peak_rss_mib"] > 0


def test_slow_download(tmp_path):
    record = run("slow_download", tmp_path)
    for launcher in ("daphne", "backend.serve"):
        assert record[launcher]["clients_with_the_whole_file"] == 1
