"""Config sections, one per component. Validators never touch files, network or devices."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class BufferConfig(Section):
    seconds: float = Field(
        10.0, ge=1, le=120, description="How many seconds of frames the ring buffer keeps."
    )


class VisionConfig(Section):
    model: str = Field(
        "blazeface_full_int8",
        min_length=1,
        description="Face detector model name in the model store.",
    )
    min_score: float = Field(
        0.6, ge=0, le=1, description="Face score above which a person counts as in view."
    )
    max_frames_per_window: int = Field(
        8, ge=1, le=100, description="Cap on frames analysed per speech window (evenly spread)."
    )
    threads: int = Field(1, ge=1, le=16, description="Inference threads for the vision model.")


class VadConfig(Section):
    model: str = Field("silero_vad", min_length=1, description="VAD model name in the model store.")
    threshold: float = Field(
        0.5, gt=0, lt=1, description="Speech probability that starts a segment."
    )
    min_speech_ms: int = Field(200, ge=0, le=5000, description="Shorter speech bursts are ignored.")
    min_silence_ms: int = Field(
        400, ge=50, le=5000, description="Silence that ends a segment (also the decision delay)."
    )
    pad_ms: int = Field(250, ge=0, le=1000, description="Audio kept before and after each segment.")
    max_segment_s: float = Field(
        8.0,
        ge=1,
        le=60,
        description="A segment this long is cut and closed (long talk is not a command).",
    )


class FusionConfig(Section):
    method: Literal["weighted_sum"] = Field(
        "weighted_sum",
        description="How image and audio scores combine: X = alpha*x_image + beta*x_audio.",
    )
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the image score (person in view).")
    beta: float = Field(
        0.5, ge=0, le=1, description="Weight of the audio score (speech confidence)."
    )
    threshold: float = Field(
        0.6, ge=0, le=1, description="Fused score at or above which the event fires."
    )
    window_before_s: float = Field(
        0.5, ge=0, le=10, description="Frames this long before the utterance also count."
    )
    window_after_s: float = Field(
        0.3, ge=0, le=10, description="Frames this long after the utterance also count."
    )


class VoiceCommandConfig(Section):
    enabled: bool = Field(True, description="Emit voice_command events.")
    require_person: bool = Field(
        True, description="A command counts only when a person is in view during the utterance."
    )
    cooldown_s: float = Field(
        1.5, ge=0, le=600, description="The same intent is not emitted again within this time."
    )


class EventsConfig(Section):
    voice_command: VoiceCommandConfig = Field(
        default_factory=VoiceCommandConfig, description="The fused voice_command event."
    )


class MqttConfig(Section):
    enabled: bool = Field(True, description="Publish to an MQTT broker ('run' needs it).")
    host: str = Field("127.0.0.1", min_length=1, description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker TCP port.")
    base_topic: str = Field(
        "edge-agent", min_length=1, description="Topics live under <base_topic>/<device_id>/."
    )
    client_id: str | None = Field(
        None, description="MQTT client id; default edge-agent-<device_id>."
    )
    username: str | None = Field(None, description="Broker user name.")
    password: SecretStr | None = Field(
        None, description="Broker password (prefer password_file or EDGE_AGENT_MQTT_PASSWORD)."
    )
    password_file: Path | None = Field(
        None,
        description="File whose first line is the broker password (e.g. a systemd credential).",
    )
    keepalive: int = Field(30, ge=5, le=3600, description="MQTT keepalive in seconds.")
    qos: Literal[0, 1, 2] = Field(1, description="QoS of event messages.")

    @field_validator("base_topic")
    @classmethod
    def _no_wildcards(cls, value: str) -> str:
        if any(c in value for c in "+#") or value.startswith("/") or value.endswith("/"):
            raise ValueError("must not contain '+' or '#' or start/end with '/'")
        return value


class ModelsConfig(Section):
    dir: Path | None = Field(
        None,
        description="Model store directory; default the 'models/' folder shipped with the agent.",
    )


class HealthConfig(Section):
    stall_seconds: float = Field(
        10.0,
        gt=0,
        le=600,
        description="A stage with no progress for this long stops the watchdog ping.",
    )
