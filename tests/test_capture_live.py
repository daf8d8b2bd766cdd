"""Capture under faults, through the real paths (OpenCV FFMPEG on an MJPEG server on
127.0.0.1, PyAudio on an ALSA file device fed at real time). Each scenario runs
python -m scripts.soak_capture in a subprocess (ALSA reads $HOME/.asoundrc once per process) and
checks the figures it prints: every audio sample is checked against the feeder's ramp.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import ROOT

pytest.importorskip("pyaudio")
pytest.importorskip("cv2")

SOAK = "scripts.soak_capture"  # python -m, from the checkout root


def soak(*args: str, timeout: float = 240) -> dict[str, Any]:
    res = subprocess.run(
        [sys.executable, "-m", SOAK, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def assert_audio_whole(fig: dict[str, Any]) -> None:
    audio = fig["audio"]
    assert audio["counter_gaps"] == 0, audio
    assert audio["content_errors"] == 0, audio
    assert audio["non_monotonic_t"] == 0, audio
    assert fig["microphone"]["dropped_chunks"] == 0
    assert fig["microphone"]["reopens"] == 0
    # Real time: the sample count follows the wall clock (within half a second).
    assert abs(audio["samples_after_warmup"] - audio["expected_at_16k"]) < 8000, audio


@pytest.mark.slow
def test_stream_killed_restarted_and_stalled_loses_no_audio() -> None:
    fig = soak("--seconds", "36", "--kills", "2", "--down-s", "2", "--stall")
    assert fig["startup_s"] is not None
    for kill in fig["kills"]:
        assert kill["offline_s"] is not None and kill["offline_s"] <= 5.0, kill
        # Back within one backoff step of the server's return (plus the open itself).
        assert kill["back_after_restart_s"] is not None, kill
        assert kill["back_after_restart_s"] <= kill["backoff_step_s"] * 1.2 + 1.0, kill
    # SIGSTOP keeps the socket open: only the read deadline (3 s here) can notice.
    assert fig["stall"]["detected_s"] is not None and fig["stall"]["detected_s"] <= 5.0
    assert fig["stall"]["back_s"] is not None
    # Each kill forces a reconnect. A stall may end either way: if SIGCONT comes before the
    # hung read gives up, frames resume on the same connection (no reconnect, no stall count),
    # which is why only its detection by the deadline is asserted above.
    assert fig["camera"]["reconnects"] >= 2
    assert_audio_whole(fig)
    assert fig["fds_end"] <= fig["fds_start"] + 2


def test_slow_processing_drops_video_frames_never_audio() -> None:
    fig = soak("--seconds", "12", "--kills", "0", "--infer-ms", "200")
    cam = fig["camera"]
    assert cam["frames_dropped"] > 0, cam  # newest frame wins, each overwrite counted
    assert cam["frames_delivered"] + cam["frames_dropped"] <= cam["frames"]
    assert cam["frames_delivered"] < cam["frames"]
    assert_audio_whole(fig)


def test_microphone_that_disappears_and_returns_is_reopened() -> None:
    fig = soak("--seconds", "20", "--kills", "0", "--mic-loss", "2")
    loss = fig["mic_loss"]
    assert loss["detected_s"] is not None, loss
    assert loss["back_s"] is not None, loss
    mic = fig["microphone"]
    assert mic["reopens"] >= 1
    # The counter keeps running across the reopen; the missing time shows as one gap.
    assert mic["gaps"] == 1 and mic["gap_samples"] > 0, mic
    assert fig["audio"]["counter_gaps"] == 1
    assert fig["audio"]["non_monotonic_t"] == 0
