"""A tiny MJPEG (multipart/x-mixed-replace) HTTP server: a stand-in IP camera.

Serves JPEG frames from a video file (looped, paced at its own frame rate) or a synthetic
counter pattern on ``127.0.0.1``. Used by tests, ``python -m scripts.soak_capture`` and the sync
calibration; run it as ``python -m testbed.mjpeg_server --port 8081 [--video F]``.
"""

from __future__ import annotations

import argparse
import logging
import socketserver
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np

_LOGGER = logging.getLogger(__name__)
BOUNDARY = "edgeagentframe"


class _Frames:
    """JPEG bytes for frame i, from a file (looped) or a synthetic pattern."""

    def __init__(self, video: Path | None, fps: float, size: tuple[int, int]) -> None:
        import cv2

        self.fps = fps
        self._jpegs: list[bytes] = []
        self._size = size
        if video is not None:
            cap = cv2.VideoCapture(str(video))
            try:
                self.fps = float(cap.get(cv2.CAP_PROP_FPS) or fps)
                for _ in range(100_000):
                    ok, image = cap.read()
                    if not ok:
                        break
                    self._jpegs.append(bytes(cv2.imencode(".jpg", image)[1]))
            finally:
                cap.release()
            if not self._jpegs:
                raise SystemExit(f"no frames in {video}")

    def jpeg(self, i: int) -> bytes:
        import cv2

        if self._jpegs:
            return self._jpegs[i % len(self._jpegs)]
        w, h = self._size
        image = np.full((h, w, 3), (i * 7) % 256, dtype=np.uint8)
        cv2.putText(image, str(i), (8, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 255), 2)
        return bytes(cv2.imencode(".jpg", image)[1])


def _handler(frames: _Frames, start_ns: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            _LOGGER.debug(format, *args)

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            period_ns = int(1e9 / frames.fps)
            # Frames follow the server's own clock, so a late client joins mid-stream.
            i = max(0, (time.monotonic_ns() - start_ns) // period_ns)
            try:
                for _ in range(10_000_000):
                    due = start_ns + i * period_ns
                    delay = (due - time.monotonic_ns()) / 1e9
                    if delay > 0:
                        time.sleep(delay)
                    body = frames.jpeg(i)
                    self.wfile.write(
                        (
                            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                            f"Content-Length: {len(body)}\r\n\r\n"
                        ).encode()
                        + body
                        + b"\r\n"
                    )
                    self.wfile.flush()
                    i += 1
            except (BrokenPipeError, ConnectionResetError):
                return

    return Handler


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--video", type=Path, help="video file to serve (looped)")
    p.add_argument("--fps", type=float, default=15.0, help="frame rate without --video")
    p.add_argument("--size", default="160x120", help="WxH of synthetic frames")
    p.add_argument("--seconds", type=float, default=3600.0, help="serve at most this long")
    p.add_argument("--delay-ms", type=float, default=0.0, help="send video this much late")
    p.add_argument("--audio-fifo", type=Path, help="also feed this FIFO (an ALSA file mic)...")
    p.add_argument("--audio-raw", type=Path, help="...with this 16 kHz s16 file, on one clock")
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    frames = _Frames(args.video, args.fps, (w, h))
    start_ns = time.monotonic_ns()
    video_start = start_ns + int(args.delay_ms * 1e6)
    with _Server(("127.0.0.1", args.port), _handler(frames, video_start)) as server:
        thread = threading.Thread(target=server.serve_forever, name="mjpeg", daemon=True)
        thread.start()
        if args.audio_fifo is not None:
            from testbed import feed_fifo

            # Audio sample j and video frame i share one origin: start + j/16000, start + i/fps.
            threading.Thread(
                target=feed_fifo,
                args=(args.audio_fifo, args.seconds, args.audio_raw),
                kwargs={"t0": start_ns / 1e9},
                name="audio-feed",
                daemon=True,
            ).start()
        print(f"serving http://127.0.0.1:{args.port}/ at {frames.fps:g} fps", flush=True)
        time.sleep(args.seconds)
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
