"""The real ``edge-agent run`` daemon in tests, and signed model updates served to it.

Shared by tests/test_updates.py and tests/test_homeassistant.py: a file server on 127.0.0.1,
bundles as tar archives, a copy of the shipped store with the command model as a newer
version, and starting/stopping the daemon by its own PID.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import threading
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.conftest import ROOT, SAMPLES, agent_cmd

# The shipped command model's version, and the one a test update gives it (next patch).
SHIPPED = json.loads((ROOT / "models" / "speech_command_int8" / "manifest.json").read_text())[
    "version"
]
_major, _minor, _patch = [*SHIPPED.split("."), "0", "0"][:3]
UPDATED = f"{_major}.{_minor}.{int(_patch) + 1}"


class FileServer:
    """``files`` (path -> body) served over HTTP on 127.0.0.1 at ``url``."""

    def __init__(self, url: str, files: dict[str, bytes]) -> None:
        self.url = url
        self.files = files


@contextmanager
def serve_files() -> Iterator[FileServer]:
    files: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = files.get(self.path)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield FileServer(f"http://127.0.0.1:{httpd.server_address[1]}", files)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def tar_folder(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(folder, arcname=folder.name)
    return buf.getvalue()


def long_audio(seconds: int, out: Path) -> Path:
    """The person_command scene's audio repeated to at least ``seconds``."""
    scene = SAMPLES / "person_command" / "audio.wav"
    with wave.open(str(scene)) as src:
        params, frames = src.getparams(), src.readframes(src.getnframes())
    with wave.open(str(out), "wb") as dst:
        dst.setparams(params)
        dst.writeframes(frames * (seconds // 8 + 1))
    return out


def store_and_update(tmp_path: Path, version: str = UPDATED) -> tuple[Path, Path]:
    """A copy of the shipped store, and the command model again as ``version`` (unsigned)."""
    store = tmp_path / "store"
    shutil.copytree(ROOT / "models", store)
    bundle = tmp_path / "upd" / "speech_command_int8"
    shutil.copytree(store / "speech_command_int8", bundle)
    data = json.loads((bundle / "manifest.json").read_text())
    data["version"] = version
    (bundle / "manifest.json").write_text(json.dumps(data, indent=2))
    return store, bundle


def start_agent(cfg: Path, log: Path | None = None) -> subprocess.Popen[str]:
    """``edge-agent run``; stderr is kept for the assertion messages: piped (read it with
    ``communicate``), or appended to ``log`` for a run too long for a pipe's buffer."""
    if log is None:
        return subprocess.Popen(
            agent_cmd("run", "--config", str(cfg)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    with log.open("a", encoding="utf-8") as out:
        return subprocess.Popen(
            agent_cmd("run", "--config", str(cfg)),
            stdout=subprocess.DEVNULL,
            stderr=out,
            stdin=subprocess.DEVNULL,
            text=True,
        )


def stop_agent(proc: subprocess.Popen[str]) -> str:
    """SIGTERM (SIGKILL after 30 s) this process; returns its piped stderr ('' if logged)."""
    if proc.poll() is None:
        proc.terminate()
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    return err or ""
