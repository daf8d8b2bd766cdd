"""Config sections, one per component. Validators never touch files, network or devices."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from agent.config.base import Section


class BufferConfig(Section):
    seconds: float = Field(
        10.0, ge=1, le=120, description="How many seconds of frames the ring buffer keeps."
    )


class VisionConfig(Section):
    model: str = Field(
        "blazeface_full_int8_tflite",
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


class PoseConfig(Section):
    detector: str = Field(
        "pose_detection_int8",
        min_length=1,
        description="Person/pose detector in the model store (int8 ONNX or pose_detection float).",
    )
    landmarks: str = Field(
        "pose_landmark_int8",
        min_length=1,
        description="Pose landmark model in the model store (int8 ONNX or pose_landmark float).",
    )
    threads: int = Field(1, ge=1, le=16, description="Inference threads for the pose models.")
    max_frames_per_window: int = Field(
        6, ge=1, le=100, description="Frames read for posture per call for help (evenly spread)."
    )


class PresenceConfig(Section):
    enabled: bool = Field(True, description="Track the presence and talking states.")
    interval_s: float = Field(
        1.0, ge=0.1, le=60, description="Seconds between presence checks of the newest frame."
    )
    hold_s: float = Field(
        5.0,
        ge=0,
        le=600,
        description="Presence stays on this long after the last person seen. While it is on, "
        "the face detector only confirms it every hold_s / 2 (arrivals are checked every "
        "interval_s).",
    )
    motion_threshold: float = Field(
        1.5,
        ge=0,
        le=255,
        description="The face detector runs on a presence check only when the picture moved "
        "since its last run: mean absolute difference of 40x30 grey thumbnails (0-255 levels) "
        "at least this; else the last answer stands. Camera noise is ~0.2-0.5. 0 = always run.",
    )
    refresh_s: float = Field(
        30.0,
        ge=1,
        le=3600,
        description="Run the face detector at least this often even when nothing moves.",
    )


WakeWordName = Literal["okay_nabu", "hey_jarvis", "hey_mycroft", "alexa"]


class WakeWordConfig(Section):
    enabled: bool = Field(
        False,
        description="Listen for wake words (needs pip install 'edge-agent[wakeword]').",
    )
    models: list[WakeWordName] = Field(
        default_factory=lambda: list[WakeWordName](["okay_nabu"]),
        min_length=1,
        description="microWakeWord models to run (each adds ~0.005 ms per 30 ms of audio).",
    )
    refractory_s: float = Field(
        2.0, ge=0.5, le=60, description="The same wake word cannot fire again within this time."
    )
    require_person: bool = Field(
        True, description="A wake word counts only with a person in view while it is said."
    )
    window_s: float = Field(
        1.5, ge=0.2, le=10, description="Frames this long before the detection are analysed."
    )


class VadConfig(Section):
    model: str = Field(
        "silero_vad_int8", min_length=1, description="VAD model name in the model store."
    )
    threshold: float = Field(
        0.5, gt=0, lt=1, description="Speech probability that starts a segment."
    )
    min_speech_ms: int = Field(200, ge=0, le=5000, description="Shorter speech bursts are ignored.")
    min_silence_ms: int = Field(
        400, ge=50, le=5000, description="Silence that ends a segment (also the decision delay)."
    )
    endpoint_ms: int = Field(
        120,
        ge=0,
        le=5000,
        description="Silence after which the utterance so far is offered to the recognizer; "
        "when it is a complete command the segment ends there instead of after min_silence_ms "
        "(the decision comes that much sooner). 0 = always wait min_silence_ms.",
    )
    pad_ms: int = Field(250, ge=0, le=1000, description="Audio kept before and after each segment.")
    gate_db: float = Field(
        8.0,
        ge=0,
        le=40,
        description="Energy gate between utterances: once the VAD heard no speech for ~1 s, a "
        "32 ms window less than this many dB above the room's noise floor (the 20th "
        "percentile of the last ~3 s) counts as silence "
        "without running the VAD model; when what opens it may be speech, the windows it held "
        "back (up to ~3 s) go through the model first, so utterances are cut as without the "
        "gate. 0 = run the model on every window.",
    )
    max_segment_s: float = Field(
        8.0,
        ge=1,
        le=60,
        description="A segment this long is cut and closed (long talk is not a command).",
    )


class FusionConfig(Section):
    method: Literal["weighted_sum", "learned_weights", "learned_head", "auto"] = Field(
        "weighted_sum",
        description="How image and audio combine for voice_command: weighted_sum = "
        "alpha*x_image + beta*x_audio with the weights below; learned_weights = the same sum "
        "with alpha, beta and threshold from the `model` bundle; learned_head = the bundle's "
        "int8 fusion head; auto = learned_head when `model` is installed, else weighted_sum. "
        "Wake words always use the weights below.",
    )
    model: str = Field(
        "fusion_head_int8",
        min_length=1,
        description="Fusion bundle in the model store (made by `edge-agent train --fusion`).",
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
        0.0,
        ge=0,
        le=10,
        description="Frames this long after the utterance also count. The decision waits for "
        "them, so this adds to the latency (0: frames up to the end of speech, which are in by "
        "the time the end of speech is known).",
    )


class VoiceCommandConfig(Section):
    enabled: bool = Field(True, description="Emit voice_command events.")
    require_person: bool = Field(
        True, description="A command counts only when a person is in view during the utterance."
    )
    cooldown_s: float = Field(
        1.5, ge=0, le=600, description="The same intent is not emitted again within this time."
    )


class HelpCallConfig(Section):
    enabled: bool = Field(True, description="Emit help_call events.")
    intent: str = Field(
        "help",
        pattern=r"^[a-z][a-z0-9_]{0,63}$",
        description="The intent whose phrases are calls for help (never a voice_command).",
    )
    min_lying_frames: int = Field(
        2, ge=1, le=100, description="Frames of the window that must show the person lying."
    )
    min_audio: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Recognizer confidence a call for help needs, whatever the image says.",
    )
    threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Fused score at or above which help_call fires; null: fusion.threshold "
        "(and its run-time changes).",
    )
    cooldown_s: float = Field(
        10.0, ge=0, le=3600, description="No second help_call within this many seconds."
    )


class EventsConfig(Section):
    voice_command: VoiceCommandConfig = Field(
        default_factory=VoiceCommandConfig, description="The fused voice_command event."
    )
    help_call: HelpCallConfig = Field(
        default_factory=HelpCallConfig,
        description="A call for help while a person in view is lying down.",
    )


class ModelsConfig(Section):
    dir: Path | None = Field(
        None,
        description="Model store directory; default the 'models/' folder shipped with the agent.",
    )
    trusted_keys: list[str] = Field(
        default_factory=list,
        description="Ed25519 public keys (base64, from `edge-agent models keygen`) whose "
        "signed bundles `models install` and MQTT updates accept; empty accepts nothing.",
    )
    health_window_s: float = Field(
        60.0,
        ge=1,
        le=3600,
        description="After an update, the agent must run healthy this long to keep it.",
    )
    max_failed_starts: int = Field(
        3,
        ge=1,
        le=20,
        description="Starts without a healthy run after an update before it is rolled back.",
    )
    update_max_mb: float = Field(
        200.0, gt=0, le=10000, description="Largest bundle an MQTT update may download (MB)."
    )
    update_stall_s: float = Field(
        30.0, gt=0, le=600, description="An update download silent this long is given up."
    )
    drop_dir: Path | None = Field(
        None,
        description="A folder the running agent watches for model bundles (a bundle folder or "
        "a .tar of one): each is installed like an MQTT update (signature, hashes, release, "
        "canary, restart, health window) and then moved to done/ or rejected/ (with a .reason "
        "file) inside it. Unset: no folder is watched.",
    )
    drop_poll_s: float = Field(
        5.0, ge=0.5, le=3600, description="How often the drop folder is looked at (s)."
    )

    @field_validator("trusted_keys")
    @classmethod
    def _check_keys(cls, value: list[str]) -> list[str]:
        from agent.models.bundle import parse_public_key

        for i, text in enumerate(value):
            try:
                parse_public_key(text)
            except ValueError as err:
                raise ValueError(f"key {i}: {err}") from err
        return value

    def public_keys(self) -> list[bytes]:
        from agent.models.bundle import parse_public_key

        return [parse_public_key(k) for k in self.trusted_keys]


class HealthConfig(Section):
    stall_seconds: float = Field(
        10.0,
        gt=0,
        le=600,
        description="A stage with no progress for this long stops the watchdog ping.",
    )


class ReportConfig(Section):
    minutes: float = Field(
        5.0,
        ge=0,
        le=60,
        description="Minutes of the timeline (frames, speech, scores, decisions, timings) kept "
        "in memory for the report written on SIGUSR1 or <base>/set/timeline_report; 0: none.",
    )
    path: Path | None = Field(
        None,
        description="Where the daemon writes the timeline report; default "
        "$STATE_DIRECTORY/timeline.html, else ~/.local/state/edge-agent/timeline.html. With "
        "rooms, one page per room, the room's id added to the name (timeline-kitchen.html).",
    )
