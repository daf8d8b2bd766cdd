"""Person pose (MediaPipe BlazePose) around any Session, and posture from the landmarks.

Two stages, as in MediaPipe's pose pipeline:

1. **Pose detection** (``pose_detection``, 224x224): an SSD over 2254 anchors (strides 8, 16,
   32, 32, 32; 2 anchors per cell, the three stride-32 layers merged into 6 per cell: 28²·2 +
   14²·2 + 7²·6 = 2254). Each anchor regresses a box and 4 keypoints: 0 hip centre, 1 a point
   on the circle around the whole body, 2 shoulder centre, 3 a point on the circle around the
   upper body. Letterboxed input in [-1, 1]; weighted NMS at IoU 0.3.
2. **Pose landmarks** (``pose_landmark_full``, 256x256): on a square region around the person,
   *rotated so the body stands upright* (centre = hip centre, side = 2 x 1.25 x |kp1 - kp0|,
   angle from kp0 -> kp1 to vertical), like MediaPipe's ``AlignmentPointsRectsCalculator`` +
   ``RectTransformationCalculator``. The rotation is what lets the landmark model, trained
   on upright people, find a person lying on the floor. Input in [0, 1]; 39 landmarks of which
   the first 33 are the BlazePose body points, projected back to the image.

Layout (NHWC ``.tflite`` or NCHW ``.onnx`` after tflite2onnx) and dtype come from the session;
sizes, ranges, anchor layout and thresholds from the manifests' ``preprocess`` /
``postprocess``.

Posture (``classify_posture``), angles in degrees measured in *pixels* (not normalized units):

* torso angle = angle between shoulder-midpoint -> hip-midpoint and straight down
  (0 upright, 90 horizontal, 180 head down).
* ``lying``    torso angle >= 60 (``LYING_TORSO_DEG``).
* upright torso (<= 35, ``UPRIGHT_TORSO_DEG``): thigh angle = mean angle of hip -> knee to
  straight down, and knee drop = vertical hip -> knee distance / torso length (see below for
  which legs).
  ``sitting`` when thigh angle >= 50 (``SITTING_THIGH_DEG``) or knee drop < 0.35
  (``SITTING_KNEE_DROP``; a thigh pointing at the camera);
  ``standing`` when thigh angle <= 30 (``STANDING_THIGH_DEG``) and knee drop >= 0.6
  (``STANDING_KNEE_DROP``);
  otherwise ``unknown``.
* torso between 35 and 60 (bending, reclining) -> ``unknown``.
* Shoulders with visibility below 0.5 -> ``unknown``. Thigh angle and knee drop use the legs
  whose knee is seen (visibility >= 0.5); when no knee is seen (a person cut at the chest, like
  the astronaut photo) the model's extrapolated knees of both legs. ``Pose.legs_visible``
  says which. Knee drop is measured from each leg's own hip.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from agent.errors import ExtractorError
from agent.extractors.boxes import iou_one
from agent.runtimes.base import Session, TensorSpec

_LOGGER = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
Box = tuple[float, float, float, float]
Posture = Literal["standing", "sitting", "lying", "unknown"]
POSTURES: tuple[Posture, ...] = ("standing", "sitting", "lying", "unknown")

_FLOAT_DTYPES = {"float32", "tensor(float)"}

# BlazePose landmark indices (the first 33 of the model's 39).
NOSE = 0
L_SHOULDER, R_SHOULDER = 11, 12
L_HIP, R_HIP = 23, 24
L_KNEE, R_KNEE = 25, 26
L_ANKLE, R_ANKLE = 27, 28
NUM_BODY_LANDMARKS = 33

# Posture thresholds (degrees from straight down; ratios of torso length). See module doc.
LYING_TORSO_DEG = 60.0
UPRIGHT_TORSO_DEG = 35.0
SITTING_THIGH_DEG = 50.0
STANDING_THIGH_DEG = 30.0
SITTING_KNEE_DROP = 0.35
STANDING_KNEE_DROP = 0.6
MIN_SHOULDER_VISIBILITY = 0.5
LEGS_VISIBLE = 0.5


class ModelSpec(Protocol):
    """What the estimator needs of a manifest (``agent.models.store.Manifest`` fits)."""

    @property
    def preprocess(self) -> Mapping[str, Any]: ...

    @property
    def postprocess(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class PersonDetection:
    """One person from the detector; coordinates normalized to the original image."""

    score: float
    box: Box
    keypoints: tuple[tuple[float, float], ...]  # hip centre, body circle, shoulders, upper circle


@dataclass(frozen=True, slots=True)
class Landmark:
    """One body point: ``x``, ``y`` normalized to the image (may lie outside 0..1)."""

    x: float
    y: float
    visibility: float


@dataclass(frozen=True, slots=True)
class Pose:
    """The best person in an image, with its 33 landmarks and the posture read from them."""

    score: float  # person detector score
    presence: float  # landmark model's pose-presence score
    box: Box
    landmarks: tuple[Landmark, ...]
    posture: Posture
    torso_deg: float
    thigh_deg: float | None
    legs_visible: bool


@dataclass(frozen=True, slots=True)
class PostureReading:
    posture: Posture
    torso_deg: float
    thigh_deg: float | None
    knee_drop: float | None
    legs_visible: bool


def _num(cfg: Mapping[str, Any], key: str, default: float) -> float:
    value = cfg.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ExtractorError(f"pose: {key!r} must be a number, got {value!r}")
    return float(value)


def _image_input(session: Session, what: str) -> tuple[TensorSpec, bool, int]:
    if len(session.inputs) != 1:
        raise ExtractorError(f"pose: {what} expects 1 input, got {len(session.inputs)}")
    spec = session.inputs[0]
    if spec.dtype not in _FLOAT_DTYPES:
        raise ExtractorError(f"pose: {what} input dtype {spec.dtype!r} is not float32")
    if len(spec.shape) != 4:
        raise ExtractorError(f"pose: {what} expects a 4-D image input, got {spec.shape}")
    nchw = spec.shape[1] == 3 and spec.shape[3] != 3
    return spec, nchw, spec.shape[2] if nchw else spec.shape[1]


def _check_image(image_bgr: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    if image_bgr.ndim == 2:
        image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.size == 0:
        raise ExtractorError(f"pose: expected an HxWx3 BGR image, got {image_bgr.shape}")
    if image_bgr.dtype != np.uint8:
        raise ExtractorError(f"pose: expected uint8 pixels, got {image_bgr.dtype}")
    return np.asarray(image_bgr, np.uint8)


def ssd_anchors(size: int, strides: Sequence[int], per_layer: int, offset: float) -> FloatArray:
    """Anchor centres (x, y) like MediaPipe's SsdAnchorsCalculator with fixed-size anchors.

    Consecutive layers with the same stride share one grid; each layer adds ``per_layer``
    anchors per cell (one aspect ratio + the interpolated scale = 2).
    """
    rows: list[FloatArray] = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        same = 0
        while layer + same < len(strides) and strides[layer + same] == stride:
            same += 1
        grid = math.ceil(size / stride)
        ys, xs = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
        centres = np.stack([(xs + offset) / grid, (ys + offset) / grid], axis=-1).reshape(-1, 2)
        rows.append(np.repeat(centres, per_layer * same, axis=0).astype(np.float32))
        layer += same
    return np.concatenate(rows).astype(np.float32)


def _weighted_nms(
    boxes: FloatArray, points: FloatArray, scores: FloatArray, iou: float, limit: int
) -> list[tuple[float, FloatArray, FloatArray]]:
    """MediaPipe's WEIGHTED suppression: each cluster's box/keypoints are score-weighted means."""
    order = np.argsort(-scores, kind="stable")
    out: list[tuple[float, FloatArray, FloatArray]] = []
    while order.size and len(out) < limit:
        best = int(order[0])
        overlap = iou_one(boxes[best], boxes[order]) > iou
        members = order[overlap]
        w = scores[members][:, None]
        box = (boxes[members] * w).sum(axis=0) / w.sum()
        pts = (points[members] * w[:, :, None]).sum(axis=0) / w.sum()
        out.append((float(scores[best]), box.astype(np.float32), pts.astype(np.float32)))
        order = order[~overlap]
    return out


class PoseDetector:
    """BlazePose person detector: ``detect`` returns people best first."""

    def __init__(self, session: Session, spec: ModelSpec) -> None:
        self._session = session
        self._input, self._nchw, size = _image_input(session, "pose detector")
        pre, post = spec.preprocess, spec.postprocess
        self.size = int(_num(pre, "size", size))
        if size > 0 and size != self.size:
            raise ExtractorError(f"pose: detector manifest size {self.size} != model {size}")
        lo, hi = pre.get("range", (-1.0, 1.0))
        self._scale = np.float32((float(hi) - float(lo)) / 255.0)
        self._offset = np.float32(lo)
        strides = post.get("strides", [8, 16, 32, 32, 32])
        if not isinstance(strides, list) or not all(isinstance(s, int) for s in strides):
            raise ExtractorError(f"pose: 'strides' must be a list of ints, got {strides!r}")
        self._anchors = ssd_anchors(
            self.size,
            strides,
            int(_num(post, "anchors_per_layer", 2)),
            _num(post, "anchor_offset", 0.5),
        )
        self._num_keypoints = int(_num(post, "num_keypoints", 4))
        self._box_scale = _num(post, "box_scale", self.size)
        self._score_clip = _num(post, "score_clip", 100.0)
        self.min_score = _num(post, "min_score", 0.5)
        self._nms_iou = _num(post, "nms_iou", 0.3)
        self._max_det = int(_num(post, "max_detections", 5))
        self._boxes_name, self._scores_name = self._output_names(post)

    def _output_names(self, post: Mapping[str, Any]) -> tuple[str, str]:
        names = {o.name for o in self._session.outputs}
        boxes, scores = post.get("regressors_output"), post.get("classifier_output")
        if isinstance(boxes, str) and isinstance(scores, str) and {boxes, scores} <= names:
            return boxes, scores
        by_last = {o.shape[-1]: o.name for o in self._session.outputs if o.shape}
        want = 4 + 2 * self._num_keypoints
        if 1 not in by_last or want not in by_last:
            raise ExtractorError(f"pose: cannot tell detector outputs apart in {names}")
        return by_last[want], by_last[1]

    def prepare(self, image_bgr: npt.NDArray[Any]) -> tuple[FloatArray, int, int, int]:
        """Letterboxed input tensor plus (square side, top pad, left pad)."""
        image = _check_image(image_bgr)
        h, w = image.shape[:2]
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        square = cv2.copyMakeBorder(
            image, top, side - h - top, left, side - w - left, cv2.BORDER_CONSTANT, value=0
        )
        interp = cv2.INTER_AREA if side > self.size else cv2.INTER_LINEAR
        small = cv2.resize(square, (self.size, self.size), interpolation=interp)
        rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB).astype(np.float32)
        tensor = rgb * self._scale + self._offset
        tensor = tensor.transpose(2, 0, 1) if self._nchw else tensor
        return np.ascontiguousarray(tensor[None]), side, top, left

    def raw(self, image_bgr: npt.NDArray[Any]) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Per-anchor scores, boxes (x0,y0,x1,y1) and keypoints (K,2), image-normalized."""
        tensor, side, top, left = self.prepare(image_bgr)
        out = self._session.run({self._input.name: tensor})
        n = len(self._anchors)
        reg = np.asarray(out[self._boxes_name], dtype=np.float32).reshape(n, -1)
        logits = np.asarray(out[self._scores_name], dtype=np.float32).reshape(-1)
        logits64 = np.clip(logits.astype(np.float64), -self._score_clip, self._score_clip)
        scores: FloatArray = (1.0 / (1.0 + np.exp(-logits64))).astype(np.float32)
        anchors = self._anchors
        cx = reg[:, 0] / self._box_scale + anchors[:, 0]
        cy = reg[:, 1] / self._box_scale + anchors[:, 1]
        hw, hh = reg[:, 2] / self._box_scale / 2, reg[:, 3] / self._box_scale / 2
        boxes = np.stack([cx - hw, cy - hh, cx + hw, cy + hh], axis=1)
        kp = reg[:, 4 : 4 + 2 * self._num_keypoints].reshape(n, self._num_keypoints, 2)
        kp = kp / self._box_scale + anchors[:, None, :]
        # Square-normalized -> original-image-normalized (undo the letterbox).
        h, w = image_bgr.shape[:2]
        shift = np.array([left, top], np.float32)
        dims = np.array([w, h], np.float32)
        boxes = ((boxes.reshape(n, 2, 2) * side - shift) / dims).reshape(n, 4)
        kp = (kp * side - shift) / dims
        return scores, boxes.astype(np.float32), kp.astype(np.float32)

    def detect(self, image_bgr: npt.NDArray[Any]) -> list[PersonDetection]:
        """People with score >= ``min_score`` after weighted NMS, best first."""
        scores, boxes, kps = self.raw(image_bgr)
        keep = scores >= self.min_score
        if not keep.any():
            return []
        found = _weighted_nms(boxes[keep], kps[keep], scores[keep], self._nms_iou, self._max_det)
        return [
            PersonDetection(
                score,
                (float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                tuple((float(p[0]), float(p[1])) for p in pts),
            )
            for score, b, pts in found
        ]


@dataclass(frozen=True, slots=True)
class Roi:
    """A rotated square region in image pixels: centre, side and rotation (radians)."""

    cx: float
    cy: float
    side: float
    rotation: float


def roi_from_keypoints(
    centre: tuple[float, float],
    scale_point: tuple[float, float],
    width: int,
    height: int,
    enlarge: float = 1.25,
) -> Roi:
    """MediaPipe's pose ROI: centred on ``centre``, side 2·|scale_point - centre|·enlarge,
    rotated so that centre -> scale_point points straight up in the crop."""
    x0, y0 = centre[0] * width, centre[1] * height
    x1, y1 = scale_point[0] * width, scale_point[1] * height
    side = 2.0 * math.hypot(x1 - x0, y1 - y0) * enlarge
    rotation = math.pi / 2 - math.atan2(-(y1 - y0), x1 - x0)
    rotation = (rotation + math.pi) % (2 * math.pi) - math.pi
    return Roi(x0, y0, max(side, 1.0), rotation)


class LandmarkModel:
    """BlazePose landmarks on a rotated ROI; returns 33 image-normalized body points."""

    def __init__(self, session: Session, spec: ModelSpec) -> None:
        self._session = session
        self._input, self._nchw, size = _image_input(session, "pose landmark model")
        pre, post = spec.preprocess, spec.postprocess
        self.size = int(_num(pre, "size", size))
        if size > 0 and size != self.size:
            raise ExtractorError(f"pose: landmark manifest size {self.size} != model {size}")
        lo, hi = pre.get("range", (0.0, 1.0))
        self._scale = np.float32((float(hi) - float(lo)) / 255.0)
        self._offset = np.float32(lo)
        self._num = int(_num(post, "num_landmarks", 39))
        self._values = int(_num(post, "values_per_landmark", 5))
        self.enlarge = _num(post, "roi_scale", 1.25)
        self.min_presence = _num(post, "min_presence", 0.5)
        names = {o.name for o in session.outputs}
        lm, flag = post.get("landmarks_output"), post.get("presence_output")
        if isinstance(lm, str) and isinstance(flag, str) and {lm, flag} <= names:
            self._lm_name, self._flag_name = lm, flag
        else:
            flat = {int(np.prod(o.shape)): o.name for o in session.outputs if o.shape}
            if self._num * self._values not in flat or 1 not in flat:
                raise ExtractorError(f"pose: cannot find landmark outputs in {names}")
            self._lm_name, self._flag_name = flat[self._num * self._values], flat[1]

    def crop(self, image: npt.NDArray[np.uint8], roi: Roi) -> tuple[FloatArray, FloatArray]:
        """Model input for ``roi`` and the 2x3 matrix from crop pixels to image pixels."""
        c, s = math.cos(roi.rotation), math.sin(roi.rotation)
        k = roi.side / self.size
        # crop (u, v) -> image: centre + R(rotation) @ ((u, v) - size/2) * k
        to_image = np.array(
            [
                [c * k, -s * k, roi.cx - (c - s) * roi.side / 2],
                [s * k, c * k, roi.cy - (s + c) * roi.side / 2],
            ],
            np.float32,
        )
        patch = cv2.warpAffine(
            image,
            to_image,
            (self.size, self.size),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        rgb = cv2.cvtColor(patch, cv2.COLOR_BGR2RGB).astype(np.float32)
        tensor = rgb * self._scale + self._offset
        tensor = tensor.transpose(2, 0, 1) if self._nchw else tensor
        return np.ascontiguousarray(tensor[None]), to_image

    def run(self, image: npt.NDArray[np.uint8], roi: Roi) -> tuple[float, list[Landmark]]:
        """(pose presence, 33 landmarks normalized to ``image``)."""
        tensor, to_image = self.crop(image, roi)
        out = self._session.run({self._input.name: tensor})
        raw = np.asarray(out[self._lm_name], np.float32).reshape(self._num, self._values)
        presence = float(np.asarray(out[self._flag_name], np.float32).reshape(-1)[0])
        uv1 = np.concatenate([raw[:NUM_BODY_LANDMARKS, :2], np.ones((NUM_BODY_LANDMARKS, 1))], 1)
        xy = uv1.astype(np.float32) @ to_image.T
        vis = 1.0 / (1.0 + np.exp(-np.clip(raw[:NUM_BODY_LANDMARKS, 3], -50.0, 50.0)))
        h, w = image.shape[:2]
        return presence, [
            Landmark(float(x / w), float(y / h), float(v))
            for (x, y), v in zip(xy, vis, strict=True)
        ]


def _angle_from_down(dx: float, dy: float) -> float:
    """Degrees between (dx, dy) (image pixels, y down) and straight down: 0..180."""
    return math.degrees(math.atan2(abs(dx), dy))


def classify_posture(
    landmarks: Sequence[Landmark], width: int = 1, height: int = 1
) -> PostureReading:
    """Standing / sitting / lying / unknown from 33 landmarks (see the module docstring).

    ``width``/``height`` are the image size, so angles are taken in pixels.
    """
    if len(landmarks) < NUM_BODY_LANDMARKS:
        raise ExtractorError(f"pose: need {NUM_BODY_LANDMARKS} landmarks, got {len(landmarks)}")

    def px(i: int) -> tuple[float, float]:
        return landmarks[i].x * width, landmarks[i].y * height

    def mid(a: int, b: int) -> tuple[float, float]:
        (ax, ay), (bx, by) = px(a), px(b)
        return (ax + bx) / 2, (ay + by) / 2

    sx, sy = mid(L_SHOULDER, R_SHOULDER)
    hx, hy = mid(L_HIP, R_HIP)
    torso = _angle_from_down(hx - sx, hy - sy)
    torso_len = max(math.hypot(hx - sx, hy - sy), 1e-6)
    shoulder_vis = min(landmarks[L_SHOULDER].visibility, landmarks[R_SHOULDER].visibility)
    legs = [(h, k) for h, k in ((L_HIP, L_KNEE), (R_HIP, R_KNEE))]
    seen_legs = [(h, k) for h, k in legs if landmarks[k].visibility >= LEGS_VISIBLE]
    legs_visible = bool(seen_legs)
    # Seen knees only; when none is seen, the model's extrapolation of both.
    used = seen_legs or legs
    thigh = sum(_angle_from_down(px(k)[0] - px(h)[0], px(k)[1] - px(h)[1]) for h, k in used)
    thigh /= len(used)
    knee_drop = sum(px(k)[1] - px(h)[1] for h, k in used) / len(used) / torso_len

    posture: Posture
    if shoulder_vis < MIN_SHOULDER_VISIBILITY:
        posture = "unknown"
    elif torso >= LYING_TORSO_DEG:
        posture = "lying"
    elif torso > UPRIGHT_TORSO_DEG:
        posture = "unknown"
    elif thigh >= SITTING_THIGH_DEG or knee_drop < SITTING_KNEE_DROP:
        posture = "sitting"
    elif thigh <= STANDING_THIGH_DEG and knee_drop >= STANDING_KNEE_DROP:
        posture = "standing"
    else:
        posture = "unknown"
    return PostureReading(posture, torso, thigh, knee_drop, legs_visible)


class PoseEstimator:
    """Person detector + landmark model: ``estimate`` gives the best person's pose or None."""

    def __init__(
        self,
        detector_session: Session,
        detector_manifest: ModelSpec,
        landmark_session: Session,
        landmark_manifest: ModelSpec,
    ) -> None:
        self.detector = PoseDetector(detector_session, detector_manifest)
        self.landmarks = LandmarkModel(landmark_session, landmark_manifest)
        _LOGGER.debug(
            "pose estimator: detector %d px, landmarks %d px, min score %.2f",
            self.detector.size,
            self.landmarks.size,
            self.detector.min_score,
        )

    def estimate(self, image_bgr: npt.NDArray[Any]) -> Pose | None:
        """The highest-scoring person's pose; None when nobody is detected or the landmark
        model says no pose is present."""
        image = _check_image(image_bgr)
        people = self.detector.detect(image)
        if not people:
            return None
        best = people[0]
        h, w = image.shape[:2]
        roi = roi_from_keypoints(
            best.keypoints[0], best.keypoints[1], w, h, enlarge=self.landmarks.enlarge
        )
        presence, points = self.landmarks.run(image, roi)
        if presence < self.landmarks.min_presence:
            _LOGGER.debug("pose: person %.2f but landmark presence %.2f", best.score, presence)
            return None
        reading = classify_posture(points, w, h)
        return Pose(
            score=best.score,
            presence=presence,
            box=best.box,
            landmarks=tuple(points),
            posture=reading.posture,
            torso_deg=reading.torso_deg,
            thigh_deg=reading.thigh_deg,
            legs_visible=reading.legs_visible,
        )
