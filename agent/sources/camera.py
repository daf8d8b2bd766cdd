"""Live camera through OpenCV: V4L2 index or /dev/videoN, rtsp://, http(s):// MJPEG.

Reads are bounded: streams go through the FFMPEG back-end with its open and read timeouts
(``CAP_PROP_OPEN_TIMEOUT_MSEC`` / ``CAP_PROP_READ_TIMEOUT_MSEC``, verified on OpenCV 4.14:
a SIGSTOPped MJPEG server makes ``grab()`` return False after the read timeout), V4L2 gets
the same read timeout. The supervisor (agent.sources.supervisor) runs this in its own thread
and also watches the frame age, so a read that hangs anyway still marks the camera offline.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import numpy as np
import numpy.typing as npt

from agent.config.capture import CameraConfig
from agent.core.clock import Clock
from agent.core.media import Frame
from agent.errors import SourceError

_LOGGER = logging.getLogger(__name__)


_SECRET_QUERY_KEYS = {
    "password",
    "pass",
    "pwd",
    "passwd",
    "token",
    "key",
    "auth",
    "user",
    "username",
}


def redact(source: str) -> str:
    """Hide credentials in stream URLs ('user:pass@', '?pwd=…') before they reach a log."""
    parts = urlsplit(source)
    if not parts.scheme or not parts.netloc:
        return source
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]  # the password itself may contain '@'
    query = "&".join(
        f"{k}=***" if k.lower() in _SECRET_QUERY_KEYS else f"{k}={v}"
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _quiet_opencv() -> None:
    import cv2

    with contextlib.suppress(AttributeError):  # builds without the logging module
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def keep_packets(cap: Any) -> bool:
    """Switch an FFMPEG capture of an MJPEG stream to undecoded packets; False (and left
    decoding) for any other codec, whose packets are not pictures on their own."""
    import cv2

    if int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little") not in (b"MJPG", b"mjpg"):
        return False
    return bool(cap.set(cv2.CAP_PROP_FORMAT, -1))


def as_jpeg(packet: npt.NDArray[Any]) -> npt.NDArray[np.uint8] | None:
    """The packet as JPEG bytes (a copy OpenCV will not reuse), or None if it is not one."""
    flat = np.asarray(packet, dtype=np.uint8).reshape(-1)
    if flat.size > 4 and flat[0] == 0xFF and flat[1] == 0xD8:
        return flat.copy()
    return None


class OpenCvCamera:
    live = True

    def __init__(self, cfg: CameraConfig, clock: Clock) -> None:
        import cv2

        _quiet_opencv()
        self.name = redact(cfg.source)
        self._clock = clock
        self._latency_ns = int(cfg.latency_ms * 1e6)
        self._min_gap_ns = int(1e9 / cfg.fps)
        self._last_ns = 0
        self._index = 0
        self.skipped = 0  # grabbed but not decoded (over the fps cap)
        self.decode_ms = 0.0  # last retrieve() time
        timeouts = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(cfg.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(cfg.read_timeout_s * 1000),
        ]
        v4l2 = cfg.source.isdigit() or cfg.source.startswith("/dev/")
        if v4l2:
            target: int | str = int(cfg.source) if cfg.source.isdigit() else cfg.source
            params = list(timeouts)
            if cfg.fourcc:
                params += [cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*cfg.fourcc)]
            if cfg.width:
                params += [cv2.CAP_PROP_FRAME_WIDTH, cfg.width]
            if cfg.height:
                params += [cv2.CAP_PROP_FRAME_HEIGHT, cfg.height]
            self._cap = cv2.VideoCapture(target, cv2.CAP_V4L2, params)
            if self._cap.isOpened():
                if cfg.device_fps:
                    self._cap.set(cv2.CAP_PROP_FPS, cfg.device_fps)
                self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        else:
            self._cap = cv2.VideoCapture(cfg.source, cv2.CAP_FFMPEG, timeouts)
        if not self._cap.isOpened():
            self._cap.release()
            raise SourceError(f"cannot open camera {self.name}")
        w = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        # An MJPEG stream's packets are whole JPEGs: read them undecoded (FFMPEG's raw
        # mode) and decode only the frames that get analysed.
        self.compressed = cfg.compressed_ring and not v4l2 and keep_packets(self._cap)
        _LOGGER.info(
            "camera %s opened (%dx%d%s)",
            self.name,
            w,
            h,
            ", frames kept as JPEG" if self.compressed else "",
        )

    def read(self) -> Frame | None:
        # Bounded: each grab is bounded by the read timeout, and a camera that delivers
        # frames faster than the cap gets at most 10 s worth of skipped grabs per call.
        for _ in range(int(10 * 1e9 / self._min_gap_ns) + 1000):
            if not self._cap.grab():
                raise SourceError(f"camera {self.name} stopped delivering frames")
            t_ns = self._clock.now_ns() - self._latency_ns
            # A quarter period of tolerance keeps a 15 fps stream whole under a 15 fps cap.
            if t_ns - self._last_ns < self._min_gap_ns * 3 // 4:
                self.skipped += 1
                continue  # over the fps cap: skip decoding this one
            started = time.perf_counter_ns()
            ok, image = self._cap.retrieve()
            self.decode_ms = (time.perf_counter_ns() - started) / 1e6
            if not ok or image is None:
                raise SourceError(f"camera {self.name} returned an undecodable frame")
            self._last_ns = t_ns
            self._index += 1
            if self.compressed:
                jpeg = as_jpeg(image)
                if jpeg is None:
                    raise SourceError(f"camera {self.name} sent a packet that is not a JPEG")
                return Frame(t_ns, self._index, jpeg=jpeg)
            return Frame(t_ns, self._index, np.ascontiguousarray(image))
        raise SourceError(f"camera {self.name}: no frame passed the fps cap")

    def close(self) -> None:
        self._cap.release()
