"""systemd notification (sdnotify) and a watchdog fed only while every stage progresses."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

_LOGGER = logging.getLogger(__name__)


class Notifier:
    """sd_notify(3) over NOTIFY_SOCKET; a no-op outside systemd.

    Hand-written (a dozen lines) rather than the sdnotify package because that one sends
    blocking: a reader that stops reading would freeze whichever thread notifies. Here a
    full socket drops the message with a warning instead.
    """

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        addr = os.environ.get("NOTIFY_SOCKET", "")
        if not addr:
            return
        if addr.startswith("@"):
            addr = "\0" + addr[1:]  # abstract namespace
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(addr)
        except OSError as err:
            sock.close()
            _LOGGER.warning("NOTIFY_SOCKET %s unusable: %s", addr, err)
            return
        sock.setblocking(False)
        self._sock = sock

    def send(self, message: str) -> None:
        if self._sock is None:
            return
        try:
            self._sock.send(message.encode())
        except OSError as err:
            _LOGGER.warning("systemd notification %r not sent: %s", message.split("=", 1)[0], err)

    def ready(self, status: str) -> None:
        self.send(f"READY=1\nSTATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Heartbeats:
    """Stages record progress; ``stalled`` names those silent for longer than the limit."""

    def __init__(self, limit_s: float) -> None:
        self._limit_ns = int(limit_s * 1e9)
        self._last: dict[str, int] = {}
        self._checks: dict[str, Callable[[], bool]] = {}
        self._lock = threading.Lock()

    def beat(self, stage: str) -> None:
        with self._lock:
            self._last[stage] = time.monotonic_ns()

    def add_check(self, stage: str, check: Callable[[], bool]) -> None:
        self._checks[stage] = check

    def stalled(self) -> list[str]:
        now = time.monotonic_ns()
        with self._lock:
            late = [s for s, t in self._last.items() if now - t > self._limit_ns]
        late += [s for s, check in self._checks.items() if not check()]
        return late


class Watchdog(threading.Thread):
    """Sends WATCHDOG=1 every interval while no stage is stalled."""

    def __init__(self, notifier: Notifier, beats: Heartbeats, interval_s: float) -> None:
        super().__init__(name="watchdog", daemon=True)
        self._notifier = notifier
        self._beats = beats
        self._interval = interval_s
        self._stop_event = threading.Event()
        self.pings = 0

    def run(self) -> None:
        warned = False
        while not self._stop_event.wait(self._interval):
            late = self._beats.stalled()
            if late:
                if not warned:
                    _LOGGER.error("watchdog withheld: no progress in %s", ", ".join(late))
                    warned = True
                self._notifier.send(f"STATUS=stalled: {', '.join(late)}")
                continue
            warned = False
            self._notifier.send("WATCHDOG=1")
            self.pings += 1

    def stop(self) -> None:
        self._stop_event.set()
