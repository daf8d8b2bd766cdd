#!/usr/bin/env python3
"""Build models/blazeface_full_int8_tflite/ from the committed float BlazeFace, reproducibly.

    python scripts/build_tflite_int8.py [--models models] [--keep-npz DIR]

Calibration and held-out images are the same as scripts/build_models.py (its helpers are
imported), the quantization is ``scripts/quantize.py``'s TFLite route (fp16 weights folded,
standalone RELUs fused, LiteRT's calibrator from ai-edge-litert 2.3.0, int8 inside with float32
input/output), and ``accuracy.json`` compares float tflite, int8 tflite and the committed int8
ONNX on the held-out set (agreement with float, box IoU, accuracy vs truth, ms per inference).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import build_models as bm  # noqa: E402
import quantize as q  # noqa: E402

from agent.extractors.vision import FaceDetector  # noqa: E402
from agent.runtimes.base import open_session  # noqa: E402

_LOGGER = logging.getLogger("build_tflite_int8")

NAME = "blazeface_full_int8_tflite"
FILE = "blazeface_full_int8.tflite"


def calibration_npz(float_tflite: Path, path: Path, held_out: bool = False) -> Path:
    """The calibration (or held-out) images, preprocessed like FaceDetector, keyed by input."""
    session = open_session(float_tflite, "tflite", threads=1)
    det = FaceDetector(session, bm.PREPROCESS, bm.POSTPROCESS)
    images = [img for _, img, _ in bm.evaluation_images()] if held_out else bm.calibration_images()
    stacked = np.concatenate([det.prepare(img)[0] for img in images])
    np.savez(path, **{session.inputs[0].name: stacked})
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=REPO / "models")
    parser.add_argument("--keep-npz", type=Path, help="also write calib.npz / heldout.npz here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    src_dir = args.models / "blazeface_full"
    float_tflite = src_dir / "blazeface_full.tflite"
    int8_onnx = args.models / "blazeface_full_int8" / "blazeface_full_int8.onnx"
    out_dir = args.models / NAME
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / FILE
    src_manifest = json.loads((src_dir / "manifest.json").read_text("utf-8"))

    with tempfile.TemporaryDirectory() as tmpdir:
        npz_dir = args.keep_npz or Path(tmpdir)
        npz_dir.mkdir(parents=True, exist_ok=True)
        calib = calibration_npz(float_tflite, npz_dir / "calib.npz")
        held = calibration_npz(float_tflite, npz_dir / "heldout.npz", held_out=True)
        counts = q.quantize(float_tflite, calib, out)
        dev = q.deviation(float_tflite, out, q.load_samples(held))

    acc = bm.evaluate(
        {
            "float_tflite": (float_tflite, "tflite"),
            "int8_tflite": (out, "tflite"),
            "int8_onnx": (int8_onnx, "onnx"),
        },
        focus="int8_tflite",
    )
    acc["calibration"] = {
        "images": len(bm.calibration_images()),
        "method": "MinMax (LiteRT calibrator, ai-edge-litert " + q.LITERT_PIN + ")",
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
        f"LiteRT calibration wrapper (ai-edge-litert {q.LITERT_PIN}): int8 activations, "
        "per-channel int8 weights, int32 biases, float32 input/output"
    )
    acc["graph_edits"] = counts
    acc["raw_output_deviation_vs_float"] = {
        k: {m: round(v, 5) for m, v in s.items()} for k, s in dev.items()
    }
    (out_dir / "accuracy.json").write_text(json.dumps(acc, indent=2) + "\n", encoding="utf-8")
    bm.print_table(acc)

    session = open_session(out, "tflite")
    all_ = acc["all"]["int8_tflite"]
    bm.write_manifest(
        out_dir,
        name=NAME,
        file=FILE,
        runtime="tflite",
        task="face_detection",
        precision="int8",
        inputs=bm.specs(session.inputs),
        outputs=bm.specs(session.outputs),
        preprocess=src_manifest["preprocess"],
        postprocess=src_manifest["postprocess"],
        licence="Apache-2.0",
        source=src_manifest["source"],
        derived_from="models/blazeface_full/blazeface_full.tflite (Google MediaPipe, "
        "Apache-2.0) -> fp16 weights folded to fp32, RELUs fused -> LiteRT calibrator "
        f"(ai-edge-litert {q.LITERT_PIN}) int8",
        notes="Quantized by the edge-agent project (scripts/build_tflite_int8.py, "
        "scripts/quantize.py) from the Apache-2.0 MediaPipe original; this is a modified "
        "derivative work. int8 activations and per-channel int8 weights, int32 biases; "
        "float32 input/output (QUANTIZE/DEQUANTIZE inside), so it is fed like the float "
        f"model. Held-out agreement with float {all_['agreement_with_float_pct']}%, box IoU "
        f"{all_['box_iou_with_float_mean']} (accuracy.json). Input is NHWC float32 in [-1, 1].",
    )
    licence = (src_dir / "LICENSE").read_text("utf-8")
    if "Apache License" not in licence:
        raise SystemExit("models/blazeface_full/LICENSE does not hold the Apache-2.0 text")
    # The source model's LICENSE verbatim, after a line saying what this project changed.
    header = (
        f"{FILE} was quantized to int8 by the edge-agent project from the model below\n"
        "(fp16 weights folded to fp32, RELUs fused, LiteRT calibrator; see manifest.json and\n"
        "scripts/build_tflite_int8.py). The original's licence file follows unchanged.\n\n"
    )
    (out_dir / "LICENSE").write_text(header + licence, encoding="utf-8")
    for f in sorted(out_dir.iterdir()):
        _LOGGER.info("%s  %d bytes", f.relative_to(args.models.parent), f.stat().st_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
