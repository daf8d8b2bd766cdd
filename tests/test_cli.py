"""Black-box: the installed CLI over every bundled scene, events read from a real subscriber."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from agent.publish.broker import LocalBroker
from agent.publish.subscriber import Collector
from tests.conftest import SAMPLES, agent_cmd, run_agent

SCENES = sorted(p.parent.name for p in SAMPLES.glob("*/scene.json"))


def _expected(scene: str) -> list[str]:
    data = json.loads((SAMPLES / scene / "scene.json").read_text())
    return sorted(f"{e['type']}:{e['intent']}" for e in data["expect"])


def test_samples_present() -> None:
    names = set(SCENES)
    for needed in (
        "person_command",
        "nobody_command",
        "person_background_speech",
        "person_leaves",
        "person_arrives",
        "person_chatter",
    ):
        assert needed in names, f"sample scene {needed} missing"


@pytest.mark.parametrize("scene", SCENES)
def test_replay_outcome_seen_by_subscriber(scene: str, broker: LocalBroker, tmp_path: Path) -> None:
    sub = Collector(broker.host, broker.port, "edge-agent/#").start()
    try:
        res = run_agent(
            "replay",
            "--video",
            str(SAMPLES / scene / "video.avi"),
            "--audio",
            str(SAMPLES / scene / "audio.wav"),
            "--broker",
            f"{broker.host}:{broker.port}",
        )
        assert res.returncode == 0, res.stderr[-2000:]
        stdout_events = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
        want = _expected(scene)
        got = sub.wait_for("edge-agent/edge-agent/events", count=len(want), timeout=10)
        # Give a wrongly published extra event a moment to show up as well.
        time.sleep(0.3)
        got = sub.on("edge-agent/edge-agent/events")
    finally:
        sub.stop()
    payloads = [m.json() for m in got]
    assert sorted(f"{p['type']}:{p['intent']}" for p in payloads) == want, res.stderr[-3000:]
    # The per-type topic carries the same events.
    per_type = [m for m in sub.messages if "/event/" in m.topic]
    assert sorted(m.topic.rsplit("/", 1)[1] for m in per_type) == sorted(
        p["type"] for p in payloads
    )
    assert [p["id"] for p in payloads] == [e["id"] for e in stdout_events]
    for p in payloads:
        assert p["type"] in ("voice_command", "help_call") and p["device"] == "edge-agent"
        assert p["evidence"]["image"]["frames_with_person"] > 0
        assert "@" in p["evidence"]["image"]["model"] and "@" in p["evidence"]["audio"]["model"]
        assert p["start"] < p["end"]
        assert 0 <= p["skew_ms"] <= 100
    statuses = [m.payload for m in sub.on("edge-agent/edge-agent/status")]
    assert statuses[-1:] == [b"stopped"]


def test_run_daemon_status_and_sigterm(broker: LocalBroker, tmp_path: Path) -> None:
    """`run` with files standing in for the devices: online, events, then SIGTERM → stopped."""
    scene = SAMPLES / "person_command"
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        f"device_id: box1\ncamera:\n  source: {scene / 'video.avi'}\n"
        f"microphone:\n  source: {scene / 'audio.wav'}\n"
        f"mqtt:\n  host: {broker.host}\n  port: {broker.port}\n"
    )
    # systemd's notify socket, played by the test.
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(0.2)
    messages: list[str] = []
    done = threading.Event()

    def drain() -> None:  # like systemd, read every notification as it comes
        while not done.is_set():
            try:
                messages.append(notify.recv(4096).decode())
            except TimeoutError:
                continue

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    sub = Collector(broker.host, broker.port, "edge-agent/box1/#").start()
    # WATCHDOG_USEC as systemd sets it for WatchdogSec=0.4: pings every 0.2 s while healthy.
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"}
    proc = subprocess.Popen(
        agent_cmd("run", "--config", str(cfg)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        [online] = sub.wait_for("edge-agent/box1/status", timeout=60)
        assert online.payload == b"online"
        events = sub.wait_for("edge-agent/box1/events", timeout=30)
        assert [e.json()["intent"] for e in events] == ["light_on"]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
        sub.stop()
    assert proc.returncode == 0, err[-2000:]
    assert [m.payload for m in sub.on("edge-agent/box1/status")][-1] == b"stopped"
    # The astronaut is in view the whole scene: the retained presence state says so.
    assert b"ON" in [m.payload for m in sub.on("edge-agent/box1/state/presence")]
    done.set()
    reader.join(5)
    notify.close()
    assert messages and messages[0].startswith("READY=1"), messages
    assert any(m.startswith("STOPPING=1") for m in messages), messages
    assert "WATCHDOG=1" in messages, messages


def test_replay_bad_broker_argument() -> None:
    res = run_agent(
        "replay", "--video", "x.avi", "--audio", "x.wav", "--broker", "nohost", timeout=60
    )
    assert res.returncode == 78 and "--broker" in res.stderr


def test_demo_prints_what_the_subscriber_received() -> None:
    res = run_agent("demo", "--scene", "person_command", "--scene", "nobody_command")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "broker: mosquitto on 127.0.0.1:" in res.stdout
    assert "edge-agent/demo/events {" in res.stdout and '"intent":"light_on"' in res.stdout
    assert "=> OK nobody_command: expected no event, received no event" in res.stdout
    assert "all scenes as expected" in res.stdout


def test_sighup_keeps_old_config_when_new_is_bad(broker: LocalBroker, tmp_path: Path) -> None:
    """X3: a bad config on SIGHUP is refused with its errors; the agent keeps running."""
    scene = SAMPLES / "person_command"
    cfg = tmp_path / "agent.yaml"
    good = (
        f"device_id: box9\ncamera:\n  source: {scene / 'video.avi'}\n"
        f"microphone:\n  source: {scene / 'audio.wav'}\n"
        f"mqtt:\n  host: {broker.host}\n  port: {broker.port}\n"
    )
    cfg.write_text(good)
    sub = Collector(broker.host, broker.port, "edge-agent/box9/#").start()
    proc = subprocess.Popen(
        agent_cmd("run", "--config", str(cfg)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert sub.wait_for("edge-agent/box9/status", timeout=60)
        cfg.write_text(good + "fusion:\n  threshold: 7\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)  # the reload happens on the agent's main loop (0.5 s tick)
        cfg.write_text(good + "fusion:\n  threshold: 0.65\nbuffer:\n  seconds: 5\n")
        time.sleep(1.0)
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert proc.poll() is None, "SIGHUP must not end the agent"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
        sub.stop()
    assert proc.returncode == 0, err[-2000:]
    assert "reload of" in err and "fusion.threshold" in err and "keeping the running config" in err
    assert "config reloaded" in err and "changes to buffer take effect after a restart" in err
