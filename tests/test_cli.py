"""Black-box: the installed CLI over every bundled scene, events read from a real subscriber."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import wave
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


def _long_audio(scene: Path, out: Path, repeat: int = 6) -> Path:
    """The scene's audio repeated, so the 'microphone' outlives the test (~48 s)."""
    with wave.open(str(scene / "audio.wav"), "rb") as src:
        params, frames = src.getparams(), src.readframes(src.getnframes())
    with wave.open(str(out), "wb") as dst:
        dst.setparams(params)
        dst.writeframes(frames * repeat)
    return out


def _wait_for_text(path: Path, text: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text(errors="replace")
        if text in content:
            return content
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not logged within {timeout} s:\n{content[-2000:]}")


def test_run_daemon_status_and_sigterm(broker: LocalBroker, tmp_path: Path) -> None:
    """`run` with files standing in for the devices: online, events, then SIGTERM → stopped."""
    scene = SAMPLES / "person_command"
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        f"device_id: box1\ncamera:\n  source: {scene / 'video.avi'}\n"
        f"microphone:\n  source: {_long_audio(scene, tmp_path / 'long.wav')}\n"
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
    assert "stopping (signal 15)" in err  # stopped by SIGTERM, not by the end of the audio
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
        f"microphone:\n  source: {_long_audio(scene, tmp_path / 'long.wav')}\n"
        f"mqtt:\n  host: {broker.host}\n  port: {broker.port}\n"
    )
    cfg.write_text(good)
    log = tmp_path / "agent.log"
    sub = Collector(broker.host, broker.port, "edge-agent/box9/#").start()
    with log.open("w") as err_file:
        proc = subprocess.Popen(
            agent_cmd("run", "--config", str(cfg)),
            stdout=subprocess.DEVNULL,
            stderr=err_file,
            stdin=subprocess.DEVNULL,
        )
    try:
        assert sub.wait_for("edge-agent/box9/status", timeout=60)
        cfg.write_text(good + "fusion:\n  threshold: 7\n")
        proc.send_signal(signal.SIGHUP)
        _wait_for_text(log, "keeping the running config")
        cfg.write_text(good + "fusion:\n  threshold: 0.65\nbuffer:\n  seconds: 5\n")
        proc.send_signal(signal.SIGHUP)
        _wait_for_text(log, "take effect after a restart")
        assert proc.poll() is None, "SIGHUP must not end the agent"
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        sub.stop()
    err = log.read_text()
    assert proc.returncode == 0, err[-2000:]
    assert "fusion.threshold" in err and "stopping (signal 15)" in err
    assert "config reloaded from" in err and "fusion.threshold=0.65" in err
    assert "changes to buffer take effect after a restart" in err
    # The live change is echoed to the retained state a hub reads.
    assert b"0.65" in [m.payload for m in sub.on("edge-agent/box9/state/fusion_threshold")]


def test_camera_offline_is_degraded_not_a_watchdog_stall(tmp_path: Path) -> None:
    """C1/S1: with no camera the agent says so in STATUS= and keeps feeding the watchdog."""
    scene = SAMPLES / "person_command"
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        "device_id: box5\ncamera:\n  source: http://127.0.0.1:9/none.mjpg\n"
        f"microphone:\n  source: {_long_audio(scene, tmp_path / 'long.wav')}\n"
        "mqtt:\n  enabled: false\nhealth:\n  stall_seconds: 1\n"
    )
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(0.2)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"}
    proc = subprocess.Popen(
        agent_cmd("run", "--config", str(cfg)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    messages: list[str] = []
    try:
        deadline = time.monotonic() + 60
        # Past READY, well past stall_seconds: pings must keep coming while the camera is down.
        while time.monotonic() < deadline and messages.count("WATCHDOG=1") < 12:
            try:
                messages.append(notify.recv(4096).decode())
            except TimeoutError:
                continue
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        notify.close()
    ready = next(m for m in messages if m.startswith("READY=1"))
    assert "STATUS=degraded: camera offline" in ready, messages
    assert messages.count("WATCHDOG=1") >= 12, messages


def test_replay_to_an_unreachable_broker_fails_loudly() -> None:
    from agent.publish.broker import free_port

    scene = SAMPLES / "person_command"
    res = run_agent(
        "replay",
        "--video",
        str(scene / "video.avi"),
        "--audio",
        str(scene / "audio.wav"),
        "--broker",
        f"127.0.0.1:{free_port()}",
    )
    assert res.returncode == 1, res.stderr[-2000:]
    assert "MQTT messages were not delivered" in res.stderr
    assert '"intent":"light_on"' in res.stdout  # stdout still has the event


def test_a_stage_that_keeps_failing_starves_the_watchdog(tmp_path: Path) -> None:
    """RELIABILITY S2: every audio chunk fails in the pipeline (an injected fault in the real
    daemon). The heartbeat comes only after a chunk is processed, so WATCHDOG=1 stops once
    health.stall_seconds pass, and the failures are logged with a rate limit."""
    scene = SAMPLES / "person_command"
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        f"device_id: box3\ncamera:\n  source: {scene / 'video.avi'}\n"
        f"microphone:\n  source: {_long_audio(scene, tmp_path / 'long.wav')}\n"
        "mqtt:\n  enabled: false\nhealth:\n  stall_seconds: 1.0\n"
    )
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(0.1)
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
        "WATCHDOG_USEC": "400000",  # WatchdogSec=0.4: a ping every 0.2 s while healthy
        "EDGE_AGENT_FAILPOINT": "audio_stage",
    }
    proc = subprocess.Popen(
        agent_cmd("run", "--config", str(cfg)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    got: list[tuple[float, str]] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                msg = notify.recv(4096).decode()
            except TimeoutError:
                continue
            got.append((time.monotonic(), msg))
            if msg.startswith("READY=1"):
                break
        ready = got[-1][0]
        end = ready + 5.0
        while time.monotonic() < end:
            try:
                got.append((time.monotonic(), notify.recv(4096).decode()))
            except TimeoutError:
                continue
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
        notify.close()
    pings = [t - ready for t, m in got if m == "WATCHDOG=1"]
    # Stalled 1 s after capture started; the next ping is due within WatchdogSec/2 of that.
    assert not pings or max(pings) < 1.0 + 0.2 + 0.5, pings
    assert "injected failure at audio_stage" in err
    assert err.count("chunk consumer failed") <= 2, err[-2000:]  # ~5 s, one report per 10 s


def test_nothing_but_state_is_written_to_disk(broker: LocalBroker, tmp_path: Path) -> None:
    """RELIABILITY P2: a run writes no audio, video or anything else outside its state
    directory (HOME and TMPDIR point into tmp_path and are checked too)."""
    scene = SAMPLES / "person_command"
    home, tmp, state = tmp_path / "home", tmp_path / "tmp", tmp_path / "state"
    for d in (home, tmp):
        d.mkdir()
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        f"device_id: box4\ncamera:\n  source: {scene / 'video.avi'}\n"
        f"microphone:\n  source: {scene / 'audio.wav'}\n"
        f"mqtt:\n  host: {broker.host}\n  port: {broker.port}\n"
    )
    before = {p for p in tmp_path.rglob("*")}
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp), "STATE_DIRECTORY": str(state)}
    res = subprocess.run(
        agent_cmd("run", "--config", str(cfg)),
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    written = sorted(
        str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file() and p not in before
    )
    allowed = re.compile(r"^state/(outbox-[\w.-]+\.sqlite(-wal|-shm|\.lock)?|settings\.json)$")
    assert written and all(allowed.match(w) for w in written), written
