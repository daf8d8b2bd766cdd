#!/usr/bin/env python3
"""Capture soak: the real camera and microphone paths, with faults, at real time.

Camera: an MJPEG server on 127.0.0.1 read through OpenCV (FFMPEG). Microphone: PyAudio's
"default" input, an ALSA ``file`` device fed from a FIFO at real time (a temporary HOME holds
the .asoundrc). The feeder writes a ramp, so every sample is checked, not only the counter.

Faults: the server is SIGKILLed and restarted ``--kills`` times; optionally one stall
(server SIGSTOPped with the socket open), a microphone loss (feeder SIGSTOPped), and a slow
frame consumer (``--infer-ms``). Prints one JSON object with the figures.

    python -m scripts.soak_capture --seconds 600 --kills 5      # the 10-minute soak
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import testbed
from agent.config.capture import CameraConfig, MicrophoneConfig
from agent.core.clock import MonotonicClock
from agent.core.media import AudioChunk, Frame
from agent.sources.supervisor import CameraSupervisor, MicrophoneSupervisor

ROOT = Path(__file__).resolve().parents[1]

_LOGGER = logging.getLogger("soak")


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def fds() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


def wait_for(cond: Callable[[], bool], timeout: float, step: float = 0.02) -> float | None:
    """Seconds until ``cond()`` held, None if it never did within ``timeout``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return round(time.monotonic() - t0, 3)
        time.sleep(step)
    return None


class AudioCheck:
    """Counter contiguity and ramp content of every chunk the supervisor delivers."""

    def __init__(self) -> None:
        self.expected: int | None = None
        self.offset: int | None = None
        self.chunks = 0
        self.samples = 0
        self.counter_gaps = 0
        self.content_errors = 0
        self.last_t_ns = 0
        self.non_monotonic = 0

    def __call__(self, chunk: AudioChunk) -> None:
        import numpy as np

        n = len(chunk.samples)
        if self.expected is not None and chunk.first_sample != self.expected:
            self.counter_gaps += 1
            self.offset = None  # a real gap (device lost): re-lock on the ramp
        if self.offset is None and n:
            self.offset = int(chunk.samples[0]) - chunk.first_sample
        want = testbed.ramp(chunk.first_sample + (self.offset or 0), n)
        if not np.array_equal(chunk.samples, want):
            self.content_errors += 1
            self.offset = None
        if chunk.t_ns <= self.last_t_ns:
            self.non_monotonic += 1
        self.last_t_ns = chunk.t_ns
        self.expected = chunk.first_sample + n
        self.chunks += 1
        self.samples += n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=600.0, help="run length (real time)")
    p.add_argument("--kills", type=int, default=5, help="camera server kill/restart cycles")
    p.add_argument("--down-s", type=float, default=3.0, help="seconds the server stays down")
    p.add_argument("--stall", action="store_true", help="also SIGSTOP the server once")
    p.add_argument("--mic-loss", type=float, default=0.0, help="SIGSTOP the feeder this long")
    p.add_argument("--infer-ms", type=float, default=0.0, help="frame consumer time per frame")
    p.add_argument("--fps", type=float, default=15.0, help="camera stream frame rate")
    p.add_argument("--read-timeout", type=float, default=3.0, help="camera.read_timeout_s")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(relativeCreated)8.0f %(threadName)s %(name)s %(message)s",
    )
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    os.environ["HOME"] = str(tmp)  # before PyAudio first reads ALSA's config
    fifo = testbed.make_fifo(tmp / "mic.fifo")
    testbed.alsa_file_mic(tmp, fifo)
    port = testbed.free_port()
    feeder = testbed.start_feeder(fifo, args.seconds + 120)
    server = testbed.start_mjpeg(port, fps=args.fps)
    clock = MonotonicClock()
    check = AudioCheck()
    frames_seen = [0]

    def on_frame(frame: Frame) -> None:
        frames_seen[0] += 1
        if args.infer_ms:
            time.sleep(args.infer_ms / 1000)

    cam_cfg = CameraConfig(
        source=f"http://127.0.0.1:{port}/",
        fps=args.fps,
        read_timeout_s=args.read_timeout,
        backoff_initial_s=1.0,
        backoff_max_s=8.0,
    )
    mic_cfg = MicrophoneConfig(source="default", read_timeout_s=2.0, backoff_max_s=4.0)
    mic = MicrophoneSupervisor(mic_cfg, clock, check).start()
    cam = CameraSupervisor(cam_cfg, clock, on_frame).start()
    result: dict[str, Any] = {"seconds": args.seconds, "kills": []}
    t0 = time.monotonic()
    try:
        ok = wait_for(lambda: cam.state == "online" and mic.state == "online", 30)
        result["startup_s"] = ok
        warm = min(10.0, args.seconds / 10)
        time.sleep(warm)
        result["rss_kb_start"], result["fds_start"] = rss_kb(), fds()
        samples_start = check.samples
        events = ["kill"] * args.kills + (["stall"] if args.stall else [])
        events += ["mic"] if args.mic_loss else []
        span = max(1.0, args.seconds - warm - 5)
        rss_max = result["rss_kb_start"]
        for i, ev in enumerate(events):
            due = t0 + warm + (i + 0.5) * span / max(1, len(events))
            while time.monotonic() < due:
                time.sleep(min(1.0, max(0.0, due - time.monotonic())))
                rss_max = max(rss_max, rss_kb())
            if ev == "kill":
                t_kill = time.monotonic()
                testbed.stop(server, kill=True)
                offline = wait_for(lambda: cam.state == "offline", 10)
                time.sleep(max(0.0, t_kill + args.down_s - time.monotonic()))
                server = testbed.start_mjpeg(port, fps=args.fps)
                t_up = time.monotonic()
                back = wait_for(lambda: cam.state == "online", 60)
                result["kills"].append(
                    {
                        "offline_s": offline,
                        "back_after_restart_s": back,
                        "backoff_step_s": round(cam.last_delay_s, 3),
                        "restart_at_s": round(t_up - t0, 1),
                    }
                )
            elif ev == "stall":
                os.kill(server.pid, signal.SIGSTOP)
                stalled = wait_for(lambda: cam.state == "offline", 15)
                os.kill(server.pid, signal.SIGCONT)
                back = wait_for(lambda: cam.state == "online", 60)
                result["stall"] = {"detected_s": stalled, "back_s": back}
            else:
                reopens = mic.reopens
                os.kill(feeder.pid, signal.SIGSTOP)
                lost = wait_for(lambda: mic.state == "offline", 15)
                time.sleep(args.mic_loss)
                os.kill(feeder.pid, signal.SIGCONT)
                back = wait_for(
                    lambda n=reopens: mic.state == "online" and mic.reopens > n,  # type: ignore[misc]
                    60,
                )
                result["mic_loss"] = {"detected_s": lost, "back_s": back}
        end = t0 + args.seconds
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            rss_max = max(rss_max, rss_kb())
        result["rss_kb_end"], result["fds_end"], result["rss_kb_max"] = rss_kb(), fds(), rss_max
    finally:
        cam.stop()
        mic.stop()
        testbed.stop(server, kill=True)
        testbed.stop(feeder, kill=True)
    wall = time.monotonic() - t0
    result["wall_s"] = round(wall, 1)
    result["audio"] = {
        "samples": check.samples,
        "samples_after_warmup": check.samples - samples_start,
        "expected_at_16k": round((wall - warm) * 16000),
        "chunks": check.chunks,
        "counter_gaps": check.counter_gaps,
        "content_errors": check.content_errors,
        "non_monotonic_t": check.non_monotonic,
    }
    result["camera"] = cam.stats()
    result["camera"]["frames_consumed"] = frames_seen[0]
    result["microphone"] = mic.stats()
    print(json.dumps(result, indent=1))
    threading.Event().wait(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
