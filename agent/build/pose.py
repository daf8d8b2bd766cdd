"""The pose models: ``pose_detection``, ``pose_landmark`` (unmodified) and their int8 variants
``pose_detection_int8``, ``pose_landmark_int8``.

Source: the ``mediapipe==0.10.21`` wheel (the last that ships the pose models; mediapipe itself
is never installed). The detector is made convertible (its 38 sparse fp16 weight tensors are
densified: each DENSIFY op is replaced by the dense constant LiteRT computes for it;
tflite2onnx 0.4.1 also lacks DEPTH_TO_SPACE, registered here as ONNX ``DepthToSpace``, DCR like
TFLite), converted to ONNX (checked against the original tflite), quantized with the shared ONNX
recipe (:mod:`agent.build.quantize`) calibrated on real photos, and evaluated against the float
one on held-out images -> ``pose_detection_int8/accuracy.json``. The landmark model likewise ->
``pose_landmark_int8/``: converted, pruned to the two outputs the agent reads, quantized on the
rotated ROI crops PoseEstimator makes (the 128/64 px and <= 8 px stages kept float, by
measurement), evaluated vs float on the same held-out images.
Needs the ``models`` extra: onnx, tflite2onnx, scikit-image (plus onnxruntime, ai-edge-litert).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.build.common import (
    SEED,
    Array,
    BuildContext,
    apache_text,
    extract,
    fetch_wheel,
    licence_file,
    list_folder,
    median_ms,
    specs,
    write_json,
    write_manifest,
)
from agent.build.quantize import quantize_onnx
from agent.extractors.pose import (
    LandmarkModel,
    PersonDetection,
    PoseDetector,
    PoseEstimator,
    Roi,
    classify_posture,
    roi_from_keypoints,
)
from agent.extractors.vision import box_iou
from agent.runtimes.base import RuntimeName, Session, open_session

_LOGGER = logging.getLogger(__name__)

MP_VERSION = "0.10.21"
MP_PKG = f"mediapipe=={MP_VERSION}"
DET_MEMBER = "mediapipe/modules/pose_detection/pose_detection.tflite"
LM_MEMBER = "mediapipe/modules/pose_landmark/pose_landmark_full.tflite"
TIMING_RUNS = 50  # per model, alternating, after 5 warm-up rounds
# Kept in float in the shipped int8 model: the output heads (each graph output back through
# Concat/Reshape/Transpose to its Conv). Measured: int8 heads quantize the score logits so
# coarsely (ranges of hundreds) that every score collapses to 0.5 or 0.91 and false positives
# jump (accuracy.json "int8_all_layers_onnx"); float heads cost ~1 ms.
FLOAT_HEADS = True
CALIBRATION = os.environ.get("POSE_CALIBRATION", "MinMax")  # MinMax | Percentile | Entropy

DET_PREPROCESS: dict[str, Any] = {
    "size": 224,
    "range": [-1.0, 1.0],
    "color": "RGB",
    "resize": "letterbox (pad to square with black, keep aspect ratio)",
}
DET_POSTPROCESS: dict[str, Any] = {
    "decoder": "blazepose_ssd",
    "strides": [8, 16, 32, 32, 32],
    "anchors_per_layer": 2,
    "anchor_offset": 0.5,
    "num_anchors": 2254,
    "box_scale": 224.0,
    "num_keypoints": 4,
    "keypoints": ["hip_centre", "full_body_circle", "shoulder_centre", "upper_body_circle"],
    "score_clip": 100.0,
    "min_score": 0.5,
    "nms": "weighted",
    "nms_iou": 0.3,
    "max_detections": 5,
    "regressors_output": "Identity",
    "classifier_output": "Identity_1",
}
LM_PREPROCESS: dict[str, Any] = {
    "size": 256,
    "range": [0.0, 1.0],
    "color": "RGB",
    "crop": "square ROI centred on the detector's hip centre, side 2 x roi_scale x "
    "|full_body_circle - hip_centre|, rotated so hip -> full_body_circle points up; "
    "border replicated",
    "layout": "NHWC",
}
LM_POSTPROCESS: dict[str, Any] = {
    "num_landmarks": 39,
    "body_landmarks": 33,
    "values_per_landmark": 5,
    "values": ["x_px", "y_px", "z", "visibility_logit", "presence_logit"],
    "roi_scale": 1.25,
    "min_presence": 0.5,
    "landmarks_output": "Identity",
    "presence_output": "Identity_1",
}

# The landmark model's int8 variant keeps only the two outputs PoseEstimator reads (the
# segmentation mask, heatmaps and world landmarks and the decoder behind them are dropped).
LM_OUTPUTS = ("Identity", "Identity_1")
# ... and keeps in float every node at >= 64 px (the 128 and 64 px stages) or <= 8 px (the 8,
# 4 and 2 px stages and the heads). Measured (accuracy.json "int8_*"): all layers int8, or only
# the heads in float, turns the presence score of empty crops to ~1 (posture agreement ~60 %);
# the 2-8 px tail in float fixes presence, the 64-128 px front in float brings the landmark
# error down 3x (0.021 -> 0.006 of the ROI side). The 32 and 16 px stages stay int8.
LM_FLOAT_BIG, LM_FLOAT_SMALL = 64, 8

PERSON_PHOTOS = ("astronaut", "camera")
EMPTY_PHOTOS = ("chelsea", "coffee", "rocket")
# Never used for calibration: only in the held-out set, as "no person" images.
EXTRA_EMPTY = ("coins", "moon", "page", "clock", "hubble_deep_field", "immunohistochemistry")


# ---------------------------------------------------------------- fetching / conversion


def densify(src: Path, dest: Path) -> int:
    """Replace every DENSIFY op by its dense (fp16) constant; returns how many."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(src.read_bytes(), 0))
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    graph = model.subgraphs[0]
    ops = [op for op in graph.operators if codes[op.opcodeIndex] == schema.BuiltinOperator.DENSIFY]
    # Reference kernels (no XNNPACK): the delegate repacks weights and the kept tensors lie.
    it = Interpreter(
        model_path=str(src),
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    it.set_tensor(inp["index"], np.zeros(inp["shape"], np.float32))
    it.invoke()
    for op in ops:
        out = op.outputs[0]
        dense = np.ascontiguousarray(it.get_tensor(out))
        buf = schema.BufferT()
        buf.data = np.frombuffer(dense.tobytes(), np.uint8)
        model.buffers.append(buf)
        graph.tensors[out].buffer = len(model.buffers) - 1
        graph.operators.remove(op)
    # tflite2onnx rewrites a PAD's paddings tensor in place: one shared by several PADs would
    # be rewritten twice. Give each PAD its own copy.
    seen: set[int] = set()
    pads = (schema.BuiltinOperator.PAD, schema.BuiltinOperator.MIRROR_PAD)
    for op in graph.operators:
        if codes[op.opcodeIndex] not in pads:
            continue
        idx = int(op.inputs[1])
        if idx in seen:
            tensor = copy.deepcopy(graph.tensors[idx])
            tensor.name = tensor.name + f"_copy{len(graph.tensors)}".encode()
            graph.tensors.append(tensor)
            inputs = np.array(op.inputs, np.int32)
            inputs[1] = len(graph.tensors) - 1
            op.inputs = inputs
        seen.add(idx)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    dest.write_bytes(bytes(builder.Output()))
    return len(ops)


def _register_depth_to_space() -> None:
    import tflite
    from tflite2onnx.layout import Layout
    from tflite2onnx.op.common import Operator, OpFactory

    if tflite.BuiltinOperator.DEPTH_TO_SPACE in OpFactory.registry:
        return

    class DepthToSpace(Operator):  # type: ignore[misc]
        TypeMapping = {tflite.BuiltinOperator.DEPTH_TO_SPACE: "DepthToSpace"}  # noqa: RUF012

        def __init__(self, tfactory: Any, index: int) -> None:
            super().__init__(tfactory, index)
            self.attrs["blocksize"] = 2
            self.attrs["mode"] = "DCR"  # TFLite's channel order
            self.setInited()

        @property
        def type(self) -> str:
            return "DepthToSpace"

        def parse(self) -> None:
            op = self.tflite
            self.parseInput(0, Layout("NHWC", "NCHW"))
            opt = tflite.DepthToSpaceOptions()
            raw = op.BuiltinOptions()
            opt.Init(raw.Bytes, raw.Pos)
            self.attrs["blocksize"] = opt.BlockSize()
            self.parseOutput(0, Layout("NHWC", "NCHW"))
            self.setParsed()

        def propagatableTensors(self) -> list[Any]:
            return []

        def transform(self) -> None:
            pass

    OpFactory.register(DepthToSpace)


def convert_to_onnx(tflite_path: Path, onnx_path: Path) -> None:
    import onnx
    import tflite2onnx
    from onnx import version_converter

    _register_depth_to_space()
    logging.getLogger("tflite2onnx").setLevel(logging.ERROR)
    tflite2onnx.convert(str(tflite_path), str(onnx_path))
    # Per-channel QDQ (DequantizeLinear axis) needs opset >= 13.
    model = version_converter.convert_version(onnx.load(str(onnx_path)), 13)
    onnx.checker.check_model(model)
    onnx.save(model, str(onnx_path))


# ---------------------------------------------------------------- data


def photo(name: str) -> Array:
    from skimage import data

    img = np.asarray(getattr(data, name)())
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(img[..., 2::-1])  # RGB(A) -> BGR


def rotate(img: Array, deg: float, fill: int = 0) -> Array:
    """Rotate about the centre, growing the canvas so nothing is cut."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(h * sin + w * cos), int(h * cos + w * sin)
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    return cv2.warpAffine(img, m, (nw, nh), borderValue=(fill, fill, fill))


def random_crop(img: Array, rng: np.random.Generator, lo: float, hi: float) -> Array:
    h, w = img.shape[:2]
    ch = int(h * rng.uniform(lo, hi))
    cw = int(w * rng.uniform(lo, hi))
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    return img[y : y + ch, x : x + cw]


def calibration_images() -> list[Array]:
    """Crops (keeping most of the person) and rotations of the person photos, crops of the
    empty ones. Whole unrotated photos and 45/135-degree rotations are left for evaluation."""
    rng = np.random.default_rng(SEED)
    out: list[Array] = []
    for name in PERSON_PHOTOS:
        img = photo(name)
        for i in range(24):
            crop = random_crop(img, rng, 0.6, 0.95)
            angle = (0, 90, 180, 270)[i % 4] + float(rng.uniform(-20, 20))
            out.append(rotate(crop, angle, fill=int(rng.integers(0, 160))))
    for name in EMPTY_PHOTOS:
        img = photo(name)
        for _ in range(12):
            crop = random_crop(img, rng, 0.4, 0.9)
            out.append(rotate(crop, float(rng.choice([0, 90, 180, 270]))))
    return out


def evaluation_images() -> list[tuple[str, Array, bool]]:
    """Held out: (id, image, person?)."""
    out: list[tuple[str, Array, bool]] = []
    for name in (*PERSON_PHOTOS, *EMPTY_PHOTOS, *EXTRA_EMPTY):
        img = photo(name)
        person = name in PERSON_PHOTOS
        h, w = img.shape[:2]
        zoomed = np.full_like(img, 96)
        small = cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        zoomed[h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2] = small
        out += [
            (f"{name}", img, person),
            (f"{name}/flip", np.ascontiguousarray(img[:, ::-1]), person),
            (f"{name}/zoom_out", zoomed, person),
        ]
        if name in PERSON_PHOTOS or name in EMPTY_PHOTOS:
            for deg in (45, 90, 135, 180, 270, 315):
                out.append((f"{name}/rot{deg}", rotate(img, deg, fill=64), person))
    return out


# ---------------------------------------------------------------- quantization


def head_nodes(onnx_path: Path) -> list[str]:
    """Nodes from each graph output back to (and including) the first Conv on every path."""
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    producer = {out: node for node in graph.node for out in node.output}
    found: list[str] = []
    todo = [o.name for o in graph.output]
    for _ in range(10_000):  # bounded walk; the heads are a few nodes deep
        if not todo:
            break
        node = producer.get(todo.pop())
        if node is None or node.name in found:
            continue
        found.append(node.name)
        if node.op_type != "Conv":
            todo += [i for i in node.input if i in producer]
    return sorted(found)


def detector_calibration(float_onnx: Path) -> list[Array]:
    det = PoseDetector(open_session(float_onnx, "onnx"), _Spec(DET_PREPROCESS, DET_POSTPROCESS))
    return [det.prepare(img)[0] for img in calibration_images()]


def quantize(
    float_onnx: Path,
    out: Path,
    exclude: list[str],
    tensors: list[Array] | None = None,
    method: str = CALIBRATION,
) -> int:
    """The shared ONNX recipe (QDQ U8S8 per channel, prepared and canonical); ``tensors``
    default to the detector's calibration inputs (NCHW, as ``float_onnx`` takes them)."""
    feed = detector_calibration(float_onnx) if tensors is None else tensors
    name = open_session(float_onnx, "onnx").inputs[0].name
    return quantize_onnx(float_onnx, out, [{name: x} for x in feed], exclude=exclude, method=method)


def prune_outputs(src: Path, dest: Path, keep: tuple[str, ...]) -> int:
    """Drop the graph outputs not in ``keep`` and every node only they need; returns how
    many nodes were dropped."""
    import onnx

    model = onnx.load(str(src))
    graph = model.graph
    outputs = [o for o in graph.output if o.name in keep]
    del graph.output[:]
    graph.output.extend(outputs)
    need = set(keep)
    nodes = []
    for node in reversed(graph.node):
        if any(o in need for o in node.output):
            nodes.append(node)
            need |= set(node.input)
    dropped = len(graph.node) - len(nodes)
    nodes.reverse()
    del graph.node[:]
    graph.node.extend(nodes)
    inits = [t for t in graph.initializer if t.name in need]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    values = [v for v in graph.value_info if v.name in need]
    del graph.value_info[:]
    graph.value_info.extend(values)
    onnx.checker.check_model(model)
    dest.write_bytes(model.SerializeToString(deterministic=True))
    return dropped


def float_nodes_by_resolution(onnx_path: Path, big: int, small: int) -> list[str]:
    """Nodes whose output is at least ``big`` or at most ``small`` pixels high, or not an
    image (the output reshapes)."""
    import onnx
    from onnx import shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    graph = model.graph
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*graph.value_info, *graph.output)
    }
    found = []
    for node in graph.node:
        shape = shapes.get(node.output[0], [])
        if len(shape) != 4 or shape[2] >= big or shape[2] <= small:
            found.append(node.name)
    return sorted(found)


def check_landmark_conversion(tfl: Session, onx: Session, crops: list[Array]) -> float:
    """Max abs difference of the used outputs (landmarks in crop pixels, presence), tflite vs
    pruned ONNX, on noise and real crops (NCHW)."""
    rng = np.random.default_rng(SEED)
    inputs = [rng.uniform(0, 1, (1, 3, 256, 256)).astype(np.float32) for _ in range(2)] + crops
    worst = 0.0
    for x in inputs:
        a = tfl.run({tfl.inputs[0].name: np.ascontiguousarray(x.transpose(0, 2, 3, 1))})
        b = onx.run({onx.inputs[0].name: x})
        for key in LM_OUTPUTS:
            diff = np.abs(np.asarray(a[key], np.float32) - np.asarray(b[key], np.float32))
            worst = max(worst, float(diff.max()))
    return worst


def jitter_roi(roi: Roi, rng: np.random.Generator) -> Roi:
    """The detector's ROI moved by up to 10 % of its side, scaled 0.85-1.15, turned +-15 deg."""
    return Roi(
        roi.cx + roi.side * float(rng.uniform(-0.1, 0.1)),
        roi.cy + roi.side * float(rng.uniform(-0.1, 0.1)),
        roi.side * float(rng.uniform(0.85, 1.15)),
        roi.rotation + math.radians(float(rng.uniform(-15, 15))),
    )


def landmark_calibration(det_path: Path, lm_float_onnx: Path) -> tuple[list[Array], int]:
    """Landmark-model inputs as PoseEstimator makes them: the float detector's rotated ROI
    on each detector calibration image (crops and rotations of the person photos; crops of the
    empty ones), plus one jittered copy of each ROI. Where the detector finds nobody (empty
    photos) a random ROI stands in, so no-person crops are calibrated too. Returns (NCHW
    tensors, how many came from a detection)."""
    rng = np.random.default_rng(SEED + 1)
    det = PoseDetector(open_session(det_path, "tflite"), _Spec(DET_PREPROCESS, DET_POSTPROCESS))
    lm = LandmarkModel(open_session(lm_float_onnx, "onnx"), _Spec(LM_PREPROCESS, LM_POSTPROCESS))
    out: list[Array] = []
    detected = 0
    for img in calibration_images():
        h, w = img.shape[:2]
        people = det.detect(img)
        if people:
            detected += 1
            kp = people[0].keypoints
            roi = roi_from_keypoints(kp[0], kp[1], w, h, enlarge=lm.enlarge)
            rois = [roi, jitter_roi(roi, rng)]
        else:
            side = min(h, w) * float(rng.uniform(0.5, 1.0))
            rois = [
                Roi(
                    float(rng.uniform(side / 2, w - side / 2)),
                    float(rng.uniform(side / 2, h - side / 2)),
                    side,
                    math.radians(float(rng.uniform(-180, 180))),
                )
            ]
        out += [lm.crop(img, r)[0] for r in rois]
    return out, detected


# ---------------------------------------------------------------- evaluation


class _Spec:
    def __init__(self, pre: dict[str, Any], post: dict[str, Any]) -> None:
        self.preprocess = pre
        self.postprocess = post


def check_conversion(tfl: Session, onx: Session) -> float:
    """Max abs difference of the raw outputs, tflite vs ONNX, on noise and real photos."""
    rng = np.random.default_rng(SEED)
    det = PoseDetector(tfl, _Spec(DET_PREPROCESS, DET_POSTPROCESS))
    inputs = [rng.uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32) for _ in range(2)]
    inputs += [det.prepare(photo(n))[0] for n in (*PERSON_PHOTOS, *EMPTY_PHOTOS)]
    worst = 0.0
    for x in inputs:
        a = tfl.run({tfl.inputs[0].name: x})
        b = onx.run({onx.inputs[0].name: np.ascontiguousarray(x.transpose(0, 3, 1, 2))})
        for key, value in a.items():
            diff = np.abs(np.asarray(value, np.float32) - np.asarray(b[key], np.float32))
            worst = max(worst, float(diff.max()))
    return worst


def evaluate(models: dict[str, tuple[Path, RuntimeName]], landmark: Path) -> dict[str, Any]:
    items = evaluation_images()
    lm_session = open_session(landmark, "tflite", threads=1)
    lm_spec = _Spec(LM_PREPROCESS, LM_POSTPROCESS)
    det_spec = _Spec(DET_PREPROCESS, DET_POSTPROCESS)
    found: dict[str, list[list[PersonDetection]]] = {}
    postures: dict[str, list[str]] = {}
    runs: dict[str, tuple[Session, Array]] = {}
    for key, (path, runtime) in models.items():
        session = open_session(path, runtime, threads=1)
        est = PoseEstimator(session, det_spec, lm_session, lm_spec)
        found[key] = [est.detector.detect(img) for _, img, _ in items]
        poses = [est.estimate(img) for _, img, _ in items]
        postures[key] = ["none" if p is None else p.posture for p in poses]
        runs[key] = (session, est.detector.prepare(items[0][1])[0])
    # The landmark model runs after either detector: time it too, for the per-frame total.
    probe = PoseEstimator(
        open_session(models[ref_key_of(models)][0], "tflite"), det_spec, lm_session, lm_spec
    )
    people = probe.detector.detect(items[0][1])
    roi = roi_from_keypoints(
        people[0].keypoints[0], people[0].keypoints[1], *items[0][1].shape[1::-1]
    )
    runs["landmark_float_tflite"] = (lm_session, probe.landmarks.crop(items[0][1], roi)[0])
    ms = median_ms(runs, TIMING_RUNS)
    truth = np.array([person for _, _, person in items])
    ref_key = "float_tflite"
    ref = found[ref_key]
    ref_said = np.array([bool(r) for r in ref])
    result: dict[str, Any] = {
        "timing_ms_median_1_thread": ms,
        "timing_runs": TIMING_RUNS,
        "n": len(items),
        "n_person": int(truth.sum()),
    }
    for key, dets in found.items():
        said = np.array([bool(d) for d in dets])
        entry: dict[str, Any] = {
            "accuracy_vs_truth_pct": round(100 * float((said == truth).mean()), 2),
            "recall_pct": round(100 * float(said[truth].mean()), 2),
            "false_positive_pct": round(100 * float(said[~truth].mean()), 2),
        }
        has_pose = np.array([p != "none" for p in postures[key]])
        entry["pose_recall_pct"] = round(100 * float(has_pose[truth].mean()), 2)
        entry["pose_false_positive_pct"] = round(100 * float(has_pose[~truth].mean()), 2)
        if key != ref_key:
            ious = [box_iou(d[0].box, r[0].box) for d, r in zip(dets, ref, strict=True) if d and r]
            ious_person = [
                box_iou(d[0].box, r[0].box)
                for d, r, t in zip(dets, ref, truth, strict=True)
                if d and r and t
            ]
            kp_err = [
                float(np.abs(np.asarray(d[0].keypoints[:3]) - np.asarray(r[0].keypoints[:3])).max())
                for d, r in zip(dets, ref, strict=True)
                if d and r
            ]
            same_posture = [a == b for a, b in zip(postures[key], postures[ref_key], strict=True)]
            entry.update(
                {
                    "agreement_with_float_pct": round(100 * float((said == ref_said).mean()), 2),
                    "box_iou_with_float_mean": round(float(np.mean(ious)), 4) if ious else None,
                    "box_iou_with_float_min": round(float(np.min(ious)), 4) if ious else None,
                    "box_iou_with_float_person_images_mean": round(float(np.mean(ious_person)), 4)
                    if ious_person
                    else None,
                    "box_iou_with_float_person_images_min": round(float(np.min(ious_person)), 4)
                    if ious_person
                    else None,
                    "keypoint_abs_diff_max_mean": round(float(np.mean(kp_err)), 4)
                    if kp_err
                    else None,
                    "score_abs_diff_mean": round(
                        float(
                            np.mean(
                                [
                                    abs((d[0].score if d else 0.0) - (r[0].score if r else 0.0))
                                    for d, r in zip(dets, ref, strict=True)
                                ]
                            )
                        ),
                        4,
                    ),
                    "posture_agreement_with_float_pct": round(
                        100 * float(np.mean(same_posture)), 2
                    ),
                    "disagreements": [
                        i
                        for (i, _, _), d, r in zip(items, dets, ref, strict=True)
                        if bool(d) != bool(r)
                    ],
                }
            )
        result[key] = entry
    result["per_image"] = {
        i: {
            key: {
                "score": round(found[key][n][0].score, 4) if found[key][n] else 0.0,
                "posture": postures[key][n],
            }
            for key in found
        }
        for n, (i, _, _) in enumerate(items)
    }
    return result


def _open(path: Path, runtime: RuntimeName) -> Session:
    return open_session(path, runtime, threads=1)


def median_frame_ms(estimators: dict[str, PoseEstimator], image: Array) -> dict[str, float]:
    """Median ms of a whole ``PoseEstimator.estimate`` (detector, ROI, landmarks, posture)."""
    times: dict[str, list[float]] = {k: [] for k in estimators}
    for r in range(TIMING_RUNS + 5):
        for key, est in estimators.items():
            t0 = time.perf_counter()
            est.estimate(image)
            if r >= 5:
                times[key].append((time.perf_counter() - t0) * 1000)
    return {k: round(float(np.median(v)), 3) for k, v in times.items()}


def evaluate_landmarks(
    det_float: Path, det_int8: Path, landmarks: dict[str, tuple[Path, RuntimeName]]
) -> dict[str, Any]:
    """Each landmark model vs the float tflite one (key ``float_tflite``) on the held-out
    images: same ROI (the float detector's) for all; then whole PoseEstimators."""
    items = evaluation_images()
    det_spec = _Spec(DET_PREPROCESS, DET_POSTPROCESS)
    lm_spec = _Spec(LM_PREPROCESS, LM_POSTPROCESS)
    det_f = PoseDetector(_open(det_float, "tflite"), det_spec)
    sessions = {k: _open(path, rt) for k, (path, rt) in landmarks.items()}
    models = {k: LandmarkModel(s, lm_spec) for k, s in sessions.items()}
    min_presence = models["float_tflite"].min_presence
    per_image: dict[str, dict[str, Any]] = {}
    rows: dict[str, list[tuple[float, str, list[Any]]]] = {k: [] for k in models}
    rois: list[tuple[int, Roi]] = []
    for n, (ident, img, _) in enumerate(items):
        people = det_f.detect(img)
        if not people:
            continue
        h, w = img.shape[:2]
        kp = people[0].keypoints
        roi = roi_from_keypoints(kp[0], kp[1], w, h, enlarge=models["float_tflite"].enlarge)
        rois.append((n, roi))
        per_image[ident] = {}
        for key, model in models.items():
            presence, points = model.run(img, roi)
            posture = classify_posture(points, w, h).posture if presence >= min_presence else "none"
            rows[key].append((presence, posture, points))
            per_image[ident][key] = {"presence": round(presence, 4), "posture": posture}
    result: dict[str, Any] = {"n_crops": len(rois)}
    ref = rows["float_tflite"]
    for key in models:
        if key == "float_tflite":
            continue
        dists: list[float] = []
        for (n, roi), (_, _, a), (_, _, b) in zip(rois, ref, rows[key], strict=True):
            h, w = items[n][1].shape[:2]
            dists += [
                math.hypot((p.x - q.x) * w, (p.y - q.y) * h) / roi.side
                for p, q in zip(a, b, strict=True)
                if p.visibility >= 0.5
            ]
        result[key] = {
            "posture_agreement_pct": round(
                100 * float(np.mean([r[1] == o[1] for r, o in zip(ref, rows[key], strict=True)])),
                2,
            ),
            "presence_agreement_pct": round(
                100
                * float(
                    np.mean(
                        [
                            (r[0] >= min_presence) == (o[0] >= min_presence)
                            for r, o in zip(ref, rows[key], strict=True)
                        ]
                    )
                ),
                2,
            ),
            "presence_abs_diff_mean": round(
                float(np.mean([abs(r[0] - o[0]) for r, o in zip(ref, rows[key], strict=True)])), 4
            ),
            "landmark_dist_roi_mean": round(float(np.mean(dists)), 4),
            "landmark_dist_roi_p95": round(float(np.percentile(dists, 95)), 4),
            "landmark_dist_roi_max": round(float(np.max(dists)), 4),
            "n_visible_landmarks": len(dists),
            "disagreements": [
                ident for ident, r, o in zip(per_image, ref, rows[key], strict=True) if r[1] != o[1]
            ],
        }
    # Whole estimators on every held-out image (people and no-people).
    det_q = _open(det_int8, "onnx")
    det_fs = _open(det_float, "tflite")
    ests = {
        "float_det+float_lm": PoseEstimator(det_fs, det_spec, sessions["float_tflite"], lm_spec),
        "int8_det+float_lm": PoseEstimator(det_q, det_spec, sessions["float_tflite"], lm_spec),
        "float_det+int8_lm": PoseEstimator(det_fs, det_spec, sessions["int8_onnx"], lm_spec),
        "int8_det+int8_lm": PoseEstimator(det_q, det_spec, sessions["int8_onnx"], lm_spec),
    }
    postures = {
        k: ["none" if (p := e.estimate(img)) is None else p.posture for _, img, _ in items]
        for k, e in ests.items()
    }
    ref_p = postures["float_det+float_lm"]
    result["estimator"] = {
        "n": len(items),
        "posture_agreement_with_float_float_pct": {
            k: round(100 * float(np.mean([a == b for a, b in zip(v, ref_p, strict=True)])), 2)
            for k, v in postures.items()
            if k != "float_det+float_lm"
        },
        "disagreements_int8_int8": [
            f"{i}: {a} -> {b}"
            for (i, _, _), a, b in zip(items, ref_p, postures["int8_det+int8_lm"], strict=True)
            if a != b
        ],
    }
    # Timing, 1 thread: the landmark model alone on one person crop, then whole frames.
    n0, roi0 = rois[0]
    crops = {k: m.crop(items[n0][1], roi0)[0] for k, m in models.items()}
    result["timing_ms_median_1_thread"] = median_ms(
        {k: (sessions[k], crops[k]) for k in models}, TIMING_RUNS
    )
    result["frame_ms_median_1_thread"] = median_frame_ms(ests, items[n0][1])
    result["timing_image"] = items[n0][0]
    result["timing_runs"] = TIMING_RUNS
    result["per_image"] = per_image
    return result


def ref_key_of(models: dict[str, tuple[Path, RuntimeName]]) -> str:
    return next(k for k, (_, runtime) in models.items() if runtime == "tflite")


def print_table(acc: dict[str, Any]) -> None:
    ms = acc["timing_ms_median_1_thread"]
    print(
        f"\n{'model':<13}{'ms':>7}{'agree%':>8}{'IoU':>7}{'IoUmin':>8}{'pose%':>7}"
        f"{'acc%':>7}{'recall%':>9}{'FP%':>6}{'poseFP%':>9}"
    )
    for key in ms:
        if key not in acc:
            print(f"{key:<13}{ms[key]:>7.2f}")
            continue
        m = acc[key]
        print(
            f"{key:<13}{ms[key]:>7.2f}{m.get('agreement_with_float_pct', 100.0):>8.1f}"
            f"{m.get('box_iou_with_float_mean', 1.0) or 0.0:>7.3f}"
            f"{m.get('box_iou_with_float_min', 1.0) or 0.0:>8.3f}"
            f"{m.get('posture_agreement_with_float_pct', 100.0):>7.1f}"
            f"{m['accuracy_vs_truth_pct']:>7.1f}{m['recall_pct']:>9.1f}"
            f"{m['false_positive_pct']:>6.1f}{m['pose_false_positive_pct']:>9.1f}"
        )
    print(
        f"n={acc['n']} ({acc['n_person']} with a person); int8 disagreements:",
        acc["int8_onnx"]["disagreements"] or "none",
    )


def build_landmark_int8(
    out: Path, tmp: Path, det_path: Path, lm_path: Path, det_int8: Path
) -> dict[str, Any]:
    """pose_landmark_full.tflite -> pruned float ONNX -> int8 (``out``), with accuracy.json."""
    out.mkdir(parents=True, exist_ok=True)
    dense = tmp / "pose_landmark_dense.tflite"
    densify(lm_path, dense)  # no DENSIFY ops here; gives shared PAD paddings their own copy
    full_onnx = tmp / "pose_landmark_full_fp32.onnx"
    convert_to_onnx(dense, full_onnx)
    float_onnx = tmp / "pose_landmark_fp32.onnx"
    dropped = prune_outputs(full_onnx, float_onnx, LM_OUTPUTS)
    _LOGGER.info("landmark model: dropped %d nodes only the unused outputs need", dropped)
    tensors, detected = landmark_calibration(det_path, float_onnx)
    diff = check_landmark_conversion(
        open_session(lm_path, "tflite"), open_session(float_onnx, "onnx"), tensors[:8]
    )
    _LOGGER.info("landmark tflite vs pruned float ONNX: max abs difference %.2e", diff)
    if diff > 0.05:  # landmarks are in crop pixels (0-256): 0.05 px is nothing
        raise SystemExit(f"converted landmark ONNX differs from the tflite by {diff}")

    int8_path = out / "pose_landmark_int8.onnx"
    float_nodes = float_nodes_by_resolution(float_onnx, LM_FLOAT_BIG, LM_FLOAT_SMALL)
    quantize(float_onnx, int8_path, float_nodes, tensors)
    variants = {
        "int8_all_layers_onnx": [],
        "int8_heads_float_onnx": head_nodes(float_onnx),
        "int8_tail_float_onnx": float_nodes_by_resolution(float_onnx, 10**6, LM_FLOAT_SMALL),
    }
    models: dict[str, tuple[Path, RuntimeName]] = {
        "float_tflite": (lm_path, "tflite"),
        "float_onnx": (float_onnx, "onnx"),
        "int8_onnx": (int8_path, "onnx"),
    }
    for key, exclude in variants.items():
        path = tmp / f"pose_landmark_{key}.onnx"
        quantize(float_onnx, path, exclude, tensors)
        models[key] = (path, "onnx")
    acc = evaluate_landmarks(det_path, det_int8, models)
    acc["calibration"] = {
        "crops": len(tensors),
        "from_detections": 2 * detected,
        "method": CALIBRATION,
        "what": "the landmark model's input as PoseEstimator makes it: the float detector's "
        "rotated ROI crop on each detector calibration image (24 random crops each of "
        "astronaut and camera rotated by 0/90/180/270 +- 20 degrees; 12 crops each of chelsea, "
        "coffee, rocket) plus one jittered copy of each ROI (shift <= 10 %, scale 0.85-1.15, "
        "+-15 degrees); a random ROI where the detector finds nobody",
    }
    acc["evaluation"] = (
        "held out: the detector's held-out set (astronaut and camera whole, flipped, zoomed "
        "out to 50 % and rotated by 45-315 degrees; empty photos likewise). Per landmark model, "
        "on the float detector's ROI (the same crop for every model): posture from its "
        "landmarks ('none' when presence < 0.5), presence >= 0.5 agreement, and the distance "
        "of each body landmark the float model sees (visibility >= 0.5) from the float one, "
        "as a fraction of the ROI side (1.0 = the whole 256 px crop). 'estimator': whole "
        "PoseEstimators on all held-out images vs float detector + float landmarks."
    )
    acc["tflite_vs_float_onnx_max_abs_diff"] = diff
    acc["float_nodes"] = float_nodes
    acc["float_nodes_rule"] = (
        f"every node with an output >= {LM_FLOAT_BIG} or <= {LM_FLOAT_SMALL} px high, or not "
        "4-D; int8_heads_float_onnx keeps only the two output heads in float, "
        "int8_tail_float_onnx the <= 8 px stages"
    )
    acc["dropped_nodes"] = dropped
    write_json(out / "accuracy.json", acc)
    print_landmark_table(acc)

    m = acc["int8_onnx"]
    ms = acc["timing_ms_median_1_thread"]
    frame = acc["frame_ms_median_1_thread"]
    session = open_session(int8_path, "onnx")
    src_lm = f"{MP_PKG}: {LM_MEMBER}"
    write_manifest(
        out,
        name="pose_landmark_int8",
        file=int8_path.name,
        runtime="onnx",
        task="pose_landmarks",
        precision="int8",
        inputs=specs(session.inputs),
        outputs=specs(session.outputs),
        preprocess={**LM_PREPROCESS, "layout": "NCHW"},
        postprocess=LM_POSTPROCESS,
        licence="Apache-2.0",
        source=src_lm,
        derived_from="models/pose_landmark/pose_landmark_full.tflite (Google MediaPipe, "
        "Apache-2.0) -> tflite2onnx 0.4.1 -> unused outputs pruned -> onnxruntime "
        "quantize_static",
        notes="Quantized by the edge-agent project (scripts/build_pose_models.py) from the "
        "Apache-2.0 MediaPipe original; a modified derivative work. Only the landmark "
        "(Identity) and pose-presence (Identity_1) outputs are kept. QDQ, uint8 activations / "
        "int8 per-channel weights (U8S8), MinMax calibration on rotated person crops from "
        f"real photos; {len(float_nodes)} nodes kept in float (the 128/64 px stages, the "
        "8/4/2 px stages and the heads; the 32/16 px stages are int8). Held out, same ROI as "
        f"float: posture agreement {m['posture_agreement_pct']}%, presence agreement "
        f"{m['presence_agreement_pct']}%, mean landmark distance {m['landmark_dist_roi_mean']} "
        f"of the ROI side; {ms['int8_onnx']} ms vs {ms['float_tflite']} ms float tflite "
        f"(pruned float ONNX {ms['float_onnx']} ms); whole PoseEstimator frame "
        f"{frame['int8_det+int8_lm']} ms (int8 + int8) vs {frame['float_det+float_lm']} ms "
        "(float + float), 1 thread (accuracy.json). Input is NCHW float32 in [0, 1].",
    )
    licence_file(
        out,
        "pose_landmark_int8.onnx was quantized by the edge-agent project from the BlazePose\n"
        "GHUM 3D landmark model (full) (MediaPipe by Google LLC, Apache License 2.0; taken\n"
        f"from {src_lm}). Changes: converted to ONNX (tflite2onnx), the unused outputs\n"
        "pruned, and quantized to int8 (onnxruntime quantize_static); see manifest.json and\n"
        "scripts/build_pose_models.py.",
        apache_text(),
    )
    return acc


def print_landmark_table(acc: dict[str, Any]) -> None:
    ms = acc["timing_ms_median_1_thread"]
    print(f"\n{'landmark model':<24}{'ms':>7}{'posture%':>9}{'presence%':>10}{'dist':>8}{'p95':>8}")
    for key in ms:
        m = acc.get(key, {})
        print(
            f"{key:<24}{ms[key]:>7.2f}{m.get('posture_agreement_pct', 100.0):>9.1f}"
            f"{m.get('presence_agreement_pct', 100.0):>10.1f}"
            f"{m.get('landmark_dist_roi_mean', 0.0):>8.4f}"
            f"{m.get('landmark_dist_roi_p95', 0.0):>8.4f}"
        )
    est = acc["estimator"]
    print(f"whole PoseEstimator, {est['n']} images, posture agreement with float+float:")
    for key, value in est["posture_agreement_with_float_float_pct"].items():
        print(f"  {key:<22}{value:>6.1f}%  {acc['frame_ms_median_1_thread'][key]:>7.2f} ms")
    print(
        "  float_det+float_lm".ljust(24),
        f"{acc['frame_ms_median_1_thread']['float_det+float_lm']:>14.2f} ms",
    )
    print("int8+int8 disagreements:", est["disagreements_int8_int8"] or "none")


# ---------------------------------------------------------------- builder
# The manifests' notes and the licence headers name scripts/build_pose_models.py, the script
# that first built these files: kept word for word so a rebuild stays byte-identical.


def build(ctx: BuildContext) -> list[Path]:
    """All four pose bundles into ``ctx.out``."""
    tmp = ctx.tmp
    wheel = fetch_wheel(MP_PKG, ctx.wheels)
    d_det = ctx.out / "pose_detection"
    d_lm = ctx.out / "pose_landmark"
    d_int8 = ctx.out / "pose_detection_int8"
    for d in (d_det, d_lm, d_int8):
        d.mkdir(parents=True, exist_ok=True)
    det_path = extract(wheel, DET_MEMBER, d_det / "pose_detection.tflite")
    lm_path = extract(wheel, LM_MEMBER, d_lm / "pose_landmark_full.tflite")

    dense = tmp / "pose_detection_dense.tflite"
    n_dense = densify(det_path, dense)
    _LOGGER.info("densified %d sparse weight tensors", n_dense)
    float_onnx = tmp / "pose_detection_fp32.onnx"
    convert_to_onnx(dense, float_onnx)
    diff = check_conversion(open_session(det_path, "tflite"), open_session(float_onnx, "onnx"))
    _LOGGER.info("tflite vs float ONNX: max abs raw-output difference %.2e", diff)
    if diff > 1e-2:
        raise SystemExit(f"converted ONNX differs from the tflite by {diff}")

    int8_path = d_int8 / "pose_detection_int8.onnx"
    float_nodes = head_nodes(float_onnx) if FLOAT_HEADS else []
    n_cal = quantize(float_onnx, int8_path, float_nodes)
    all_int8 = tmp / "pose_detection_int8_all_layers.onnx"
    quantize(float_onnx, all_int8, [])
    acc = evaluate(
        {
            "float_tflite": (det_path, "tflite"),
            "float_onnx": (float_onnx, "onnx"),
            "int8_onnx": (int8_path, "onnx"),
            "int8_all_layers_onnx": (all_int8, "onnx"),
        },
        lm_path,
    )
    acc["calibration"] = {
        "images": n_cal,
        "method": CALIBRATION,
        "what": "scikit-image astronaut and camera: 24 random crops each (60-95% of each "
        "side) rotated by 0/90/180/270 +- 20 degrees; chelsea, coffee, rocket: 12 random "
        "crops each (40-90%) rotated by multiples of 90",
    }
    acc["evaluation"] = (
        "held out: astronaut, camera (person) and chelsea, coffee, rocket (no person) whole, "
        "flipped, zoomed out to 50% on grey and rotated by 45/90/135/180/270/315 degrees; "
        f"{', '.join(EXTRA_EMPTY)} (never calibrated on) whole, flipped and zoomed out. "
        "Detection = best weighted-NMS score >= 0.5; posture = PoseEstimator with the float "
        "landmark model on top of each detector."
    )
    acc["tflite_vs_float_onnx_max_abs_diff"] = diff
    acc["float_nodes"] = float_nodes
    write_json(d_int8 / "accuracy.json", acc)
    print_table(acc)

    apache = apache_text()
    det_sess = open_session(det_path, "tflite")
    lm_sess = open_session(lm_path, "tflite")
    int8_sess = open_session(int8_path, "onnx")
    src_det = f"{MP_PKG}: {DET_MEMBER}"
    src_lm = f"{MP_PKG}: {LM_MEMBER}"
    write_manifest(
        d_det,
        name="pose_detection",
        file=det_path.name,
        runtime="tflite",
        task="pose_detection",
        precision="fp16",
        inputs=specs(det_sess.inputs),
        outputs=specs(det_sess.outputs),
        preprocess={**DET_PREPROCESS, "layout": "NHWC"},
        postprocess=DET_POSTPROCESS,
        licence="Apache-2.0",
        source=src_det,
        derived_from="Google MediaPipe BlazePose pose_detection.tflite, unmodified",
        notes="BlazePose person detector (MediaPipe, Google, Apache-2.0): sparse fp16 "
        "weights, fp32 input/output, 2254 SSD anchors at 224x224. Copied byte for byte.",
    )
    write_manifest(
        d_lm,
        name="pose_landmark",
        file=lm_path.name,
        runtime="tflite",
        task="pose_landmarks",
        precision="fp16",
        inputs=specs(lm_sess.inputs),
        outputs=specs(lm_sess.outputs),
        preprocess=LM_PREPROCESS,
        postprocess=LM_POSTPROCESS,
        licence="Apache-2.0",
        source=src_lm,
        derived_from="Google MediaPipe BlazePose GHUM 3D pose_landmark_full.tflite, unmodified",
        notes="BlazePose landmarks, full variant (the lite variant is not in the wheel): "
        "39 points x (x, y, z, visibility, presence) in 256 px crop units; the first 33 are "
        "the body points. Also outputs a pose-presence score, a segmentation mask, heatmaps "
        "and world landmarks (unused). Copied byte for byte.",
    )
    m = acc["int8_onnx"]
    ms = acc["timing_ms_median_1_thread"]
    write_manifest(
        d_int8,
        name="pose_detection_int8",
        file=int8_path.name,
        runtime="onnx",
        task="pose_detection",
        precision="int8",
        inputs=specs(int8_sess.inputs),
        outputs=specs(int8_sess.outputs),
        preprocess={**DET_PREPROCESS, "layout": "NCHW"},
        postprocess=DET_POSTPROCESS,
        licence="Apache-2.0",
        source=src_det,
        derived_from="models/pose_detection/pose_detection.tflite (Google MediaPipe, "
        "Apache-2.0) -> densified -> tflite2onnx 0.4.1 -> onnxruntime quantize_static",
        notes="Quantized by the edge-agent project (scripts/build_pose_models.py) from the "
        "Apache-2.0 MediaPipe original; a modified derivative work. QDQ, uint8 activations / "
        "int8 per-channel weights (U8S8), MinMax calibration on real photos; layers kept in "
        f"float: the {len(float_nodes)} output-head nodes (6 Conv + reshapes). Held-out "
        "person/no-person agreement with float "
        f"{m['agreement_with_float_pct']}%, box IoU on person images "
        f"{m['box_iou_with_float_person_images_mean']}, posture "
        f"agreement {m['posture_agreement_with_float_pct']}%; {ms['int8_onnx']} ms vs "
        f"{ms['float_tflite']} ms float tflite (1 thread, accuracy.json). Input is NCHW "
        "float32 in [-1, 1].",
    )
    licence_file(
        d_det,
        "pose_detection.tflite is the BlazePose pose detector from MediaPipe by Google LLC,\n"
        f"licensed under the Apache License 2.0, taken unmodified from {src_det}.",
        apache,
    )
    licence_file(
        d_lm,
        "pose_landmark_full.tflite is the BlazePose GHUM 3D landmark model (full) from\n"
        "MediaPipe by Google LLC, licensed under the Apache License 2.0, taken unmodified\n"
        f"from {src_lm}.",
        apache,
    )
    licence_file(
        d_int8,
        "pose_detection_int8.onnx was quantized by the edge-agent project from the BlazePose\n"
        "pose detector (MediaPipe by Google LLC, Apache License 2.0; taken from\n"
        f"{src_det}). Changes: sparse weights densified, converted to ONNX (tflite2onnx)\n"
        "and quantized to int8 (onnxruntime quantize_static); see manifest.json and\n"
        "scripts/build_pose_models.py.",
        apache,
    )
    build_landmark_int8(ctx.out / "pose_landmark_int8", tmp, det_path, lm_path, int8_path)
    folders = [d_det, d_lm, d_int8, ctx.out / "pose_landmark_int8"]
    for d in folders:
        list_folder(d)
    return folders
