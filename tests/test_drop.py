"""The drop folder (``models.drop_dir``): a bundle copied into it is installed by the running
agent through the same checks as an MQTT update, then filed under done/ or rejected/."""

from __future__ import annotations

import tarfile
import time
from pathlib import Path

from agent.models.bundle import generate_key, sign_bundle, write_key
from agent.models.drop import DropFolder
from agent.models.store import ModelStore
from agent.models.updates import ModelUpdater
from tests.conftest import SAMPLES
from tests.daemon import UPDATED, long_audio, start_agent, stop_agent, store_and_update
from tests.tiny_models import B, model_folder


def _wait(up: ModelUpdater, drop: DropFolder, polls: int = 3) -> None:
    for _ in range(polls):  # first poll sees it, second takes it once it looked the same
        drop.poll()
        up.join(60)


def _setup(tmp_path: Path) -> tuple[ModelStore, ModelUpdater, DropFolder, list[str], Path]:
    pair = generate_key()
    write_key(pair, tmp_path / "k")
    store = ModelStore(model_folder(tmp_path / "store", "tiny").parent)
    restarted: list[str] = []
    up = ModelUpdater(store, [pair.public], "box", lambda *a: None, restarted.append, model="tiny")
    return store, up, DropFolder(tmp_path / "drop", up, poll_s=0.5), restarted, tmp_path / "k"


def test_signed_folder_and_tar_are_installed_and_filed(tmp_path: Path) -> None:
    store, up, drop, restarted, key = _setup(tmp_path)
    folder = model_folder(tmp_path / "b2", "tiny", version="2.0", bias=B + 1.0)
    sign_bundle(folder, key, release=2)
    folder.rename(drop.root / "tiny-2")
    _wait(up, drop)
    assert restarted == ["tiny"]
    assert store.manifest("tiny").version == "2.0" and store.pending() is not None
    assert not (drop.root / "tiny-2").exists()
    assert "installed tiny@2.0" in (drop.root / "done" / "tiny-2.reason").read_text()
    # A second one waits while the first is on trial, and goes in after the commit.
    folder3 = model_folder(tmp_path / "b3", "tiny", version="3.0", bias=B + 2.0)
    sign_bundle(folder3, key, release=3)
    with tarfile.open(drop.root / "tiny-3.tar", "w") as tar:
        tar.add(folder3, arcname="tiny")
    _wait(up, drop)
    assert (drop.root / "tiny-3.tar").exists() and store.manifest("tiny").version == "2.0"
    store.commit()
    _wait(up, drop)
    assert store.manifest("tiny").version == "3.0"
    assert (drop.root / "done" / "tiny-3.tar").exists()


def test_unsigned_or_foreign_bundles_are_rejected_and_the_old_model_serves(
    tmp_path: Path,
) -> None:
    store, up, drop, restarted, _key = _setup(tmp_path)
    unsigned = model_folder(tmp_path / "u", "tiny", version="2.0", bias=B + 1.0)
    unsigned.rename(drop.root / "unsigned")
    foreign = model_folder(tmp_path / "o", "tiny", version="2.0", bias=B + 1.0)
    write_key(generate_key(), tmp_path / "other")
    sign_bundle(foreign, tmp_path / "other", release=2)  # a key the trust store lacks
    foreign.rename(drop.root / "foreign")
    (drop.root / "copying.tar.part").write_bytes(b"half")
    (drop.root / ".hidden").mkdir()
    for _ in range(6):
        _wait(up, drop, polls=1)
    assert restarted == [] and store.manifest("tiny").version == "1.0.0"
    reasons = {p.name: p.read_text() for p in (drop.root / "rejected").glob("*.reason")}
    assert set(reasons) == {"unsigned.reason", "foreign.reason"}, reasons
    assert "unsigned" in reasons["unsigned.reason"].lower()
    # Not bundles (a partial copy, a hidden folder) are left alone.
    assert (drop.root / "copying.tar.part").exists() and (drop.root / ".hidden").exists()


def test_daemon_installs_from_its_drop_folder_without_mqtt(tmp_path: Path) -> None:
    """The real `edge-agent run`, MQTT off: a signed command model copied into the drop folder
    is installed, the agent exits 75 for its restart, and the next start commits it."""
    pair = generate_key()
    write_key(pair, tmp_path / "k")
    store, bundle = store_and_update(tmp_path)
    sign_bundle(bundle, tmp_path / "k", release=1)
    drop = tmp_path / "drop"
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        f"device_id: box1\ncamera:\n  source: {SAMPLES / 'person_command' / 'video.avi'}\n"
        f"microphone:\n  source: {long_audio(120, tmp_path / 'long.wav')}\n"
        "mqtt:\n  enabled: false\n"
        f"models:\n  dir: {store}\n  health_window_s: 2\n  drop_dir: {drop}\n"
        f"  drop_poll_s: 0.5\n  trusted_keys:\n    - {pair.public_b64}\n"
    )
    proc = start_agent(cfg)
    try:
        deadline = time.monotonic() + 60
        while not drop.is_dir() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)  # the agent makes the folder when it starts
        bundle.rename(drop / "speech_command_int8")
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 75, err[-3000:]
        assert (drop / "done" / "speech_command_int8.reason").exists()
        proc = start_agent(cfg)  # systemd's Restart=on-failure
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and ModelStore(store).pending() is not None:
            time.sleep(0.5)
        assert ModelStore(store).pending() is None
        assert ModelStore(store).manifest("speech_command_int8").version == UPDATED
    finally:
        stop_agent(proc)
