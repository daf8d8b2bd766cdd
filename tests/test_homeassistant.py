"""A real Home Assistant shows the agent's update entity and installs a newer bundle from it.

Home Assistant 2024.1.6 (the last line that runs on Python 3.11) runs as a user runs it: in
its own virtual environment, installed from PyPI on first use and cached under
``~/.cache/edge-agent/hass-<version>`` (a few minutes once; then reused). Everything else is
real and on 127.0.0.1: Mosquitto, the ``edge-agent run`` daemon with a trust store, an HTTP
server with a newer signed command model, and ``hass`` with an MQTT config entry.

Home Assistant is driven without an auth token through two automations in its
configuration.yaml: one publishes every update entity's state and attributes to
``TEST/update_entities`` (on each change, and on request), the other calls the
``update.install`` service, which is what the entity's install button does, for the entity
named on ``TEST/install``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config.mqtt import MqttConfig
from agent.models.bundle import generate_key, sign_bundle, write_key
from agent.models.store import ModelStore
from agent.publish.broker import LocalBroker, free_port
from agent.publish.mqtt import MqttPublisher
from agent.publish.subscriber import Collector
from tests.conftest import SAMPLES
from tests.daemon import (
    SHIPPED,
    UPDATED,
    long_audio,
    serve_files,
    start_agent,
    stop_agent,
    store_and_update,
    tar_folder,
)

HASS_VERSION = "2024.1.6"
# homeassistant itself, then the requirements of the integrations this test loads (mqtt, and
# file_upload that mqtt depends on): hass runs with --skip-pip and installs nothing itself.
HASS_REQUIREMENTS = (f"homeassistant=={HASS_VERSION}", "paho-mqtt==1.6.1", "janus==1.0.0")
TEST = "edge-agent-test/hass"
ENTITY = "update.edge_agent_box1_model_update"
UNIQUE_ID = "edge_agent_box1_model_update"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.realhub,
    # Covers the first run's install from PyPI (a few minutes) as well as the test itself.
    pytest.mark.timeout(1800),
]


def _clean_env() -> dict[str, str]:
    """This process's environment without what points Python at the agent's sources."""
    drop = {"PYTHONPATH", "PYTHONWARNINGS", "PYTHONHOME", "VIRTUAL_ENV"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def install_hass(version: str = HASS_VERSION, timeout: float = 1500) -> Path:
    """Home Assistant ``version`` in its own virtual environment; returns the venv.

    Cached at ``$XDG_CACHE_HOME/edge-agent/hass-<version>`` (default ``~/.cache``), which is a
    symlink to the folder it was built in: a venv cannot move (its scripts name their own
    path), so it is built under a unique name and published by an atomic rename of the link.
    A lock file keeps two test runs from building it at once; a venv built for other
    requirements (its ``edge-agent-requirements.txt``) is replaced.
    """
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edge-agent"
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / f"hass-{version}"
    with (cache / f"hass-{version}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        wanted = "\n".join(HASS_REQUIREMENTS) + "\n"
        marker = final / "edge-agent-requirements.txt"
        if marker.is_file() and marker.read_text() == wanted and (final / "bin" / "hass").is_file():
            return final
        old = final.resolve() if final.is_symlink() else None
        build = Path(tempfile.mkdtemp(prefix=f"hass-{version}-", dir=cache))
        try:
            env = _clean_env()
            subprocess.run(
                [sys.executable, "-m", "venv", str(build)],
                check=True,
                timeout=300,
                env=env,
                capture_output=True,
                stdin=subprocess.DEVNULL,
            )
            pip = [str(build / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
            res = subprocess.run(
                [*pip, "install", "--no-input", "--progress-bar", "off", *HASS_REQUIREMENTS],
                timeout=timeout,
                env=env,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                check=False,
            )
            if res.returncode != 0:
                pytest.fail(
                    f"Home Assistant {version} could not be installed from PyPI into {build} "
                    f"(no network or no package index?); pip said:\n{res.stderr[-3000:]}",
                    pytrace=False,
                )
            (build / "edge-agent-requirements.txt").write_text(wanted)
            build.chmod(0o755)
            link = cache / f".hass-{version}-{uuid.uuid4().hex}.link"
            link.symlink_to(build.name)
            if final.is_dir() and not final.is_symlink():
                shutil.rmtree(final)  # not ours: a plain folder left by hand
            link.replace(final)  # atomic: the cache has the venv or it has nothing
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
        if old is not None and old.parent == cache and old != build:
            shutil.rmtree(old, ignore_errors=True)
    return final


@pytest.fixture(scope="module")
def hass_venv() -> Path:
    return install_hass()


# ----------------------------------------------------------------- Home Assistant


def _hass_config(directory: Path, broker: LocalBroker) -> None:
    """configuration.yaml, and the MQTT config entry the UI would have written."""
    report = (
        "{% set ns = namespace(out=[]) %}{% for s in states.update %}"
        "{% set ns.out = ns.out + [dict(entity_id=s.entity_id, state=s.state,"
        " attributes=dict(s.attributes))] %}{% endfor %}{{ ns.out | tojson }}"
    )
    config = {
        "homeassistant": {
            "name": "edge-agent test",
            "latitude": 0,
            "longitude": 0,
            "elevation": 0,
            "unit_system": "metric",
            "time_zone": "UTC",
            "currency": "EUR",
            "country": "DE",
        },
        # mqtt depends on http: keep it on loopback and on a free port.
        "http": {"server_host": ["127.0.0.1"], "server_port": free_port()},
        "logger": {"default": "warning"},
        "automation": [
            {
                "id": "report_update_entities",
                "alias": "Report update entities",
                "mode": "queued",
                "max": 100,
                "trigger": [
                    {"platform": "event", "event_type": "state_changed"},
                    {"platform": "mqtt", "topic": f"{TEST}/report"},
                ],
                "condition": [
                    {
                        "condition": "template",
                        "value_template": "{{ trigger.platform == 'mqtt' or"
                        " trigger.event.data.entity_id.startswith('update.') }}",
                    }
                ],
                "action": [
                    {
                        "service": "mqtt.publish",
                        "data": {"topic": f"{TEST}/update_entities", "payload_template": report},
                    }
                ],
            },
            {
                # What the entity's install button does: the update.install service.
                "id": "press_install",
                "alias": "Press install",
                "mode": "queued",
                "trigger": [{"platform": "mqtt", "topic": f"{TEST}/install"}],
                "action": [
                    {"service": "update.install", "target": {"entity_id": "{{ trigger.payload }}"}}
                ],
            },
        ],
    }
    # JSON is YAML: no YAML writer needed for Home Assistant's configuration.yaml.
    (directory / "configuration.yaml").write_text(json.dumps(config, indent=2) + "\n")
    storage = directory / ".storage"
    storage.mkdir(parents=True)
    entry = {
        "entry_id": uuid.uuid4().hex,
        "version": 1,
        "minor_version": 1,
        "domain": "mqtt",
        "title": broker.host,
        "data": {"broker": broker.host, "port": broker.port, "discovery": True},
        "options": {},
        "pref_disable_new_entities": False,
        "pref_disable_polling": False,
        "source": "user",
        "unique_id": None,
        "disabled_by": None,
    }
    (storage / "core.config_entries").write_text(
        json.dumps(
            {
                "version": 1,
                "minor_version": 1,
                "key": "core.config_entries",
                "data": {"entries": [entry]},
            }
        )
    )


class Hass:
    """``hass -c DIR`` as its own process, ended by its PID."""

    def __init__(self, venv: Path, directory: Path) -> None:
        self.dir = directory
        with (directory / "stdout.log").open("w") as out:
            self.proc = subprocess.Popen(
                # --skip-pip: every requirement is in the venv; nothing is fetched at run time.
                [str(venv / "bin" / "hass"), "-c", str(directory), "--skip-pip"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=_clean_env(),
            )

    def stop(self, timeout: float = 90) -> int:
        """SIGTERM (Home Assistant then saves its registries to .storage); SIGKILL if stuck."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"hass did not stop within {timeout} s") from None

    def log(self) -> str:
        path = self.dir / "home-assistant.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def hass(hass_venv: Path, broker: LocalBroker, tmp_path: Path) -> Iterator[Hass]:
    directory = tmp_path / "hass"
    directory.mkdir()
    _hass_config(directory, broker)
    h = Hass(hass_venv, directory)
    try:
        yield h
    finally:
        if h.proc.poll() is None:  # the test ended early: its log and registry stay for a look
            with contextlib.suppress(AssertionError):
                h.stop(30)


def _wait_entity(
    hass: Hass,
    sub: Collector,
    sender: MqttPublisher,
    want: Callable[[dict[str, Any]], bool],
    timeout: float,
    what: str,
    entity: str = ENTITY,
) -> dict[str, Any]:
    """Ask Home Assistant for a report every few seconds until ``entity`` satisfies ``want``."""
    deadline = time.monotonic() + timeout
    asked = 0.0
    last: list[dict[str, Any]] | None = None
    while time.monotonic() < deadline and hass.proc.poll() is None:
        got = sub.on(f"{TEST}/update_entities")
        last = list(got[-1].json()) if got else None
        for e in last or []:
            if e["entity_id"] == entity and want(e):
                return e
        if time.monotonic() - asked > 3:
            sender.publish_raw(f"{TEST}/report", "report")
            asked = time.monotonic()
        time.sleep(0.2)
    raise AssertionError(
        f"Home Assistant: {what} not seen within {timeout} s (hass exit status "
        f"{hass.proc.poll()}); last report {last}; its log:\n{hass.log()[-4000:]}"
    )


def _versions(e: dict[str, Any]) -> tuple[str, str | None, str | None]:
    a = e["attributes"]
    return e["state"], a.get("installed_version"), a.get("latest_version")


def test_home_assistant_shows_the_update_and_installs_it_from_its_button(
    broker: LocalBroker, hass: Hass, tmp_path: Path
) -> None:
    pair = generate_key()
    write_key(pair, tmp_path / "k")
    store, bundle = store_and_update(tmp_path, version=UPDATED)
    sign_bundle(bundle, tmp_path / "k", release=1)
    cfg = tmp_path / "agent.yaml"
    agent_log = tmp_path / "agent.log"
    sub = Collector(broker.host, broker.port, "#").start()
    sender = MqttPublisher(MqttConfig(host=broker.host, port=broker.port), "hass-test")
    sender.start()
    with serve_files() as http:
        http.files["/cmd.tar"] = tar_folder(bundle)
        sha = hashlib.sha256(http.files["/cmd.tar"]).hexdigest()
        cfg.write_text(
            f"device_id: box1\ncamera:\n  source: {SAMPLES / 'person_command' / 'video.avi'}\n"
            f"microphone:\n  source: {long_audio(1200, tmp_path / 'long.wav')}\n"
            f"mqtt:\n  host: {broker.host}\n  port: {broker.port}\n"
            "homeassistant:\n  discovery: true\n"
            f"models:\n  dir: {store}\n  health_window_s: 2\n"
            f"  trusted_keys:\n    - {pair.public_b64}\n"
        )
        proc = start_agent(cfg, agent_log)
        try:
            # 1. Discovered: the installed command model, nothing newer yet.
            before = _wait_entity(
                hass, sub, sender, lambda e: e["state"] == "off", 300, "the update entity"
            )
            print("Home Assistant, discovered:", before)
            assert _versions(before) == ("off", SHIPPED, SHIPPED), before
            assert before["attributes"]["supported_features"] & 1  # UpdateEntityFeature.INSTALL
            # 2. Announced (install: false): Home Assistant offers the update.
            req = {
                "url": f"{http.url}/cmd.tar",
                "sha256": sha,
                "name": "speech_command_int8",
                "version": UPDATED,
                "summary": f"command model {UPDATED}",
                "install": False,
            }
            sender.publish_raw("edge-agent/box1/set/model_update", json.dumps(req))
            offered = _wait_entity(hass, sub, sender, lambda e: e["state"] == "on", 60, "the offer")
            print("Home Assistant, announced:", offered)
            assert _versions(offered) == ("on", SHIPPED, UPDATED), offered
            assert offered["attributes"]["release_summary"] == f"command model {UPDATED}", offered
            # 3. The install button: Home Assistant publishes "install"; the agent downloads,
            # verifies, installs and exits 75 to be restarted on the new model.
            sender.publish_raw(f"{TEST}/install", ENTITY)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the agent did not restart for the update:\n{_tail(agent_log)}")
            assert proc.returncode == 75, _tail(agent_log)
            [pressed] = sub.on("edge-agent/box1/set/model_update_install")
            assert pressed.payload == b"install" and not pressed.retain
            assert ModelStore(store).pending() == {"name": "speech_command_int8", "starts": 0}
            # 4. Restarted (systemd's Restart=on-failure): healthy through the window, committed.
            proc = start_agent(cfg, agent_log)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and ModelStore(store).pending() is not None:
                time.sleep(0.5)
            assert ModelStore(store).pending() is None, _tail(agent_log)
            assert ModelStore(store).manifest("speech_command_int8").version == UPDATED
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                last = sub.on("edge-agent/box1/state/model_update")[-1].json()
                if last["state"] == "committed":
                    break
                time.sleep(0.2)
            assert last["state"] == "committed" and last["installed_version"] == UPDATED, last
            after = _wait_entity(
                hass,
                sub,
                sender,
                lambda e: e["attributes"].get("installed_version") == UPDATED,
                60,
                "the installed update",
            )
            print("Home Assistant, installed:", after)
            assert _versions(after) == ("off", UPDATED, UPDATED), after
        finally:
            stop_agent(proc)
            sender.close(timeout=5)
            sub.stop()
    # Home Assistant's own records: the entity in its registry, no MQTT complaints in its log.
    assert hass.stop() == 0, _tail(hass.dir / "stdout.log")
    registry = json.loads((hass.dir / ".storage" / "core.entity_registry").read_text())
    [entry] = [e for e in registry["data"]["entities"] if e["unique_id"] == UNIQUE_ID]
    assert (entry["entity_id"], entry["platform"]) == (ENTITY, "mqtt")
    complaints = [
        line
        for line in hass.log().splitlines()
        if (" WARNING " in line or " ERROR " in line)
        and any(
            word in line.lower() for word in ("mqtt", "edge_agent", "box1", "update.", "template")
        )
    ]
    assert complaints == [], "\n".join(complaints)


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


def test_home_assistant_makes_a_device_per_room_linked_to_the_agent(
    broker: LocalBroker, hass: Hass, tmp_path: Path
) -> None:
    """Two rooms in one agent: Home Assistant registers a device per room, connected via the
    agent's device (which has the model update entity), and complains about nothing."""
    audio = long_audio(600, tmp_path / "long.wav")
    video = SAMPLES / "person_command" / "video.avi"
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        "device_id: house\nrooms:\n"
        f"  - id: kitchen\n    name: Kitchen\n    camera: {{source: {video}}}\n"
        f"    microphone: {{source: {audio}}}\n"
        f"  - id: hall\n    camera: {{source: {video}}}\n    microphone: {{source: {audio}}}\n"
        f"mqtt:\n  host: {broker.host}\n  port: {broker.port}\n"
    )
    agent_log = tmp_path / "agent.log"
    sub = Collector(broker.host, broker.port, "#").start()
    sender = MqttPublisher(MqttConfig(host=broker.host, port=broker.port), "hass-test")
    sender.start()
    proc = start_agent(cfg, agent_log)
    try:
        _wait_entity(
            hass,
            sub,
            sender,
            lambda e: e["state"] == "off",
            300,
            "the agent's update entity",
            entity="update.edge_agent_house_model_update",
        )
        # Every room's configs went out in the same burst as the agent's; give HA a moment.
        time.sleep(3)
    finally:
        stop_agent(proc)
        sender.close(timeout=5)
        sub.stop()
    assert hass.stop() == 0, _tail(hass.dir / "stdout.log")
    devices = json.loads((hass.dir / ".storage" / "core.device_registry").read_text())
    by_ident = {ident[1]: d for d in devices["data"]["devices"] for ident in d["identifiers"]}
    house, kitchen, hall = (by_ident[f"edge_agent_{n}"] for n in ("house", "kitchen", "hall"))
    assert (house["name"], kitchen["name"], hall["name"]) == (
        "edge-agent house",
        "Kitchen",
        "edge-agent hall",
    )
    assert kitchen["via_device_id"] == house["id"] and hall["via_device_id"] == house["id"]
    registry = json.loads((hass.dir / ".storage" / "core.entity_registry").read_text())
    device_of = {e["unique_id"]: e["device_id"] for e in registry["data"]["entities"]}
    assert device_of["edge_agent_kitchen_voice_command"] == kitchen["id"]
    assert device_of["edge_agent_hall_voice_command"] == hall["id"]
    assert device_of["edge_agent_hall_fusion_threshold"] == hall["id"]
    assert device_of["edge_agent_house_model_update"] == house["id"]
    assert "edge_agent_kitchen_model_update" not in device_of
    complaints = [
        line
        for line in hass.log().splitlines()
        if (" WARNING " in line or " ERROR " in line)
        and any(w in line.lower() for w in ("mqtt", "edge_agent", "kitchen", "hall", "template"))
    ]
    assert complaints == [], "\n".join(complaints)
