#!/usr/bin/env python3
"""Audio-video sync calibration: flashes and clicks at the same instants, through capture.

    # file-backed self-test (MJPEG stream camera + ALSA file-device microphone):
    python -m scripts.sync_calibration selftest --seconds 20
    # real devices: write the clip, play it on a screen/speaker in front of camera and mic,
    python -m scripts.sync_calibration clip --out /tmp/sync      # sync.avi, sync.wav (+ .mp4)
    # ... then, while it plays:
    python -m scripts.sync_calibration measure --config /etc/edge-agent/agent.yaml --seconds 30

Prints the measured offset (video onset minus audio onset, ms; positive: video is stamped
later than the audio) and the config change that removes it (camera.latency_ms when video is
late, microphone.latency_ms when audio is late).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

import testbed
from agent.config.capture import CameraConfig, MicrophoneConfig
from agent.core.clock import MonotonicClock
from agent.core.media import AUDIO_RATE, AudioChunk, Frame
from agent.sources.supervisor import CameraSupervisor, MicrophoneSupervisor

ROOT = Path(__file__).resolve().parents[1]

FPS = 15
PERIOD_FRAMES = 15  # one flash per second at 15 fps
FLASH_FRAMES = 3
FIRST_FRAME = 8


def make_clip(out: Path, seconds: int = 20, size: tuple[int, int] = (160, 120)) -> dict[str, Path]:
    """A clip whose frames flash white and whose audio clicks at the same instants."""
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    n_frames = seconds * FPS
    w, h = size
    video = out / "sync.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), FPS, (w, h))
    audio = np.zeros(seconds * AUDIO_RATE, dtype=np.float64)
    click = np.sin(2 * np.pi * 1000 * np.arange(80) / AUDIO_RATE) * 20000  # 5 ms, 1 kHz
    for i in range(n_frames):
        phase = (i - FIRST_FRAME) % PERIOD_FRAMES
        bright = i >= FIRST_FRAME and phase < FLASH_FRAMES
        writer.write(np.full((h, w, 3), 255 if bright else 0, dtype=np.uint8))
        if i >= FIRST_FRAME and phase == 0:
            s = i * AUDIO_RATE // FPS
            audio[s : s + len(click)] += click[: len(audio) - s]
    writer.release()
    pcm = np.clip(audio, -32768, 32767).astype("<i2")
    raw = out / "sync.raw"
    pcm.tofile(raw)
    wav = out / "sync.wav"
    with wave.open(str(wav), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(AUDIO_RATE)
        f.writeframes(pcm.tobytes())
    files = {"video": video, "raw": raw, "wav": wav}
    if shutil.which("ffmpeg"):
        mp4 = out / "sync.mp4"
        subprocess.run(
            [
                *("ffmpeg", "-y", "-loglevel", "error", "-i", str(video), "-i", str(wav)),
                *("-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(mp4)),
            ],
            check=False,
            timeout=120,
        )
        if mp4.exists():
            files["mp4"] = mp4
    return files


def onsets(times: list[int], values: list[float], min_gap_ns: int) -> list[int]:
    """Rising crossings of the midpoint between the low and high levels."""
    if not values:
        return []
    lo, hi = np.percentile(values, 5), np.percentile(values, 99.5)
    if hi - lo < 1e-6:
        return []
    mid = (lo + hi) / 2
    out: list[int] = []
    prev = values[0] > mid
    for t, v in zip(times, values, strict=True):
        now = v > mid
        if now and not prev and (not out or t - out[-1] >= min_gap_ns):
            out.append(t)
        prev = now
    return out


def measure(cam_cfg: CameraConfig, mic_cfg: MicrophoneConfig, seconds: float) -> dict[str, Any]:
    clock = MonotonicClock()
    frames: list[tuple[int, float]] = []
    chunks: list[AudioChunk] = []

    def on_frame(frame: Frame) -> None:
        frames.append((frame.t_ns, float(frame.image.mean())))

    mic = MicrophoneSupervisor(mic_cfg, clock, chunks.append).start()
    cam = CameraSupervisor(cam_cfg, clock, on_frame).start()
    try:
        time.sleep(seconds)
    finally:
        cam.stop()
        mic.stop()
    if not frames or not chunks:
        raise SystemExit(f"captured {len(frames)} frames and {len(chunks)} audio chunks")
    v_on = onsets([t for t, _ in frames], [b for _, b in frames], 300_000_000)
    # Audio: envelope per 1 ms block, stamped from each chunk's own start.
    a_times: list[int] = []
    a_vals: list[float] = []
    block = AUDIO_RATE // 1000
    for c in chunks:
        s = np.abs(c.samples.astype(np.float64))
        for k in range(len(s) // block):
            a_times.append(c.t_ns + k * 1_000_000)
            a_vals.append(float(s[k * block : (k + 1) * block].max()))
    a_on = onsets(a_times, a_vals, 300_000_000)
    diffs = []
    a_arr = np.array(a_on, dtype=np.int64)
    for t in v_on:
        if len(a_arr):
            j = int(np.argmin(np.abs(a_arr - t)))
            d = t - int(a_arr[j])
            if abs(d) < 400_000_000:
                diffs.append(d / 1e6)
    frame_ms = 1000 / min(cam_cfg.fps, FPS)
    result: dict[str, Any] = {
        "frames": len(frames),
        "audio_chunks": len(chunks),
        "video_onsets": len(v_on),
        "audio_onsets": len(a_on),
        "pairs": len(diffs),
        "frame_interval_ms": round(frame_ms, 1),
    }
    if diffs:
        offset = statistics.median(diffs)
        result["offset_ms"] = round(offset, 1)
        result["spread_ms"] = round(float(np.percentile(diffs, 90) - np.percentile(diffs, 10)), 1)
        if offset >= 0:
            result["suggest"] = {"camera.latency_ms": round(cam_cfg.latency_ms + offset)}
        else:
            result["suggest"] = {"microphone.latency_ms": round(mic_cfg.latency_ms - offset)}
    return result


def selftest(seconds: float, delay_ms: float = 0.0, latency_ms: float = 0.0) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="sync-"))
    os.environ["HOME"] = str(tmp)  # ALSA reads $HOME/.asoundrc once, at first use
    files = make_clip(tmp / "clip", seconds=max(4, int(seconds)))
    fifo = testbed.make_fifo(tmp / "mic.fifo")
    testbed.alsa_file_mic(tmp, fifo)
    port = testbed.free_port()
    cmd = [sys.executable, "-m", "testbed.mjpeg_server", "--port", str(port)]
    cmd += ["--video", str(files["video"]), "--seconds", str(seconds + 60)]
    cmd += ["--audio-fifo", str(fifo), "--audio-raw", str(files["raw"])]
    cmd += ["--delay-ms", str(delay_ms)]
    player = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd=ROOT)
    try:
        time.sleep(1.0)
        cam_cfg = CameraConfig(source=f"http://127.0.0.1:{port}/", fps=FPS, latency_ms=latency_ms)
        result = measure(cam_cfg, MicrophoneConfig(source="default"), seconds)
    finally:
        testbed.stop(player, kill=True)
    result["path"] = "mjpeg stream + ALSA file microphone"
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("selftest", help="file-backed: MJPEG stream + ALSA file microphone")
    st.add_argument("--seconds", type=float, default=20.0)
    st.add_argument("--video-delay-ms", type=float, default=0.0, help="player sends video late")
    st.add_argument("--camera-latency-ms", type=float, default=0.0, help="camera.latency_ms")
    cl = sub.add_parser("clip", help="write the calibration clip for playing on real devices")
    cl.add_argument("--out", type=Path, required=True)
    cl.add_argument("--seconds", type=int, default=60)
    me = sub.add_parser("measure", help="measure through the configured camera and microphone")
    me.add_argument("--config", type=Path, help="agent config (camera, microphone sections)")
    me.add_argument("--seconds", type=float, default=30.0)
    me.add_argument("--room", help="with several rooms in the config: whose pair to measure")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if args.cmd == "selftest":
        result = selftest(args.seconds, args.video_delay_ms, args.camera_latency_ms)
    elif args.cmd == "clip":
        result = {k: str(v) for k, v in make_clip(args.out, args.seconds).items()}
    else:
        from agent.config.loader import load_config
        from agent.config.schema import AgentConfig

        cfg = (load_config(args.config) if args.config else AgentConfig()).pair(args.room)
        cam_cfg = cfg.camera.model_copy(update={"fps": max(cfg.camera.fps, FPS)})
        result = measure(cam_cfg, cfg.microphone, args.seconds)
    print(json.dumps(result, indent=1))
    return 0 if args.cmd != "selftest" or "offset_ms" in result else 1


if __name__ == "__main__":
    sys.exit(main())
