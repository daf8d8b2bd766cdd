"""The help_call rule: pure cases, and real postures + speech from the posture sample scenes."""

from __future__ import annotations

import json
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.config.sections import FusionConfig
from agent.events.help import SCHEMA_DEF, HelpCall, PoseEvidence
from agent.events.schema import event_schema
from agent.events.types import AudioEvidence, FusionInfo
from agent.extractors.pose import Posture
from agent.fusion.help import HelpFusion, is_help_phrase

SAMPLES = Path(__file__).resolve().parents[1] / "agent" / "samples"
MODELS = Path(__file__).resolve().parents[1] / "models"

LYING: list[Posture | None] = ["lying"] * 8
STANDING: list[Posture | None] = ["standing"] * 8


# ---------------------------------------------------------------- pure cases


def test_lying_person_saying_help_fires() -> None:
    d = HelpFusion()(LYING, intent="help", text="help me", speech_score=0.9)
    assert d.accepted and d.x_image == 1.0 and d.x_audio == 0.9
    assert d.confidence == pytest.approx(0.5 * 1.0 + 0.5 * 0.9)
    assert (d.frames, d.frames_with_person, d.frames_lying, d.posture) == (8, 8, 8, "lying")


def test_standing_person_saying_help_does_not_fire() -> None:
    d = HelpFusion()(STANDING, intent="help", text="help me", speech_score=1.0)
    assert not d.accepted and d.x_image == 0.0 and d.reason == "nobody lying in view"


def test_lying_person_in_silence_does_not_fire() -> None:
    # Even with weights that would let the image alone pass the threshold.
    rule = HelpFusion(alpha=1.0, beta=0.0, threshold=0.5)
    d = rule(LYING, intent=None, text="", speech_score=0.0)
    assert not d.accepted and d.reason == "no call for help heard"


def test_other_speech_while_lying_does_not_fire() -> None:
    d = HelpFusion()(LYING, intent="light_on", text="turn on the light", speech_score=0.95)
    assert not d.accepted and d.x_audio == 0.0


def test_nobody_in_view() -> None:
    d = HelpFusion()([None] * 6, intent="help", text="help", speech_score=0.9)
    assert not d.accepted and d.reason == "nobody in view" and d.posture is None


def test_lying_fraction_and_threshold() -> None:
    # A fall during the window: 5 frames standing, one with nobody, then 2 lying.
    postures: list[Posture | None] = ["standing"] * 5 + [None] + ["lying"] * 2
    d = HelpFusion()(postures, intent="help", text="help", speech_score=0.95)
    assert d.x_image == pytest.approx(2 / 7) and d.frames_lying == 2
    assert d.confidence == pytest.approx(0.5 * 2 / 7 + 0.5 * 0.95, abs=1e-4)  # 0.618
    assert d.accepted and d.posture == "standing"
    # A less certain recognition does not carry it: 0.143 + 0.4 = 0.543 < 0.6.
    d = HelpFusion()(postures, intent="help", text="help", speech_score=0.8)
    assert not d.accepted and d.reason.startswith("fused score 0.54")


def test_single_lying_frame_is_not_enough() -> None:
    postures: list[Posture | None] = ["unknown"] * 7 + ["lying"]
    d = HelpFusion(threshold=0.1)(postures, intent="help", text="help", speech_score=1.0)
    assert not d.accepted and d.frames_lying == 1


def test_scream_counts_as_audio() -> None:
    d = HelpFusion()(LYING, intent=None, text="", speech_score=0.0, scream=0.8)
    assert d.accepted and d.x_audio == 0.8


def test_weights_from_fusion_config() -> None:
    rule = HelpFusion.from_fusion(FusionConfig(alpha=0.7, beta=0.3, threshold=0.9))
    assert (rule.alpha, rule.beta, rule.threshold) == (0.7, 0.3, 0.9)
    d = rule(LYING, intent="help", text="help", speech_score=0.5)
    assert d.confidence == pytest.approx(0.85) and not d.accepted


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("help", True),
        ("Help me!", True),
        ("somebody help", True),
        ("i need help now", True),
        ("that was helpful", False),
        ("turn on the light", False),
        ("", False),
    ],
)
def test_help_phrases(text: str, want: bool) -> None:
    assert is_help_phrase(text, ("help", "help me", "somebody help", "i need help")) is want


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="alpha"):
        HelpFusion(alpha=1.5)
    with pytest.raises(ValueError, match="min_lying_frames"):
        HelpFusion(min_lying_frames=0)


# ---------------------------------------------------------------- event


def _event() -> HelpCall:
    return HelpCall(
        device="box7",
        start=3.0,
        end=3.71,
        confidence=0.99,
        intent="help",
        text="help me",
        image=PoseEvidence(
            score=1.0,
            frames_analysed=8,
            frames_with_person=8,
            frames_lying=8,
            posture="lying",
            model="pose_detection_int8@1.0.0",
            landmark_model="pose_landmark@1.0.0",
        ),
        audio=AudioEvidence(
            score=0.98,
            text="help me",
            model="pocketsphinx@5.1.1/en-us",
            vad_model="silero_vad@6.2.3",
            vad_peak=0.99,
        ),
        fusion=FusionInfo(method="weighted_sum", alpha=0.5, beta=0.5, threshold=0.6, score=0.99),
        skew_ms=30.0,
    )


def test_event_round_trip_and_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    event = _event()
    payload = json.loads(json.dumps(event.to_payload()))
    assert payload["type"] == "help_call" == event.type
    assert HelpCall.from_payload(payload) == event
    schema: dict[str, Any] = event_schema()
    assert schema["$defs"]["help_call"] == SCHEMA_DEF, "event.schema.json is out of date"
    jsonschema.validate(payload, schema)
    bad = {**payload, "evidence": {**payload["evidence"], "image": {"score": 2}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


# ---------------------------------------------------------------- real scenes

cv2 = pytest.importorskip("cv2")

WINDOW_BEFORE_S = 0.5
WINDOW_AFTER_S = 0.5
FRAMES_PER_WINDOW = 8
INTENTS = {
    "light_on": ["turn on the light", "lights on"],
    "light_off": ["turn off the light", "lights off"],
    "fan_on": ["turn on the fan"],
    "fan_off": ["turn off the fan"],
    "help": ["help", "help me"],
}


def _scene(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / name / "scene.json").read_text("utf-8"))
    return data


def _window(name: str) -> tuple[float, float]:
    """The utterance window, or the middle second of a silent scene."""
    meta = _scene(name)
    speech = meta["timeline"]["speech"]
    if speech:
        return speech[0]["start"], speech[0]["end"]
    mid = meta["duration_s"] / 2
    return mid - 0.5, mid + 0.5


def _window_frames(name: str) -> list[np.ndarray]:
    start, end = _window(name)
    lo, hi = start - WINDOW_BEFORE_S, end + WINDOW_AFTER_S
    cap = cv2.VideoCapture(str(SAMPLES / name / "video.avi"))
    frames: list[np.ndarray] = []
    for i in range(10_000):  # bounded: scenes are < 100 frames
        ok, img = cap.read()
        if not ok:
            break
        if lo <= i / 10 <= hi:
            frames.append(img)
    cap.release()
    pick = np.linspace(0, len(frames) - 1, min(FRAMES_PER_WINDOW, len(frames))).round()
    return [frames[int(i)] for i in pick]


def _audio(name: str) -> np.ndarray:
    start, end = _window(name)
    with wave.open(str(SAMPLES / name / "audio.wav"), "rb") as w:
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    return x[int((start - 0.25) * 16000) : int((end + 0.25) * 16000)].copy()


@pytest.fixture(scope="module")
def estimator() -> Any:
    from agent.extractors.pose import PoseEstimator
    from agent.models.store import ModelStore

    store = ModelStore(MODELS)
    det_session, det_manifest = store.load("pose_detection_int8")
    lm_session, lm_manifest = store.load("pose_landmark")
    return PoseEstimator(det_session, det_manifest, lm_session, lm_manifest)


@pytest.fixture(scope="module")
def recognizer() -> Any:
    from agent.config.speech import SpeechConfig
    from agent.extractors.speech import build_recognizer

    return build_recognizer(SpeechConfig(engine="pocketsphinx"), INTENTS)


@pytest.mark.parametrize(
    ("scene", "posture"),
    [("lying_help", "lying"), ("standing_help", "standing"), ("lying_silent", "lying")],
)
def test_scene_postures(estimator: Any, scene: str, posture: str) -> None:
    assert _scene(scene)["timeline"]["posture"] == posture
    poses = [estimator.estimate(f) for f in _window_frames(scene)]
    assert len(poses) == FRAMES_PER_WINDOW
    assert [p.posture if p else None for p in poses] == [posture] * FRAMES_PER_WINDOW


@pytest.mark.parametrize("scene", ["lying_help", "standing_help", "lying_silent"])
def test_rule_on_scene(estimator: Any, recognizer: Any, scene: str) -> None:
    """Real postures from the window's frames + real recognition of the window's audio."""
    postures = [p.posture if p else None for p in map(estimator.estimate, _window_frames(scene))]
    if _scene(scene)["timeline"]["speech"]:
        rec = recognizer.recognize(_audio(scene))
        intent, text, score = rec.intent, rec.text, rec.confidence
        assert (intent, text) == ("help", "help me")
    else:
        intent, text, score = None, "", 0.0  # silence: the VAD cuts no segment at all
    decision = HelpFusion()(postures, intent=intent, text=text, speech_score=score)
    want = [e for e in _scene(scene)["expect"] if e["type"] == "help_call"]
    assert decision.accepted is bool(want), decision
    if want:
        assert decision.confidence >= 0.9 and want[0]["intent"] == intent


def test_threshold_given_at_call_time_wins() -> None:
    """SIGHUP / MQTT change the fusion threshold at run time; the rule must follow."""
    rule = HelpFusion(0.5, 0.5, 0.6)
    postures = ["lying", "lying", "lying"]
    ok = rule(postures, intent="help", text="help me", speech_score=0.5)
    assert ok.accepted  # 0.5*1 + 0.5*0.5 = 0.75 >= 0.6
    stricter = rule(postures, intent="help", text="help me", speech_score=0.5, threshold=0.9)
    assert not stricter.accepted
