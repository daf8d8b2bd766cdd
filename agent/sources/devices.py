"""What capture devices this box has: V4L2 cameras (formats, sizes, rates) and microphones."""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
from pathlib import Path
from typing import Any

from agent.sources.microphone import quiet_stderr


def _iowr(nr: int, size: int, read_only: bool = False) -> int:
    direction = 2 if read_only else 3
    return (direction << 30) | (size << 16) | (ord("V") << 8) | nr


_QUERYCAP = _iowr(0, 104, read_only=True)
_ENUM_FMT = _iowr(2, 64)
_ENUM_FRAMESIZES = _iowr(74, 44)
_ENUM_FRAMEINTERVALS = _iowr(75, 52)
_CAP_VIDEO_CAPTURE = 0x1
_CAP_DEVICE_CAPS = 0x80000000
_MAX_ENUM = 64  # every enumeration below is bounded


def _fourcc(code: int) -> str:
    return struct.pack("<I", code).decode("ascii", "replace")


def _intervals(fd: int, pixfmt: int, w: int, h: int) -> list[float]:
    fps: list[float] = []
    for i in range(_MAX_ENUM):
        buf = bytearray(struct.pack("<5I", i, pixfmt, w, h, 0) + bytes(32))
        try:
            fcntl.ioctl(fd, _ENUM_FRAMEINTERVALS, buf)
        except OSError:
            break
        kind, num, den = struct.unpack_from("<3I", buf, 16)
        if kind == 1 and num:  # discrete
            fps.append(round(den / num, 2))
        else:
            break
    return fps


def _camera(path: Path) -> dict[str, Any]:
    info: dict[str, Any] = {"path": str(path)}
    sys_name = Path("/sys/class/video4linux") / path.name / "name"
    with contextlib.suppress(OSError):
        info["name"] = sys_name.read_text().strip()
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    except OSError as err:
        info["error"] = err.strerror
        return info
    try:
        buf = bytearray(104)
        fcntl.ioctl(fd, _QUERYCAP, buf)
        card = buf[16:48].split(b"\0", 1)[0].decode(errors="replace")
        caps, device_caps = struct.unpack_from("<II", buf, 84)
        if caps & _CAP_DEVICE_CAPS:
            caps = device_caps
        info["card"] = card
        info["capture"] = bool(caps & _CAP_VIDEO_CAPTURE)
        formats = []
        for i in range(_MAX_ENUM if info["capture"] else 0):
            fbuf = bytearray(struct.pack("<3I", i, 1, 0) + bytes(52))
            try:
                fcntl.ioctl(fd, _ENUM_FMT, fbuf)
            except OSError:
                break
            desc = fbuf[12:44].split(b"\0", 1)[0].decode(errors="replace")
            (pixfmt,) = struct.unpack_from("<I", fbuf, 44)
            sizes: list[dict[str, Any]] = []
            for j in range(_MAX_ENUM):
                sbuf = bytearray(struct.pack("<3I", j, pixfmt, 0) + bytes(32))
                try:
                    fcntl.ioctl(fd, _ENUM_FRAMESIZES, sbuf)
                except OSError:
                    break
                (kind,) = struct.unpack_from("<I", sbuf, 8)
                w, h = struct.unpack_from("<2I", sbuf, 12)
                if kind != 1:  # stepwise/continuous: report the range
                    min_w, max_w, _, min_h, max_h, _ = struct.unpack_from("<6I", sbuf, 12)
                    sizes.append({"min": f"{min_w}x{min_h}", "max": f"{max_w}x{max_h}"})
                    break
                sizes.append({"size": f"{w}x{h}", "fps": _intervals(fd, pixfmt, w, h)})
            formats.append({"fourcc": _fourcc(pixfmt), "description": desc, "sizes": sizes})
        info["formats"] = formats
    except OSError as err:
        info["error"] = err.strerror
    finally:
        os.close(fd)
    return info


def cameras(dev: Path = Path("/dev")) -> list[dict[str, Any]]:
    nodes = sorted(dev.glob("video*"), key=lambda p: (len(p.name), p.name))
    return [_camera(p) for p in nodes[:_MAX_ENUM]]


def microphones() -> list[dict[str, Any]]:
    try:
        import pyaudio
    except ImportError:
        return [{"error": "PyAudio is missing: pip install 'edge-agent[mic]'"}]
    with quiet_stderr():
        pa = pyaudio.PyAudio()
    out: list[dict[str, Any]] = []
    try:
        with quiet_stderr():
            for i in range(min(pa.get_device_count(), 256)):
                d = pa.get_device_info_by_index(i)
                channels = int(d.get("maxInputChannels", 0))
                if channels <= 0:
                    continue
                try:
                    ok = bool(
                        pa.is_format_supported(
                            16000,
                            input_device=i,
                            input_channels=1,
                            input_format=pyaudio.paInt16,
                        )
                    )
                except ValueError:
                    ok = False
                out.append(
                    {
                        "index": i,
                        "name": str(d.get("name")),
                        "max_channels": channels,
                        "default_rate": int(float(d.get("defaultSampleRate", 0))),
                        "supports_16k_mono": ok,
                    }
                )
    finally:
        with quiet_stderr():
            pa.terminate()
    return out
