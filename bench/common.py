"""What every benchmark shares: a private Django set-up, the machine's description, results files.

Each script runs on the embedded defaults in a fresh temporary DATA_DIR (its own SQLite database,
files and FAISS indexes), so a run never touches `var/` and two runs never share state.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
EVAL = Path(os.environ.get("EVAL_DIR", ROOT.parent / "shared" / "eval"))
if not EVAL.exists():
    EVAL = Path("/work/shared/eval")
CORPUS = Path(os.environ.get("CORPUS_DIR", ROOT.parent / "shared" / "corpus"))
if not CORPUS.exists():
    CORPUS = Path("/work/shared/corpus")

EXTERNAL = ("DATABASE_URL", "SQLITE_PATH", "REDIS_URL", "CELERY_BROKER_URL", "STORAGE_BACKEND", "MEDIA_ROOT",
            "OPENAI_API_KEY", "OPENAI_BASE_URL", "CLOUDFLARE_API_TOKEN", "CLOUDFLARE_ACCOUNT_ID", "RAG_GENERATOR",
            "INDEX_DIR", "DJANGO_SETTINGS_MODULE")


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--smoke", action="store_true", help="a tiny run that only proves the script works")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for <name>.json (default bench/results)")
    return p


def bench_env(data_dir: Path, **extra) -> dict:
    """The environment of a server or a set-up on the embedded defaults in ``data_dir``."""
    env = {k: v for k, v in os.environ.items() if k not in EXTERNAL}
    # The embedded defaults with DEBUG off, as served: DEBUG keeps and formats every SQL query.
    # Quotas and throttles off: a benchmark's few users do what a crowd would.
    env.update(DJANGO_ENV="development", DJANGO_DEBUG="0", DATA_DIR=str(data_dir), INGEST_RESUME_ON_START="0",
               QUOTAS_ENABLED="0", THROTTLES_ENABLED="0",
               EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend",
               LOG_LEVEL="WARNING", **{k: str(v) for k, v in extra.items()})
    return env


def setup_django(data_dir: Path | None = None, **extra) -> Path:
    """Django in this process, on a fresh database in ``data_dir`` (a new temp folder by default)."""
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="bench-"))
    env = bench_env(data_dir, **extra)  # read before clearing: the caller's variables pass through
    os.environ.clear()
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "backend.settings"
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return data_dir


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    try:
        mem = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
        info["memory_gib"] = round(int(mem) / 1024 / 1024, 1)
    except (OSError, IndexError, ValueError):
        pass
    return info


def percentile(values, p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = (len(ordered) - 1) * p / 100
    low, high = int(index), min(int(index) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)


def summary_ms(seconds) -> dict:
    values = [s * 1000 for s in seconds]
    return {"p50_ms": round(percentile(values, 50), 2), "p95_ms": round(percentile(values, 95), 2),
            "mean_ms": round(statistics.fmean(values), 2) if values else None, "n": len(values)}


def rss_mib(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def write(name: str, args, figures: dict) -> Path:
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{name}.json"
    record = {"benchmark": name, "smoke": bool(args.smoke), "ran_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine(), **figures}
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwritten {path}")
    return path


class Timer:
    """Wall time (``seconds``) and this process's CPU time, every thread's (``cpu_seconds``)."""

    def __enter__(self):
        self.start, self.cpu_start = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        self.cpu_seconds = time.process_time() - self.cpu_start


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daphne:
    """daphne serving the project on a free port, on the embedded defaults in ``data_dir``."""

    def __init__(self, data_dir: Path, **extra_env):
        import subprocess

        import httpx

        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "backend.serve", "-b", "127.0.0.1", "-p", str(self.port), "backend.asgi:application"],
            cwd=ROOT, env=bench_env(data_dir, **extra_env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        body = ""
        for _ in range(600):  # ready: up, and done loading the query encoder (measured warm, as served)
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited with {self.process.returncode}")
            try:
                response = httpx.get(f"{self.http}/readyz", timeout=5)
                if response.status_code == 200:
                    return
                body = response.text
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"daphne did not become ready: {body[:500]}")

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        import subprocess

        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
