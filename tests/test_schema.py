"""Event payloads: every event class round-trips through JSON and validates the shipped schema."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import pkgutil
import typing
from typing import Any

import jsonschema
import pytest

import agent.events
from agent.app import build_pipeline, replay
from agent.config.schema import AgentConfig
from agent.events import registry as event_types
from agent.events.schema import event_schema
from agent.events.types import SCHEMA_VERSION
from agent.publish.sink import MemorySink
from tests.conftest import SAMPLES


def validator() -> jsonschema.Draft202012Validator:
    schema = event_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def _discovered() -> list[type[Any]]:
    """Every class in the agent.events package with a wire name (``TYPE``) and ``to_payload``."""
    found = []
    for info in pkgutil.iter_modules(agent.events.__path__):
        module = importlib.import_module(f"agent.events.{info.name}")
        found += [
            cls
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if cls.__module__ == module.__name__
            and isinstance(getattr(cls, "TYPE", None), str)
            and hasattr(cls, "to_payload")
        ]
    return list(dict.fromkeys(found))


def _sample(tp: Any, name: str) -> Any:
    """A plausible value for a field of type ``tp``."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: _sample(hints[f.name], f.name) for f in dataclasses.fields(tp)})
    if tp is float:
        return 0.5  # survives the payload rounding (3-4 decimals, skew 1)
    if tp is int:
        return 3
    if tp is str:
        if name in ("model", "vad_model", "landmark_model"):
            return "m@1.0.0"
        if name == "posture":
            return "lying"
        if name == "intent":
            return "light_on"
        if name == "method":
            return "weighted_sum"
        return "turn on the light" if name == "text" else "box"
    raise AssertionError(f"no sample for {name}: {tp}")


def test_every_event_class_is_registered_frozen_and_round_trips() -> None:
    found = _discovered()
    assert found, "no event classes found"
    assert set(found) == set(event_types.EVENT_TYPES)
    v = validator()
    wire_names = [cls.TYPE for cls in found]
    assert len(wire_names) == len(set(wire_names)), "wire names must be unique"
    for cls in found:
        params = cls.__dataclass_params__
        assert params.frozen, f"{cls.__name__} must be frozen"
        assert hasattr(cls, "__slots__"), f"{cls.__name__} must be slotted"
        hints = typing.get_type_hints(cls)
        kwargs = {
            f.name: _sample(hints[f.name], f.name)
            for f in dataclasses.fields(cls)
            if f.init and f.default_factory is dataclasses.MISSING
        }
        event = cls(**kwargs)
        payload = event.to_payload()
        assert payload["type"] == cls.TYPE and payload["v"] == SCHEMA_VERSION
        wire = json.loads(json.dumps(payload))
        assert cls.from_payload(wire) == event
        v.validate(wire)


def test_schema_rejects_what_it_should() -> None:
    v = validator()
    cls = _discovered()[0]
    hints = typing.get_type_hints(cls)
    good = cls(
        **{
            f.name: _sample(hints[f.name], f.name)
            for f in dataclasses.fields(cls)
            if f.default_factory is dataclasses.MISSING
        }
    ).to_payload()
    v.validate(good)
    for mutate in (
        lambda p: p.pop("id"),
        lambda p: p.update(type="bogus"),
        lambda p: p.update(confidence=1.5),
        lambda p: p.update(extra="x"),
        lambda p: p.update(time="yesterday"),
        lambda p: p["evidence"]["image"].update(jpeg="/9j/4AAQ"),
    ):
        bad = json.loads(json.dumps(good))
        mutate(bad)
        assert not v.is_valid(bad), bad


@pytest.mark.parametrize("scene", ["person_command"])
def test_real_events_validate(scene: str) -> None:
    sink = MemorySink()
    pipeline = build_pipeline(AgentConfig(), sink)
    replay(pipeline, SAMPLES / scene / "video.avi", SAMPLES / scene / "audio.wav")
    assert sink.events, "the scene should produce an event"
    v = validator()
    for event in sink.events:
        wire = json.loads(json.dumps(event.to_payload()))
        v.validate(wire)
