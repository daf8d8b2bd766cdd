"""Real photos of people (and of rooms without any) for fusion scenes, split by identity.

Sources, all shipped inside the scikit-image wheel (read there, never copied into this repo;
only the face detector's outputs on them, 7 numbers per window, enter the fusion model):

* ``lfw_subset.npy``: 100 faces of Labeled Faces in the Wild (a research data set without a
  stated licence), 25x25 grey, mostly turned to the camera, and 100 crops without a face. Even
  indices train, odd indices are held out.
* ``astronaut.png`` (Eileen Collins, facing the camera; public domain, NASA): held out.
* ``camera.png`` (CC0, Lav Varshney; head turned away from the camera towards his own): the
  only real photo of a person *not* facing the camera here. It is used for both splits (the
  held-out copy mirrored, on another background) and is therefore **not** held out; the
  closing note says so.
* Rooms and things without people: the empty-room frames of the ``nobody_command`` sample
  (held out), and scikit-image's brick, grass, gravel, chelsea (a cat), coffee, rocket.

A view is a 320x240 BGR frame: a face pasted at a seeded place and size onto a background
of its split, so the face detector sees the person near (face about 40 % of the frame height)
or far (about 18 %).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

Condition = Literal["facing", "turned", "nobody"]
Split = Literal["train", "test"]
W, H = 320, 240
SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@dataclass(frozen=True)
class View:
    name: str
    split: Split
    condition: Condition
    image: npt.NDArray[np.uint8]


def _photo(name: str) -> npt.NDArray[np.uint8]:
    from skimage import data

    image: npt.NDArray[np.uint8] = np.asarray(getattr(data, name)(), dtype=np.uint8)
    return image


def _bgr(rgb_or_grey: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    import cv2

    if rgb_or_grey.ndim == 2:
        return np.ascontiguousarray(cv2.cvtColor(rgb_or_grey, cv2.COLOR_GRAY2BGR))
    return np.ascontiguousarray(cv2.cvtColor(rgb_or_grey[..., :3], cv2.COLOR_RGB2BGR))


def _fit(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    import cv2

    return np.asarray(cv2.resize(image, (W, H), interpolation=cv2.INTER_AREA), dtype=np.uint8)


def _backgrounds(split: Split) -> list[tuple[str, npt.NDArray[np.uint8]]]:
    if split == "train":
        names = ("brick", "grass", "gravel", "chelsea", "rocket")
        return [(n, _fit(_bgr(_photo(n)))) for n in names]
    from agent.evaluation.scenes import load_frames

    room = load_frames(SAMPLES / "nobody_command" / "video.avi", fps=1.0)
    return [("empty_room", room[0]), ("coffee", _fit(_bgr(_photo("coffee"))))]


def _lfw() -> npt.NDArray[np.float64]:
    import skimage

    path = Path(skimage.__file__).parent / "data" / "lfw_subset.npy"
    faces: npt.NDArray[np.float64] = np.load(path)
    return faces


def _paste(
    background: npt.NDArray[np.uint8],
    patch: npt.NDArray[np.uint8],
    height: int,
    rng: np.random.Generator,
) -> npt.NDArray[np.uint8]:
    import cv2

    h, w = patch.shape[:2]
    width = max(8, round(w * height / h))
    small = cv2.resize(patch, (width, height), interpolation=cv2.INTER_AREA)
    out = background.copy()
    y = int(rng.integers(0, max(1, H - height)))
    x = int(rng.integers(0, max(1, W - width)))
    out[y : y + height, x : x + width] = small[: H - y, : W - x]
    return out


def _people(split: Split) -> list[tuple[str, Condition, npt.NDArray[np.uint8]]]:
    """Head-and-shoulders patches (BGR) of this split's people."""
    import cv2

    lfw = _lfw()
    parity = 0 if split == "train" else 1
    found: list[tuple[str, Condition, npt.NDArray[np.uint8]]] = []
    for i in range(parity, 100, 2):
        # The crops are tight around the face: give the detector some head around it.
        grey = np.asarray(
            cv2.copyMakeBorder((lfw[i] * 255).astype(np.uint8), 4, 4, 4, 4, cv2.BORDER_REPLICATE),
            dtype=np.uint8,
        )
        found.append((f"lfw{i}", "facing", _bgr(grey)))
    if split == "test":
        found.append(("astronaut", "facing", _bgr(_photo("astronaut")[20:300, 110:350])))
    camera = _bgr(_photo("camera")[90:260, 165:320])
    found.append(("cameraman", "turned", camera if split == "train" else camera[:, ::-1]))
    return found


def views(split: Split, seed: int = 0) -> list[View]:
    """Every person of the split near and far on each background, and the empty scenes."""
    rng = np.random.default_rng(seed + (0 if split == "train" else 1000))
    backgrounds = _backgrounds(split)
    out: list[View] = []
    for bname, bg in backgrounds:
        out.append(View(f"{bname}", split, "nobody", bg))
    lfw = _lfw()
    for i in range(100 + (0 if split == "train" else 1), 200, 2):  # crops without a face
        bname, bg = backgrounds[i % len(backgrounds)]
        patch = _bgr((lfw[i] * 255).astype(np.uint8))
        out.append(View(f"{bname}+thing{i}", split, "nobody", _paste(bg, patch, 90, rng)))
    for name, condition, patch in _people(split):
        for size, height in (("near", 150), ("far", 75)):
            bname, bg = backgrounds[int(rng.integers(len(backgrounds)))]
            image = _paste(bg, patch, height, rng)
            out.append(View(f"{name}/{size}/{bname}", split, condition, image))
    return out


__all__ = ["View", "views"]
