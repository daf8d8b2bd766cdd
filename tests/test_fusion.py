"""Learned fusion: face features from real photos, fitting, the head bundle and its checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from agent.config.sections import FusionConfig
from agent.errors import ModelError
from agent.extractors.speech import Posterior, Recognition
from agent.extractors.vision import Detection, FaceDetector
from agent.fusion.learned import (
    FEATURES,
    OPERATING_POINT,
    HeadFuser,
    HeadSpec,
    WeightedFuser,
    build_fuser,
    calibrate,
    features,
)
from agent.models.store import ModelStore, read_manifest
from agent.rules.base import PersonEvidence
from agent.training.fusion import choose_threshold, fit_weights, head_onnx, write_fusion_bundle

MODELS = Path(__file__).resolve().parents[1] / "models"


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    session, manifest = ModelStore(MODELS).load("blazeface_full_int8_tflite")
    return FaceDetector(session, manifest.preprocess, manifest.postprocess)


def _photo(name: str) -> Any:
    from skimage import data

    image = getattr(data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)


def test_facing_from_real_photos(detector: FaceDetector) -> None:
    """The astronaut looks into the camera; the cameraman looks at his own camera."""
    astronaut = detector.best_face(_photo("astronaut"))
    cameraman = detector.best_face(_photo("camera"))
    assert astronaut is not None and cameraman is not None
    assert astronaut.facing > 0.8 and cameraman.facing < 0.3
    assert 0.15 < astronaut.height < 0.3
    # The keypoints sit inside the face box (eyes above the mouth).
    (rx, ry), (lx, ly), _, (mx, my), *_ = astronaut.keypoints
    x0, y0, x1, y1 = astronaut.box
    assert all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in ((rx, ry), (lx, ly), (mx, my)))
    assert max(ry, ly) < my


def test_facing_without_keypoints_is_zero() -> None:
    assert Detection(0.9, (0, 0, 1, 1)).facing == 0.0


def _rec(p: float = 0.8, intent: str | None = "light_on") -> Recognition:
    return Recognition(
        intent, "lights on", 0.7, "m@1", posterior=Posterior("light_on", "lights on", p, 0.1, 0.6)
    )


def test_features_layout() -> None:
    person = PersonEvidence(0.45, 8, 4, "v@1", face_height=0.3, facing=0.9)
    x = features(_rec(), person)
    assert x.shape == (len(FEATURES),) and x.dtype == np.float32
    assert dict(zip(FEATURES, x.tolist(), strict=True)) == pytest.approx(
        {
            "p_phrase": 0.8,
            "p_other": 0.1,
            "margin": 0.6,
            "x_image": 0.45,
            "face_frac": 0.5,
            "face_height": 0.3,
            "facing": 0.9,
        }
    )
    # An engine without class probabilities: its confidence stands in.
    plain = features(Recognition("light_on", "x", 0.75, "ps@1"), person)
    assert plain[:3].tolist() == pytest.approx([0.75, 0.25, 0.5])


def test_fit_weights_recovers_the_stronger_modality() -> None:
    rng = np.random.default_rng(0)
    x_img = rng.random(4000).astype(np.float32)
    x_aud = rng.random(4000).astype(np.float32)
    y = ((0.2 * x_img + 0.8 * x_aud) > 0.55).astype(np.int64)
    alpha, beta, threshold = fit_weights(x_img, x_aud, y)
    assert alpha + beta == pytest.approx(1.0, abs=1e-3)
    assert beta > 0.6 > alpha > 0.05
    assert threshold == pytest.approx(0.55, abs=0.05)


def test_choose_threshold_keeps_the_recall() -> None:
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.3], dtype=np.float32)
    y = np.array([1, 1, 1, 1, 0, 0])
    assert choose_threshold(p, y, 0.75) == pytest.approx(0.7)
    assert choose_threshold(p, y, 1.0) == pytest.approx(0.6)


def test_calibration_puts_the_trained_threshold_on_the_operating_point() -> None:
    assert calibrate(0.3, 0.3) == pytest.approx(OPERATING_POINT)
    assert calibrate(0.0, 0.3) == 0.0 and calibrate(1.0, 0.3) == pytest.approx(1.0)
    assert calibrate(0.2, 0.3) < OPERATING_POINT < calibrate(0.31, 0.3)


def _bundle(
    tmp_path: Path, *, features_list: list[str] | None = None, threshold: float = 0.4
) -> Path:
    """A real (float, tiny) fusion head bundle: it weighs p_phrase and facing."""
    w1 = np.zeros((16, len(FEATURES)), np.float32)
    w1[0, FEATURES.index("p_phrase")] = 4.0
    w1[0, FEATURES.index("facing")] = 4.0
    weights = {
        "w1": w1,
        "b1": np.zeros(16, np.float32),
        "w2": np.eye(1, 16, dtype=np.float32),
        "b2": np.array([-4.0], np.float32),
    }
    out = tmp_path / "fusion_head_int8"
    out.mkdir()
    onnx_path = out / "fusion_head_int8.onnx"
    onnx_path.write_bytes(head_onnx(weights))
    write_fusion_bundle(
        out,
        onnx_path,
        threshold=threshold,
        weights=(0.3, 0.7, 0.62),
        recognizer="r@1",
        detector="d@1",
        accuracy={},
    )
    if features_list is not None:
        data = json.loads((out / "manifest.json").read_text())
        data["preprocess"]["features"] = features_list
        (out / "manifest.json").write_text(json.dumps(data))
    return out


def _store(tmp_path: Path, bundle: Path) -> ModelStore:
    root = tmp_path / "store"
    shutil.copytree(MODELS, root)
    store = ModelStore(root)
    store.install(bundle)
    return store


def test_head_bundle_installs_and_fuses(tmp_path: Path) -> None:
    store = _store(tmp_path, _bundle(tmp_path))
    fuser = build_fuser(FusionConfig(method="learned_head"), store.load)
    assert isinstance(fuser, HeadFuser) and fuser.wants_candidates
    facing = PersonEvidence(0.9, 8, 8, "v", face_height=0.3, facing=1.0)
    turned = PersonEvidence(0.9, 8, 8, "v", face_height=0.3, facing=0.0)
    # Same words, same confidence: facing the device fires, turned away does not.
    assert fuser.fuse(_rec(0.8), facing).accepted
    assert not fuser.fuse(_rec(0.8), turned).accepted
    learned = build_fuser(FusionConfig(method="learned_weights"), store.load)
    assert isinstance(learned, WeightedFuser)
    assert (learned.method, learned.alpha, learned.beta) == ("learned_weights", 0.3, 0.7)
    assert build_fuser(FusionConfig(method="auto"), store.load).method == "learned_head"


def test_auto_without_a_bundle_keeps_the_hand_set_weights(tmp_path: Path) -> None:
    assert FusionConfig().method == "weighted_sum"  # the default until the head wins everywhere
    store = ModelStore(tmp_path / "empty")
    fuser = build_fuser(FusionConfig(method="auto"), store.load)
    assert (fuser.method, fuser.alpha, fuser.beta, fuser.wants_candidates) == (
        "weighted_sum",
        0.5,
        0.5,
        False,
    )
    with pytest.raises(ModelError, match="not found"):
        build_fuser(FusionConfig(method="learned_head"), store.load)


def test_bundle_with_other_features_is_refused(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, features_list=["p_phrase", "x_image"])
    with pytest.raises(ModelError, match="differ from this agent"):
        HeadSpec.from_manifest(read_manifest(bundle))
    store = _store(tmp_path, bundle)
    # auto falls back to the hand-set weights rather than run a head it cannot feed.
    assert build_fuser(FusionConfig(method="auto"), store.load).method == "weighted_sum"


def test_bundle_with_a_threshold_out_of_range_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="threshold"):
        HeadSpec.from_manifest(read_manifest(_bundle(tmp_path, threshold=1.0)))


# ----------------------------------------------------------------- in the pipeline


def _replay(store: ModelStore, method: str, recognizer: Any = None) -> list[dict[str, Any]]:
    import agent.app
    from agent.app import build_pipeline, replay
    from agent.config.schema import AgentConfig
    from agent.publish.sink import MemorySink
    from tests.conftest import SAMPLES

    cfg = AgentConfig.model_validate(
        {"models": {"dir": str(store.root)}, "fusion": {"method": method}}
    )
    sink = MemorySink()
    real = agent.app.build_recognizer
    if recognizer is not None:
        agent.app.build_recognizer = lambda *a, **k: recognizer  # type: ignore[assignment]
    try:
        pipeline = build_pipeline(cfg, sink)
    finally:
        agent.app.build_recognizer = real
    scene = SAMPLES / "person_command"
    replay(pipeline, scene / "video.avi", scene / "audio.wav")
    return [e.to_payload() for e in sink.events]


class _Unsure:
    """The recognizer alone rejects: best phrase "lights on" at p 0.6, below its threshold."""

    model = "unsure@1"

    def recognize(self, samples: Any) -> Recognition:
        post = Posterior("light_on", "lights on", 0.6, 0.35, 0.25)
        return Recognition(None, "lights on", 0.42, self.model, "not sure", post)


def test_learned_head_in_the_real_pipeline(tmp_path: Path) -> None:
    store = _store(tmp_path, _bundle(tmp_path))
    events = _replay(store, "learned_head")
    assert [(e["type"], e["intent"]) for e in events] == [("voice_command", "light_on")]
    assert events[0]["fusion"]["method"] == "learned_head"
    # A person facing the device lowers the audio bar: an utterance the recognizer alone
    # rejects becomes a command with the head, never with the hand-set weights.
    lowered = _replay(store, "learned_head", _Unsure())
    assert [(e["intent"], e["text"]) for e in lowered] == [("light_on", "lights on")]
    assert _replay(store, "weighted_sum", _Unsure()) == []
