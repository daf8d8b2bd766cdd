#!/usr/bin/env python3
"""Generate the posture sample scenes (help_call) in ``agent/samples/``.

Reuses ``scripts/make_samples.py`` (room, sprite, noise, espeak-ng audio, file checks) and adds
a *lying* astronaut: the same cut-out rotated 90 degrees and laid on the floor. Scenes:

* ``lying_help``    person lying the whole time says "help me"       -> help_call
* ``standing_help`` upright person says "help me"                   -> nothing
* ``lying_silent``  person lying, room noise only                   -> nothing

Each scene is checked when generated: the posture of every frame, from the committed pose
models (float and int8 detector + landmark model), must match the scene's ground truth.

    python -m scripts.make_pose_samples [--out agent/samples] [--scenes a,b] [--no-check]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from scripts import make_samples as ms

REPO = Path(__file__).resolve().parents[1]

# The lying person: the astronaut cut-out rotated 90 degrees counter-clockwise (head to the
# left), scaled so the whole cut-out (head to waist) fits, its centre on the floor.
LYING_SCALE = 0.4
LYING_ANGLE_DEG = 90.0
LYING_CENTRE = (165.0, 200.0)


@dataclass(frozen=True)
class PoseScene:
    scene: ms.Scene
    posture: str  # ground truth while the person is in view


def _help(intent: str = "help") -> dict[str, str]:
    return {"type": "help_call", "intent": intent}


SCENES: tuple[PoseScene, ...] = (
    PoseScene(
        ms.Scene(
            name="lying_help",
            description="Astronaut lying on the floor the whole time says 'help me'.",
            duration_s=8.0,
            person="astronaut_lying",
            in_view=((0.0, 8.0),),
            speech=(ms.Speech("help me", "en-us", "person", at=3.0),),
            expect=(_help(),),
        ),
        "lying",
    ),
    PoseScene(
        ms.Scene(
            name="standing_help",
            description="Upright astronaut says 'help me': a person who is not lying down "
            "(no help_call; 'help' is no light/fan intent either).",
            duration_s=8.0,
            person="astronaut",
            in_view=((0.0, 8.0),),
            speech=(ms.Speech("help me", "en-us", "person", at=3.0),),
            expect=(),
        ),
        "standing",
    ),
    PoseScene(
        ms.Scene(
            name="lying_silent",
            description="Astronaut lying on the floor, nothing said (room noise only).",
            duration_s=7.0,
            person="astronaut_lying",
            in_view=((0.0, 7.0),),
            speech=(),
            expect=(),
        ),
        "lying",
    ),
)


@cache
def lying_layers() -> tuple[ms.F32, ms.F32]:
    """The astronaut cut-out rotated onto the floor: BGR pixels and feathered alpha."""
    sp = ms._astronaut()
    h, w = sp.image.shape[:2]
    mask = np.zeros((h, w), np.float32)
    cv2.fillPoly(mask, [np.array(sp.polygon, np.int32)], 1.0)
    mask = np.asarray(cv2.GaussianBlur(mask, (0, 0), 1.5), np.float32)
    small = (round(w * LYING_SCALE), round(h * LYING_SCALE))
    img = np.asarray(cv2.resize(sp.image, small, interpolation=cv2.INTER_AREA), np.float32)
    alpha = np.asarray(cv2.resize(mask, small, interpolation=cv2.INTER_AREA), np.float32)
    m = cv2.getRotationMatrix2D((small[0] / 2, small[1] / 2), LYING_ANGLE_DEG, 1.0)
    m[0, 2] += LYING_CENTRE[0] - small[0] / 2
    m[1, 2] += LYING_CENTRE[1] - small[1] / 2
    mat = [[float(v) for v in row] for row in m]
    return ms._warp(img, mat), ms._warp(alpha, mat)


def layers(person: str) -> tuple[ms.F32, ms.F32]:
    return lying_layers() if person == "astronaut_lying" else ms.sprite_layers(person)


def render_frame(scene: ms.Scene, index: int, rng: np.random.Generator) -> ms.U8:
    """Like ``make_samples.render_frame`` with the lying sprite available."""
    t = index / ms.FPS
    frame = ms.room_background().copy()
    if scene.person is not None and ms.in_view(t, scene.in_view):
        img, alpha = layers(scene.person)
        # A little movement (breathing / sway) so the person is no frozen sticker.
        dx = 1.5 * np.sin(2 * np.pi * t / 3.0)
        shift = [[1.0, 0.0, float(dx)], [0.0, 1.0, 0.0]]
        img, alpha = ms._warp(img, shift, cv2.BORDER_REPLICATE), ms._warp(alpha, shift)
        frame = frame * (1 - alpha[..., None]) + img * alpha[..., None]
    frame += rng.normal(0.0, ms.SENSOR_NOISE_SIGMA, frame.shape).astype(np.float32)
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8)


def write_video(scene: ms.Scene, path: Path) -> int:
    rng = np.random.default_rng(ms.scene_seed(scene.name))
    n = round(scene.duration_s * ms.FPS)
    fourcc = cv2.VideoWriter.fourcc(*"MJPG")
    writer = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, fourcc, ms.FPS, (ms.WIDTH, ms.HEIGHT))
    if not writer.isOpened():
        raise RuntimeError(f"cannot open MJPG writer for {path}")
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, ms.JPEG_QUALITY)
    try:
        for i in range(n):
            writer.write(render_frame(scene, i, rng))
    finally:
        writer.release()
    return n


def make_scene(ps: PoseScene, out: Path) -> None:
    scene = ps.scene
    d = out / scene.name
    d.mkdir(parents=True, exist_ok=True)
    write_video(scene, d / "video.avi")
    with tempfile.TemporaryDirectory() as tmp:
        audio, speech = ms.build_audio(scene, Path(tmp))
    ms.write_wav(d / "audio.wav", audio)
    meta = {
        "name": scene.name,
        "description": scene.description,
        "duration_s": scene.duration_s,
        "fps": ms.FPS,
        "audio_rate": ms.AUDIO_RATE,
        "expect": list(scene.expect),
        "timeline": {
            "person": scene.person,
            "person_in_view": [list(iv) for iv in scene.in_view],
            "posture": ps.posture,
            "speech": speech,
        },
    }
    (d / "scene.json").write_text(json.dumps(meta, indent=2) + "\n")


def check_postures(ps: PoseScene, out: Path) -> str:
    """Every frame's posture (float and int8 detector) must match the ground truth."""
    from agent.extractors.pose import PoseEstimator
    from agent.models.store import ModelStore

    store = ModelStore(REPO / "models")
    lm_session, lm_manifest = store.load("pose_landmark")
    summary = []
    for name in ("pose_detection", "pose_detection_int8"):
        session, manifest = store.load(name)
        est = PoseEstimator(session, manifest, lm_session, lm_manifest)
        cap = cv2.VideoCapture(str(out / ps.scene.name / "video.avi"))
        seen: Counter[str] = Counter()
        scores: list[float] = []
        for _ in range(10_000):  # bounded: a scene has < 100 frames
            ok, img = cap.read()
            if not ok:
                break
            pose = est.estimate(img)
            seen["none" if pose is None else pose.posture] += 1
            if pose is not None:
                scores.append(pose.score)
        cap.release()
        if set(seen) != {ps.posture}:
            raise RuntimeError(f"{ps.scene.name}: {name} postures {dict(seen)}, want {ps.posture}")
        summary.append(f"{name} {ps.posture} x{seen[ps.posture]} (score >= {min(scores):.2f})")
    return "; ".join(summary)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--out", type=Path, default=ms.DEFAULT_OUT, help="output directory")
    ap.add_argument("--scenes", default="", help="comma-separated scene names (default: all)")
    ap.add_argument("--no-check", action="store_true", help="skip the per-frame posture check")
    args = ap.parse_args(argv)

    by_name = {s.scene.name: s for s in SCENES}
    names = [n for n in args.scenes.split(",") if n] or list(by_name)
    unknown = sorted(set(names) - set(by_name))
    if unknown:
        ap.error(f"unknown scene(s): {', '.join(unknown)}; known: {', '.join(by_name)}")
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            ap.error(f"{tool} not found on PATH")
    for name in names:
        make_scene(by_name[name], args.out)
        print(ms.verify(args.out, by_name[name].scene))
        if not args.no_check:
            print("   ", check_postures(by_name[name], args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
