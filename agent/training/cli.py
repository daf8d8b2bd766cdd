"""``edge-agent train`` and ``edge-agent enroll``."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from agent.config.loader import load_config
from agent.config.schema import AgentConfig
from agent.errors import ConfigError

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "agent.example.yaml"


def _state_dir() -> Path:
    base = os.environ.get("STATE_DIRECTORY")
    return Path(base.split(":")[0]) if base else Path("~/.local/state/edge-agent").expanduser()


def _seeds(text: str) -> int:
    n = int(text)
    if not 1 <= n <= 16:
        raise argparse.ArgumentTypeError(f"{n}: 1 to 16 heads per recipe")
    return n


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tr = sub.add_parser(
        "train",
        help="train the int8 command model for the config's phrases (synthetic voices "
        "+ optional enrolled recordings); writes a bundle for `models install`",
    )
    tr.add_argument("--config", "-c", type=Path, help="config YAML (its intents)")
    tr.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    tr.add_argument("--enrollment", type=Path, help="folder written by `edge-agent enroll`")
    tr.add_argument("--quick", action="store_true", help="a small data set (minutes, for tests)")
    tr.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes")
    tr.add_argument("--epochs", type=int, help="training epochs (default 40)")
    tr.add_argument("--seed", type=int, default=8)
    tr.add_argument("--cache", type=Path, help="reuse/keep features here (same recipe)")
    tr.add_argument(
        "--heads",
        type=int,
        choices=(1, 2),
        default=1,
        help="heads averaged into the model: 1 as shipped; 2 adds a head trained with babble "
        "and sound-alikes (twice the time; see models/README.md)",
    )
    tr.add_argument(
        "--seeds",
        type=_seeds,
        default=1,
        help="heads per recipe, each from another seed on the same features, averaged in the "
        "model (a few minutes each; see models/README.md)",
    )
    tr.add_argument("--version", default="1.0.0", help="version written to the manifest")
    tr.add_argument("--models", type=Path, help="model store with the speech front end")
    tr.add_argument(
        "--fusion",
        action="store_true",
        help="train the fusion instead (alpha/beta and the int8 fusion head) on the evaluation "
        "corpus's tune split and the training photos",
    )
    tr.add_argument(
        "--corpus", type=Path, help="evaluation corpus for --fusion (built when missing)"
    )

    en = sub.add_parser(
        "enroll",
        help="record a phrase a few times (files or the live microphone) for `train`",
    )
    en.add_argument("--config", "-c", type=Path, help="config YAML (phrases, microphone, VAD)")
    en.add_argument("--phrase", required=True, help="one of the configured phrases")
    en.add_argument("--takes", type=int, default=5, help="takes from the microphone")
    en.add_argument("--files", type=Path, nargs="+", help="WAV files instead of the microphone")
    en.add_argument("--dir", type=Path, help="enrollment folder (default: state dir/enroll)")
    en.add_argument("--room", help="with several rooms in the config: whose microphone")


def _load(path: Path | None) -> AgentConfig:
    if path is not None:
        return load_config(path)
    if DEFAULT_CONFIG.is_file():
        return load_config(DEFAULT_CONFIG)
    return AgentConfig()


def cmd_train(args: argparse.Namespace) -> int:
    from agent.models.store import ModelStore
    from agent.training.dataset import Recipe, shipped_recipes
    from agent.training.train import TrainOptions, run_train

    cfg = _load(args.config)
    if args.fusion:
        return _train_fusion(cfg, args)
    intents = {k: list(v) for k, v in cfg.intents.items()}
    if args.quick:
        base = Recipe(
            positives_per_phrase=24,
            near_misses=60,
            other_commands=40,
            partials=30,
            word_salad=60,
            noise_only=10,
            babble_tracks=2,
            seed=args.seed,
        )
        opts = TrainOptions(epochs=args.epochs or 8, seed=args.seed, seeds=args.seeds)
    else:
        base = Recipe(seed=args.seed)
        opts = TrainOptions(epochs=args.epochs or 40, seed=args.seed, seeds=args.seeds)
    recipes = shipped_recipes(base, args.heads)
    result = run_train(
        intents,
        args.out,
        models_dir=args.models or cfg.models.dir or ModelStore().root,
        recipes=recipes,
        opts=opts,
        workers=max(1, args.workers),
        version=args.version,
        enrollment=args.enrollment,
        cache=args.cache,
    )
    print(
        json.dumps(
            {
                "bundle": str(result.bundle),
                "examples": result.examples,
                "threshold": result.threshold,
                "tuning_voices": result.tune,
                "seconds": round(result.seconds, 1),
            },
            indent=2,
        )
    )
    print(
        f"sign and install with: edge-agent models sign {result.bundle} --key KEY && "
        f"edge-agent models install {result.bundle}"
    )
    return 0


def _train_fusion(cfg: AgentConfig, args: argparse.Namespace) -> int:
    import sys

    from agent.evaluation.cli import DEFAULT_CORPUS
    from agent.evaluation.corpus import ensure_corpus
    from agent.training.fusion import run_fusion_train

    root = (
        args.corpus or Path(str(DEFAULT_CORPUS) + ("-quick" if args.quick else ""))
    ).expanduser()
    corpus, _ = ensure_corpus(
        root,
        cfg.intents,
        quick=args.quick,
        warn=lambda msg: print(f"warning: {msg}", file=sys.stderr),
    )
    result = run_fusion_train(
        cfg,
        corpus,
        args.out,
        examples=2000 if args.quick else 20000,
        seed=args.seed,
        version=args.version,
        progress=lambda msg: print(msg, file=sys.stderr),
    )
    print(
        json.dumps(
            {
                "bundle": str(result.bundle),
                "examples": result.examples,
                "positives": result.positives,
                "learned_weights": {
                    "alpha": result.alpha,
                    "beta": result.beta,
                    "threshold": result.weighted_threshold,
                },
                "head_threshold": result.threshold,
                "seconds": round(result.seconds, 1),
            },
            indent=2,
        )
    )
    held = json.loads((result.bundle / "accuracy.json").read_text()).get("held_out_evaluation")
    if held:
        from agent.evaluation.fusion import format_fusion

        print(format_fusion(held))
    print(
        f"sign and install with: edge-agent models sign {result.bundle} --key KEY && "
        f"edge-agent models install {result.bundle}"
    )
    return 0


def cmd_enroll(args: argparse.Namespace) -> int:
    from agent.training.enroll import enroll_files, enroll_microphone

    cfg = _load(args.config)
    if not args.files:
        cfg = cfg.pair(args.room)  # the microphone to record from
    root = args.dir or _state_dir() / "enroll"
    if args.takes < 1:
        raise ConfigError(["enroll: --takes must be at least 1"])
    if args.files:
        written = enroll_files(cfg, root, args.phrase, list(args.files))
    else:
        written = enroll_microphone(cfg, root, args.phrase, args.takes)
    print(f"{len(written)} take(s) in {root}; train with: edge-agent train --enrollment {root}")
    return 0 if written else 1


__all__ = ["add_parsers", "cmd_enroll", "cmd_train"]
