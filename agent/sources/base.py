"""Sources behind one interface, chosen by URI. Back-ends are imported lazily."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import unquote, urlparse, urlsplit

from agent.config.capture import CameraConfig, MicrophoneConfig
from agent.core.clock import Clock
from agent.core.media import AudioChunk, Frame

_VIDEO_EXT = {".avi", ".mp4", ".mkv", ".mov", ".webm", ".mjpeg", ".mjpg"}
# Decided by scheme first: 'http://cam/stream.mjpg' is a stream, whatever its path ends in.
STREAM_SCHEMES = {"rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt"}

VideoKind = Literal["stream", "file", "device"]


def video_kind(source: str) -> VideoKind:
    """What a camera source names: a network stream, a local file, or a V4L2 device."""
    scheme = urlsplit(source).scheme.lower()
    if scheme in STREAM_SCHEMES:
        return "stream"
    if scheme == "file" or Path(source).suffix.lower() in _VIDEO_EXT:
        return "file"
    return "device"


class VideoSource(Protocol):
    """``read`` returns the next frame, None at end of stream, raises SourceError on failure."""

    name: str
    live: bool

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


class AudioSource(Protocol):
    """``read`` returns the next chunk, None at end of stream, raises SourceError on failure."""

    name: str
    live: bool

    def read(self) -> AudioChunk | None: ...

    def close(self) -> None: ...


def file_path(source: str) -> Path | None:
    """The local path a source names ('file:///x', '/x.avi', 'x.wav'), or None."""
    if source.startswith("file://"):
        return Path(unquote(urlparse(source).path))
    return None


def open_video(cfg: CameraConfig, clock: Clock, paced: bool = True) -> VideoSource:
    """A file stands in for a live camera, so by default it is paced at real time."""
    if video_kind(cfg.source) == "file":
        path = file_path(cfg.source) or Path(cfg.source)
        from agent.sources.files import VideoFileSource

        return VideoFileSource(path, fps_cap=cfg.fps, paced=paced, compressed=cfg.compressed_ring)
    from agent.sources.camera import OpenCvCamera

    return OpenCvCamera(cfg, clock)


def open_audio(cfg: MicrophoneConfig, clock: Clock, paced: bool = True) -> AudioSource:
    path = file_path(cfg.source)
    if path is None and cfg.source.lower().endswith(".wav"):
        path = Path(cfg.source)
    if path is not None:
        from agent.sources.files import WavFileSource

        return WavFileSource(path, chunk_ms=cfg.chunk_ms, paced=paced)
    from agent.sources.microphone import PyAudioMicrophone

    return PyAudioMicrophone(cfg, clock)
