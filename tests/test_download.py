"""Bundles over HTTP (RELIABILITY U5/U6/U7) from a server on 127.0.0.1 started here: endless
and stalled downloads abort, an interrupted one resumes, a wrong Content-Range is never
spliced, and a downloaded signed bundle installs through the CLI."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agent.models.bundle import BundleRejected, generate_key, sign_bundle, write_key
from agent.models.download import download, unpack
from agent.models.store import ModelStore
from tests.conftest import run_agent
from tests.tiny_models import B, model_folder

BODY = bytes(range(256)) * 4096  # 1 MiB with a recognizable pattern


class _Handler(BaseHTTPRequestHandler):
    body = BODY
    seen: list[tuple[str, str | None]] = []  # noqa: RUF012 - shared on purpose (one server)
    dropped: set[str] = set()  # noqa: RUF012

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass

    def _send(self, data: bytes, start: int, total: int, partial: bool) -> None:
        self.send_response(206 if partial else 200)
        self.send_header("Content-Length", str(len(data)))
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{start + len(data) - 1}/{total}")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        rng = self.headers.get("Range")
        type(self).seen.append((self.path, rng))
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        body = type(self).body
        if self.path == "/endless":
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(100_000):  # bounded: 6.4 GB at most, the client stops far earlier
                    self.wfile.write(b"x" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif self.path == "/stall":
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:1000])
            self.wfile.flush()
            time.sleep(3.0)
        elif self.path in ("/drop", "/badrange") and self.path not in type(self).dropped:
            type(self).dropped.add(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])  # then the connection closes
        elif self.path == "/badrange" and rng:
            # A broken proxy: answers a range request with bytes from the wrong place.
            self._send(body[start + 10 :], start + 10, len(body), partial=True)
        elif rng:
            self._send(body[start:], start, len(body), partial=True)
        else:
            self._send(body, 0, len(body), partial=False)


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.seen = []
    _Handler.dropped = set()
    _Handler.body = BODY
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_whole_download_with_hash(server: str, tmp_path: Path) -> None:
    sha = hashlib.sha256(BODY).hexdigest()
    out = download(f"{server}/ok", tmp_path / "b.tar", max_bytes=2_000_000, sha256=sha)
    assert out.read_bytes() == BODY
    with pytest.raises(BundleRejected) as info:
        download(f"{server}/ok", tmp_path / "c.tar", max_bytes=2_000_000, sha256="0" * 64)
    assert info.value.code == "hash_mismatch" and not (tmp_path / "c.tar.part").exists()


def test_endless_and_oversized_downloads_abort(server: str, tmp_path: Path) -> None:
    with pytest.raises(BundleRejected) as info:
        download(f"{server}/endless", tmp_path / "e.tar", max_bytes=500_000)
    assert info.value.code == "too_large" and not (tmp_path / "e.tar.part").exists()
    with pytest.raises(BundleRejected) as info:
        download(f"{server}/ok", tmp_path / "o.tar", max_bytes=1000)  # Content-Length says no
    assert info.value.code == "too_large"


def test_stalled_download_gives_up(server: str, tmp_path: Path) -> None:
    with pytest.raises(BundleRejected) as info:
        download(
            f"{server}/stall", tmp_path / "s.tar", max_bytes=2_000_000, stall_s=0.5, attempts=2
        )
    assert info.value.code == "download_failed" and "2 attempts" in str(info.value)


def test_interrupted_download_resumes_with_range(server: str, tmp_path: Path) -> None:
    out = download(f"{server}/drop", tmp_path / "d.tar", max_bytes=2_000_000)
    assert out.read_bytes() == BODY
    assert _Handler.seen == [("/drop", None), ("/drop", f"bytes={len(BODY) // 2}-")]


def test_wrong_content_range_is_never_spliced(server: str, tmp_path: Path) -> None:
    out = download(f"{server}/badrange", tmp_path / "r.tar", max_bytes=2_000_000)
    assert out.read_bytes() == BODY  # started over, not glued at the wrong offset
    assert [r for _, r in _Handler.seen] == [None, f"bytes={len(BODY) // 2}-", None]


def _tar(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(folder, arcname=folder.name)
    return buf.getvalue()


def test_unpack_refuses_links_and_escapes(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        link = tarfile.TarInfo("b/manifest.json")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    (tmp_path / "evil.tar").write_bytes(buf.getvalue())
    with pytest.raises(BundleRejected) as info:
        unpack(tmp_path / "evil.tar", tmp_path / "out")
    assert info.value.code == "bad_archive"


def test_cli_installs_a_signed_bundle_from_a_url(server: str, tmp_path: Path) -> None:
    pair = generate_key()
    write_key(pair, tmp_path / "k")
    root = ModelStore(model_folder(tmp_path / "store", "tiny").parent).root
    bundle = model_folder(tmp_path / "new", "tiny", version="2.0", bias=B + 1.0)
    sign_bundle(bundle, tmp_path / "k", release=2)
    _Handler.body = _tar(bundle)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"models:\n  trusted_keys:\n    - {pair.public_b64}\n")
    sha = hashlib.sha256(_Handler.body).hexdigest()
    res = run_agent(
        "models", "install", f"{server}/bundle.tar", "--sha256", sha, "--dir", str(root),
        "-c", str(cfg), timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert ModelStore(root).manifest("tiny").version == "2.0"
    res = run_agent(
        "models", "install", f"{server}/bundle.tar", "--dir", str(root), "-c", str(cfg),
        timeout=120,
    )  # fmt: skip
    assert res.returncode == 1 and "version_not_newer" in res.stderr


class _Chunked(BaseHTTPRequestHandler):
    """Chunked transfer that breaks off mid-body the first time (IncompleteRead)."""

    broken = False

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if not type(self).broken:
            type(self).broken = True
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n" % 1000 + BODY[:1000] + b"\r\n")
            self.wfile.write(b"%x\r\n" % 5000 + BODY[1000:1100])  # promised 5000, then gone
            self.wfile.flush()
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)


def test_a_chunked_body_that_breaks_off_is_retried(tmp_path: Path) -> None:
    _Chunked.broken = False
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Chunked)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/c"
        assert download(url, tmp_path / "c.tar", max_bytes=2_000_000).read_bytes() == BODY
    finally:
        httpd.shutdown()
        httpd.server_close()
