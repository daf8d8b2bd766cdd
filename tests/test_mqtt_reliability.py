"""The MQTT contract under faults, against real Mosquitto (RELIABILITY.md M1, M3, M4, M6).

Figures are printed (``-s`` shows them) so the numbers can be recorded.

The subscriber in the outage tests is a *durable* consumer: a persistent session
(clean_session false, QoS 1) on a broker with persistence, so what the agent delivers after
the broker restarts is queued for the subscriber even before the subscriber itself is back.
A plain subscriber would race the agent's reconnect and lose messages that were delivered.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config.mqtt import MqttConfig
from agent.events.types import AudioEvidence, FusionInfo, ImageEvidence, VoiceCommand
from agent.publish.broker import LocalBroker
from agent.publish.mqtt import MqttPublisher
from agent.publish.outbox import Outbox
from agent.publish.subscriber import Collector, Received


def event(n: int, device: str) -> VoiceCommand:
    return VoiceCommand(
        device=device,
        start=float(n),
        end=float(n) + 1.0,
        confidence=0.8,
        intent="light_on",
        text="turn on the light",
        image=ImageEvidence(0.9, 8, 8, "blazeface_full_int8@1.0.0"),
        audio=AudioEvidence(0.7, "turn on the light", "pocketsphinx@5.1.1/en-us", "silero", 0.99),
        fusion=FusionInfo("weighted_sum", 0.5, 0.5, 0.6, 0.8),
        skew_ms=1.0,
    )


def check_complete_and_ordered(msgs: list[Received], count: int) -> None:
    """``count`` distinct ids; per topic the ``start`` (= production index) never goes back."""
    starts = [int(m.json()["start"]) for m in msgs]
    ids = {m.json()["id"] for m in msgs}
    assert len(ids) == count, f"{len(ids)} distinct ids of {count}"
    assert set(starts) == set(range(count))
    # At-least-once: a redelivered duplicate may repeat an earlier one; first arrivals in order.
    firsts: list[int] = []
    seen: set[int] = set()
    for s in starts:
        if s not in seen:
            seen.add(s)
            firsts.append(s)
    assert firsts == sorted(firsts), "order per topic not kept"


@pytest.fixture
def durable_broker() -> Iterator[LocalBroker]:
    b = LocalBroker(persistence=True).start()
    try:
        yield b
    finally:
        b.close()


@pytest.mark.slow
def test_m1_broker_down_60s_while_1000_events_are_produced(
    durable_broker: LocalBroker, tmp_path: Path
) -> None:
    b = durable_broker
    base = "edge-agent/m1"
    sub = Collector(b.host, b.port, f"{base}/#", client_id="hub-m1", durable=True).start()
    cfg = MqttConfig.model_validate(
        {"host": b.host, "port": b.port, "keepalive": 5, "outbox": {"path": tmp_path / "o.db"}}
    )
    pub = MqttPublisher(cfg, "m1")
    pub.start()
    total, period = 1000, 0.062  # 62 s of production
    peak_outbox = 0
    produced = threading.Event()

    def produce() -> None:
        nonlocal peak_outbox
        t0 = time.monotonic()
        for n in range(total):
            pub.publish_event(event(n, "m1"))
            peak_outbox = max(peak_outbox, len(pub.outbox))
            delay = t0 + (n + 1) * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        produced.set()

    producer = threading.Thread(target=produce, name="producer")
    try:
        producer.start()
        time.sleep(1.0)
        b.stop()
        down = time.monotonic()
        time.sleep(60.0)
        b.start()
        up = time.monotonic()
        producer.join(30)
        assert produced.is_set()
        got = sub.wait_for(f"{base}/events", count=total, timeout=30)
        drained = time.monotonic() - up
        per_type = sub.wait_for(f"{base}/event/voice_command", count=total, timeout=10)
    finally:
        producer.join(30)
        pub.close()
        sub.stop()
    print(
        f"\nM1: broker down {up - down:.1f} s; outbox peak {peak_outbox} rows; "
        f"{len(got)} msgs on events ({len({m.json()['id'] for m in got})} distinct); "
        f"all in {drained:.1f} s after restart; in-flight peak {pub.inflight_peak}; "
        f"reconnects {pub.reconnects}; connect attempts {pub.attempts}"
    )
    check_complete_and_ordered(got, total)
    check_complete_and_ordered(per_type, total)
    assert pub.inflight_peak <= cfg.outbox.max_inflight
    assert peak_outbox <= 2 * total


def test_m4_kill_9_with_events_queued_then_restart(tmp_path: Path) -> None:
    b = LocalBroker(persistence=True)  # not started yet: the agent begins in an outage
    box = tmp_path / "outbox.sqlite"
    code = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from agent.config.mqtt import MqttConfig
        from agent.publish.mqtt import MqttPublisher
        from tests.test_mqtt_reliability import event
        cfg = MqttConfig.model_validate(
            {{"host": "{b.host}", "port": {b.port}, "keepalive": 5,
              "outbox": {{"path": {str(box)!r}}}}})
        pub = MqttPublisher(cfg, "m4")
        pub.start(timeout=0.1)
        if sys.argv[1] == "produce":
            for n in range(100):
                pub.publish_event(event(n, "m4"))
            print("stored", flush=True)
            time.sleep(120)
        else:
            print("flushed" if pub.flush(20) else "not flushed", flush=True)
            pub.close()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "produce"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "stored"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    b.start()
    sub = Collector(b.host, b.port, "edge-agent/m4/events").start()
    try:
        t0 = time.monotonic()
        again = subprocess.run(
            [sys.executable, "-c", code, "deliver"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert again.stdout.strip() == "flushed", again.stderr[-2000:]
        got = sub.wait_for("edge-agent/m4/events", count=100, timeout=10)
        took = time.monotonic() - t0
    finally:
        sub.stop()
        b.close()
    print(f"\nM4: {len(got)} of 100 delivered after kill -9 + restart, in {took:.1f} s")
    check_complete_and_ordered(got, 100)


def test_m6_5000_queued_never_more_than_max_inflight(
    durable_broker: LocalBroker, tmp_path: Path
) -> None:
    b = durable_broker
    topic = "edge-agent/m6/events"
    sub = Collector(b.host, b.port, topic, client_id="hub-m6", durable=True).start()
    cfg = MqttConfig.model_validate(
        {"host": b.host, "port": b.port, "keepalive": 5, "outbox": {"path": tmp_path / "o.db"}}
    )
    b.stop()
    pub = MqttPublisher(cfg, "m6")
    # Independent of our own bookkeeping: paho's count of un-acknowledged QoS>0 messages,
    # sampled after every publish() call paho gets.
    paho = pub._client
    real_publish = paho.publish
    paho_peak = 0

    def counting_publish(*args: object, **kw: object) -> object:
        nonlocal paho_peak
        info = real_publish(*args, **kw)  # type: ignore[arg-type]
        paho_peak = max(paho_peak, len(paho._out_messages))
        return info

    paho.publish = counting_publish  # type: ignore[method-assign]
    pub.start(timeout=0.1)
    try:
        t0 = time.monotonic()
        for n in range(5000):
            pub.publish_raw(topic, json.dumps({"id": f"m6-{n}", "start": n}))
        stored_s = time.monotonic() - t0
        assert len(pub.outbox) == 5000
        b.start()
        t1 = time.monotonic()
        assert pub.flush(60)
        flushed_s = time.monotonic() - t1
        got = sub.wait_for(topic, count=5000, timeout=30)
    finally:
        pub.close()
        sub.stop()
    print(
        f"\nM6: 5000 stored in {stored_s:.1f} s; flushed {flushed_s:.1f} s after broker start; "
        f"in-flight peak: ours {pub.inflight_peak}, paho's un-acked {paho_peak} "
        f"(limit {cfg.outbox.max_inflight}; paho's includes the 'online' status)"
    )
    check_complete_and_ordered(got, 5000)
    assert pub.inflight_peak <= cfg.outbox.max_inflight
    assert paho_peak <= cfg.outbox.max_inflight + 1


@pytest.mark.slow
def test_m3_black_holed_link_found_and_healed(broker: LocalBroker, tmp_path: Path) -> None:
    keepalive = 2
    base = "edge-agent/m3"
    sub = Collector(broker.host, broker.port, f"{base}/events").start()
    cfg = MqttConfig.model_validate(
        {"host": broker.host, "port": broker.port, "keepalive": keepalive}
    )
    pub = MqttPublisher(cfg, "m3", outbox=Outbox(tmp_path / "o.db"))
    pub.start()
    try:
        assert pub.connected
        pub.publish_event(event(0, "m3"))
        assert pub.flush(5)
        broker.pause()
        paused = time.monotonic()
        for n in range(1, 51):
            pub.publish_event(event(n, "m3"))
        deadline = paused + 4 * keepalive
        while pub.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pub.disconnected_at is not None, "black hole not detected"
        detected = pub.disconnected_at - paused
        time.sleep(1.5)  # a reconnect attempt or two hang on the stopped broker
        broker.resume()
        resumed = time.monotonic()
        while not pub.connected and time.monotonic() < resumed + 5:
            time.sleep(0.005)
        assert pub.connected_at is not None
        back = pub.connected_at - resumed
        assert pub.flush(10)
        got = sub.wait_for(f"{base}/events", count=51, timeout=10)
    finally:
        broker.resume()
        pub.close()
        sub.stop()
    print(
        f"\nM3: keepalive {keepalive} s: dead link found after {detected:.2f} s; "
        f"reconnected {back:+.4f} s after SIGCONT; {len(got)} msgs "
        f"({len({m.json()['id'] for m in got})} distinct of 51)"
    )
    assert detected <= 2 * keepalive + 0.5
    assert back <= 1.0
    check_complete_and_ordered(got, 51)
