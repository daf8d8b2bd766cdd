"""A private Mosquitto on 127.0.0.1 and a free port, for ``demo`` and the tests.

Started and stopped by its own PID; nothing listens beyond loopback.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from agent.errors import PublishError

_LOGGER = logging.getLogger(__name__)

_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((c for c in _CANDIDATES if Path(c).is_file()), None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalBroker:
    def __init__(self, port: int | None = None) -> None:
        exe = find_mosquitto()
        if exe is None:
            raise PublishError("mosquitto is not installed (Debian: apt-get install mosquitto)")
        self.exe = exe
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="edge-agent-broker-")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> LocalBroker:
        conf = Path(self._dir.name) / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\nallow_anonymous true\npersistence false\n"
            "log_dest stdout\n",
            encoding="utf-8",
        )
        log = (Path(self._dir.name) / "mosquitto.log").open("wb")
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PublishError(
                    f"mosquitto exited with {self.proc.returncode}: {self.log_text()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    _LOGGER.debug("mosquitto pid %d on %s:%d", self.proc.pid, self.host, self.port)
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise PublishError(
            f"mosquitto did not listen on {self.host}:{self.port} within {timeout} s"
        )

    def log_text(self) -> str:
        path = Path(self._dir.name) / "mosquitto.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
