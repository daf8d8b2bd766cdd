"""The canary: a new model is loaded and run in a *separate process* before it may activate.

``python -m agent.models.canary DIR`` loads the bundle's model with the CPU back-end, runs its
warm-up input (the manifest's ``warmup`` hints, else zeros) ``RUNS`` times and prints one JSON
line: output shapes, whether every output is finite, and the median milliseconds. A runtime
that crashes (even with a signal) kills only that process. ``check_canary`` reads the result
and refuses a model that failed, returned NaN/inf, returned shapes other than its manifest
declares, or ran ``SLOWER`` times slower than the installed version on the same input.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.models.bundle import BundleRejected

RUNS = 7
SLOWER = 10.0  # a new version this many times slower than the installed one is refused
FLOOR_MS = 0.5  # below this, timings are noise: never called slow
TIMEOUT_S = 120.0


@dataclass(frozen=True)
class CanaryResult:
    shapes: dict[str, list[int]]
    finite: bool
    median_ms: float


def _probe(folder: Path, runs: int) -> dict[str, Any]:
    from agent.models.store import read_manifest, warmup_inputs
    from agent.runtimes.base import RuntimeOptions, open_session, warmup_feeds

    manifest = read_manifest(folder)
    hints = warmup_inputs(manifest)
    session = open_session(manifest.path, manifest.runtime, RuntimeOptions(threads=1, warmup=False))
    feeds, _ = warmup_feeds(session.inputs, hints)
    times = []
    out: dict[str, Any] = {}
    for _ in range(runs):
        t0 = time.perf_counter()
        out = session.run(feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    arrays = {k: np.asarray(v) for k, v in out.items()}
    return {
        "shapes": {k: list(v.shape) for k, v in arrays.items()},
        "finite": all(bool(np.all(np.isfinite(v))) for v in arrays.values() if v.dtype.kind == "f"),
        "median_ms": statistics.median(times),
    }


def run_canary(folder: Path, *, runs: int = RUNS, timeout_s: float = TIMEOUT_S) -> CanaryResult:
    """Probe ``folder`` in a child process; :class:`BundleRejected` (``canary_failed``) when
    it crashes, times out or cannot load the model."""
    cmd = [sys.executable, "-m", "agent.models.canary", str(folder), "--runs", str(runs)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as err:
        raise BundleRejected(
            "canary_failed", f"{folder.name}: canary ran over {timeout_s:.0f} s"
        ) from err
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        why = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        tail = (proc.stderr.strip().splitlines() or [""])[-1][:300]
        raise BundleRejected(
            "canary_failed", f"{folder.name}: canary process failed ({why}): {tail}"
        )
    data = json.loads(lines[-1])
    return CanaryResult(
        shapes={k: [int(d) for d in v] for k, v in data["shapes"].items()},
        finite=bool(data["finite"]),
        median_ms=float(data["median_ms"]),
    )


def _declared(outputs: Sequence[Any]) -> dict[str, list[int | None]]:
    shapes: dict[str, list[int | None]] = {}
    for o in outputs:
        if (
            isinstance(o, dict)
            and isinstance(o.get("name"), str)
            and isinstance(o.get("shape"), list)
        ):
            shapes[o["name"]] = [d if isinstance(d, int) and d > 0 else None for d in o["shape"]]
    return shapes


def check_canary(new: Path, installed: Path | None) -> CanaryResult:
    """The canary of ``new`` (and of ``installed`` for speed); raises :class:`BundleRejected`."""
    result = run_canary(new)
    if not result.finite:
        raise BundleRejected("canary_nan", f"{new.name}: the model returned NaN or inf")
    manifest = json.loads((new / "manifest.json").read_text(encoding="utf-8"))
    for name, want in _declared(manifest.get("outputs", [])).items():
        got = result.shapes.get(name)
        if (
            got is None
            or len(got) != len(want)
            or any(w is not None and g != w for g, w in zip(got, want, strict=True))
        ):
            raise BundleRejected(
                "canary_shape", f"{new.name}: output {name!r} has shape {got}, manifest says {want}"
            )
    if installed is not None:
        try:
            old = run_canary(installed)
        except BundleRejected:
            return result  # a broken installed version may be replaced by a working one
        limit = max(FLOOR_MS, old.median_ms) * SLOWER
        if result.median_ms > limit and not math.isclose(result.median_ms, limit):
            raise BundleRejected(
                "canary_slow",
                f"{new.name}: {result.median_ms:.2f} ms per run, the installed version "
                f"{old.median_ms:.2f} ms (limit {SLOWER:g}x)",
            )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m agent.models.canary")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args(argv)
    print(json.dumps(_probe(args.folder, max(1, args.runs))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
