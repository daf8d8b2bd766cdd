"""The durable outbox on its own: order, dedupe, coalescing, eviction order, crash safety."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.config.mqtt import MqttConfig
from agent.errors import PublishError
from agent.publish.mqtt import outbox_path
from agent.publish.outbox import Outbox, OutMessage, Priority, default_outbox_path


def _msg(n: int, prio: Priority = Priority.EVENT, topic: str = "t/e") -> OutMessage:
    return OutMessage(topic, f"{n:04d}".encode(), 1, False, prio, f"id-{n}")


def test_order_ack_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    assert box.put(_msg(i) for i in range(10)) == 10
    taken = box.take(4)
    assert [r.payload for r in taken] == [b"0000", b"0001", b"0002", b"0003"]
    assert [r.payload for r in box.take(2)] == [b"0004", b"0005"]  # after the cursor
    box.ack(r.seq for r in taken)
    assert len(box) == 6
    box.close()
    again = Outbox(path)  # a new process: everything not acknowledged is sent again, in order
    assert [r.payload for r in again.take(100)] == [f"{i:04d}".encode() for i in range(4, 10)]
    again.close()


def test_same_event_id_is_stored_once_per_topic() -> None:
    box = Outbox(None)
    box.put([_msg(1), _msg(1, topic="t/x")])
    assert box.put([_msg(1)]) == 0
    assert len(box) == 2 and box.stats.duplicates == 1
    box.close()


def test_retained_values_coalesce_but_not_in_flight_ones() -> None:
    box = Outbox(None)
    state = [OutMessage("t/state/p", v, 1, True, Priority.STATE) for v in (b"on", b"off", b"on")]
    box.put(state[:1])
    [inflight] = box.take(1)
    box.put(state[1:2])
    box.put(state[2:])
    assert [r.payload for r in box.take(10)] == [b"on"]  # 'off' was superseded before sending
    assert len(box) == 2 and inflight.payload == b"on"
    box.close()


def test_eviction_order_stats_then_events_never_alarms() -> None:
    box = Outbox(None, max_messages=10)
    box.put(_msg(i, Priority.ALARM, "t/alarm") for i in range(3))
    box.put(_msg(i, Priority.EVENT) for i in range(3, 6))
    box.put(_msg(i, Priority.STATS, "t/stats") for i in range(6, 10))
    assert len(box) == 10
    # A new event pushes out the oldest stats first.
    box.put([_msg(10)])
    assert box.stats.evicted is not None and box.stats.evicted["stats"] == 1
    # A new stats message never pushes out an event: it is dropped itself.
    box.put(_msg(i, Priority.STATS, "t/stats") for i in range(11, 20))
    assert box.stats.evicted["event"] == 0
    # Events then go oldest first once no stats are left.
    box.put(_msg(i) for i in range(20, 27))
    assert box.stats.evicted["event"] > 0
    # Alarms stay, even over the bound.
    box.put(_msg(i, Priority.ALARM, "t/alarm") for i in range(30, 45))
    left = box.take(100)
    alarms = [r for r in left if r.topic == "t/alarm"]
    assert len(alarms) == 18 and box.stats.evicted["alarm"] == 0
    assert box.stats.over_limit > 0
    box.close()


def test_byte_bound() -> None:
    box = Outbox(None, max_bytes=64 * 1024)
    big = b"x" * 1000
    box.put(OutMessage("t/e", big, 1, False, Priority.EVENT, f"{i}") for i in range(200))
    assert box.size_bytes <= 64 * 1024 and len(box) == 64 * 1024 // 1003
    box.close()


def test_one_process_per_outbox_file(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    with pytest.raises(PublishError, match="in use"):
        Outbox(tmp_path / "o.sqlite")
    box.close()
    Outbox(tmp_path / "o.sqlite").close()


def test_default_path_follows_systemd_state_directory() -> None:
    assert default_outbox_path({"STATE_DIRECTORY": "/var/lib/edge-agent:/x"}) == Path(
        "/var/lib/edge-agent/outbox.sqlite"
    )
    home = default_outbox_path({"HOME": "/home/u"})
    assert home.parts[-3:] == ("state", "edge-agent", "outbox.sqlite")
    env = {"STATE_DIRECTORY": "/s"}
    assert outbox_path(MqttConfig(), "edge-agent-box 1", env) == Path(
        "/s/outbox-edge-agent-box_1.sqlite"
    )
    cfg = MqttConfig.model_validate({"outbox": {"path": "/data/o.sqlite"}})
    assert outbox_path(cfg, "x", env) == Path("/data/o.sqlite")


def test_kill_9_inside_writes_leaves_a_clean_outbox(tmp_path: Path) -> None:
    """M5: killed while writing: opens cleanly, no duplicate id, at most the last write missing."""
    path = tmp_path / "o.sqlite"
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from agent.publish.outbox import Outbox, OutMessage
        box = Outbox(Path({str(path)!r}))
        for i in range(1_000_000):
            box.put([OutMessage("t/e", b"p" * 200, 1, False, msg_id=str(i)),
                     OutMessage("t/x", b"p" * 200, 1, False, msg_id=str(i))])
            print(i, flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    last = -1
    try:
        assert proc.stdout is not None
        for _ in range(300):
            line = proc.stdout.readline()
            if not line:
                break
            last = int(line)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert last >= 299
    box = Outbox(path)
    rows = box.take(10_000_000)
    box.close()
    assert all(r.payload == b"p" * 200 for r in rows)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        pairs = db.execute("SELECT msg_id, count(*) FROM outbox GROUP BY msg_id").fetchall()
    db.close()
    assert all(n == 2 for _, n in pairs)  # each event whole (one transaction), never twice
    stored = sorted(int(i) for i, _ in pairs)
    assert stored == list(range(len(stored))) and len(stored) >= last + 1
