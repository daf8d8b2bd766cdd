"""Capture building blocks: backoff, newest-frame slot, resampler, supervisors with fakes."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from agent.config.capture import CameraConfig, MicrophoneConfig
from agent.core.clock import MonotonicClock
from agent.core.media import AUDIO_RATE, AudioChunk, Frame
from agent.errors import SourceError
from agent.sources.camera import redact
from agent.sources.microphone import Resampler
from agent.sources.supervisor import Backoff, LatestFrame, MicrophoneSupervisor


def test_backoff_doubles_caps_and_jitters() -> None:
    b = Backoff(1.0, 8.0, jitter=0.2, rng=random.Random(1))
    delays = [b.next() for _ in range(8)]
    bases = [1, 2, 4, 8, 8, 8, 8, 8]
    for d, base in zip(delays, bases, strict=True):
        assert base * 0.8 <= d <= min(base * 1.2, 8.0)  # never above the cap
    assert len({round(d, 6) for d in delays[3:]}) > 1  # jittered, not lock-step
    capped = Backoff(1.0, 30.0, jitter=0.2, rng=random.Random(7))
    assert max(capped.next() for _ in range(200)) <= 30.0
    b.reset()
    assert 0.8 <= b.next() <= 1.2


def test_latest_frame_keeps_newest_and_counts_drops() -> None:
    slot = LatestFrame()
    img = np.zeros((2, 2, 3), np.uint8)
    for i in range(5):
        slot.put(Frame(i, i, img))
    got = slot.get(0.1)
    assert got is not None and got.index == 4
    assert slot.dropped == 4
    assert slot.get(0.01) is None


@pytest.mark.parametrize("rate", [48_000, 44_100, 32_000, 8_000])
def test_resampler_streams_to_16k_keeping_pitch(rate: int) -> None:
    t = np.arange(rate * 2) / rate
    x = np.sin(2 * np.pi * 440 * t) * 10000
    r = Resampler(rate)
    parts = [r.process(x[i : i + 1234]) for i in range(0, len(x), 1234)]
    y = np.concatenate(parts)
    assert abs(len(y) - 2 * AUDIO_RATE) <= 2
    spec = np.abs(np.fft.rfft(y[2000:18000]))
    peak_hz = np.argmax(spec) * AUDIO_RATE / 16000
    assert abs(peak_hz - 440) <= 2


def test_redact_hides_credentials() -> None:
    assert redact("rtsp://u:p@cam/x") == "rtsp://***@cam/x"


def test_capture_keys_validated() -> None:
    with pytest.raises(ValueError):
        CameraConfig(read_timeout_s=6)
    with pytest.raises(ValueError):
        CameraConfig(fourcc="MJPEG")
    assert CameraConfig(fourcc="MJPG", width=640, height=480).fourcc == "MJPG"


class _FlakyMic:
    """Delivers n chunks, then fails (device lost); the clock says how long it was gone."""

    live = True
    name = "flaky"

    def __init__(self, start_ns: int, n: int) -> None:
        self._t, self._n, self._i = start_ns, n, 0

    def read(self) -> AudioChunk | None:
        if self._i >= self._n:
            raise SourceError("device lost")
        i, self._i = self._i, self._i + 1
        return AudioChunk(self._t + i * 32_000_000, i * 512, np.zeros(512, np.int16))

    def close(self) -> None:
        pass


def test_microphone_supervisor_reopens_and_counts_the_gap() -> None:
    clock = MonotonicClock()
    opened: list[int] = []
    got: list[AudioChunk] = []
    done = threading.Event()

    def opener(cfg: MicrophoneConfig, _clock: object) -> _FlakyMic:
        opened.append(1)
        if len(opened) == 2:
            raise SourceError("not back yet")
        if len(opened) >= 3:
            done.set()
        # Second stream starts 1 s after the first one's 4 chunks ended.
        start = 0 if len(opened) == 1 else 4 * 32_000_000 + 1_000_000_000
        return _FlakyMic(start, 4)

    cfg = MicrophoneConfig(backoff_initial_s=0.05, backoff_max_s=0.1)
    sup = MicrophoneSupervisor(cfg, clock, got.append, opener=opener)  # type: ignore[arg-type]
    sup.start()
    assert done.wait(10)
    time.sleep(0.2)
    sup.stop()
    assert sup.reopens >= 1 and sup.failures >= 1
    assert got[4].first_sample == 4 * 512 + AUDIO_RATE  # 1 s gap skipped in the counter
    assert sup.gaps >= 1 and sup.gap_samples >= AUDIO_RATE


def test_redact_hides_every_credential_form() -> None:
    from agent.sources.camera import redact

    assert redact("rtsp://admin:s3cr@t@cam.local:554/s1") == "rtsp://***@cam.local:554/s1"
    got = redact("http://cam/video.mjpg?user=admin&pwd=hunter2&res=hd")
    assert "hunter2" not in got and "admin" not in got and "res=hd" in got
    assert redact("/dev/video0") == "/dev/video0" and redact("0") == "0"


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("http://user:secret@cam.local/stream.mjpg", "stream"),
        ("rtsp://cam/live.mp4", "stream"),
        ("https://cam/video.avi?token=x", "stream"),
        ("/var/media/clip.mp4", "file"),
        ("file:///var/media/clip", "file"),
        ("0", "device"),
        ("/dev/video2", "device"),
    ],
)
def test_camera_source_is_chosen_by_scheme_first(source: str, kind: str) -> None:
    from agent.sources.base import video_kind

    assert video_kind(source) == kind


def test_stream_url_that_looks_like_a_file_connects_and_hides_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A real URL that fails: a closed port on 127.0.0.1, path ending in .mjpg."""
    import socket

    from agent.config.capture import CameraConfig
    from agent.core.clock import MonotonicClock
    from agent.errors import SourceError
    from agent.sources.base import open_video

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens
    url = f"http://admin:hunter2@127.0.0.1:{port}/stream.mjpg"
    cfg = CameraConfig(source=url, open_timeout_s=2, read_timeout_s=2)
    caplog.set_level("DEBUG")
    with pytest.raises(SourceError) as info:
        open_video(cfg, MonotonicClock())
    # The network camera tried (and failed) to connect: not "no such file".
    assert "cannot open camera http://***@127.0.0.1" in str(info.value)
    assert "hunter2" not in str(info.value) and "hunter2" not in caplog.text


def test_check_config_names_the_camera_kind(tmp_path: Path) -> None:
    from tests.conftest import run_agent

    cfg = tmp_path / "a.yaml"
    cfg.write_text("camera:\n  source: rtsp://u:pw1234@cam/live.mp4\n")
    res = run_agent("check-config", str(cfg))
    assert res.returncode == 0, res.stderr
    assert "camera: network stream rtsp://***@cam/live.mp4" in res.stdout
    assert "pw1234" not in res.stdout + res.stderr
