"""Egress audit (RELIABILITY P1, M12): everything the agent publishes, recorded on '#'.

Every payload must match its documented schema, be small, carry no image or audio bytes and
no secret.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import jsonschema

from agent.config.mqtt import MqttConfig
from agent.events.schema import event_schema
from agent.publish.broker import LocalBroker
from agent.publish.mqtt import MqttPublisher
from agent.publish.subscriber import Collector, Received
from tests.conftest import SAMPLES, agent_cmd, run_agent
from tests.test_discovery import check_config

SECRET = "s3cret-Pa55word"
MAX_BYTES = 4096
# Long runs of base64/hex or any control byte would mean media (or other blobs) leaking out.
BLOB = re.compile(rb"[A-Za-z0-9+/=_-]{120,}|[\x00-\x08\x0e-\x1f\x7f]")
NUMBER = re.compile(r"^-?\d+(\.\d+)?(e-?\d+)?$")
STATS_KEY = re.compile(r"^[a-z][a-z0-9_]{0,80}$")
ERROR_REPLY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["v", "key", "error", "message", "time"],
    "properties": {
        "v": {"const": 1},
        "key": {"type": ["string", "null"], "pattern": "^[a-z][a-z0-9_]{0,63}$"},
        "error": {"type": "string"},
        "message": {"type": "string", "maxLength": 200},
        "time": {"type": "string"},
    },
}


# README "Model updates": the updater's retained progress.
UPDATE_STATE = {
    "type": "object",
    "required": ["state"],
    "additionalProperties": False,
    "properties": {
        "state": {
            "enum": [
                "idle", "available", "downloading", "installing", "restarting", "checking",
                "committed", "rolled_back", "failed",
            ]
        },
        "name": {"type": "string", "maxLength": 128},
        "installed_version": {"type": "string", "maxLength": 64},
        "latest_version": {"type": "string", "maxLength": 500},
        "summary": {"type": "string", "maxLength": 500},
        "progress": {"type": "integer", "minimum": 0, "maximum": 100},
        "error": {"type": "string"},
        "message": {"type": "string", "maxLength": 300},
        "time": {"type": "string"},
    },
}  # fmt: skip


def audit(messages: list[Received], device: str, ignore: set[str]) -> dict[str, int]:
    """Check each message against its topic's contract; returns counts per kind."""
    events = jsonschema.Draft202012Validator(event_schema())
    base = f"edge-agent/{device}/"
    seen: dict[str, int] = {}
    for m in messages:
        if m.topic in ignore:
            continue
        assert len(m.payload) < MAX_BYTES, (m.topic, len(m.payload))
        assert not BLOB.search(m.payload), (m.topic, m.payload[:200])
        text = m.payload.decode("utf-8")
        assert SECRET not in text and SECRET not in m.topic
        if m.topic.startswith("homeassistant/"):
            kind = "discovery"
            check_config(m.topic, json.loads(text))
        elif not m.topic.startswith(base):
            raise AssertionError(f"unexpected topic {m.topic}")
        else:
            rest = m.topic[len(base) :]
            kind = rest.split("/", 1)[0]
            if rest == "status":
                assert text in ("online", "offline", "stopped"), text
            elif rest == "events" or rest.startswith("event/"):
                payload = json.loads(text)
                events.validate(payload)
                assert rest == "events" or rest == f"event/{payload['type']}"
            elif rest == "state/model_update":
                jsonschema.validate(json.loads(text), UPDATE_STATE)
            elif rest.startswith("state/"):
                assert text in ("ON", "OFF") or NUMBER.match(text), (m.topic, text)
            elif rest == "stats":
                stats = json.loads(text)
                assert stats["v"] == 1 and isinstance(stats["time"], str)
                for k, v in stats.items():
                    assert STATS_KEY.match(k), k
                    if k not in ("v", "time"):
                        assert v is None or isinstance(v, int | float), (k, v)
            elif rest == "error":
                jsonschema.validate(json.loads(text), ERROR_REPLY)
            else:
                raise AssertionError(f"undocumented topic {m.topic}")
        seen[kind] = seen.get(kind, 0) + 1
    return seen


def test_replay_over_every_scene_publishes_only_valid_events(broker: LocalBroker) -> None:
    sub = Collector(broker.host, broker.port, "#").start()
    try:
        scenes = sorted(p.parent for p in SAMPLES.glob("*/scene.json"))
        for scene in scenes:
            res = run_agent(
                "replay",
                "--video",
                str(scene / "video.avi"),
                "--audio",
                str(scene / "audio.wav"),
                "--broker",
                f"{broker.host}:{broker.port}",
            )
            assert res.returncode == 0, res.stderr[-2000:]
        time.sleep(0.3)
    finally:
        sub.stop()
    seen = audit(sub.messages, "edge-agent", set())
    want = sum(
        1 for scene in scenes for e in json.loads((scene / "scene.json").read_text())["expect"]
    )
    # Recognition accuracy is test_cli's business; here every published event is audited.
    assert 1 <= seen.get("events", 0) <= want and seen.get("events") == seen.get("event"), seen
    assert seen.get("status", 0) >= 2 * len(scenes), seen


def test_daemon_egress_discovery_states_stats_commands(broker: LocalBroker, tmp_path: Path) -> None:
    scene = SAMPLES / "person_command"
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        f"device_id: box7\ncamera:\n  source: {scene / 'video.avi'}\n"
        f"microphone:\n  source: {scene / 'audio.wav'}\n"
        f"mqtt:\n  host: {broker.host}\n  port: {broker.port}\n"
        f"  username: agent\n  password: {SECRET}\n"
        "control:\n  stats_interval_s: 1\n"
    )
    sub = Collector(broker.host, broker.port, "#").start()
    proc = subprocess.Popen(
        agent_cmd("run", "--config", str(cfg)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ},
    )
    sender = MqttPublisher(MqttConfig(host=broker.host, port=broker.port), "tester")
    sent_topics = {
        "edge-agent/box7/set/fusion_threshold",
        "edge-agent/box7/set/bogus",
        "homeassistant/status",
        "edge-agent/tester/status",  # the test's own client
    }
    try:
        [online] = sub.wait_for("edge-agent/box7/status", timeout=60)
        assert online.payload == b"online"
        sender.start()
        sender.publish_raw("edge-agent/box7/set/fusion_threshold", b"0.55")
        sender.publish_raw("edge-agent/box7/set/bogus", b"\xff" * 300)
        sender.publish_raw("homeassistant/status", b"online")
        events = sub.wait_for("edge-agent/box7/events", timeout=30)
        assert [e.json()["intent"] for e in events] == ["light_on"]
        assert sub.wait_for("edge-agent/box7/stats", count=2, timeout=10)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        sender.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
        sub.stop()
    assert proc.returncode == 0, err[-2000:]
    assert SECRET not in err
    seen = audit(sub.messages, "box7", sent_topics)
    assert seen["discovery"] >= 10 and seen["stats"] >= 2 and seen["error"] == 1, seen
    echoed = [m.payload for m in sub.on("edge-agent/box7/state/fusion_threshold")]
    assert echoed[-1] == b"0.55", echoed
    assert sub.on("edge-agent/box7/state/camera"), "camera state not published"
    # The event decided after the command uses the new threshold.
    assert events[0].json()["fusion"]["threshold"] in (0.55, 0.6)
    stats = sub.on("edge-agent/box7/stats")[-1].json()
    assert stats["fps"] is not None and stats["commands_rejected"] == 1
    assert isinstance(stats["outbox_depth"], int) and "capture_camera_reconnects" in stats
    # The discovery configs were sent on connect and again after HA's birth message (the
    # outbox keeps only the newest unsent copy of a retained topic, so some may coalesce).
    discovery = [m for m in sub.messages if m.topic.endswith("/config")]
    assert (
        len({m.topic for m in discovery}) < len(discovery) <= 2 * len({m.topic for m in discovery})
    )
