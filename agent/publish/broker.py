"""A private Mosquitto on 127.0.0.1 and a free port, for ``demo`` and the tests.

Started and stopped by its own PID; nothing listens beyond loopback.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class TlsListener:
    """PEM files of a TLS listener; copied into the broker's own directory at start."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    require_certificate: bool = False


class LocalBroker:
    """Mosquitto for tests and ``demo``.

    ``tls`` makes the listener TLS-only; ``passwords`` (user -> password, hashed with
    ``mosquitto_passwd``) turns anonymous access off; ``persistence`` keeps sessions and
    queued messages across :meth:`restart` (same port, same data directory).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        tls: TlsListener | None = None,
        passwords: dict[str, str] | None = None,
        persistence: bool = False,
        extra_conf: str = "",
    ) -> None:
        exe = find_mosquitto()
        if exe is None:
            raise PublishError("mosquitto is not installed (Debian: apt-get install mosquitto)")
        self.exe = exe
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.tls = tls
        self.passwords = passwords
        self.persistence = persistence
        self.extra_conf = extra_conf
        self._dir = tempfile.TemporaryDirectory(prefix="edge-agent-broker-")
        self.proc: subprocess.Popen[bytes] | None = None

    def _conf_text(self) -> str:
        d = Path(self._dir.name)
        lines = [f"listener {self.port} {self.host}", "log_dest stdout", "log_type all"]
        if os.geteuid() == 0:
            # Run as root, mosquitto switches to user 'mosquitto', which cannot read this
            # root-only temporary directory (and then silently skips persistence).
            lines.append("user root")
        if self.tls is not None:
            for name, src in (
                ("cafile", self.tls.ca_file),
                ("certfile", self.tls.cert_file),
                ("keyfile", self.tls.key_file),
            ):
                dst = d / f"tls-{name}.pem"
                shutil.copyfile(src, dst)
                lines.append(f"{name} {dst}")
            if self.tls.require_certificate:
                lines.append("require_certificate true")
        if self.passwords is not None:
            lines += ["allow_anonymous false", f"password_file {self._password_file()}"]
        else:
            lines.append("allow_anonymous true")
        if self.persistence:
            lines += [
                "persistence true",
                f"persistence_location {d}/",
                "autosave_interval 1",
                "max_queued_messages 0",
                "max_inflight_messages 0",
            ]
        else:
            lines.append("persistence false")
        if self.extra_conf:
            lines.append(self.extra_conf)
        return "\n".join(lines) + "\n"

    def _password_file(self) -> Path:
        path = Path(self._dir.name) / "passwd"
        if path.exists():
            return path
        tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        if not Path(tool).is_file():
            raise PublishError("mosquitto_passwd is not installed")
        path.write_text("", encoding="utf-8")
        for user, password in (self.passwords or {}).items():
            subprocess.run(
                [tool, "-b", str(path), user, password],
                check=True,
                capture_output=True,
                timeout=30,
                stdin=subprocess.DEVNULL,
            )
        return path

    def start(self, timeout: float = 10.0) -> LocalBroker:
        if self.proc is not None and self.proc.poll() is None:
            return self  # already running (``with LocalBroker() as b`` has started it)
        conf = Path(self._dir.name) / "mosquitto.conf"
        conf.write_text(self._conf_text(), encoding="utf-8")
        log = (Path(self._dir.name) / "mosquitto.log").open("ab")
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

    def restart(self, timeout: float = 10.0) -> LocalBroker:
        """Stop (SIGTERM: persistence is saved) and start again on the same port."""
        self.stop()
        deadline = time.monotonic() + timeout
        while True:  # the old socket may linger in TIME_WAIT for a moment
            try:
                return self.start(timeout=max(0.5, deadline - time.monotonic()))
            except PublishError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)

    def pause(self) -> None:
        """SIGSTOP: the socket stays open and nothing answers (a black-holed link)."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
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
