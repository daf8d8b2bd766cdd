"""Config sections of the capture devices (camera, microphone)."""

from __future__ import annotations

from pydantic import Field

from agent.config.base import Section


class CameraConfig(Section):
    source: str = Field(
        "0",
        description=(
            "Camera: a V4L2 index ('0'), a device path ('/dev/video0'), an 'rtsp://' or "
            "'http(s)://' MJPEG URL, or a video file path / 'file://' URL."
        ),
        min_length=1,
    )
    fps: float = Field(
        10.0, gt=0, le=120, description="Frames per second kept from the camera (cap)."
    )
    latency_ms: float = Field(
        0.0,
        ge=0,
        le=5000,
        description="Device latency (ms) subtracted from each frame's grab time.",
    )


class MicrophoneConfig(Section):
    source: str = Field(
        "default",
        description=(
            "Microphone: 'default', a PyAudio device index ('2'), a name substring "
            "('pyaudio://USB Mic' or just 'USB Mic'), or a WAV file path / 'file://' URL."
        ),
        min_length=1,
    )
    chunk_ms: int = Field(32, ge=10, le=256, description="Capture chunk length in milliseconds.")
    queue_seconds: float = Field(
        30.0,
        gt=0,
        le=600,
        description="Audio held while inference catches up; overflow is counted.",
    )
