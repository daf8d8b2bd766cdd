"""``edge-agent evaluate``: build the corpus if needed, evaluate, print the table, write reports."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_CORPUS = Path("~/.cache/edge-agent/corpus")


def add_parser(sub: Any) -> None:
    """Register ``evaluate`` on the top-level subparsers of ``agent.cli``."""
    ev = sub.add_parser(
        "evaluate",
        help="recognizer and pipeline on a corpus of voices never trained on (table + report)",
    )
    ev.add_argument("--config", "-c", type=Path, help="config YAML (default: built-in defaults)")
    ev.add_argument(
        "--corpus", type=Path, help=f"corpus directory (default {DEFAULT_CORPUS}, quick: -quick)"
    )
    ev.add_argument("--rebuild", action="store_true", help="rebuild the corpus even if present")
    ev.add_argument("--quick", action="store_true", help="a small corpus (tests, smoke runs)")
    ev.add_argument("--report", type=Path, help="write a self-contained HTML report here")
    ev.add_argument("--json", type=Path, help="write every figure as JSON here")
    ev.add_argument(
        "--families",
        default="espeak,flite,piper",
        help="voice families to evaluate (comma-separated; default espeak,flite,piper)",
    )
    ev.add_argument(
        "--fusion",
        action="store_true",
        help="compare the fusions (hand-set, learned weights, learned head, audio-only, "
        "image-only) on held-out voices and faces instead",
    )
    ev.add_argument(
        "--background-minutes",
        type=float,
        help="cut the background stream at this many minutes (default: all of it, >= 30)",
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    from agent.config.loader import load_config
    from agent.config.schema import AgentConfig
    from agent.evaluation.corpus import ensure_corpus
    from agent.evaluation.report import table, write_html, write_json
    from agent.evaluation.runner import evaluate

    cfg = load_config(args.config) if args.config is not None else AgentConfig()
    families = [f.strip() for f in str(args.families).split(",") if f.strip()]
    root = args.corpus or Path(str(DEFAULT_CORPUS) + ("-quick" if args.quick else ""))
    root = root.expanduser()
    # The pipeline logs every decision at INFO; the table is what this command prints.
    logging.getLogger("agent").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    corpus, built = ensure_corpus(
        root,
        cfg.intents,
        quick=args.quick,
        rebuild=args.rebuild,
        families=families,
        warn=lambda msg: print(f"warning: {msg}", file=sys.stderr),
    )
    if built:
        print(
            f"corpus: built {len(corpus.clips)} clips in {root} ({time.perf_counter() - t0:.0f} s)",
            file=sys.stderr,
        )
    if args.fusion:
        return _fusion(corpus, cfg, args)
    res = evaluate(
        corpus,
        cfg,
        background_max_s=None if args.background_minutes is None else args.background_minutes * 60,
        progress=lambda msg: print(msg, file=sys.stderr),
    )
    print(table(res))
    if args.json is not None:
        write_json(res, args.json)
        print(f"json: {args.json}", file=sys.stderr)
    if args.report is not None:
        write_html(res, args.report)
        print(f"report: {args.report}", file=sys.stderr)
    return 0


def _fusion(corpus: Any, cfg: Any, args: argparse.Namespace) -> int:
    import json

    from agent.evaluation.fusion import evaluate_fusion, format_fusion

    res = evaluate_fusion(
        corpus,
        cfg,
        count=2000 if args.quick else 20000,
        progress=lambda msg: print(msg, file=sys.stderr),
    )
    print(format_fusion(res))
    if args.json is not None:
        args.json.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
        print(f"json: {args.json}", file=sys.stderr)
    return 0


__all__ = ["DEFAULT_CORPUS", "add_parser", "cmd_evaluate"]
