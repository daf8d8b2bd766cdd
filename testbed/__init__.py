"""File-backed stand-ins for real devices, driving the real capture code paths.

Test and measurement scaffolding of the repository (tests, ``python -m scripts.soak_capture``,
``python -m scripts.sync_calibration``); not part of the installed agent.

- A microphone: an ALSA ``file`` device in ``$HOME/.asoundrc`` whose ``infile`` is a FIFO;
  :func:`feed_fifo` (``python -m testbed feed FIFO``) writes 16 kHz mono s16 into
  it at real time, so PyAudio's "default" input delivers those samples, paced like a device.
  SIGSTOP the feeder and the device goes silent (lost); SIGCONT and it returns.
- A camera: :mod:`testbed.mjpeg_server` on 127.0.0.1.

ALSA reads ``$HOME/.asoundrc`` once per process, so set HOME before PyAudio is first used.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from agent.core.media import AUDIO_RATE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def alsa_file_mic(home: Path, infile: Path) -> Path:
    """Write ``home/.asoundrc`` making PyAudio's default input read ``infile``."""
    rc = home / ".asoundrc"
    rc.write_text(
        'pcm.!default { type file; slave.pcm "null"; file "/dev/null"; '
        f'infile "{infile}"; format "raw" }}\npcm.null {{ type null }}\n'
    )
    return rc


def make_fifo(path: Path) -> Path:
    if path.exists():
        path.unlink()
    os.mkfifo(path)
    return path


def ramp(first: int, n: int) -> npt.NDArray[np.int16]:
    """The feeder's test signal: sample k is ``k mod 32768`` (gaps and repeats show)."""
    return ((np.arange(first, first + n)) % 32768).astype("<i2")


def feed_fifo(
    path: Path,
    seconds: float,
    raw: Path | None = None,
    block: int = 2048,
    t0: float | None = None,
) -> int:
    """Write audio into the FIFO at real time, like a device; returns samples written.

    A block is written once its last sample is "captured" (at ``t0 + end / 16000`` on the
    monotonic clock). ALSA's file plugin does not wait for a short read, so ``block`` must be
    a multiple of PortAudio's read size (512 frames for 32 ms chunks). The FIFO is opened
    read-write so neither side ever blocks on open or gets EPIPE while PortAudio closes and
    reopens the device.
    """
    data = np.fromfile(raw, dtype="<i2") if raw is not None else None
    fd = os.open(path, os.O_RDWR)
    n = 0
    start = time.monotonic() if t0 is None else t0
    try:
        for _ in range(int(seconds * AUDIO_RATE / block) + 1):
            if data is not None:
                chunk = np.take(data, np.arange(n, n + block), mode="wrap").astype("<i2")
            else:
                chunk = ramp(n, block)
            delay = start + (n + block) / AUDIO_RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            os.write(fd, chunk.tobytes())
            n += block
    finally:
        os.close(fd)
    return n


def start_feeder(fifo: Path, seconds: float, raw: Path | None = None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "testbed", "feed", str(fifo), "--seconds"]
    cmd.append(str(seconds))
    if raw is not None:
        cmd += ["--raw", str(raw)]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, env=_env())


def _env() -> dict[str, str]:
    """The child finds this package whatever its working directory."""
    root = str(Path(__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


def start_mjpeg(port: int, video: Path | None = None, fps: float = 15.0) -> subprocess.Popen[bytes]:
    """An MJPEG server on 127.0.0.1:port; returns once it accepts connections."""
    cmd = [sys.executable, "-m", "testbed.mjpeg_server", "--port", str(port)]
    cmd += ["--fps", str(fps)] + (["--video", str(video)] if video else [])
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=_env())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    stop(proc)
    raise RuntimeError(f"MJPEG server on port {port} did not start")


def stop(proc: subprocess.Popen[bytes], kill: bool = False) -> None:
    """End a process we started, by its own PID, and reap it."""
    if proc.poll() is None:
        if kill:
            proc.kill()
        else:
            proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("feed", help="write audio into a FIFO at real time")
    f.add_argument("fifo", type=Path)
    f.add_argument("--seconds", type=float, default=3600.0)
    f.add_argument("--raw", type=Path, help="16 kHz mono s16 file to loop (default: a ramp)")
    args = p.parse_args(argv)
    feed_fifo(args.fifo, args.seconds, args.raw)
    return 0
