"""Signed bundles (RELIABILITY U1, U2, U3, U14): every bad bundle is refused before anything of
it runs, the old model keeps serving, and no staging folder is left behind."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from agent.models.bundle import (
    BundleRejected,
    generate_key,
    key_id,
    parse_public_key,
    sign_bundle,
    verify_bundle,
    write_key,
)
from agent.models.store import ModelStore
from tests.conftest import run_agent
from tests.tiny_models import B, W, model_folder

X = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, bytes]:
    pair = generate_key()
    path = tmp_path / "keys" / "signing.key"
    write_key(pair, path)
    assert path.stat().st_mode & 0o777 == 0o600
    return path, pair.public


def _store(tmp_path: Path) -> ModelStore:
    return ModelStore(model_folder(tmp_path / "store", "tiny").parent)


def _bundle(
    tmp_path: Path, key_path: Path, release: int = 2, bias: float = 1.0, **kw: object
) -> Path:
    folder = model_folder(
        tmp_path / f"in-{release}-{bias}", "tiny", version=f"{release}.0", bias=B + bias
    )
    sign_bundle(folder, key_path, release=release, **kw)  # type: ignore[arg-type]
    return folder


def _serves_old(store: ModelStore) -> None:
    session, manifest = store.load("tiny")
    assert manifest.version == "1.0.0"
    np.testing.assert_allclose(session.run({"x": X})["y"], X @ W + B, rtol=1e-6)
    assert not [p for p in store.root.iterdir() if p.name.endswith(".incoming")]


def test_signed_bundle_installs(tmp_path: Path, key: tuple[Path, bytes]) -> None:
    store = _store(tmp_path)
    folder = _bundle(tmp_path, key[0])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["files"]["model.onnx"]["size"] == (folder / "model.onnx").stat().st_size
    assert json.loads((folder / "manifest.sig").read_text())["key_id"] == key_id(key[1])
    assert store.install(folder, trusted=[key[1]]).version == "2.0"
    assert store.release("tiny") == 2
    session, _ = store.load("tiny")
    np.testing.assert_allclose(session.run({"x": X})["y"], X @ W + B + 1.0, rtol=1e-6)


def _flip(path: Path, at: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "code"),
    [
        ("flip_model", "hash_mismatch"),
        ("truncate_model", "size_mismatch"),
        ("edit_manifest", "bad_signature"),
        ("flip_signature", "bad_signature"),
        ("drop_signature", "unsigned"),
        ("drop_model", "missing_file"),
        ("add_file", "unexpected_file"),
    ],
)
def test_tampered_bundles_are_refused(
    tmp_path: Path, key: tuple[Path, bytes], damage: str, code: str
) -> None:
    store = _store(tmp_path)
    folder = _bundle(tmp_path, key[0])
    model, manifest, sig = folder / "model.onnx", folder / "manifest.json", folder / "manifest.sig"
    if damage == "flip_model":
        _flip(model)
    elif damage == "truncate_model":
        model.write_bytes(model.read_bytes()[:-10])
    elif damage == "edit_manifest":
        data = json.loads(manifest.read_text())
        data["release"] = 99
        manifest.write_text(json.dumps(data, indent=2) + "\n")
    elif damage == "flip_signature":
        data = json.loads(sig.read_text())
        raw = bytearray(__import__("base64").b64decode(data["signature"]))
        raw[0] ^= 0x01
        data["signature"] = __import__("base64").b64encode(bytes(raw)).decode()
        sig.write_text(json.dumps(data))
    elif damage == "drop_signature":
        sig.unlink()
    elif damage == "drop_model":
        model.unlink()
    elif damage == "add_file":
        (folder / "extra.bin").write_bytes(b"x")
    with pytest.raises(BundleRejected) as info:
        store.install(folder, trusted=[key[1]])
    assert info.value.code == code
    _serves_old(store)


def test_wrong_key_and_empty_trust_store_are_refused(
    tmp_path: Path, key: tuple[Path, bytes]
) -> None:
    store = _store(tmp_path)
    folder = _bundle(tmp_path, key[0])
    other = generate_key().public
    with pytest.raises(BundleRejected) as info:
        store.install(folder, trusted=[other])
    assert info.value.code == "untrusted_key"
    with pytest.raises(BundleRejected) as info:
        store.install(folder, trusted=[])
    assert info.value.code == "empty_trust_store"
    _serves_old(store)


def test_older_and_same_release_are_refused(tmp_path: Path, key: tuple[Path, bytes]) -> None:
    store = _store(tmp_path)
    assert store.install(_bundle(tmp_path, key[0], release=5), trusted=[key[1]]).version == "5.0"
    for release in (5, 4):
        with pytest.raises(BundleRejected) as info:
            store.install(_bundle(tmp_path, key[0], release=release, bias=2.0), trusted=[key[1]])
        assert info.value.code == "version_not_newer"
        assert store.release("tiny") == 5


def test_expired_and_too_new_for_this_agent_are_refused(
    tmp_path: Path, key: tuple[Path, bytes]
) -> None:
    store = _store(tmp_path)
    past = datetime.now(UTC) - timedelta(days=1)
    with pytest.raises(BundleRejected) as info:
        store.install(_bundle(tmp_path, key[0], expires=past), trusted=[key[1]])
    assert info.value.code == "expired"
    with pytest.raises(BundleRejected) as info:
        store.install(
            _bundle(tmp_path, key[0], release=3, min_agent_version="99.0"), trusted=[key[1]]
        )
    assert info.value.code == "incompatible_agent"
    _serves_old(store)
    future = datetime.now(UTC) + timedelta(days=30)
    ok = _bundle(tmp_path, key[0], release=4, expires=future, min_agent_version="0.1.0")
    assert store.install(ok, trusted=[key[1]]).version == "4.0"


def test_other_inputs_are_refused_before_activation(
    tmp_path: Path, key: tuple[Path, bytes]
) -> None:
    store = _store(tmp_path)
    folder = model_folder(tmp_path / "tfl", "tiny", kind="tflite", version="2.0")
    sign_bundle(folder, key[0], release=2)
    with pytest.raises(Exception, match="differ from the installed"):
        store.install(folder, trusted=[key[1]])
    _serves_old(store)


def test_verify_reads_nothing_before_the_signature(tmp_path: Path, key: tuple[Path, bytes]) -> None:
    """An unsigned folder whose manifest is garbage is refused as unsigned, not parsed."""
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(BundleRejected) as info:
        verify_bundle(folder, [key[1]], installed_release=None, agent_version="0.1.0")
    assert info.value.code == "unsigned"


def test_trust_store_entries_are_checked() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        parse_public_key("AAAA")
    with pytest.raises(ValueError, match="base64"):
        parse_public_key("not base64!")


def test_cli_keygen_sign_install(tmp_path: Path) -> None:
    root = _store(tmp_path).root
    keyfile = tmp_path / "k" / "signing.key"
    res = run_agent("models", "keygen", "--out", str(keyfile))
    assert res.returncode == 0, res.stderr
    public = res.stdout.strip().splitlines()[-1].split("- ", 1)[1]
    assert len(parse_public_key(public)) == 32
    again = run_agent("models", "keygen", "--out", str(keyfile))
    assert again.returncode == 1 and "not overwriting" in again.stderr
    folder = model_folder(tmp_path / "new", "tiny", version="2.0", bias=B + 1.0)
    res = run_agent("models", "sign", str(folder), "--key", str(keyfile), "--expires-days", "30")
    assert res.returncode == 0 and "release 1" in res.stdout, res.stderr
    empty = tmp_path / "empty.yaml"
    empty.write_text("mqtt:\n  enabled: false\n")
    res = run_agent("models", "install", str(folder), "--dir", str(root), "-c", str(empty))
    assert res.returncode == 1 and "empty_trust_store" in res.stderr
    assert "Traceback" not in res.stderr
    trusting = tmp_path / "trust.yaml"
    trusting.write_text(f"mqtt:\n  enabled: false\nmodels:\n  trusted_keys:\n    - {public}\n")
    res = run_agent("models", "install", str(folder), "--dir", str(root), "-c", str(trusting))
    assert res.returncode == 0, res.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  trusted_keys:\n    - AAAA\n")
    res = run_agent("check-config", str(bad))
    assert res.returncode == 78 and "trusted_keys" in res.stderr


# ----------------------------------------------------------------- kill -9 during the switch


def _kill_at(step: str, args: list[str], tmp_path: Path) -> int:
    import os
    import subprocess
    import sys

    env = {**os.environ, "EDGE_AGENT_FAILPOINT": step}
    proc = subprocess.run(
        [sys.executable, "-m", "agent", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    return proc.returncode


def _state(root: Path) -> tuple[str, list[str]]:
    store = ModelStore(root)  # a restart: recovery runs here
    session, manifest = store.load("tiny")
    y = session.run({"x": X})["y"]
    bias = float(np.round((y - X @ W - B).mean(), 3))
    assert {"1.0.0": 0.0, "2.0": 1.0, "3.0": 2.0}[manifest.version] == bias  # bytes match
    leftovers = sorted(p.name for p in root.iterdir() if p.name.startswith("."))
    return manifest.version, leftovers


@pytest.mark.parametrize(
    ("step", "after"),
    [
        ("staged", "old"),
        ("trashed", "old"),
        ("set_aside", "new"),  # the staged copy verifies: the install is finished
        ("activated", "new"),
    ],
)
def test_kill_9_at_every_step_of_an_install_leaves_old_or_new(
    tmp_path: Path, key: tuple[Path, bytes], step: str, after: str
) -> None:
    """RELIABILITY U8: after the kill and one restart exactly the old or the new version
    serves, and a second restart changes nothing."""
    store = _store(tmp_path)
    cfg = tmp_path / "trust.yaml"
    public = __import__("base64").b64encode(key[1]).decode()
    cfg.write_text(f"models:\n  trusted_keys:\n    - {public}\n")
    # A first update, so that a previous version exists (the trash step needs one).
    store.install(_bundle(tmp_path, key[0], release=2, bias=1.0), trusted=[key[1]])
    root = store.root
    new = _bundle(tmp_path, key[0], release=3, bias=2.0)
    rc = _kill_at(
        step, ["models", "install", str(new), "--dir", str(root), "-c", str(cfg)], tmp_path
    )
    assert rc == -9, rc
    version, leftovers = _state(root)
    assert version == {"old": "2.0", "new": "3.0"}[after]
    assert all(name in (".lock", ".tiny.previous") for name in leftovers), leftovers
    assert _state(root) == (version, leftovers)  # converged: nothing left to do


@pytest.mark.parametrize("step", ["rollback_aside", "rollback_active"])
def test_kill_9_during_a_rollback_leaves_one_of_the_two(
    tmp_path: Path, key: tuple[Path, bytes], step: str
) -> None:
    store = _store(tmp_path)
    store.install(_bundle(tmp_path, key[0], release=2, bias=1.0), trusted=[key[1]])
    rc = _kill_at(step, ["models", "rollback", "tiny", "--dir", str(store.root)], tmp_path)
    assert rc == -9
    version, leftovers = _state(store.root)
    assert version in ("1.0.0", "2.0")
    assert ".tiny.previous" in leftovers  # the other one is still there to roll back to
    assert _state(store.root) == (version, leftovers)


# ----------------------------------------------------------------- the canary (U10)


def _onnx(path: Path, nodes: list[object], inits: list[object]) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        "canary",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _slow(folder: Path) -> None:
    """Same inputs and outputs as the tiny model, ~600 M multiply-adds in between."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Reshape", ["x", "s4"], ["x4"]),
        helper.make_node("Expand", ["x4", "big"], ["img"]),
        helper.make_node("Conv", ["img", "k", "kb"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("ReduceMean", ["c"], ["m"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["m", "w"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([1, 4, 1, 1], np.int64), "s4"),
        numpy_helper.from_array(np.array([1, 4, 512, 512], np.int64), "big"),
        numpy_helper.from_array(rng.normal(0, 0.1, (64, 4, 3, 3)).astype(np.float32), "k"),
        numpy_helper.from_array(np.zeros(64, np.float32), "kb"),
        numpy_helper.from_array(rng.normal(0, 0.1, (64, 3)).astype(np.float32), "w"),
    ]
    _onnx(folder / "model.onnx", nodes, inits)


@pytest.mark.parametrize("bad", ["nan", "shape", "slow", "fails"])
def test_canary_refuses_broken_models(tmp_path: Path, bad: str) -> None:
    from onnx import helper, numpy_helper

    from tests.tiny_models import write_manifest

    store = _store(tmp_path)
    folder = tmp_path / f"bad-{bad}" / "tiny"
    folder.mkdir(parents=True)
    extra: dict[str, object] = {}
    if bad == "nan":
        model_folder(folder.parent, "tiny", version="2.0", bias=np.array([np.nan, 0, 0]))
    elif bad == "shape":
        model_folder(folder.parent, "tiny", version="2.0")
        extra["outputs"] = [{"name": "y", "shape": [1, 5], "dtype": "float32"}]
    elif bad == "slow":
        _slow(folder)
    else:  # a graph that cannot run: 4 values into 5 rows
        nodes = [helper.make_node("Reshape", ["x", "s"], ["y"])]
        _onnx(folder / "model.onnx", nodes, [numpy_helper.from_array(np.array([5, -1]), "s")])
    write_manifest(folder, "model.onnx", name="tiny", version="2.0", **extra)
    with pytest.raises(BundleRejected) as info:
        store.install(folder)
    want = {"nan": "canary_nan", "shape": "canary_shape", "slow": "canary_slow"}
    assert info.value.code == want.get(bad, "canary_failed"), info.value
    _serves_old(store)


def test_canary_runs_in_its_own_process(tmp_path: Path) -> None:
    """A runtime that dies (here: the canary process is killed) takes only the canary down."""
    import os

    from agent.models.canary import run_canary

    folder = model_folder(tmp_path / "x", "tiny")
    os.environ["EDGE_AGENT_FAILPOINT"] = "never"
    try:
        ok = run_canary(folder)
    finally:
        del os.environ["EDGE_AGENT_FAILPOINT"]
    assert ok.finite and ok.shapes == {"y": [1, 3]}
    (folder / "model.onnx").write_bytes(b"\x00not a model")
    with pytest.raises(BundleRejected) as info:
        run_canary(folder)
    assert info.value.code == "canary_failed" and os.getpid() > 0  # we are still here
