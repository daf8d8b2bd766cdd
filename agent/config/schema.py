"""The root config. Only the composition root (app/cli) sees all of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from agent.config.base import Section
from agent.config.capture import CameraConfig, MicrophoneConfig
from agent.config.homeassistant import ControlConfig, HomeAssistantConfig
from agent.config.mqtt import MqttConfig
from agent.config.rooms import RoomConfig, room_problems
from agent.config.runtimes import RuntimesConfig
from agent.config.sections import (
    BufferConfig,
    EventsConfig,
    FusionConfig,
    HealthConfig,
    ModelsConfig,
    PoseConfig,
    PresenceConfig,
    ReportConfig,
    VadConfig,
    VisionConfig,
    WakeWordConfig,
)
from agent.config.speech import SpeechConfig

IntentName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Phrase = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]

DEFAULT_INTENTS: dict[str, list[str]] = {
    "light_on": ["turn on the light", "lights on"],
    "light_off": ["turn off the light", "lights off"],
    "fan_on": ["turn on the fan"],
    "fan_off": ["turn off the fan"],
    "help": ["help", "help me"],
}


class AgentConfig(Section):
    device_id: str = Field(
        "edge-agent",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="This box's id; used in topics and payloads.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log verbosity."
    )
    camera: CameraConfig = Field(default_factory=CameraConfig, description="Camera source.")
    microphone: MicrophoneConfig = Field(
        default_factory=MicrophoneConfig, description="Microphone source."
    )
    rooms: list[RoomConfig] = Field(
        default_factory=list,
        description=(
            "Several camera + microphone pairs served by this one agent (one loaded copy of "
            "each model, one MQTT connection). Empty: one room, device_id, with the "
            "top-level camera and microphone."
        ),
    )
    buffer: BufferConfig = Field(default_factory=BufferConfig, description="Frame ring buffer.")
    vision: VisionConfig = Field(default_factory=VisionConfig, description="Person/face detector.")
    pose: PoseConfig = Field(
        default_factory=PoseConfig, description="Posture (standing/sitting/lying) for help_call."
    )
    presence: PresenceConfig = Field(
        default_factory=PresenceConfig, description="The presence and talking states."
    )
    wakeword: WakeWordConfig = Field(
        default_factory=WakeWordConfig, description="Wake words (wake_word events)."
    )
    vad: VadConfig = Field(default_factory=VadConfig, description="Voice activity detection.")
    speech: SpeechConfig = Field(default_factory=SpeechConfig, description="Intent recognizer.")
    intents: dict[IntentName, Annotated[list[Phrase], Field(min_length=1)]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_INTENTS.items()},
        description="Intent name -> phrases that trigger it.",
    )
    fusion: FusionConfig = Field(default_factory=FusionConfig, description="Image-speech fusion.")
    events: EventsConfig = Field(default_factory=EventsConfig, description="Event rules.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="MQTT broker.")
    homeassistant: HomeAssistantConfig = Field(
        default_factory=HomeAssistantConfig, description="Home Assistant MQTT discovery."
    )
    control: ControlConfig = Field(
        default_factory=ControlConfig, description="MQTT commands and periodic stats."
    )
    models: ModelsConfig = Field(default_factory=ModelsConfig, description="Model store.")
    runtimes: RuntimesConfig = Field(
        default_factory=RuntimesConfig,
        description="Inference back-ends: onnxruntime providers, LiteRT delegates, threads.",
    )
    health: HealthConfig = Field(default_factory=HealthConfig, description="Watchdog.")
    report: ReportConfig = Field(
        default_factory=ReportConfig, description="The timeline report (why a decision went so)."
    )

    @model_validator(mode="after")
    def _check_rooms(self) -> AgentConfig:
        # The loader runs the same check on the YAML first, to name each problem's line (and
        # the top-level camera/microphone beside rooms, which only the file can tell apart
        # from their defaults).
        problems = room_problems(self.rooms, self.device_id, {})
        if problems:
            raise ValueError("; ".join(f"{_dotted(loc)}: {msg}" for loc, msg in problems))
        return self

    def room_configs(self) -> list[RoomView]:
        """Every room as a config of its own (one pair): ``device_id`` is the room's id,
        ``camera``/``microphone``/``homeassistant.device_name`` are the room's. Without
        ``rooms`` this is the config itself: one room named ``device_id``."""
        if not self.rooms:
            return [RoomView(self.device_id, self)]
        views = []
        for room in self.rooms:
            ha = self.homeassistant.model_copy(update={"device_name": room.name})
            cfg = self.model_copy(
                update={
                    "device_id": room.id,
                    "camera": room.camera,
                    "microphone": room.microphone,
                    "homeassistant": ha,
                    "rooms": [],
                }
            )
            views.append(RoomView(room.id, cfg))
        return views

    def pair(self, room: str | None = None) -> AgentConfig:
        """The config of one camera + microphone pair, for tools that use one (enroll, the
        sync calibration): room ``room``; without ``rooms`` the config itself. Raises
        ConfigError when the room is unknown, or when there are rooms and none was named."""
        from agent.errors import ConfigError

        views = {view.id: view.cfg for view in self.room_configs()}
        if room is None and not self.rooms:
            return self
        if room is None or room not in views:
            what = "name one with --room" if room is None else f"no room {room!r}"
            raise ConfigError([f"rooms: {what} (rooms: {', '.join(views)})"])
        return views[room]

    @field_validator("intents")
    @classmethod
    def _check_intents(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if not value:
            raise ValueError("at least one intent is needed")
        return value


@dataclass(frozen=True, slots=True)
class RoomView:
    """One room of the agent: its id and the config its pipeline and capture are built from."""

    id: str
    cfg: AgentConfig


def _dotted(loc: tuple[str | int, ...]) -> str:
    return "".join(
        f"[{p}]" if isinstance(p, int) else ("." if i else "") + p for i, p in enumerate(loc)
    )
