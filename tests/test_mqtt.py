"""MQTT contract against a real Mosquitto: status/last will, events on both topics."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

from agent.config.mqtt import MqttConfig
from agent.events.types import AudioEvidence, FusionInfo, ImageEvidence, VoiceCommand
from agent.publish.broker import LocalBroker
from agent.publish.mqtt import MqttPublisher
from agent.publish.subscriber import Collector


def _event() -> VoiceCommand:
    return VoiceCommand(
        device="t1",
        start=1.0,
        end=2.0,
        confidence=0.8,
        intent="light_on",
        text="turn on the light",
        image=ImageEvidence(0.9, 8, 8, "blazeface_full_int8@1.0.0"),
        audio=AudioEvidence(
            0.7, "turn on the light", "pocketsphinx@5.1.1/en-us", "silero_vad@6.2.3", 0.99
        ),
        fusion=FusionInfo("weighted_sum", 0.5, 0.5, 0.6, 0.8),
        skew_ms=12.0,
    )


def test_event_round_trips_json() -> None:
    ev = _event()
    assert VoiceCommand.from_payload(ev.to_payload()) == ev


def test_status_online_events_then_stopped(broker: LocalBroker) -> None:
    cfg = MqttConfig(host=broker.host, port=broker.port, keepalive=5)
    sub = Collector(broker.host, broker.port, "edge-agent/t1/#").start()
    pub = MqttPublisher(cfg, "t1")
    pub.start()
    try:
        [online] = sub.wait_for("edge-agent/t1/status")
        assert online.payload == b"online"
        ev = _event()
        pub.publish_event(ev)
        assert pub.flush(5)
        got = sub.wait_for("edge-agent/t1/events")
        per_type = sub.wait_for("edge-agent/t1/event/voice_command")
        assert [m.json()["id"] for m in got] == [ev.id]
        assert [m.json()["id"] for m in per_type] == [ev.id]
        assert got[0].json()["intent"] == "light_on"
    finally:
        pub.close()
    statuses = sub.wait_for("edge-agent/t1/status", count=2)
    sub.stop()
    assert [m.payload for m in statuses] == [b"online", b"stopped"]
    # A late subscriber sees the retained state.
    late = Collector(broker.host, broker.port, "edge-agent/t1/status").start()
    [retained] = late.wait_for("edge-agent/t1/status")
    late.stop()
    assert retained.payload == b"stopped" and retained.retain


def test_last_will_offline_after_sigkill(broker: LocalBroker) -> None:
    code = textwrap.dedent(
        f"""
        import time
        from agent.config.mqtt import MqttConfig
        from agent.publish.mqtt import MqttPublisher
        pub = MqttPublisher(MqttConfig(host="{broker.host}", port={broker.port}, keepalive=5), "t2")
        pub.start()
        print("up", flush=True)
        time.sleep(120)
        """
    )
    sub = Collector(broker.host, broker.port, "edge-agent/t2/status").start()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
        started = time.monotonic()
        [online] = sub.wait_for("edge-agent/t2/status")
        assert online.payload == b"online"
        assert time.monotonic() - started <= 2.0  # RELIABILITY M8: online within 2 s
        killed = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        got = sub.wait_for("edge-agent/t2/status", count=2, timeout=15)
        waited = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
        sub.stop()
    assert [m.payload for m in got] == [b"online", b"offline"], f"after {waited:.1f} s"
    assert waited <= 1.5 * 5  # M8: the last will within 1.5 x keepalive


def test_subscriptions_survive_a_raising_handler(broker: LocalBroker) -> None:
    cfg = MqttConfig(host=broker.host, port=broker.port, keepalive=5)
    pub = MqttPublisher(cfg, "t3")
    got: list[tuple[str, bytes]] = []

    def handler(topic: str, payload: bytes) -> None:
        if payload == b"boom":
            raise ValueError("hostile")
        got.append((topic, payload))

    pub.subscribe("edge-agent/t3/set/#", handler)
    pub.start()
    sender = MqttPublisher(MqttConfig(host=broker.host, port=broker.port), "sender")
    sender.start()
    try:
        sender.publish_raw("edge-agent/t3/set/x", b"boom")
        sender.publish_raw("edge-agent/t3/set/y", b"ok")
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
        assert got == [("edge-agent/t3/set/y", b"ok")]
        assert pub.handler_errors == 1 and pub.network_alive()
    finally:
        sender.close()
        pub.close()


def test_every_handler_of_a_topic_is_called_even_when_one_raises(broker: LocalBroker) -> None:
    """Rooms of one agent each subscribe to homeassistant/status on the one connection."""
    pub = MqttPublisher(MqttConfig(host=broker.host, port=broker.port), "t4")
    got: list[str] = []

    def boom(topic: str, payload: bytes) -> None:
        raise ValueError("one room's handler fails")

    pub.subscribe("homeassistant/status", lambda t, p: got.append("kitchen"))
    pub.subscribe("homeassistant/status", boom)
    pub.subscribe("homeassistant/status", lambda t, p: got.append("hall"))
    pub.start()
    sender = MqttPublisher(MqttConfig(host=broker.host, port=broker.port), "sender4")
    sender.start()
    try:
        sender.publish_raw("homeassistant/status", b"online")
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert got == ["kitchen", "hall"]
        assert pub.handler_errors == 1 and pub.network_alive()
    finally:
        sender.close()
        pub.close()


def test_a_room_publishes_under_its_own_topics_on_the_agent_connection(
    broker: LocalBroker,
) -> None:
    from agent.publish.subscriber import Collector

    sub = Collector(broker.host, broker.port, "edge-agent/#").start()
    pub = MqttPublisher(MqttConfig(host=broker.host, port=broker.port), "house")
    kitchen = pub.room("kitchen")
    assert kitchen.topics.base == "edge-agent/kitchen" and kitchen.agent_topics is pub.topics
    pub.start()
    try:
        kitchen.publish_state("presence", "ON")
        kitchen.publish_raw("edge-agent/kitchen/stats", '{"v":1}')
        assert sub.wait_for("edge-agent/kitchen/status", timeout=5)[0].payload == b"online"
        assert sub.wait_for("edge-agent/kitchen/state/presence", timeout=5)[0].payload == b"ON"
        kitchen.say_stopped()
    finally:
        pub.close()
        time.sleep(0.2)
        sub.stop()
    assert [m.payload for m in sub.on("edge-agent/kitchen/status")] == [b"online", b"stopped"]
    assert [m.payload for m in sub.on("edge-agent/house/status")] == [b"online", b"stopped"]
    assert sub.on("edge-agent/kitchen/stats") and kitchen.published == pub.published


def test_local_broker_start_is_idempotent_and_close_ends_it() -> None:
    # `with LocalBroker() as b: b.start()` once ran a second mosquitto and left the first
    # running after the block (the bench leaked one per scene).
    with LocalBroker() as b:
        first = b.proc
        assert first is not None
        b.start()
        assert b.proc is first
    assert first.poll() is not None
