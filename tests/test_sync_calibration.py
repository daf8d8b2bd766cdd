"""Sync calibration through the file-backed capture paths measures the offset it is given."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import ROOT

pytest.importorskip("pyaudio")

SCRIPT = "scripts.sync_calibration"  # python -m, from the checkout root
FRAME_MS = 1000 / 15


def calibrate(*args: str) -> dict[str, Any]:
    res = subprocess.run(
        [sys.executable, "-m", SCRIPT, "selftest", "--seconds", "10", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    out: dict[str, Any] = json.loads(res.stdout)
    return out


@pytest.mark.parametrize(("delay_ms", "latency_ms"), [(0, 0), (150, 0), (150, 150)])
def test_offset_measured_within_one_frame(delay_ms: int, latency_ms: int) -> None:
    got = calibrate("--video-delay-ms", str(delay_ms), "--camera-latency-ms", str(latency_ms))
    assert got["pairs"] >= 6, got
    assert abs(got["offset_ms"] - (delay_ms - latency_ms)) <= FRAME_MS, got
    if delay_ms > latency_ms:
        assert abs(got["suggest"]["camera.latency_ms"] - delay_ms) <= FRAME_MS
