"""``edge-agent demo``: every bundled scene through the whole pipeline and a real broker.

Prints what an MQTT subscriber receives, then whether each scene came out as expected.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from agent.app import build_pipeline, replay
from agent.config.schema import AgentConfig
from agent.errors import PublishError
from agent.publish.broker import LocalBroker
from agent.publish.mqtt import MqttPublisher
from agent.publish.outbox import Outbox
from agent.publish.sink import MemorySink
from agent.publish.subscriber import Collector

_LOGGER = logging.getLogger(__name__)


def load_scenes(root: Path, only: list[str] | None = None) -> list[tuple[Path, dict[str, Any]]]:
    scenes = []
    for folder in sorted(p for p in root.iterdir() if (p / "scene.json").is_file()):
        if only and folder.name not in only:
            continue
        scenes.append((folder, json.loads((folder / "scene.json").read_text(encoding="utf-8"))))
    return scenes


def _expected(scene: dict[str, Any]) -> list[str]:
    return sorted(f"{e['type']}:{e['intent']}" for e in scene.get("expect", []))


def run_demo(root: Path, scenes: list[str] | None = None, use_broker: bool = True) -> int:
    chosen = load_scenes(root, scenes)
    if not chosen:
        print(f"no scenes found in {root}")
        return 1
    broker = None
    if use_broker:
        try:
            broker = LocalBroker().start()
        except PublishError as err:
            print(f"note: {err}; showing events from the in-process sink instead")
    cfg = AgentConfig(device_id="demo")
    ok_all = True
    try:
        if broker is not None:
            print(f"broker: mosquitto on {broker.host}:{broker.port}\n")
        for folder, scene in chosen:
            print(f"scene {folder.name}: {scene.get('description', '')}")
            if broker is None:
                got = _scene_in_process(folder, cfg)
            else:
                got = _scene_over_mqtt(folder, cfg, broker)
            want = _expected(scene)
            ok = sorted(got) == want
            ok_all &= ok
            print(
                f"  => {'OK' if ok else 'MISMATCH'} {folder.name}: expected "
                f"{want or 'no event'}, received {sorted(got) or 'no event'}\n"
            )
    finally:
        if broker is not None:
            broker.close()
    print("all scenes as expected" if ok_all else "some scenes did not match their expectation")
    return 0 if ok_all else 1


def _scene_in_process(folder: Path, cfg: AgentConfig) -> list[str]:
    sink = MemorySink()
    replay(build_pipeline(cfg, sink), folder / "video.avi", folder / "audio.wav")
    for ev in sink.events:
        print(f"  event {json.dumps(ev.to_payload())}")
    return [f"{ev.type}:{ev.intent}" for ev in sink.events]


def connect_pair(cfg: AgentConfig, broker: LocalBroker) -> tuple[MqttPublisher, Collector, str]:
    """A started publisher (in-memory outbox) into ``broker`` and a separate subscriber on its
    events topic (demo and ``bench --latency``); the caller closes both."""
    mqtt_cfg = cfg.mqtt.model_copy(update={"host": broker.host, "port": broker.port})
    topic = f"{mqtt_cfg.base_topic}/{cfg.device_id}/events"
    collector = Collector(broker.host, broker.port, topic).start()
    publisher = MqttPublisher(mqtt_cfg, cfg.device_id, outbox=Outbox(None))
    publisher.start()
    return publisher, collector, topic


def _scene_over_mqtt(folder: Path, cfg: AgentConfig, broker: LocalBroker) -> list[str]:
    """Publish through a real broker and report what a separate subscriber received."""
    publisher, collector, topic = connect_pair(cfg, broker)
    try:
        pipeline = build_pipeline(cfg, publisher)
        replay(pipeline, folder / "video.avi", folder / "audio.wav")
        publisher.flush()
        received = collector.wait_for(topic, count=pipeline.decisions.emitted, timeout=5)
    finally:
        publisher.close()
        collector.stop()
    for msg in received:
        print(f"  {msg.topic} {msg.payload.decode()}")
    return [f"{m.json()['type']}:{m.json()['intent']}" for m in received]
