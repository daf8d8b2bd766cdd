"""Live camera through OpenCV: V4L2 index or /dev/videoN, rtsp://, http(s):// MJPEG."""

from __future__ import annotations

import logging

import numpy as np

from agent.config.capture import CameraConfig
from agent.core.clock import Clock
from agent.core.media import Frame
from agent.errors import SourceError

_LOGGER = logging.getLogger(__name__)


def redact(source: str) -> str:
    """Hide 'user:pass@' in stream URLs before they reach a log."""
    if "://" in source and "@" in source:
        scheme, rest = source.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return source


class OpenCvCamera:
    live = True

    def __init__(self, cfg: CameraConfig, clock: Clock) -> None:
        import cv2

        self.name = redact(cfg.source)
        self._clock = clock
        self._latency_ns = int(cfg.latency_ms * 1e6)
        self._min_gap_ns = int(1e9 / cfg.fps)
        self._last_ns = 0
        self._index = 0
        target: int | str = int(cfg.source) if cfg.source.isdigit() else cfg.source
        backend = (
            cv2.CAP_V4L2
            if isinstance(target, int) or cfg.source.startswith("/dev/")
            else cv2.CAP_ANY
        )
        self._cap = cv2.VideoCapture(target, backend)
        if not self._cap.isOpened():
            raise SourceError(f"cannot open camera {self.name}")
        _LOGGER.info("camera %s opened", self.name)

    def read(self) -> Frame | None:
        while True:
            if not self._cap.grab():
                raise SourceError(f"camera {self.name} stopped delivering frames")
            t_ns = self._clock.now_ns() - self._latency_ns
            if t_ns - self._last_ns < self._min_gap_ns:
                continue  # over the fps cap: skip decoding this one
            ok, image = self._cap.retrieve()
            if not ok or image is None:
                raise SourceError(f"camera {self.name} returned an undecodable frame")
            self._last_ns = t_ns
            self._index += 1
            return Frame(t_ns, self._index, np.ascontiguousarray(image))

    def close(self) -> None:
        self._cap.release()
