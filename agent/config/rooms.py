"""A room: one camera + microphone pair with its own id, topics and Home Assistant device.

Several rooms share one agent process: one loaded copy of every model and one MQTT
connection. Rooms only name their devices; every other section (vision, vad, fusion,
events, intents, ...) applies to all rooms alike, which is what lets them share models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

from agent.config.base import Section
from agent.config.capture import CameraConfig, MicrophoneConfig

ROOM_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class RoomConfig(Section):
    id: str = Field(
        pattern=ROOM_ID_PATTERN,
        description="The room's id: its topics are <mqtt.base_topic>/<id>/..., events name it.",
    )
    name: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="Home Assistant device name of the room; default 'edge-agent <id>'.",
    )
    camera: CameraConfig = Field(default_factory=CameraConfig, description="The room's camera.")
    microphone: MicrophoneConfig = Field(
        default_factory=MicrophoneConfig, description="The room's microphone."
    )


def room_problems(
    rooms: Sequence[Any], device_id: Any, top_level: Mapping[str, Any]
) -> list[tuple[tuple[str | int, ...], str]]:
    """(location, message) for rooms that cannot work together; works on raw YAML data too.

    Two rooms with one id would publish on the same topics; a room named like the agent
    (``device_id``) would share the topics of the agent's own status and model updates; a
    top-level camera or microphone beside ``rooms`` would silently be ignored.
    """
    out: list[tuple[tuple[str | int, ...], str]] = []
    if not rooms:
        return out
    for key in ("camera", "microphone"):
        if key in top_level:
            out.append(
                ((key,), f"with 'rooms', set each room's {key} under rooms[*].{key} instead")
            )
    first: dict[str, int] = {}
    for i, room in enumerate(rooms):
        rid = room.get("id") if isinstance(room, Mapping) else getattr(room, "id", None)
        if not isinstance(rid, str):
            continue
        if rid == device_id:
            out.append(
                (
                    ("rooms", i, "id"),
                    f"room id {rid!r} is the agent's device_id; the agent's own topics "
                    f"(status, model updates) live there: give the room another id",
                )
            )
        elif rid in first:
            out.append(
                (
                    ("rooms", i, "id"),
                    f"room id {rid!r} is already the id of rooms[{first[rid]}]; "
                    "each room needs its own id",
                )
            )
        else:
            first[rid] = i
    return out


def shared_devices(rooms: Sequence[RoomConfig]) -> list[str]:
    """Warnings for rooms that name the same camera or microphone source: usually a room
    whose microphone was left at 'default' (a device mostly opens once; one room would fail
    or both would hear the same room)."""
    out = []
    for kind in ("camera", "microphone"):
        users: dict[str, list[str]] = {}
        for room in rooms:
            users.setdefault(getattr(room, kind).source, []).append(room.id)
        for source, ids in users.items():
            if len(ids) > 1:
                out.append(f"rooms {', '.join(ids)} use the same {kind} {source!r}")
    return out
