"""Model store: every file verified against its manifest before load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from agent.errors import ModelError, ModelIntegrityError
from agent.models.store import ModelStore, read_manifest
from tests.conftest import ROOT, run_agent
from tests.tiny_models import B, W, model_folder, write_manifest


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


# -- install / activate: a bad new version never replaces a working one ----------------------

X = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)


def new_version(tmp_path: Path, name: str, version: str, bias: float) -> Path:
    """A folder with a new version of ``name`` whose output differs by ``bias``."""
    return model_folder(tmp_path / f"incoming-{version}", name, version=version, bias=B + bias)


def test_non_redistributable_licence_rejected(tmp_path: Path) -> None:
    folder = model_folder(tmp_path, "tiny")
    write_manifest(folder, "model.onnx", name="tiny", licence="CC-BY-NC-SA-4.0")
    with pytest.raises(ModelError, match="not redistributable"):
        read_manifest(folder)


def test_install_keeps_store_unchanged_on_failure_and_rolls_back(tmp_path: Path) -> None:
    store = ModelStore(model_folder(tmp_path / "store", "tiny").parent)
    bad = new_version(tmp_path, "tiny", "2.0.0", bias=1.0)
    (bad / "model.onnx").write_bytes((bad / "model.onnx").read_bytes() + b"\0")
    with pytest.raises(ModelIntegrityError):
        store.install(bad)
    assert store.manifest("tiny").version == "1.0.0" and store.previous("tiny") is None
    assert store.names() == ["tiny"]
    good = new_version(tmp_path, "tiny", "3.0.0", bias=2.0)
    assert store.install(good).ref == "tiny@3.0.0"
    session, manifest = store.load("tiny")
    assert manifest.ref == "tiny@3.0.0"
    np.testing.assert_allclose(session.run({"x": X})["y"], X @ W + B + 2.0, rtol=1e-6)
    assert store.names() == ["tiny"]  # the kept previous version is not a model of its own
    assert store.rollback("tiny").ref == "tiny@1.0.0"
    assert store.load("tiny")[1].ref == "tiny@1.0.0"
    assert store.rollback("tiny").ref == "tiny@3.0.0"  # and forward again


def test_install_refuses_changed_io_unless_forced(tmp_path: Path) -> None:
    store = ModelStore(model_folder(tmp_path / "store", "tiny").parent)
    tfl = model_folder(tmp_path / "y", "tiny", kind="tflite", version="2.0.0")
    with pytest.raises(ModelError, match="--force"):
        store.install(tfl)
    assert store.manifest("tiny").version == "1.0.0"
    assert store.install(tfl, force=True).runtime == "tflite"


def test_cli_models_install_and_rollback(tmp_path: Path) -> None:
    from agent.models.bundle import generate_key, sign_bundle, write_key

    pair = generate_key()
    write_key(pair, tmp_path / "signing.key")
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"models:\n  trusted_keys:\n    - {pair.public_b64}\n")
    root = model_folder(tmp_path / "store", "tiny").parent
    bad = new_version(tmp_path, "tiny", "2.0.0", bias=1.0)
    write_manifest(bad, "model.onnx", name="tiny", version="2.0.0", sha256="ab" * 32)
    sign_bundle(bad, tmp_path / "signing.key", release=2)
    res = run_agent("models", "install", str(bad), "--dir", str(root), "-c", str(cfg), timeout=120)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "tiny@2.0.0" in res.stderr and "does not match" in res.stderr
    good = new_version(tmp_path, "tiny", "3.0.0", bias=1.0)
    sign_bundle(good, tmp_path / "signing.key", release=3)
    res = run_agent("models", "install", str(good), "--dir", str(root), "-c", str(cfg), timeout=120)
    assert res.returncode == 0, res.stderr
    listed = run_agent("models", "list", "--json", "--dir", str(root), timeout=120)
    assert [m["version"] for m in json.loads(listed.stdout)] == ["3.0.0"]
    res = run_agent("models", "rollback", "tiny", "--dir", str(root), timeout=120)
    assert res.returncode == 0 and "tiny@1.0.0" in res.stdout


def test_manifest_warmup_hints_reach_the_session(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "models" / "silero_vad", tmp_path / "silero_vad")
    store = ModelStore(tmp_path)
    path = tmp_path / "silero_vad" / "manifest.json"
    data = json.loads(path.read_text())
    data.pop("warmup", None)
    path.write_text(json.dumps(data))
    session, _ = store.load("silero_vad")
    assert getattr(session, "warmup_ms", "x") is None  # open shapes: no guessing
    data["warmup"] = {
        "input": {"shape": [1, 576]},
        "state": {"shape": [2, 1, 128]},
        "sr": {"value": 16000},
    }
    path.write_text(json.dumps(data))
    session, _ = store.load("silero_vad")
    assert getattr(session, "warmup_ms", None) is not None


def test_seed_installs_bundled_models_once_and_keeps_updates(tmp_path: Path) -> None:
    """First start of an installed agent: the models that came with it go into its store."""
    store = ModelStore(tmp_path / "state" / "models")
    copied = store.seed(ROOT / "models")
    shipped = sorted(p.name for p in (ROOT / "models").iterdir() if (p / "manifest.json").is_file())
    assert copied == shipped and store.names() == shipped
    for name in store.names():
        store.verify(store.manifest(name))
    path = store.root / "silero_vad_int8" / "manifest.json"
    data = json.loads(path.read_text())
    data["version"] = "9.9.9"  # stands for an update installed since
    path.write_text(json.dumps(data))
    assert store.seed(ROOT / "models") == []
    assert store.manifest("silero_vad_int8").version == "9.9.9"
    assert ModelStore(ROOT / "models").seed(ROOT / "models") == []  # never onto itself
