#!/usr/bin/env python3
"""Generate the bundled sample scenes in ``agent/samples/`` from real material.

Each scene is a directory holding ``video.avi`` (MJPG, 320x240, 10 fps),
``audio.wav`` (16 kHz mono s16) and ``scene.json`` (ground truth). Video and
audio both start at t=0 and last exactly ``duration_s``.

Material: the scikit-image ``astronaut`` photo composited onto a
synthetic, static room; espeak-ng voice commands; LibriVox speech from
pocketsphinx-testdata. All randomness is seeded, so reruns with the same tool
versions (espeak-ng, sox, OpenCV) give the same files.

Needs: numpy, opencv-python-headless, scikit-image; ``espeak-ng`` and ``sox``
on PATH; Debian ``pocketsphinx-testdata`` for the background speech.

    python -m scripts.make_samples [--out agent/samples] [--scenes a,b,...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import wave
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt
from skimage import data as skdata

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "agent" / "samples"
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")

WIDTH, HEIGHT, FPS = 320, 240, 10
AUDIO_RATE = 16_000
# OpenCV's own MJPEG encoder (not libjpeg) is bulky: 25 gives ~14 KB per frame,
# keeps all scenes under 8 MB, and BlazeFace scores stay ~0.9.
JPEG_QUALITY = 25
NOISE_DBFS = -60.0  # room-noise floor; real mics never output digital silence
SENSOR_NOISE_SIGMA = 1.5  # per-frame pixel noise, in 8-bit levels
BASE_SEED = 20240611

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
I16 = npt.NDArray[np.int16]
Interval = tuple[float, float]


# --------------------------------------------------------------------------- scene specs


@dataclass(frozen=True)
class Speech:
    """One utterance placed at ``at`` seconds.

    ``kind="tts"``: ``text`` is synthesised by espeak-ng with ``voice``.
    ``kind="file"``: ``voice`` names a LibriVox utterance id; ``text`` is its
    transcription.
    """

    text: str
    voice: str
    source: str  # who/what speaks: "person", "tv", "radio", ...
    at: float
    kind: Literal["tts", "file"] = "tts"
    gain_db: float = 0.0
    sox_effects: tuple[str, ...] = ()  # e.g. a band-pass for a "TV speaker"


@dataclass(frozen=True)
class Scene:
    name: str
    description: str
    duration_s: float
    person: str | None  # sprite name, see SPRITES
    in_view: tuple[Interval, ...]
    speech: tuple[Speech, ...]
    expect: tuple[dict[str, str], ...] = field(default=())


def _cmd(intent: str) -> dict[str, str]:
    return {"type": "voice_command", "intent": intent}


SCENES: tuple[Scene, ...] = (
    Scene(
        name="person_command",
        description="Astronaut in view the whole time says 'turn on the light'.",
        duration_s=8.0,
        person="astronaut",
        in_view=((0.0, 8.0),),
        speech=(Speech("turn on the light", "en-us", "person", at=2.5),),
        expect=(_cmd("light_on"),),
    ),
    Scene(
        name="person_command_female",
        description="Astronaut (mirrored, left of centre) says 'turn off the light' "
        "in a female voice (en-us+f3).",
        duration_s=8.0,
        person="astronaut_left",
        in_view=((0.0, 8.0),),
        speech=(Speech("turn off the light", "en-us+f3", "person", at=3.0),),
        expect=(_cmd("light_off"),),
    ),
    Scene(
        name="nobody_command",
        description="Empty room; 'turn on the light' comes from a TV (quieter, band-limited).",
        duration_s=7.0,
        person=None,
        in_view=(),
        speech=(
            Speech(
                "turn on the light",
                "en-us+m3",
                "tv",
                at=2.5,
                gain_db=-8.0,
                sox_effects=("highpass", "250", "lowpass", "3800"),
            ),
        ),
        expect=(),
    ),
    Scene(
        name="person_background_speech",
        description="Astronaut in view while a LibriVox reading (not a command) plays.",
        duration_s=8.0,
        person="astronaut",
        in_view=((0.0, 8.0),),
        speech=(
            Speech(
                "",  # filled from the LibriVox transcription
                "sense_and_sensibility_01_austen_64kb-0870",
                "radio",
                at=0.5,
                kind="file",
                gain_db=-3.0,
            ),
        ),
        expect=(),
    ),
    Scene(
        name="person_chatter",
        description="Astronaut in view; short talk that is no command: a real LibriVox "
        "sentence (3 s) and the near miss 'turn on the radio'.",
        duration_s=9.0,
        person="astronaut",
        in_view=((0.0, 9.0),),
        speech=(
            Speech(
                "",  # filled from the LibriVox transcription
                "sense_and_sensibility_01_austen_64kb-0880",
                "radio",
                at=0.5,
                kind="file",
            ),
            Speech("turn on the radio", "en-us", "person", at=5.5),
        ),
        expect=(),
    ),
    Scene(
        name="person_leaves",
        description="Astronaut leaves at 2.0 s; 'turn on the fan' is heard at 4.0 s.",
        duration_s=7.0,
        person="astronaut",
        in_view=((0.0, 2.0),),
        speech=(Speech("turn on the fan", "en-us", "person", at=4.0),),
        expect=(),
    ),
    Scene(
        name="person_arrives",
        description="Empty room; astronaut appears at 2.7 s and says 'lights on' at 3.0 s.",
        duration_s=7.0,
        person="astronaut",
        in_view=((2.7, 7.0),),
        speech=(Speech("lights on", "en-us+m3", "person", at=3.0),),
        expect=(_cmd("light_on"),),
    ),
)


def scene_seed(name: str) -> int:
    # crc32, not hash(): str hashes are salted per process.
    return BASE_SEED + zlib.crc32(name.encode())


# --------------------------------------------------------------------------- video


@dataclass(frozen=True)
class Sprite:
    """A person cut out of a photo: polygon mask, scale, and where the face goes."""

    image: U8  # BGR, full source photo
    polygon: tuple[tuple[int, int], ...]  # person outline in source pixels
    face_center: tuple[float, float]  # source pixels
    scale: float
    place: tuple[float, float]  # frame pixels for the face centre
    mirror: bool = False


def _astronaut(scale: float = 0.75, place: tuple[float, float] = (165, 95)) -> Sprite:
    rgb = skdata.astronaut()  # type: ignore[no-untyped-call]
    # Head, neck ring and suit; excludes the flag, shuttle model and helmet.
    outline = (
        (225, 16), (260, 23), (286, 46), (297, 80), (294, 108), (285, 125),
        (268, 135), (264, 150), (262, 168), (268, 172), (282, 188), (294, 207),
        (302, 232), (303, 248), (318, 262), (345, 290), (360, 330), (365, 511),
        (20, 511), (24, 420), (30, 330), (45, 280), (90, 250), (112, 220),
        (114, 200), (126, 178), (150, 158), (172, 147), (184, 140), (180, 124),
        (158, 112), (155, 70), (168, 42), (192, 24),
    )  # fmt: skip
    # BlazeFace box in the 512 px photo is ~107 px; 0.75 gives ~80 px in frame.
    return Sprite(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), outline, (226.0, 121.0), scale, place)


def _astronaut_left() -> Sprite:
    # Same person mirrored, smaller (~66 px face) and left of centre, so scenes
    # differ in position and scale. (The scikit-image cameraman was tried: a
    # three-quarter profile behind a camera, full-range BlazeFace gave only
    # 0.54-0.72, too close to usual thresholds for a ground-truth sample.)
    return replace(_astronaut(scale=0.62, place=(105, 88)), mirror=True)


SPRITES = {"astronaut": _astronaut, "astronaut_left": _astronaut_left}


@cache
def room_background() -> F32:
    """A static synthetic room: wall, floor, window, door, abstract picture.

    Built from flat shapes and blurred noise so nothing in it looks like a face.
    """
    rng = np.random.default_rng(BASE_SEED)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    # Warm wall, lit from the upper left.
    light = 1.0 - 0.25 * (xx / WIDTH) - 0.15 * (yy / HEIGHT)
    img = np.empty((HEIGHT, WIDTH, 3), np.float32)
    for c, v in enumerate((170.0, 195.0, 215.0)):  # BGR beige
        img[..., c] = v * light
    floor_y = 185
    img[floor_y:] = np.array((60.0, 85.0, 115.0), np.float32) * light[floor_y:, :, None]
    cv2.line(img, (0, floor_y), (WIDTH, floor_y), (90, 110, 130), 3)  # skirting board
    cv2.rectangle(img, (18, 40), (92, 130), (225, 205, 180), -1)  # window: pale sky
    cv2.rectangle(img, (18, 40), (92, 130), (235, 235, 235), 4)
    cv2.line(img, (55, 40), (55, 130), (235, 235, 235), 3)
    cv2.rectangle(img, (250, 55), (305, floor_y), (70, 95, 125), -1)  # wooden door
    cv2.rectangle(img, (250, 55), (305, floor_y), (50, 70, 95), 3)
    cv2.circle(img, (296, 125), 3, (40, 160, 200), -1)
    cv2.rectangle(img, (120, 60), (180, 100), (40, 40, 40), -1)  # framed abstract stripes
    for i, col in enumerate(((80, 140, 60), (60, 120, 200), (150, 90, 40))):
        cv2.rectangle(img, (124, 64 + 12 * i), (176, 75 + 12 * i), col, -1)
    # Plaster texture: low-frequency noise, a few levels deep.
    texture = cv2.GaussianBlur(rng.normal(0.0, 6.0, (HEIGHT, WIDTH)).astype(np.float32), (0, 0), 2)
    img += texture[..., None]
    return np.asarray(cv2.GaussianBlur(img, (0, 0), 0.8), np.float32)


def _warp(src: F32, m: list[list[float]], border: int = cv2.BORDER_CONSTANT) -> F32:
    """Affine-warp into the frame; float32 in, float32 out."""
    mat = np.array(m, np.float32)
    out = cv2.warpAffine(src, mat, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderMode=border)
    return np.asarray(out, np.float32)


@cache
def sprite_layers(name: str) -> tuple[F32, F32]:
    """The person's BGR pixels and a feathered alpha mask, both in frame coordinates."""
    sp = SPRITES[name]()
    h, w = sp.image.shape[:2]
    mask = np.zeros((h, w), np.float32)
    cv2.fillPoly(mask, [np.array(sp.polygon, np.int32)], 1.0)
    mask = np.asarray(
        cv2.GaussianBlur(mask, (0, 0), 1.5), np.float32
    )  # soft edge hides the polygon cut
    # Downscale with INTER_AREA first (warpAffine has no area filter), then place.
    small = (round(w * sp.scale), round(h * sp.scale))
    img = np.asarray(cv2.resize(sp.image, small, interpolation=cv2.INTER_AREA), np.float32)
    alpha = np.asarray(cv2.resize(mask, small, interpolation=cv2.INTER_AREA), np.float32)
    fx, fy = sp.face_center[0] * sp.scale, sp.face_center[1] * sp.scale
    px, py = sp.place
    sx = -1.0 if sp.mirror else 1.0  # a negative x scale flips left-right
    m = [[sx, 0.0, px - sx * fx], [0.0, 1.0, py - fy]]
    return _warp(img, m), _warp(alpha, m)


def in_view(t: float, intervals: Sequence[Interval]) -> bool:
    return any(t0 <= t < t1 for t0, t1 in intervals)


def render_frame(scene: Scene, index: int, rng: np.random.Generator) -> U8:
    t = index / FPS
    frame = room_background().copy()
    if scene.person is not None and in_view(t, scene.in_view):
        img, alpha = sprite_layers(scene.person)
        # Slight sway so a "present" person is not a frozen sticker.
        dx = 2.0 * np.sin(2 * np.pi * t / 3.0)
        shift = [[1.0, 0.0, dx], [0.0, 1.0, 0.0]]
        img, alpha = _warp(img, shift, cv2.BORDER_REPLICATE), _warp(alpha, shift)
        frame = frame * (1 - alpha[..., None]) + img * alpha[..., None]
    frame += rng.normal(0.0, SENSOR_NOISE_SIGMA, frame.shape).astype(np.float32)
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8)


def write_video(scene: Scene, path: Path) -> int:
    rng = np.random.default_rng(scene_seed(scene.name))
    n = round(scene.duration_s * FPS)
    fourcc = cv2.VideoWriter.fourcc(*"MJPG")
    # The built-in backend (not FFmpeg) is in every OpenCV build and is deterministic.
    writer = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, fourcc, FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError(f"cannot open MJPG writer for {path}")
    # Set after opening: this backend ignores quality passed as constructor params.
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, JPEG_QUALITY)
    try:
        for i in range(n):
            writer.write(render_frame(scene, i, rng))
    finally:
        writer.release()
    return n


# --------------------------------------------------------------------------- audio


def read_wav(path: Path) -> I16:
    with wave.open(str(path), "rb") as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (AUDIO_RATE, 1, 2):
            raise ValueError(f"{path}: expected 16 kHz mono s16")
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.int16)


def write_wav(path: Path, samples: I16) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(AUDIO_RATE)
        w.writeframes(samples.astype("<i2").tobytes())


def synthesize(text: str, voice: str, effects: Sequence[str], tmp: Path) -> I16:
    """espeak-ng (22.05 kHz) -> sox -> 16 kHz mono s16, plus optional sox effects."""
    raw, out = tmp / "tts_raw.wav", tmp / "tts_16k.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text], check=True)
    # -D: no dither. sox dithers with a random seed by default, which made
    # every run's audio differ in the last bit.
    sox = ["sox", "-D", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(out), *effects]
    subprocess.run(sox, check=True)
    return read_wav(out)


def librivox(utt_id: str) -> tuple[I16, str]:
    """A LibriVox utterance and its transcription from pocketsphinx-testdata."""
    text = ""
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        if line.endswith(f"({utt_id})"):
            text = line.rsplit("(", 1)[0].replace("<s>", "").replace("</s>", "").strip()
    if not text:
        raise ValueError(f"no transcription for {utt_id}")
    return read_wav(LIBRIVOX / f"{utt_id}.wav"), text


def active_span(x: I16, thresh: float = 0.02) -> tuple[int, int]:
    """First/last sample of a clip whose 10 ms envelope exceeds ``thresh`` of the peak.

    TTS and recordings carry leading/trailing silence; the ground truth should
    mark when words are audible, not when the clip starts.
    """
    hop = AUDIO_RATE // 100
    n = len(x) // hop
    env = np.abs(x[: n * hop].astype(np.float32)).reshape(n, hop).max(axis=1)
    loud = np.flatnonzero(env > thresh * env.max())
    return int(loud[0]) * hop, (int(loud[-1]) + 1) * hop


def level(x: I16, peak_dbfs: float) -> F32:
    """Scale so the clip peaks at ``peak_dbfs``."""
    y = x.astype(np.float32)
    return y * (32767.0 * 10 ** (peak_dbfs / 20) / max(1.0, float(np.abs(y).max())))


def build_audio(scene: Scene, tmp: Path) -> tuple[I16, list[dict[str, object]]]:
    n = round(scene.duration_s * AUDIO_RATE)
    rng = np.random.default_rng(scene_seed(scene.name) + 1)
    mix = rng.normal(0.0, 32768.0 * 10 ** (NOISE_DBFS / 20), n).astype(np.float32)
    timeline: list[dict[str, object]] = []
    for sp in scene.speech:
        if sp.kind == "tts":
            clip, text = synthesize(sp.text, sp.voice, sp.sox_effects, tmp), sp.text
        else:
            clip, text = librivox(sp.voice)
        a, b = active_span(clip)
        clip = clip[a:b]  # so ``at`` is when speech is heard
        start = round(sp.at * AUDIO_RATE)
        end = min(n, start + len(clip))
        mix[start:end] += level(clip, -3.0 + sp.gain_db)[: end - start]
        timeline.append(
            {
                "start": round(start / AUDIO_RATE, 3),
                "end": round(end / AUDIO_RATE, 3),
                "text": text,
                "voice": sp.voice if sp.kind == "tts" else f"librivox:{sp.voice}",
                "source": sp.source,
            }
        )
    return np.clip(np.rint(mix), -32768, 32767).astype(np.int16), timeline


# --------------------------------------------------------------------------- scene


def make_scene(scene: Scene, out: Path) -> None:
    d = out / scene.name
    d.mkdir(parents=True, exist_ok=True)
    write_video(scene, d / "video.avi")
    with tempfile.TemporaryDirectory() as tmp:
        audio, speech = build_audio(scene, Path(tmp))
    write_wav(d / "audio.wav", audio)
    meta = {
        "name": scene.name,
        "description": scene.description,
        "duration_s": scene.duration_s,
        "fps": FPS,
        "audio_rate": AUDIO_RATE,
        "expect": list(scene.expect),
        "timeline": {
            "person": scene.person,
            "person_in_view": [list(iv) for iv in scene.in_view],
            "speech": speech,
        },
    }
    (d / "scene.json").write_text(json.dumps(meta, indent=2) + "\n")


def verify(out: Path, scene: Scene) -> str:
    """Read the files back; raise if frame count, fps or audio length is off."""
    d = out / scene.name
    cap = cv2.VideoCapture(str(d / "video.avi"))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames += 1
        if img.shape != (HEIGHT, WIDTH, 3):
            raise RuntimeError(f"{scene.name}: frame shape {img.shape}")
    cap.release()
    audio_s = len(read_wav(d / "audio.wav")) / AUDIO_RATE
    want = round(scene.duration_s * FPS)
    if frames != want or abs(fps - FPS) > 1e-6 or abs(audio_s - scene.duration_s) > 1e-9:
        raise RuntimeError(f"{scene.name}: {frames} frames @ {fps} fps, audio {audio_s} s")
    size = sum(p.stat().st_size for p in d.iterdir()) / 1e6
    return (
        f"{scene.name:26s} {frames:3d} frames @ {fps:g} fps, audio {audio_s:.2f} s, {size:.2f} MB"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    ap.add_argument("--scenes", default="", help="comma-separated scene names (default: all)")
    args = ap.parse_args(argv)

    by_name = {s.name: s for s in SCENES}
    names = [n for n in args.scenes.split(",") if n] or list(by_name)
    unknown = sorted(set(names) - set(by_name))
    if unknown:
        ap.error(f"unknown scene(s): {', '.join(unknown)}; known: {', '.join(by_name)}")
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            ap.error(f"{tool} not found on PATH")

    for name in names:
        make_scene(by_name[name], args.out)
        print(verify(args.out, by_name[name]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
