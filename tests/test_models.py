"""Model store: every file verified against its manifest before load."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.errors import ModelError, ModelIntegrityError
from agent.models.store import ModelStore
from tests.conftest import ROOT, run_agent


def test_bundled_models_verify_and_load() -> None:
    store = ModelStore(ROOT / "models")
    names = store.names()
    assert {"blazeface_full", "blazeface_full_int8", "silero_vad"} <= set(names)
    for name in names:
        session, manifest = store.load(name)
        assert session.inputs and session.outputs
        assert manifest.licence in {"Apache-2.0", "MIT"}
        assert manifest.source


def test_tampered_model_rejected(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "models" / "silero_vad", tmp_path / "silero_vad")
    store = ModelStore(tmp_path)
    manifest = store.manifest("silero_vad")
    data = bytearray(manifest.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    manifest.path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="does not match"):
        store.load("silero_vad")


def test_missing_model_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="nope"):
        ModelStore(tmp_path).manifest("nope")


def test_cli_models_verify() -> None:
    res = run_agent("models", "verify", timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ok   blazeface_full_int8@" in res.stdout
