"""Model store: one folder per model with a manifest.json; bytes verified before load."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import ModelError, ModelIntegrityError
from agent.runtimes.base import RuntimeName, Session, open_session

_LOGGER = logging.getLogger(__name__)

MODELS_ENV = "EDGE_AGENT_MODELS"
_REQUIRED = ("name", "version", "file", "sha256", "runtime", "licence", "source")
_REDISTRIBUTABLE = {"Apache-2.0", "MIT", "BSD-2-Clause", "BSD-3-Clause", "CC0-1.0", "public-domain"}


def default_root() -> Path:
    env = os.environ.get(MODELS_ENV)
    if env:
        return Path(env)
    # Source checkout / editable install: <repo>/models beside the package.
    return Path(__file__).resolve().parents[2] / "models"


@dataclass(frozen=True, slots=True)
class Manifest:
    name: str
    version: str
    file: str
    sha256: str
    runtime: RuntimeName
    licence: str
    source: str
    folder: Path
    task: str = ""
    precision: str = ""
    preprocess: dict[str, Any] = field(default_factory=dict)
    postprocess: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.folder / self.file

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def read_manifest(folder: Path) -> Manifest:
    path = folder / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot read {path}: {err}") from err
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ModelError(f"{path}: missing {', '.join(missing)}")
    if data["runtime"] not in ("onnx", "tflite"):
        raise ModelError(f"{path}: runtime must be 'onnx' or 'tflite'")
    if data["licence"] not in _REDISTRIBUTABLE:
        raise ModelError(f"{path}: licence {data['licence']!r} is not redistributable")
    return Manifest(
        name=data["name"],
        version=str(data["version"]),
        file=data["file"],
        sha256=data["sha256"].lower(),
        runtime=data["runtime"],
        licence=data["licence"],
        source=data["source"],
        folder=folder,
        task=data.get("task", ""),
        precision=data.get("precision", ""),
        preprocess=dict(data.get("preprocess", {})),
        postprocess=dict(data.get("postprocess", {})),
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelStore:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_root()

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "manifest.json").is_file())

    def manifest(self, name: str) -> Manifest:
        folder = self.root / name
        if not (folder / "manifest.json").is_file():
            raise ModelError(f"model {name!r} not found in {self.root} (have: {self.names()})")
        return read_manifest(folder)

    def verify(self, manifest: Manifest) -> None:
        try:
            actual = sha256_of(manifest.path)
        except OSError as err:
            raise ModelIntegrityError(
                f"{manifest.ref}: cannot read {manifest.path}: {err}"
            ) from err
        if actual != manifest.sha256:
            raise ModelIntegrityError(
                f"{manifest.ref}: {manifest.file} sha256 {actual[:12]}… does not match the "
                f"manifest's {manifest.sha256[:12]}…; refusing to load"
            )

    def load(self, name: str, threads: int = 1) -> tuple[Session, Manifest]:
        """Verify, then open with the manifest's runtime."""
        manifest = self.manifest(name)
        self.verify(manifest)
        session = open_session(manifest.path, manifest.runtime, threads=threads)
        _LOGGER.info("model %s loaded (%s, %s)", manifest.ref, manifest.runtime, manifest.precision)
        return session, manifest
