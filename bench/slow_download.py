"""Slow downloads: the server's memory while clients open a large download and do not read it.

Both launchers serve the same instance in turn, each freshly started (so no heap freed by the
upload hides what a download holds): daphne itself (`python -m daphne`) and the project's
`python -m backend.serve` (daphne whose HTTP `send` waits while a client's socket is full). N
clients, each with a 32 KiB receive buffer, ask for the same document's original file at once,
read its first block and stop; after a few seconds the server's RSS is read, then every client
reads the rest, which must be the file byte for byte.

    .venv/bin/python bench/slow_download.py [--clients 4] [--megabytes 24]
"""

import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import services  # noqa: E402
from bench.common import parser, write  # noqa: E402


def _serve(launcher: str, data: Path, log: Path) -> services.AppProcess:
    port = services.free_port()
    web = services.AppProcess([sys.executable, "-m", launcher, "-b", "127.0.0.1", "-p", str(port),
                               "backend.asgi:application"], services.app_env(data), log, port=port)
    services.wait_warm(web.http)
    return web


def _read_all(sock: socket.socket, first: bytes) -> bytes:
    received = bytearray(first)
    while chunk := sock.recv(1 << 20):
        received += chunk
    return bytes(received).partition(b"\r\n\r\n")[2]


def measure(launcher: str, data: Path, path: str, token: str, body: bytes, clients: int, pause: float) -> dict:
    import psutil

    web = _serve(launcher, data, data / f"{launcher}.log")
    try:
        process = psutil.Process(web.process.pid)
        time.sleep(1)
        before = process.memory_info().rss
        sockets = []
        for _ in range(clients):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
            sock.connect(("127.0.0.1", web.port))
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                         "Connection: close\r\n\r\n".encode())
            sockets.append((sock, sock.recv(64 * 1024)))
        peak = before
        deadline = time.monotonic() + pause
        while time.monotonic() < deadline:
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.1)
        whole = 0
        for sock, first in sockets:
            whole += _read_all(sock, first) == body
            sock.close()
        return {"rss_before_mib": round(before / 2**20, 1), "rss_peak_mib": round(peak / 2**20, 1),
                "rss_growth_mib": round((peak - before) / 2**20, 1), "clients_with_the_whole_file": whole}
    finally:
        web.stop()


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--megabytes", type=int, default=24)
    p.add_argument("--pause", type=float, default=4.0, help="seconds the clients read nothing")
    args = p.parse_args()
    if args.smoke:
        args.clients, args.megabytes, args.pause = 1, 2, 1.0

    data = Path(tempfile.mkdtemp(prefix="bench-slow-"))
    services.migrate(services.app_env(data))
    line = b"The quick brown fox jumps over the lazy dog, again and again and again.\n"
    body = line * (args.megabytes * 1024 * 1024 // len(line))
    web = _serve("backend.serve", data, data / "setup.log")
    try:
        token = services.api_token(web.http, "slow@example.com")
        path = services.uploaded_file_path(web.http, token, "big.txt", body, "text/plain")
    finally:
        web.stop()
    figures = {"clients": args.clients, "file_bytes": len(body), "pause_seconds": args.pause}
    for launcher in ("daphne", "backend.serve"):
        figures[launcher] = measure(launcher, data, path, token, body, args.clients, args.pause)
        print(f"{launcher:14s} {figures[launcher]}", flush=True)
    write("slow_download", args, figures)


if __name__ == "__main__":
    main()
