"""PoseEstimator on the committed pose models (float tflite, int8 ONNX detector and landmarks),
real photos."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

skimage_data = pytest.importorskip(
    "skimage.data", reason="scikit-image not installed (pip install -e '.[dev]')"
)
cv2 = pytest.importorskip("cv2")

from agent.errors import ExtractorError  # noqa: E402
from agent.extractors.pose import (  # noqa: E402
    L_HIP,
    L_KNEE,
    L_SHOULDER,
    NUM_BODY_LANDMARKS,
    R_HIP,
    R_KNEE,
    R_SHOULDER,
    Landmark,
    PoseEstimator,
    classify_posture,
    roi_from_keypoints,
    ssd_anchors,
)
from agent.models.store import ModelStore  # noqa: E402

MODELS = Path(__file__).resolve().parents[1] / "models"
DETECTORS = ("pose_detection", "pose_detection_int8")
# `models build pose_detection_int8` measured 95.2 % posture agreement (incl. "no pose") between
# the int8 and the float detector on 63 held-out images, the misses all borderline scores
# (0.50-0.57) near min_score. On this test's 26 images int8 agrees on 25 (96.2 %): the one
# miss is the camera photo, float score 0.57, int8 just under 0.5. 0.85 tolerates two more
# borderline flips on another CPU's int8 kernels, while a broken quantization (every score 0.5
# or 0.91, as with int8 output heads: 77.8 % detector agreement, 48.9 % false positives) fails.
MIN_POSTURE_AGREEMENT = 0.85
# The int8 landmark model (pose_landmark_int8) on the same ROI as the float one: the build
# measured 100 % posture and presence agreement on the 26 held-out person crops, mean landmark
# distance 0.006 of the ROI side (p95 0.018, max 0.036), and 96.8 % whole-estimator agreement
# (int8 + int8 vs float + float, 63 images; both misses are the int8 detector's). On this test's
# 26 images float-detector + int8-landmarks agrees with float + float on all 26 (25 with the
# int8 detector too); on its 10 person crops presence stays >= 0.74 (float >= 0.93) and the
# mean landmark distance is 0.005 of the ROI side. 0.85 leaves
# room for a few borderline postures (the camera photo's is near the standing limits) on
# another CPU, while the rejected variants fail it: every layer int8, or only the heads in
# float, turns empty crops' presence to ~1 (61.5 % / 57.7 % posture agreement).
MIN_LANDMARK_POSTURE_AGREEMENT = 0.85
# 0.03 of the ROI side (~8 px of the 256 px crop): 5x the measured mean, just under the max.
MAX_LANDMARK_DIST = 0.03


def _photo(name: str) -> np.ndarray:
    img: np.ndarray = getattr(skimage_data, name)()
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img[..., 2::-1].copy()


def _estimator(detector: str, landmarks: str = "pose_landmark") -> PoseEstimator:
    store = ModelStore(MODELS)
    det_session, det_manifest = store.load(detector)
    lm_session, lm_manifest = store.load(landmarks)
    return PoseEstimator(det_session, det_manifest, lm_session, lm_manifest)


# (detector, landmark model): the float pair, the int8 detector alone, both int8.
COMBOS = (
    ("pose_detection", "pose_landmark"),
    ("pose_detection_int8", "pose_landmark"),
    ("pose_detection_int8", "pose_landmark_int8"),
)


@pytest.fixture(scope="module", params=COMBOS, ids=["float", "int8_det", "int8_det+int8_lm"])
def estimator(request: pytest.FixtureRequest) -> PoseEstimator:
    return _estimator(*request.param)


@pytest.fixture(scope="module")
def pair() -> tuple[PoseEstimator, PoseEstimator]:
    return _estimator("pose_detection"), _estimator("pose_detection_int8")


def test_anchor_layout_matches_model_outputs() -> None:
    anchors = ssd_anchors(224, [8, 16, 32, 32, 32], 2, 0.5)
    assert len(anchors) == 28 * 28 * 2 + 14 * 14 * 2 + 7 * 7 * 6 == 2254
    for name in (*DETECTORS, "pose_landmark", "pose_landmark_int8"):
        assert (MODELS / name / "LICENSE").read_text("utf-8").count("Apache License") >= 1
        assert json.loads((MODELS / name / "manifest.json").read_text("utf-8"))["licence"] == (
            "Apache-2.0"
        )
    for name in DETECTORS:
        manifest = json.loads((MODELS / name / "manifest.json").read_text("utf-8"))
        shapes = sorted(tuple(o["shape"]) for o in manifest["outputs"])
        assert shapes == [(1, 2254, 1), (1, 2254, 12)]
        assert manifest["licence"] == "Apache-2.0"
        assert (MODELS / name / "LICENSE").read_text("utf-8").count("Apache License") >= 1
    # First anchor: centre of the top-left 8 px cell; last: the bottom-right 32 px cell.
    assert anchors[0] == pytest.approx([0.5 / 28, 0.5 / 28])
    assert anchors[-1] == pytest.approx([6.5 / 7, 6.5 / 7])


def test_upright_astronaut_is_standing_or_sitting(estimator: PoseEstimator) -> None:
    pose = estimator.estimate(_photo("astronaut"))
    assert pose is not None and pose.score >= 0.7
    assert pose.posture in ("standing", "sitting")
    assert pose.torso_deg < 20
    assert len(pose.landmarks) == NUM_BODY_LANDMARKS
    # The face is in the upper half of the photo, the shoulders below it.
    nose, shoulder = pose.landmarks[0], pose.landmarks[L_SHOULDER]
    assert 0.3 < nose.x < 0.6 and 0.15 < nose.y < 0.4 and shoulder.y > nose.y
    assert all(0.0 <= lm.visibility <= 1.0 for lm in pose.landmarks)


@pytest.mark.parametrize("landmarks", ["pose_landmark", "pose_landmark_int8"])
def test_cameraman_is_standing(landmarks: str) -> None:
    # Legs partly out of frame: only the knee the model sees (visibility >= 0.5) is used.
    # Float detector only: int8 scores this photo just under min_score (see above).
    pose = _estimator("pose_detection", landmarks).estimate(_photo("camera"))
    assert pose is not None and pose.legs_visible
    assert pose.posture == "standing", (pose.torso_deg, pose.thigh_deg)


@pytest.mark.parametrize("rotation", ["cw", "ccw"])
def test_rotated_astronaut_is_lying(estimator: PoseEstimator, rotation: str) -> None:
    code = cv2.ROTATE_90_CLOCKWISE if rotation == "cw" else cv2.ROTATE_90_COUNTERCLOCKWISE
    pose = estimator.estimate(cv2.rotate(_photo("astronaut"), code))
    assert pose is not None
    assert pose.posture == "lying", (pose.torso_deg, pose.thigh_deg)
    assert 60 <= pose.torso_deg <= 120
    # The rotated ROI found the head on the correct side: nose left of the shoulders when the
    # top of the photo was turned to the left (counter-clockwise), right of them otherwise.
    nose_x = pose.landmarks[0].x
    shoulders_x = (pose.landmarks[L_SHOULDER].x + pose.landmarks[R_SHOULDER].x) / 2
    assert (nose_x > shoulders_x) == (rotation == "cw")


@pytest.mark.parametrize("name", ["rocket", "coffee", "chelsea", "coins", "page"])
def test_no_person(estimator: PoseEstimator, name: str) -> None:
    assert estimator.estimate(_photo(name)) is None


def _agreement_set() -> list[np.ndarray]:
    images: list[np.ndarray] = []
    for name in ("astronaut", "camera"):
        img = _photo(name)
        images += [img, img[:, ::-1].copy()]
        images += [cv2.rotate(img, c) for c in (0, 1, 2)]  # 90 cw, 180, 90 ccw
    for name in ("chelsea", "coffee", "rocket", "coins", "moon", "page", "clock", "text"):
        img = _photo(name)
        images += [img, img[:, ::-1].copy()]
    return images


def test_int8_detector_agrees_with_float(pair: tuple[PoseEstimator, PoseEstimator]) -> None:
    float_est, int8_est = pair
    same = 0
    images = _agreement_set()
    for img in images:
        a, b = float_est.estimate(img), int8_est.estimate(img)
        same += (a.posture if a else "none") == (b.posture if b else "none")
    assert same / len(images) >= MIN_POSTURE_AGREEMENT, f"{same}/{len(images)}"


def test_int8_boxes_close_to_float(pair: tuple[PoseEstimator, PoseEstimator]) -> None:
    from agent.extractors.vision import box_iou

    float_est, int8_est = pair
    for name in ("astronaut",):
        a = float_est.detector.detect(_photo(name))
        b = int8_est.detector.detect(_photo(name))
        assert a and b
        assert box_iou(a[0].box, b[0].box) >= 0.8  # build measured 0.86 mean over 16 pairs


def test_accuracy_file_records_the_measurement() -> None:
    acc = json.loads((MODELS / "pose_detection_int8" / "accuracy.json").read_text("utf-8"))
    int8 = acc["int8_onnx"]
    assert int8["agreement_with_float_pct"] >= 85
    assert int8["posture_agreement_with_float_pct"] >= 90
    assert acc["timing_runs"] >= 20 and set(acc["timing_ms_median_1_thread"]) >= {
        "float_tflite",
        "int8_onnx",
    }


def test_int8_landmarks_keep_the_io_the_estimator_reads() -> None:
    def io(name: str) -> dict[str, list[int]]:
        manifest = json.loads((MODELS / name / "manifest.json").read_text("utf-8"))
        return {t["name"]: t["shape"] for t in (*manifest["inputs"], *manifest["outputs"])}

    float_io, int8_io = io("pose_landmark"), io("pose_landmark_int8")
    # Same landmark / presence outputs; the input is NCHW after tflite2onnx (preprocess.layout).
    assert {k: int8_io[k] for k in ("Identity", "Identity_1")} == {
        k: float_io[k] for k in ("Identity", "Identity_1")
    }
    assert int8_io["input_1"] == [1, 3, 256, 256] and float_io["input_1"] == [1, 256, 256, 3]
    manifest = json.loads((MODELS / "pose_landmark_int8" / "manifest.json").read_text("utf-8"))
    assert manifest["precision"] == "int8" and manifest["preprocess"]["layout"] == "NCHW"
    assert "quantized by the edge-agent project" in manifest["notes"].lower()


@pytest.fixture(scope="module")
def landmark_pair() -> tuple[PoseEstimator, PoseEstimator]:
    return _estimator("pose_detection"), _estimator("pose_detection", "pose_landmark_int8")


def test_int8_landmarks_agree_with_float(
    landmark_pair: tuple[PoseEstimator, PoseEstimator],
) -> None:
    """Same detector and ROI, float vs int8 landmark model: posture, presence, landmarks."""
    float_est, int8_est = landmark_pair
    same = n_person = 0
    dists: list[float] = []
    images = _agreement_set()
    for img in images:
        people = float_est.detector.detect(img)
        if not people:
            continue
        n_person += 1
        h, w = img.shape[:2]
        kp = people[0].keypoints
        roi = roi_from_keypoints(kp[0], kp[1], w, h)
        readings = []
        for est in (float_est, int8_est):
            presence, points = est.landmarks.run(img, roi)
            readings.append((presence, points))
        (pa, a), (pb, b) = readings
        assert (pa >= 0.5) == (pb >= 0.5), (pa, pb)
        pos_a = classify_posture(a, w, h).posture if pa >= 0.5 else "none"
        pos_b = classify_posture(b, w, h).posture if pb >= 0.5 else "none"
        same += pos_a == pos_b
        dists += [
            math.hypot((p.x - q.x) * w, (p.y - q.y) * h) / roi.side
            for p, q in zip(a, b, strict=True)
            if p.visibility >= 0.5
        ]
    assert n_person >= 8  # 10 measured
    assert same / n_person >= MIN_LANDMARK_POSTURE_AGREEMENT, f"{same}/{n_person}"
    assert float(np.mean(dists)) <= MAX_LANDMARK_DIST


def test_int8_pair_agrees_with_float_pair() -> None:
    float_est = _estimator("pose_detection")
    int8_est = _estimator("pose_detection_int8", "pose_landmark_int8")
    same = 0
    images = _agreement_set()
    for img in images:
        a, b = float_est.estimate(img), int8_est.estimate(img)
        same += (a.posture if a else "none") == (b.posture if b else "none")
    # Measured 25/26 (the camera photo: int8 detector score under 0.5, see above).
    assert same / len(images) >= MIN_POSTURE_AGREEMENT, f"{same}/{len(images)}"


def test_landmark_accuracy_file_records_the_measurement() -> None:
    acc = json.loads((MODELS / "pose_landmark_int8" / "accuracy.json").read_text("utf-8"))
    int8 = acc["int8_onnx"]
    assert int8["posture_agreement_pct"] >= 85 and int8["presence_agreement_pct"] >= 90
    assert int8["landmark_dist_roi_mean"] <= MAX_LANDMARK_DIST
    # The rejected variants stay on record, worse than the shipped one.
    for key in ("int8_all_layers_onnx", "int8_heads_float_onnx"):
        assert acc[key]["posture_agreement_pct"] < int8["posture_agreement_pct"]
    assert acc["timing_runs"] >= 20
    assert set(acc["timing_ms_median_1_thread"]) >= {"float_tflite", "float_onnx", "int8_onnx"}
    assert set(acc["frame_ms_median_1_thread"]) >= {"float_det+float_lm", "int8_det+int8_lm"}


def test_roi_rotation() -> None:
    upright = roi_from_keypoints((0.5, 0.6), (0.5, 0.2), 100, 100)
    assert upright.rotation == pytest.approx(0.0)
    assert upright.side == pytest.approx(2 * 40 * 1.25)
    head_right = roi_from_keypoints((0.3, 0.5), (0.7, 0.5), 100, 100)
    assert head_right.rotation == pytest.approx(math.pi / 2)
    head_left = roi_from_keypoints((0.7, 0.5), (0.3, 0.5), 100, 100)
    assert head_left.rotation == pytest.approx(-math.pi / 2)


def _body(
    shoulder: tuple[float, float],
    hip: tuple[float, float],
    knee: tuple[float, float],
    visibility: float = 0.9,
) -> list[Landmark]:
    points = [Landmark(0.5, 0.5, visibility) for _ in range(NUM_BODY_LANDMARKS)]
    for idx, (x, y) in (
        (L_SHOULDER, shoulder),
        (R_SHOULDER, shoulder),
        (L_HIP, hip),
        (R_HIP, hip),
        (L_KNEE, knee),
        (R_KNEE, knee),
    ):
        points[idx] = Landmark(x, y, visibility)
    return points


@pytest.mark.parametrize(
    ("shoulder", "hip", "knee", "want"),
    [
        ((0.5, 0.2), (0.5, 0.5), (0.5, 0.75), "standing"),  # thigh straight down
        ((0.5, 0.2), (0.5, 0.5), (0.8, 0.52), "sitting"),  # thigh horizontal
        ((0.5, 0.3), (0.5, 0.6), (0.5, 0.62), "sitting"),  # knee at hip height (seen from front)
        ((0.2, 0.8), (0.5, 0.8), (0.75, 0.8), "lying"),  # torso horizontal
        ((0.8, 0.7), (0.5, 0.8), (0.25, 0.8), "lying"),  # head to the right, slightly raised
        ((0.3, 0.3), (0.5, 0.55), (0.5, 0.8), "unknown"),  # bending: torso at ~39 degrees
        ((0.5, 0.2), (0.5, 0.5), (0.71, 0.75), "unknown"),  # thigh at ~40: between the limits
    ],
)
def test_posture_rule(
    shoulder: tuple[float, float], hip: tuple[float, float], knee: tuple[float, float], want: str
) -> None:
    reading = classify_posture(_body(shoulder, hip, knee))
    assert reading.posture == want, reading


def test_posture_uses_pixels_not_normalized_units() -> None:
    # In a 4:1 wide image a torso from (0.45, 0.2) to (0.55, 0.8) is 40 px across, 60 px down
    # (~34 degrees, upright); in normalized units it would be ~9.5 degrees.
    body = _body((0.45, 0.2), (0.55, 0.8), (0.55, 1.3))
    assert classify_posture(body, 400, 100).torso_deg == pytest.approx(33.7, abs=0.1)
    assert classify_posture(body).torso_deg == pytest.approx(9.46, abs=0.1)


def test_hidden_shoulders_are_unknown() -> None:
    body = _body((0.2, 0.8), (0.5, 0.8), (0.75, 0.8), visibility=0.1)
    assert classify_posture(body).posture == "unknown"


def test_bad_input(estimator: PoseEstimator) -> None:
    with pytest.raises(ExtractorError):
        estimator.estimate(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ExtractorError):
        estimator.estimate(np.zeros((10, 10, 4), np.uint8))
    with pytest.raises(ExtractorError):
        classify_posture([Landmark(0, 0, 1)] * 5)
    # A blank frame is no error, just nobody.
    assert estimator.estimate(np.zeros((240, 320, 3), np.uint8)) is None
