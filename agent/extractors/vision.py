"""Face detection (BlazeFace full range) around any Session: letterbox, decode, NMS.

The same code drives the float ``.tflite`` (NHWC) and the int8 ``.onnx`` (NCHW after
tflite2onnx): layout and dtype are read from ``session.inputs``, everything else comes
from the manifest's ``preprocess`` / ``postprocess`` dicts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from agent.errors import ExtractorError
from agent.extractors.boxes import iou_one
from agent.runtimes.base import Session, TensorSpec

_LOGGER = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
Box = tuple[float, float, float, float]

_FLOAT_DTYPES = {"float32", "tensor(float)"}


@dataclass(frozen=True, slots=True)
class Detection:
    """One face: ``box`` is (x0, y0, x1, y1) normalized to the original image, 0..1;
    ``keypoints`` (x, y) likewise, in BlazeFace's order: right eye, left eye, nose tip,
    mouth, right ear, left ear (the subject's right and left)."""

    score: float
    box: Box
    keypoints: tuple[tuple[float, float], ...] = ()

    @property
    def height(self) -> float:
        """Face height as a fraction of the image height (near faces are big)."""
        return self.box[3] - self.box[1]

    @property
    def facing(self) -> float:
        """1.0 for a face turned to the camera, falling to 0.0 for a profile.

        From the nose tip's offset to the midpoint of the eyes, in eye distances: about 0 for
        a frontal face, about 0.5 and more once the head is turned 45 degrees or more. 0.0
        when the keypoints are missing.
        """
        if len(self.keypoints) < 3:
            return 0.0
        (rx, ry), (lx, ly), (nx, _) = self.keypoints[:3]
        eyes = float(np.hypot(lx - rx, ly - ry))
        if eyes <= 1e-6:
            return 0.0
        yaw = abs(nx - (rx + lx) / 2) / eyes
        return float(np.clip(1.0 - 2.0 * yaw, 0.0, 1.0))


def _num(cfg: Mapping[str, Any], key: str, default: float) -> float:
    value = cfg.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ExtractorError(f"vision: {key!r} must be a number, got {value!r}")
    return float(value)


def _anchors(grid: int, per_cell: int, offset: float) -> FloatArray:
    # SSD anchors with fixed size: only centers matter, row-major like MediaPipe.
    ys, xs = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    centers = np.stack([(xs + offset) / grid, (ys + offset) / grid], axis=-1).reshape(-1, 2)
    return np.repeat(centers, per_cell, axis=0).astype(np.float32)


def _nms(boxes: FloatArray, scores: FloatArray, iou: float, limit: int) -> list[int]:
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < limit:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        order = rest[iou_one(boxes[best], boxes[rest]) <= iou]
    return keep


def box_iou(a: Box, b: Box) -> float:
    """IoU of two (x0, y0, x1, y1) boxes."""
    return float(iou_one(np.asarray(a, dtype=np.float32), np.asarray([b], dtype=np.float32))[0])


class FaceDetector:
    """BlazeFace-style single-stage detector; ``detect`` returns faces best first."""

    def __init__(
        self,
        session: Session,
        preprocess: Mapping[str, Any],
        postprocess: Mapping[str, Any],
    ) -> None:
        if len(session.inputs) != 1:
            raise ExtractorError(f"vision: expected 1 model input, got {len(session.inputs)}")
        self._session = session
        self._input: TensorSpec = session.inputs[0]
        if self._input.dtype not in _FLOAT_DTYPES:
            raise ExtractorError(f"vision: unsupported input dtype {self._input.dtype!r}")
        shape = self._input.shape
        if len(shape) != 4:
            raise ExtractorError(f"vision: expected a 4-D image input, got shape {shape}")
        # tflite2onnx turns the NHWC tflite input into NCHW; trust the session, not the manifest.
        self._nchw = shape[1] == 3 and shape[3] != 3
        size = shape[2] if self._nchw else shape[1]
        self._size = int(_num(preprocess, "size", size))
        if size > 0 and size != self._size:
            raise ExtractorError(f"vision: manifest size {self._size} != model input {size}")
        lo, hi = preprocess.get("range", (-1.0, 1.0))
        self._scale = (float(hi) - float(lo)) / 255.0
        self._offset = float(lo)

        self._box_scale = _num(postprocess, "box_scale", self._size)
        self._score_clip = _num(postprocess, "score_clip", 100.0)
        self._min_score = _num(postprocess, "min_score", 0.5)
        self._nms_iou = _num(postprocess, "nms_iou", 0.3)
        self._max_det = int(_num(postprocess, "max_detections", 10))
        grid = int(_num(postprocess, "grid", 48))
        per_cell = int(_num(postprocess, "anchors_per_cell", 1))
        self._anchors = _anchors(grid, per_cell, _num(postprocess, "anchor_offset", 0.5))
        self._boxes_name, self._scores_name = self._output_names(postprocess)
        self._last_keypoints: FloatArray = np.zeros((0, 0), np.float32)
        _LOGGER.debug(
            "face detector: %dx%d %s input, %d anchors, min_score %.2f",
            self._size,
            self._size,
            "NCHW" if self._nchw else "NHWC",
            len(self._anchors),
            self._min_score,
        )

    def _output_names(self, postprocess: Mapping[str, Any]) -> tuple[str, str]:
        names = {o.name for o in self._session.outputs}
        boxes = postprocess.get("regressors_output")
        scores = postprocess.get("classifier_output")
        if isinstance(boxes, str) and isinstance(scores, str) and {boxes, scores} <= names:
            return boxes, scores
        # Fall back to shapes: regressors end in 4 + 2*keypoints, scores in 1.
        by_last = {o.shape[-1]: o.name for o in self._session.outputs if o.shape}
        if 1 not in by_last or len(by_last) != 2:
            raise ExtractorError(f"vision: cannot tell box and score outputs apart in {names}")
        score_name = by_last.pop(1)
        return next(iter(by_last.values())), score_name

    def prepare(self, image_bgr: npt.NDArray[Any]) -> tuple[FloatArray, int, int, int]:
        """Letterboxed model input plus (square side, top pad, left pad) to undo it."""
        if image_bgr.ndim == 2:
            image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.size == 0:
            raise ExtractorError(f"vision: expected an HxWx3 BGR image, got {image_bgr.shape}")
        if image_bgr.dtype != np.uint8:
            raise ExtractorError(f"vision: expected uint8 pixels, got {image_bgr.dtype}")
        h, w = image_bgr.shape[:2]
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        # Pad to a square so faces keep their aspect ratio (the model saw square crops).
        square = cv2.copyMakeBorder(
            image_bgr, top, side - h - top, left, side - w - left, cv2.BORDER_CONSTANT, value=0
        )
        interp = cv2.INTER_AREA if side > self._size else cv2.INTER_LINEAR
        small = cv2.resize(square, (self._size, self._size), interpolation=interp)
        rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB).astype(np.float32)
        tensor = rgb * np.float32(self._scale) + np.float32(self._offset)
        tensor = tensor.transpose(2, 0, 1) if self._nchw else tensor
        return np.ascontiguousarray(tensor[None]), side, top, left

    def raw_scores(
        self, image_bgr: npt.NDArray[Any]
    ) -> tuple[FloatArray, FloatArray, int, int, int]:
        """Sigmoid scores and decoded boxes (square-image units) for every anchor."""
        tensor, side, top, left = self.prepare(image_bgr)
        out = self._session.run({self._input.name: tensor})
        raw_boxes = np.asarray(out[self._boxes_name], dtype=np.float32).reshape(
            len(self._anchors), -1
        )
        logits = np.asarray(out[self._scores_name], dtype=np.float32).reshape(-1)
        logits = np.clip(logits, -self._score_clip, self._score_clip)
        scores: FloatArray = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
        cx = raw_boxes[:, 0] / self._box_scale + self._anchors[:, 0]
        cy = raw_boxes[:, 1] / self._box_scale + self._anchors[:, 1]
        half_w = raw_boxes[:, 2] / self._box_scale / 2
        half_h = raw_boxes[:, 3] / self._box_scale / 2
        boxes: FloatArray = np.stack(
            [cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1
        ).astype(np.float32)
        self._last_keypoints = raw_boxes[:, 4:]  # anchor-relative; decoded in ``detect``
        return scores, boxes, side, top, left

    def detect(self, image_bgr: npt.NDArray[Any]) -> list[Detection]:
        """Faces with score >= ``min_score`` after NMS, best first."""
        scores, boxes, side, top, left = self.raw_scores(image_bgr)
        keep_mask = scores >= self._min_score
        if not keep_mask.any():
            return []
        raw_kp = self._last_keypoints[keep_mask]
        anchors = self._anchors[keep_mask]
        scores, boxes = scores[keep_mask], boxes[keep_mask]
        h = image_bgr.shape[0]
        w = image_bgr.shape[1]
        # Undo the letterbox: square-normalized -> original-image-normalized.
        pixels = boxes * np.float32(side) - np.array([left, top, left, top], dtype=np.float32)
        norm = np.clip(pixels / np.array([w, h, w, h], dtype=np.float32), 0.0, 1.0)
        n_kp = raw_kp.shape[1] // 2  # 0 for a box-only face model: no keypoints then
        kp_square = raw_kp[:, : 2 * n_kp].reshape(len(raw_kp), n_kp, 2) / self._box_scale
        kp_square = kp_square + anchors[:, None, :]
        offset = np.array([left, top], dtype=np.float32)
        size = np.array([w, h], dtype=np.float32)
        kp = np.asarray((kp_square * np.float32(side) - offset) / size, dtype=np.float32)
        result = [
            Detection(
                float(scores[i]),
                (float(norm[i, 0]), float(norm[i, 1]), float(norm[i, 2]), float(norm[i, 3])),
                tuple((float(x), float(y)) for x, y in kp[i]),
            )
            for i in _nms(boxes, scores, self._nms_iou, self._max_det)
        ]
        return result

    def best_face(self, image_bgr: npt.NDArray[Any]) -> Detection | None:
        """The highest-scoring face, None when no face passes ``min_score``."""
        faces = self.detect(image_bgr)
        return faces[0] if faces else None

    def person_score(self, image_bgr: npt.NDArray[Any]) -> float:
        """Presence signal: the best face score, 0.0 when no face passes."""
        face = self.best_face(image_bgr)
        return face.score if face is not None else 0.0
