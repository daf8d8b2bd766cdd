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
    compressed_ring: bool = Field(
        True,
        description="Keep MJPEG frames (HTTP/RTSP streams, files) as JPEG in the ring and "
        "decode only the frames that are analysed; other codecs are decoded as they arrive.",
    )
    latency_ms: float = Field(
        0.0,
        ge=0,
        le=5000,
        description="Device latency (ms) subtracted from each frame's grab time.",
    )
    width: int | None = Field(
        None, ge=16, le=8192, description="V4L2 capture width in pixels (None: device default)."
    )
    height: int | None = Field(
        None, ge=16, le=8192, description="V4L2 capture height in pixels (None: device default)."
    )
    device_fps: float | None = Field(
        None, gt=0, le=240, description="V4L2 frame rate requested from the device (None: default)."
    )
    fourcc: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9 ]{4}$",
        description="V4L2 pixel format requested, e.g. 'MJPG' or 'YUYV' (None: device default).",
    )
    open_timeout_s: float = Field(
        5.0, gt=0, le=60, description="Give up opening a stream after this many seconds."
    )
    read_timeout_s: float = Field(
        3.0,
        gt=0,
        le=5,
        description="Read deadline: no frame for this long marks the camera offline (<= 5 s).",
    )
    backoff_initial_s: float = Field(
        1.0, gt=0, le=60, description="First reconnect delay; doubles per failed attempt."
    )
    backoff_max_s: float = Field(30.0, gt=0, le=600, description="Reconnect delay cap in seconds.")
    backoff_jitter: float = Field(
        0.2, ge=0, le=1, description="Random +/- fraction applied to each reconnect delay."
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
    idle_batch_ms: int = Field(
        192,
        ge=0,
        le=500,
        description="While nothing is going on (no speech under way, the VAD's energy gate "
        "closed, no wake words), the audio worker wakes this often and takes the queued "
        "chunks together, in one call, instead of once per chunk. The start of speech is seen "
        "up to this much later; its end, and so the decision, is not delayed. 0 = every chunk.",
    )
    queue_seconds: float = Field(
        30.0,
        gt=0,
        le=600,
        description="Audio held while inference catches up; overflow is counted.",
    )
    latency_ms: float = Field(
        0.0,
        ge=0,
        le=5000,
        description="Extra input latency (ms) subtracted from audio timestamps (sync offset).",
    )
    read_timeout_s: float = Field(
        2.0,
        gt=0,
        le=30,
        description="No audio for this long means the device is lost; it is reopened.",
    )
    backoff_initial_s: float = Field(
        1.0, gt=0, le=60, description="First reopen delay; doubles per failed attempt."
    )
    backoff_max_s: float = Field(30.0, gt=0, le=600, description="Reopen delay cap in seconds.")
