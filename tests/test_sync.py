"""Ring buffer and window selection on the one clock; fusion arithmetic."""

from __future__ import annotations

import numpy as np

from agent.config.sections import FusionConfig
from agent.core.media import Frame
from agent.fusion.weighted import WeightedSum
from agent.health.notify import Heartbeats
from agent.sync.ring import FrameRing, spread

IMG = np.zeros((2, 2, 3), np.uint8)


def _frame(t: float, i: int = 0) -> Frame:
    return Frame(int(t * 1e9), i, IMG)


def test_ring_keeps_span_and_counts_evictions() -> None:
    ring = FrameRing(seconds=2.0)
    for i in range(50):
        ring.push(_frame(i * 0.1, i))
    assert ring.latest_ns() == int(4.9e9)
    assert len(ring) == 21 and ring.evicted == 29
    window = ring.window(int(3.0e9), int(3.5e9))
    assert [f.index for f in window] == [30, 31, 32, 33, 34, 35]


def test_spread_is_even_and_capped() -> None:
    frames = [_frame(i * 0.1, i) for i in range(20)]
    assert [f.index for f in spread(frames, 5)] == [0, 5, 10, 14, 19]
    assert spread(frames[:3], 8) == frames[:3]
    assert [f.index for f in spread(frames, 1)] == [10]


def test_weighted_sum() -> None:
    fuse = WeightedSum(FusionConfig(alpha=0.6, beta=0.4, threshold=0.5))
    assert fuse(1.0, 0.0).score == 0.6 and fuse(1.0, 0.0).accepted
    assert not fuse(0.0, 1.0).accepted


def test_heartbeats_name_stalled_stage() -> None:
    beats = Heartbeats(limit_s=0.0)
    beats.beat("camera")
    alive = {"ok": True}
    beats.add_check("mqtt", lambda: alive["ok"])
    assert beats.stalled() == ["camera"]
    alive["ok"] = False
    assert beats.stalled() == ["camera", "mqtt"]


def test_only_audio_progress_feeds_the_watchdog() -> None:
    """A camera that stops delivering is 'degraded', never a reason to withhold WATCHDOG=1."""
    from types import SimpleNamespace

    from agent.app import LiveAgent

    beats = Heartbeats(limit_s=0.0)
    agent = SimpleNamespace(_audio_beats=beats)
    LiveAgent._on_progress(agent, "camera")  # type: ignore[arg-type]
    assert beats.stalled() == []
    LiveAgent._on_progress(agent, "audio")  # type: ignore[arg-type]
    assert beats.stalled() == ["audio"]
