"""Model updates over MQTT (issue 10): request → download → verify → install → restart →
health window → commit, or roll back after repeated failed starts. Real store, real HTTP
server on 127.0.0.1, real Mosquitto and the real daemon for the end-to-end run."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config.mqtt import MqttConfig
from agent.models.bundle import generate_key, sign_bundle, write_key
from agent.models.store import ModelStore
from agent.models.updates import BadRequest, ModelUpdater, parse_request
from agent.publish.broker import LocalBroker
from agent.publish.mqtt import MqttPublisher
from agent.publish.subscriber import Collector
from tests.conftest import SAMPLES
from tests.daemon import (
    SHIPPED,
    UPDATED,
    FileServer,
    long_audio,
    serve_files,
    start_agent,
    stop_agent,
    store_and_update,
    tar_folder,
)
from tests.tiny_models import B, model_folder


@pytest.fixture
def http() -> Iterator[FileServer]:
    with serve_files() as server:
        yield server


def _serve_bundle(
    files: dict[str, bytes],
    tmp_path: Path,
    key: Path | None,
    path: str,
    name: str = "tiny",
    release: int = 2,
) -> tuple[str, str]:
    folder = model_folder(
        tmp_path / f"b{release}{path.strip('/')}", name, version=f"{release}.0", bias=B + 1.0
    )
    if key is not None:
        sign_bundle(folder, key, release=release)
    body = tar_folder(folder)
    files[path] = body
    return path, hashlib.sha256(body).hexdigest()


def test_requests_are_checked() -> None:
    ok = parse_request(b'{"url": "https://x/b.tar", "sha256": "' + b"a" * 64 + b'"}')
    assert ok.install and ok.url == "https://x/b.tar"
    for raw, reason in [
        (b"x" * 5000, "too_large"),
        (b"[1]", "not_json"),
        (b'{"url": "file:///etc/passwd", "sha256": "' + b"a" * 64 + b'"}', "bad_url"),
        (b'{"url": "http://x/b.tar", "sha256": "abc"}', "bad_sha256"),
        (
            b'{"url": "http://x/b.tar", "sha256": "' + b"a" * 64 + b'", "install": "yes"}',
            "wrong_type",
        ),
    ]:
        with pytest.raises(BadRequest) as info:
            parse_request(raw)
        assert info.value.reason == reason


class _Sent:
    def __init__(self) -> None:
        self.messages: list[tuple[str, Any]] = []

    def __call__(self, topic: str, payload: str | bytes, qos: int, retain: bool) -> None:
        self.messages.append((topic, json.loads(payload)))

    def states(self) -> list[str]:
        return [p["state"] for t, p in self.messages if t.endswith("/state/model_update")]

    def errors(self) -> list[str]:
        return [p["error"] for t, p in self.messages if t.endswith("/error")]


def _updater(tmp_path: Path, trusted: list[bytes]) -> tuple[ModelUpdater, _Sent, list[str]]:
    store = ModelStore(model_folder(tmp_path / "store", "tiny").parent)
    sent, restarted = _Sent(), []
    up = ModelUpdater(store, trusted, "edge-agent/box", sent, restarted.append, model="tiny")
    return up, sent, restarted


def test_update_installs_marks_pending_and_asks_for_a_restart(
    tmp_path: Path, http: FileServer
) -> None:
    pair = generate_key()
    write_key(pair, tmp_path / "k")
    up, sent, restarted = _updater(tmp_path, [pair.public])
    path, sha = _serve_bundle(http.files, tmp_path, tmp_path / "k", "/tiny.tar")
    up.on_request(
        "edge-agent/box/set/model_update",
        json.dumps(
            {"url": http.url + path, "sha256": sha, "name": "tiny", "version": "2.0"}
        ).encode(),
    )
    up.join(60)
    assert restarted == ["tiny"]
    assert sent.states()[0] == "downloading" and sent.states()[-1] == "restarting"
    store = ModelStore(tmp_path / "store")
    assert store.manifest("tiny").version == "2.0" and store.pending() == {
        "name": "tiny",
        "starts": 0,
    }


@pytest.mark.parametrize("case", ["unsigned", "wrong_hash", "missing"])
def test_bad_updates_are_refused_and_change_nothing(
    tmp_path: Path, http: FileServer, case: str
) -> None:
    pair = generate_key()
    write_key(pair, tmp_path / "k")
    up, sent, restarted = _updater(tmp_path, [pair.public])
    path, sha = _serve_bundle(
        http.files, tmp_path, None if case == "unsigned" else tmp_path / "k", "/t.tar"
    )
    if case == "wrong_hash":
        sha = "0" * 64
    if case == "missing":
        path = "/nothing.tar"
    up.on_request(
        "x/set/model_update", json.dumps({"url": http.url + path, "sha256": sha}).encode()
    )
    up.join(60)
    assert restarted == [] and sent.states()[-1] == "failed"
    want = {"unsigned": "unsigned", "wrong_hash": "hash_mismatch", "missing": "download_failed"}
    assert sent.errors() == [want[case]]
    store = ModelStore(tmp_path / "store")
    assert store.manifest("tiny").version == "1.0.0" and store.pending() is None


def test_announce_then_install_from_home_assistant_and_one_at_a_time(
    tmp_path: Path, http: FileServer
) -> None:
    pair = generate_key()
    write_key(pair, tmp_path / "k")
    up, sent, restarted = _updater(tmp_path, [pair.public])
    path, sha = _serve_bundle(http.files, tmp_path, tmp_path / "k", "/a.tar")
    req = {
        "url": http.url + path,
        "sha256": sha,
        "name": "tiny",
        "version": "2.0",
        "install": False,
    }
    up.on_request("x/set/model_update", json.dumps(req).encode())
    assert sent.messages[-1][1]["state"] == "available"
    assert sent.messages[-1][1]["installed_version"] == "1.0.0"
    assert sent.messages[-1][1]["latest_version"] == "2.0"
    up._busy.acquire()  # an update already running
    up.on_install("x/set/model_update_install", b"install")
    assert sent.errors() == ["busy"]
    up._busy.release()
    up.on_install("x/set/model_update_install", b"install")
    up.join(60)
    assert restarted == ["tiny"]


def test_pending_update_commits_or_rolls_back_after_failed_starts(tmp_path: Path) -> None:
    store = ModelStore(model_folder(tmp_path / "store", "tiny").parent)
    store.install(model_folder(tmp_path / "new", "tiny", version="2.0", bias=B + 1.0))
    store.mark_pending("tiny")
    assert store.start_attempt(2) is None and store.start_attempt(2) is None
    assert store.start_attempt(2) == "tiny"  # a third start without a healthy run
    assert store.manifest("tiny").version == "1.0.0" and store.pending() is None
    store.install(model_folder(tmp_path / "newer", "tiny", version="3.0", bias=B + 2.0))
    store.mark_pending("tiny")
    assert store.start_attempt(2) is None
    assert store.commit() == "tiny" and store.pending() is None
    assert store.start_attempt(2) is None and store.manifest("tiny").version == "3.0"


# ----------------------------------------------------------------- the real daemon


def test_daemon_updates_over_mqtt_restarts_and_commits(
    broker: LocalBroker, tmp_path: Path, http: FileServer
) -> None:
    """The command model of a running agent, updated from MQTT: the agent installs it, exits
    75 to be restarted, runs healthy through the window and commits; Home Assistant's update
    entity is announced in discovery."""
    pair = generate_key()
    write_key(pair, tmp_path / "k")
    store, bundle = store_and_update(tmp_path)
    sign_bundle(bundle, tmp_path / "k", release=1)
    http.files["/cmd.tar"] = tar_folder(bundle)
    sha = hashlib.sha256(http.files["/cmd.tar"]).hexdigest()
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        f"device_id: box1\ncamera:\n  source: {SAMPLES / 'person_command' / 'video.avi'}\n"
        f"microphone:\n  source: {long_audio(120, tmp_path / 'long.wav')}\n"
        f"mqtt:\n  host: {broker.host}\n  port: {broker.port}\n"
        f"models:\n  dir: {store}\n  health_window_s: 2\n"
        f"  trusted_keys:\n    - {pair.public_b64}\n"
    )
    sub = Collector(broker.host, broker.port, "#").start()
    proc = start_agent(cfg)
    try:
        sub.wait_for("edge-agent/box1/status", timeout=60)
        configs = sub.wait_for("homeassistant/update/box1/model_update/config", timeout=30)
        assert configs[0].json()["command_topic"] == "edge-agent/box1/set/model_update_install"
        req = {
            "url": f"{http.url}/cmd.tar",
            "sha256": sha,
            "name": "speech_command_int8",
            "version": UPDATED,
        }
        sender = MqttPublisher(MqttConfig(host=broker.host, port=broker.port), "sender")
        sender.start()
        sender.publish_raw("edge-agent/box1/set/model_update", json.dumps(req))
        assert sender.flush(20)
        sender.close(timeout=5)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 75, err[-3000:]
        states = [m.json()["state"] for m in sub.on("edge-agent/box1/state/model_update")]
        # Retained states are coalesced per topic in the outbox: the last one always arrives.
        assert states[-1] == "restarting", states
        assert ModelStore(store).pending() is not None
        proc = start_agent(cfg)  # systemd's Restart=on-failure
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and ModelStore(store).pending() is not None:
            time.sleep(0.5)
        assert ModelStore(store).pending() is None
        assert ModelStore(store).manifest("speech_command_int8").version == UPDATED
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            last = [m.json() for m in sub.on("edge-agent/box1/state/model_update")][-1]
            if last["state"] == "committed":
                break
            time.sleep(0.2)
        assert last["state"] == "committed" and last["installed_version"] == UPDATED, last
    finally:
        stop_agent(proc)
        sub.stop()


def test_daemon_rolls_back_an_update_that_never_runs_healthy(
    broker: LocalBroker, tmp_path: Path
) -> None:
    """An installed update whose agent is killed (-9) before every health window ends:
    after max_failed_starts such starts, the next start rolls it back before loading it."""
    import signal

    store, bundle = store_and_update(tmp_path)
    ModelStore(store).install(bundle)
    ModelStore(store).mark_pending("speech_command_int8")
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        f"device_id: box2\ncamera:\n  source: {SAMPLES / 'person_command' / 'video.avi'}\n"
        f"microphone:\n  source: {long_audio(120, tmp_path / 'long.wav')}\n"
        f"mqtt:\n  host: {broker.host}\n  port: {broker.port}\n"
        f"models:\n  dir: {store}\n  health_window_s: 600\n  max_failed_starts: 2\n"
    )
    sub = Collector(broker.host, broker.port, "edge-agent/box2/#").start()
    try:
        for start in (1, 2):
            proc = start_agent(cfg)
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    online = [m for m in sub.on("edge-agent/box2/status") if m.payload == b"online"]
                    if len(online) >= start:
                        break
                    time.sleep(0.1)
                assert ModelStore(store).pending() == {
                    "name": "speech_command_int8",
                    "starts": start,
                }
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.communicate(timeout=30)
        proc = start_agent(cfg)
        try:
            deadline = time.monotonic() + 60
            last: dict[str, Any] = {}
            while time.monotonic() < deadline and last.get("state") != "rolled_back":
                got = sub.on("edge-agent/box2/state/model_update")
                last = got[-1].json() if got else {}
                time.sleep(0.2)
            assert last.get("state") == "rolled_back", last
            assert last["installed_version"] == SHIPPED
        finally:
            err = stop_agent(proc)
        assert "rolling back" in err
        assert ModelStore(store).manifest("speech_command_int8").version == SHIPPED
        assert ModelStore(store).pending() is None
    finally:
        sub.stop()


def test_failed_starts_without_a_previous_version_keep_the_installed_one(tmp_path: Path) -> None:
    """A first install has nothing to roll back to: the agent must still start."""
    store = ModelStore(tmp_path / "store")
    store.install(model_folder(tmp_path / "new", "tiny", version="2.0"))
    store.mark_pending("tiny")
    assert store.start_attempt(1) is None
    assert store.start_attempt(1) is None  # gives up on the rollback, no crash
    assert store.pending() is None and store.manifest("tiny").version == "2.0"


def test_no_update_without_trust_or_while_the_last_one_is_on_trial(tmp_path: Path) -> None:
    up, sent, _ = _updater(tmp_path, [])
    req = {"url": "http://127.0.0.1:9/never.tar", "sha256": "0" * 64}
    up.on_request("x/set/model_update", json.dumps(req).encode())
    assert sent.errors() == ["empty_trust_store"] and up._thread is None  # nothing fetched
    pair = generate_key()
    up2, sent2, _ = _updater(tmp_path / "b", [pair.public])
    ModelStore(tmp_path / "b" / "store").mark_pending("tiny")
    up2.on_request("x/set/model_update", json.dumps(req).encode())
    assert sent2.errors() == ["busy"] and up2._thread is None


def test_an_update_that_breaks_the_start_is_rolled_back_at_once(
    broker: LocalBroker, tmp_path: Path
) -> None:
    """A signed command model whose labels no longer match the config: the start fails with a
    config error (which systemd would never restart); with the update pending, the agent
    rolls it back and exits 1 instead, and the next start runs on the old model."""
    store, bundle = store_and_update(tmp_path)
    data = json.loads((bundle / "manifest.json").read_text())
    data["postprocess"]["labels"][1] = "open the pod bay doors"
    (bundle / "manifest.json").write_text(json.dumps(data, indent=2))
    ModelStore(store).install(bundle)
    ModelStore(store).mark_pending("speech_command_int8")
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        f"device_id: box5\ncamera:\n  source: {SAMPLES / 'person_command' / 'video.avi'}\n"
        f"microphone:\n  source: {SAMPLES / 'person_command' / 'audio.wav'}\n"
        f"mqtt:\n  enabled: false\nmodels:\n  dir: {store}\n"
    )
    proc = start_agent(cfg)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err[-2000:]
    assert "rolled back" in err
    assert ModelStore(store).manifest("speech_command_int8").version == SHIPPED
    assert ModelStore(store).pending() is None
