"""Frame ring buffer on the agent clock: newest frames kept, oldest dropped and counted."""

from __future__ import annotations

import threading
from collections import deque

from agent.core.media import Frame

# JPEG frames decoded for analysis keep their image this long (the decision around an
# utterance usually asks again within it), then go back to JPEG only: ~20 KB, not ~900 KB.
KEEP_DECODED_NS = 2_000_000_000


class FrameRing:
    """Keeps the last ``seconds`` of frames. One writer (capture), readers take copies."""

    def __init__(self, seconds: float) -> None:
        self._span_ns = int(seconds * 1e9)
        self._frames: deque[Frame] = deque()
        self._lock = threading.Lock()
        self.evicted = 0
        self._compacted = 0  # frames before this index are compacted already

    def push(self, frame: Frame) -> None:
        with self._lock:
            self._frames.append(frame)
            horizon = frame.t_ns - self._span_ns
            while self._frames and self._frames[0].t_ns < horizon:
                self._frames.popleft()
                self.evicted += 1
                self._compacted = max(0, self._compacted - 1)
            stale = frame.t_ns - KEEP_DECODED_NS
            while self._compacted < len(self._frames):
                old = self._frames[self._compacted]
                if old.t_ns >= stale:
                    break
                old.compact()
                self._compacted += 1

    def latest_ns(self) -> int | None:
        with self._lock:
            return self._frames[-1].t_ns if self._frames else None

    def latest(self) -> Frame | None:
        with self._lock:
            return self._frames[-1] if self._frames else None

    def window(self, start_ns: int, end_ns: int) -> list[Frame]:
        """Frames stamped inside [start_ns, end_ns], oldest first."""
        with self._lock:
            return [f for f in self._frames if start_ns <= f.t_ns <= end_ns]

    def nbytes(self) -> int:
        """Memory the kept frames hold (JPEG bytes, and images once decoded)."""
        with self._lock:
            return sum(f.nbytes for f in self._frames)

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)


def spread(frames: list[Frame], cap: int) -> list[Frame]:
    """At most ``cap`` frames evenly spread over the window (first and last included)."""
    if len(frames) <= cap:
        return frames
    if cap == 1:
        return [frames[len(frames) // 2]]
    step = (len(frames) - 1) / (cap - 1)
    return [frames[round(i * step)] for i in range(cap)]


def grid(frames: list[Frame], gap_ns: int) -> list[Frame]:
    """The first frame, then each next frame at least ``gap_ns`` after the last one taken."""
    out: list[Frame] = []
    for f in frames:
        if not out or f.t_ns - out[-1].t_ns >= gap_ns:
            out.append(f)
    return out
