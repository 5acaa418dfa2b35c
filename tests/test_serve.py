"""The server process (``python -m backend.serve``, daphne with flow control): a download read
slowly, or not at all, is read from its file only as fast as the client takes it; a client that
goes away releases its file; the body arrives whole."""

import hashlib
import socket
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pytest

from bench import services

SIZE = 16 * 1024 * 1024


@pytest.fixture(scope="module")
def live():
    data = Path(tempfile.mkdtemp(prefix="serve-"))
    services.migrate(services.app_env(data))
    web = services.daphne(data, data / "web.log")
    try:
        token = services.api_token(web.http, "slow@example.com")
        line = b"The quick brown fox jumps over the lazy dog, again and again and again.\n"
        body = line * (SIZE // len(line))
        yield web, token, services.uploaded_file_path(web.http, token, "big.txt", body, "text/plain"), body
    finally:
        web.stop()


def _request(port: int, path: str, token: str) -> socket.socket:
    """A client with a small receive buffer that sends its request and reads nothing yet."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                 "Connection: close\r\n\r\n".encode())
    return sock


def _kernel_send_buffer_max() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 4 * 1024 * 1024


def _stored_file_reads(pid: int, data_dir: str) -> list[int]:
    """How far the server has read each uploaded file it holds open."""
    return [f.position for f in psutil.Process(pid).open_files() if f.path.startswith(data_dir) and "/media/" in f.path]


def test_a_client_that_stops_reading_holds_the_file_not_the_servers_memory(live):
    web, token, path, body = live
    sock = _request(web.port, path, token)
    try:
        first = sock.recv(64 * 1024)
        assert first.startswith(b"HTTP/1.1 200")
        time.sleep(2)  # daphne alone read the whole file into Twisted's buffer by now (and closed it)
        reads = _stored_file_reads(web.process.pid, web.env["DATA_DIR"])
        assert len(reads) == 1, reads
        # Read ahead of the client: at most the kernel's socket buffer, Twisted's 64 KiB and a block or two.
        ahead = _kernel_send_buffer_max() + 2 * 1024 * 1024
        if ahead < SIZE:  # (a host whose socket buffers hold the whole file proves only the open file)
            assert reads[0] - len(first) < ahead, (reads, ahead)
        received = bytearray(first)
        while chunk := sock.recv(1 << 20):
            received += chunk
    finally:
        sock.close()
    head, _, content = bytes(received).partition(b"\r\n\r\n")
    assert f"content-length: {len(body)}".encode() in head.lower()
    assert hashlib.sha256(content).hexdigest() == hashlib.sha256(body).hexdigest()


def test_a_client_that_goes_away_midway_releases_the_file_and_the_server_answers_on(live):
    web, token, path, body = live
    sock = _request(web.port, path, token)
    assert sock.recv(64 * 1024).startswith(b"HTTP/1.1 200")
    time.sleep(0.5)
    assert len(_stored_file_reads(web.process.pid, web.env["DATA_DIR"])) == 1
    sock.close()
    deadline = time.monotonic() + 15
    while _stored_file_reads(web.process.pid, web.env["DATA_DIR"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _stored_file_reads(web.process.pid, web.env["DATA_DIR"]) == []
    with httpx.Client(base_url=web.http, timeout=60, headers={"Authorization": f"Bearer {token}"}) as client:
        response = client.get(path)
    assert response.status_code == 200 and response.content == body
    assert "Traceback" not in web.output()
