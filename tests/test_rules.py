"""Decision rules as plugins: one module per event type, each from its own config section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import agent.app
from agent.app import build_pipeline, replay
from agent.config.schema import DEFAULT_INTENTS, AgentConfig
from agent.events.registry import EVENT_TYPES
from agent.extractors.speech import Recognition
from agent.publish.sink import MemorySink
from agent.rules.base import Rule
from agent.rules.registry import RULE_MODULES, claimed_intents
from tests.conftest import SAMPLES


class _Says:
    """A recognizer that hears one fixed utterance in every segment (for languages and
    phrases no shipped model knows)."""

    model = "fake@1"

    def __init__(self, intent: str, text: str, confidence: float = 0.9) -> None:
        self._rec = Recognition(intent, text, confidence, self.model)

    def recognize(self, samples: npt.NDArray[np.int16]) -> Recognition:
        return self._rec


def _run(cfg: AgentConfig, scene: str, recognizer: Any = None) -> list[dict[str, Any]]:
    sink = MemorySink()
    if recognizer is None:
        pipeline = build_pipeline(cfg, sink)
    else:
        real = agent.app.build_recognizer
        agent.app.build_recognizer = lambda *a, **k: recognizer  # type: ignore[assignment]
        try:
            pipeline = build_pipeline(cfg, sink)
        finally:
            agent.app.build_recognizer = real
    replay(pipeline, SAMPLES / scene / "video.avi", SAMPLES / scene / "audio.wav")
    return [e.to_payload() for e in sink.events]


def test_each_event_type_is_one_registered_rule_module() -> None:
    types = []
    for module in RULE_MODULES:
        rules = [
            v
            for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, Rule) and v is not Rule
        ]
        assert len(rules) == 1, module.__name__
        assert callable(module.build)
        assert module.__name__.rsplit(".", 1)[1] == rules[0].TYPE
        types.append(rules[0].TYPE)
    assert sorted(types) == sorted(cls.TYPE for cls in EVENT_TYPES)


def test_pipeline_builds_only_configured_rules() -> None:
    default = build_pipeline(AgentConfig(), MemorySink())
    assert [r.TYPE for r in default.rules] == ["help_call", "voice_command"]
    assert claimed_intents(default.rules) == {"help"}
    no_help = {k: v for k, v in DEFAULT_INTENTS.items() if k != "help"}
    cfg = AgentConfig.model_validate({"intents": no_help})
    assert [r.TYPE for r in build_pipeline(cfg, MemorySink()).rules] == ["voice_command"]


def test_renamed_help_intent_fires_help_call() -> None:
    """The shipped command model, real pose models and the lying_help scene; the help phrases
    now belong to an intent named ``emergency``."""
    intents = {k: v for k, v in DEFAULT_INTENTS.items() if k != "help"}
    intents["emergency"] = ["help", "help me"]
    cfg = AgentConfig.model_validate(
        {"intents": intents, "events": {"help_call": {"intent": "emergency"}}}
    )
    events = _run(cfg, "lying_help")
    assert [(e["type"], e["intent"]) for e in events] == [("help_call", "emergency")]
    # Standing: the renamed call for help is still never a voice command.
    assert _run(cfg, "standing_help") == []


def test_translated_help_intent_fires_help_call() -> None:
    """A German household: ``hilfe`` with its own phrases (heard by a stand-in recognizer),
    real postures from the lying_help scene."""
    intents = {"licht_an": ["licht an"], "hilfe": ["hilfe", "hilf mir"]}
    cfg = AgentConfig.model_validate(
        {"intents": intents, "events": {"help_call": {"intent": "hilfe"}}}
    )
    events = _run(cfg, "lying_help", _Says("hilfe", "hilf mir"))
    assert [(e["type"], e["intent"], e["text"]) for e in events] == [
        ("help_call", "hilfe", "hilf mir")
    ]
    assert events[0]["evidence"]["image"]["frames_lying"] >= 2


def test_help_intent_is_never_a_voice_command_even_when_help_call_is_off() -> None:
    cfg = AgentConfig.model_validate({"events": {"help_call": {"enabled": False}}})
    assert _run(cfg, "person_command", _Says("help", "help me")) == []
    # A command intent in the same scene (a face in view): a voice_command.
    events = _run(cfg, "person_command", _Says("light_on", "lights on"))
    assert [(e["type"], e["intent"]) for e in events] == [("voice_command", "light_on")]


def test_help_call_threshold_from_its_own_section() -> None:
    strict = AgentConfig.model_validate({"events": {"help_call": {"threshold": 1.0}}})
    assert _run(strict, "lying_help", _Says("help", "help me", 0.9)) == []
    lenient = AgentConfig.model_validate({"events": {"help_call": {"threshold": 0.5}}})
    events = _run(lenient, "lying_help", _Says("help", "help me", 0.9))
    assert [e["type"] for e in events] == ["help_call"]
    assert events[0]["fusion"]["threshold"] == 0.5
    # The voice-command threshold is untouched by help_call's.
    assert lenient.fusion.threshold == 0.6


@pytest.mark.parametrize("key", ["intent", "threshold", "min_audio"])
def test_help_call_keys_are_documented(key: str) -> None:
    from agent.config.sections import HelpCallConfig

    assert HelpCallConfig.model_fields[key].description


def test_example_config_documents_help_call_keys() -> None:
    text = (Path(__file__).resolve().parents[1] / "config" / "agent.example.yaml").read_text()
    section = text[text.index("help_call:") :]
    for key in ("intent:", "threshold:", "min_audio:"):
        assert key in section[:2000], key
