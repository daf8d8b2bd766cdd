"""Several rooms (camera + microphone pairs) in one agent: one loaded copy of each model,
one pipeline per room, each room's events on its own topics."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.app import build_pipeline, build_pipelines, replay
from agent.config.loader import parse_text
from agent.models.shared import SharedModelStore
from agent.models.store import ModelStore
from agent.publish.sink import MemorySink
from agent.runtimes.base import Session
from tests.conftest import SAMPLES

ROOMS = """device_id: house
rooms:
  - id: kitchen
  - id: hall
  - id: attic
"""


def _sessions(pipeline: object) -> list[Session]:
    """The model sessions a pipeline's own parts hold (vision, VAD)."""
    ctx = pipeline.ctx  # type: ignore[attr-defined]
    seg = pipeline._segmenter  # type: ignore[attr-defined]
    return [ctx.scorer._session, seg._vad._session]


def test_rooms_share_one_loaded_copy_of_every_model() -> None:
    cfg = parse_text(ROOMS)
    store = SharedModelStore()
    sinks: dict[str, MemorySink] = {}
    pipelines = build_pipelines(cfg, lambda room: sinks.setdefault(room, MemorySink()), store=store)
    assert list(pipelines) == ["kitchen", "hall", "attic"]
    # Every model the pipeline needs was opened exactly once, for all three rooms.
    assert store.opened and set(store.opened.values()) == {1}, store.opened
    assert {cfg.vad.model, cfg.vision.model, cfg.speech.command_model} <= set(store.opened)
    kitchen, hall, attic = pipelines.values()
    for a, b in zip(_sessions(kitchen), _sessions(hall), strict=True):
        assert a is b
    assert all(a is b for a, b in zip(_sessions(kitchen), _sessions(attic), strict=True))
    # ... while everything with state is each room's own.
    assert kitchen.frames is not hall.frames and kitchen._segmenter is not hall._segmenter
    assert kitchen.settings is not hall.settings
    assert kitchen._segmenter._vad is not hall._segmenter._vad  # recurrent VAD state
    assert kitchen.rules[0] is not hall.rules[0]
    assert kitchen.ctx.device == "kitchen" and hall.ctx.device == "hall"


def test_streaming_wake_word_sessions_stay_each_rooms_own() -> None:
    """microWakeWord models keep their streaming state in the interpreter: one per room."""
    cfg = parse_text(ROOMS + "wakeword:\n  enabled: true\n  models: [okay_nabu]\n")
    store = SharedModelStore()
    pipelines = build_pipelines(cfg, lambda room: MemorySink(), store=store)
    assert store.opened["wakeword_okay_nabu"] == 3
    assert store.opened[cfg.vision.model] == 1 and store.opened[cfg.vad.model] == 1

    def wake_session(pipeline: Any) -> Session:
        [rule] = [r for r in pipeline.rules if r.TYPE == "wake_word"]
        [model] = rule._detector._models
        return model.session  # type: ignore[no-any-return]

    sessions = [wake_session(p) for p in pipelines.values()]
    assert len({id(s) for s in sessions}) == 3


def test_a_plain_store_is_wrapped_so_that_rooms_still_share(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loads: list[str] = []
    real = ModelStore.load

    def counting(self: ModelStore, name: str, *a: object, **kw: object) -> object:
        loads.append(name)
        return real(self, name, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(ModelStore, "load", counting)
    cfg = parse_text(ROOMS)
    build_pipelines(cfg, lambda room: MemorySink(), store=ModelStore())
    assert loads and len(loads) == len(set(loads)), loads


def test_without_rooms_build_pipelines_is_the_one_pipeline_of_device_id() -> None:
    cfg = parse_text("device_id: box\n")
    [(room, pipeline)] = build_pipelines(cfg, lambda room: MemorySink()).items()
    assert room == "box" and pipeline.ctx.device == "box"


def _run(pipeline: object, scene: str, errors: list[BaseException]) -> None:
    try:
        replay(pipeline, SAMPLES / scene / "video.avi", SAMPLES / scene / "audio.wav")  # type: ignore[arg-type]
    except BaseException as err:  # reported by the test thread
        errors.append(err)


def test_rooms_decide_alone_while_running_at_once_on_shared_sessions() -> None:
    """Two rooms replayed at the same time on two threads, through the same (LiteRT vision,
    onnxruntime VAD and speech) sessions, decide exactly as each alone."""
    scenes = {
        "kitchen": "person_command",
        "hall": "person_command_female",
        "attic": "nobody_command",
    }
    cfg = parse_text(ROOMS)
    sinks: dict[str, MemorySink] = {}
    pipelines = build_pipelines(cfg, lambda room: sinks.setdefault(room, MemorySink()))
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_run, args=(pipelines[room], scene, errors), name=room)
        for room, scene in scenes.items()
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and not any(t.is_alive() for t in threads), errors
    got = {
        room: [(e.type, getattr(e, "intent", None)) for e in s.events] for room, s in sinks.items()
    }
    assert got == {
        "kitchen": [("voice_command", "light_on")],
        "hall": [("voice_command", "light_off")],
        "attic": [],
    }
    assert all(e.device == room for room, s in sinks.items() for e in s.events)
    # The same scene alone through a pipeline of its own gives the same confidence.
    alone = MemorySink()
    scene = SAMPLES / "person_command"
    replay(
        build_pipeline(cfg.room_configs()[0].cfg, alone), scene / "video.avi", scene / "audio.wav"
    )
    assert [e.confidence for e in alone.events] == [e.confidence for e in sinks["kitchen"].events]


def test_a_shared_litert_session_is_safe_from_many_threads(tmp_path: Path) -> None:
    """LiteRT interpreters are not thread-safe; TfliteSession.run serializes its own."""
    cfg = parse_text("")
    store = SharedModelStore()
    session, _ = store.load(cfg.vision.model, runtimes=cfg.runtimes)
    if type(session).__name__ != "TfliteSession":
        pytest.skip("the vision model is not a LiteRT model in this store")
    spec = session.inputs[0]
    rng = np.random.default_rng(1)
    feeds = [{spec.name: rng.random(spec.shape).astype(np.dtype(spec.dtype))} for _ in range(4)]
    want = [session.run(f) for f in feeds]
    errors: list[str] = []

    def hammer(i: int) -> None:
        for _ in range(30):
            out = session.run(feeds[i])
            for k, v in want[i].items():
                if not np.array_equal(out[k], v):
                    errors.append(f"thread {i}: {k} differs")
                    return

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


# -- the real daemon: two rooms, two MJPEG cameras, two ALSA FIFO microphones, one broker ----


def _asoundrc(home: Path, fifos: dict[str, Path]) -> None:
    """Two named ALSA ``file`` PCMs, one per room; PortAudio lists them by name."""
    pcms = "".join(
        f'pcm.{name} {{ type file; slave.pcm "null"; file "/dev/null"; '
        f'infile "{fifo}"; format "raw" }}\n'
        for name, fifo in fifos.items()
    )
    (home / ".asoundrc").write_text(pcms + "pcm.null { type null }\n")


def _raw(scene: str, out: Path) -> Path:
    """The scene's audio as raw 16 kHz mono s16 (what the FIFO feeder loops)."""
    import wave

    with wave.open(str(SAMPLES / scene / "audio.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        out.write_bytes(w.readframes(w.getnframes()))
    return out


def _wait_files(paths: list[Path], proc: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths) and time.monotonic() < deadline:
        assert proc.poll() is None, "the agent ended"
        time.sleep(0.2)
    assert all(p.exists() for p in paths), [p.name for p in paths if not p.exists()]


def test_daemon_serves_two_rooms_on_their_own_topics_and_devices(
    broker: object, tmp_path: Path
) -> None:
    pytest.importorskip("pyaudio")
    import json
    import os
    import signal
    import subprocess

    from agent.config.mqtt import MqttConfig
    from agent.publish.mqtt import MqttPublisher
    from agent.publish.subscriber import Collector
    from testbed import free_port, make_fifo, start_feeder, start_mjpeg, stop
    from tests.conftest import agent_cmd

    host, port = broker.host, broker.port  # type: ignore[attr-defined]
    scenes = {"kitchen": "person_command", "hall": "person_command_female"}
    fifos = {f"{room}_mic": make_fifo(tmp_path / f"{room}.fifo") for room in scenes}
    _asoundrc(tmp_path, fifos)
    procs: list[subprocess.Popen[bytes]] = []
    rooms_yaml = ""
    try:
        for room, scene in scenes.items():
            raw = _raw(scene, tmp_path / f"{room}.raw")
            procs.append(start_feeder(fifos[f"{room}_mic"], seconds=120, raw=raw))
            cam = free_port()
            procs.append(start_mjpeg(cam, SAMPLES / scene / "video.avi", fps=10))
            rooms_yaml += (
                f"  - id: {room}\n    name: {room.capitalize()}\n"
                f"    camera:\n      source: http://127.0.0.1:{cam}/\n"
                f"    microphone:\n      source: {room}_mic\n"
            )
        cfg = tmp_path / "agent.yaml"
        cfg.write_text(
            f"device_id: house\nrooms:\n{rooms_yaml}"
            f"mqtt:\n  host: {host}\n  port: {port}\ncontrol:\n  stats_interval_s: 1\n"
        )
        sub = Collector(host, port, "#").start()
        sender = MqttPublisher(MqttConfig(host=host, port=port), "tester")
        agent = subprocess.Popen(
            agent_cmd("run", "--config", str(cfg)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "HOME": str(tmp_path)},  # ALSA reads $HOME/.asoundrc
        )
        try:
            deadline = time.monotonic() + 90
            while not any(m.payload == b"online" for m in sub.on("edge-agent/house/status")):
                assert time.monotonic() < deadline and agent.poll() is None, "agent not online"
                time.sleep(0.05)
            sender.start()
            sender.publish_raw("edge-agent/kitchen/set/fusion_threshold", b"0.55")
            kitchen = sub.wait_for("edge-agent/kitchen/events", timeout=60)
            hall = sub.wait_for("edge-agent/hall/events", timeout=30)
            assert sub.wait_for("edge-agent/hall/stats", count=2, timeout=10)
            # Commands are per room: only the kitchen's threshold moved.
            kitchen_set = sub.wait_for("edge-agent/kitchen/state/fusion_threshold", 2, 10)
            assert [m.payload for m in kitchen_set][-1] == b"0.55"
            assert sub.on("edge-agent/hall/state/fusion_threshold")[-1].payload == b"0.6"
            # Timeline pages: a room's button writes its own; SIGUSR1 every room's.
            pages = {room: tmp_path / "state" / f"timeline-{room}.html" for room in scenes}
            sender.publish_raw("edge-agent/hall/set/timeline_report", b"PRESS")
            _wait_files([pages["hall"]], agent)
            assert not pages["kitchen"].exists()
            agent.send_signal(signal.SIGUSR1)
            _wait_files(list(pages.values()), agent)
            # SIGHUP applies a live change to every room.
            cfg.write_text(cfg.read_text() + "fusion:\n  threshold: 0.7\n")
            agent.send_signal(signal.SIGHUP)
            for room in scenes:
                topic = f"edge-agent/{room}/state/fusion_threshold"
                deadline = time.monotonic() + 10
                while sub.on(topic)[-1].payload != b"0.7" and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert sub.on(topic)[-1].payload == b"0.7", room
            agent.send_signal(signal.SIGTERM)
            _, err = agent.communicate(timeout=30)
        finally:
            sender.close()
            if agent.stderr is not None and not agent.stderr.closed:  # not communicated yet
                if agent.poll() is None:
                    agent.kill()
                _, err = agent.communicate(timeout=10)
                print(err[-5000:])  # shown with the failure
            sub.stop()
    finally:
        for proc in procs:
            stop(proc)
    assert agent.returncode == 0, err[-3000:]
    # Each room's events on its own topics, naming the room, with that room's intent.
    assert kitchen and {e.json()["intent"] for e in kitchen} == {"light_on"}, err[-2000:]
    assert hall and {e.json()["intent"] for e in hall} == {"light_off"}, err[-2000:]
    assert {e.json()["device"] for e in kitchen} == {"kitchen"}
    assert {e.json()["device"] for e in hall} == {"hall"}
    assert not sub.on("edge-agent/house/events")
    # Status: the agent's (the last will) and each room's; all say stopped at a clean exit.
    for base in ("house", "kitchen", "hall"):
        said = [m.payload for m in sub.on(f"edge-agent/{base}/status")]
        assert b"online" in said and said[-1] == b"stopped", (base, said)
    assert sub.on("edge-agent/kitchen/state/camera")[0].payload == b"ON"
    # Home Assistant: one device per room (linked to the agent's), plus the agent's own
    # device with the model update entity.
    configs = {m.topic: json.loads(m.payload) for m in sub.messages if m.topic.endswith("/config")}
    devices: dict[str, dict[str, object]] = {}
    for topic, payload in configs.items():
        node = topic.split("/")[2]
        devices.setdefault(node, payload["device"])
        assert payload["device"] == devices[node], topic
    assert set(devices) == {"kitchen", "hall", "house"}, sorted(configs)
    assert devices["kitchen"]["name"] == "Kitchen" and devices["hall"]["name"] == "Hall"
    assert devices["kitchen"]["via_device"] == "edge_agent_house"
    assert "homeassistant/update/house/model_update/config" in configs
    assert "homeassistant/event/kitchen/voice_command/config" in configs
    assert "homeassistant/binary_sensor/hall/presence/config" in configs
    assert "homeassistant/button/kitchen/timeline_report/config" in configs
    assert "edge-agent hall: last 5 min" in pages["hall"].read_text()
    assert not any(t.startswith("homeassistant/update/kitchen") for t in configs)
    event = configs["homeassistant/event/hall/voice_command/config"]
    assert event["state_topic"] == "edge-agent/hall/event/voice_command"
    assert [a["topic"] for a in event["availability"]] == [
        "edge-agent/house/status",
        "edge-agent/hall/status",
    ]
    assert event["availability_mode"] == "all"
    # Log lines from a room's capture threads name the room.
    assert "[audio-kitchen]" in err and "[audio-hall]" in err, err[-2000:]
    # One process, one load per model for both rooms.
    loaded = re.findall(r"model (\S+) loaded \(", err)
    assert len(loaded) >= 4 and len(loaded) == len(set(loaded)), loaded


def _fake_agent(multi: bool, states: dict[str, tuple[str, str]]) -> object:
    from types import SimpleNamespace

    from agent.health.notify import Heartbeats

    captures = {
        room: SimpleNamespace(
            camera=SimpleNamespace(state=cam, alive=lambda: True),
            microphone=SimpleNamespace(state=mic, alive=lambda: True),
        )
        for room, (cam, mic) in states.items()
    }
    return SimpleNamespace(
        _multi=multi,
        captures=captures,
        rooms=dict.fromkeys(states),
        _audio_beats=Heartbeats(limit_s=0.0),
        _audio_ended=set(),
        _stop=threading.Event(),
    )


def test_status_names_each_degraded_room_and_the_single_room_reads_as_before() -> None:
    from agent.app import LiveAgent

    one = _fake_agent(False, {"box": ("offline", "online")})
    assert LiveAgent._status(one) == "degraded: camera offline, microphone online"  # type: ignore[arg-type]
    both = _fake_agent(True, {"kitchen": ("online", "online"), "hall": ("online", "offline")})
    assert LiveAgent._status(both) == "degraded: hall camera online, hall microphone offline"  # type: ignore[arg-type]
    fine = _fake_agent(True, {"kitchen": ("online", "online"), "hall": ("online", "online")})
    assert LiveAgent._status(fine) == "running"  # type: ignore[arg-type]


def test_watchdog_needs_every_online_rooms_audio_and_files_end_together() -> None:
    from agent.app import LiveAgent

    agent: Any = _fake_agent(True, {"kitchen": ("online", "online"), "hall": ("online", "offline")})
    agent._audio_stage = lambda room: LiveAgent._audio_stage(agent, room)
    agent._on_progress = lambda stage, room=None: LiveAgent._on_progress(agent, stage, room)
    LiveAgent._on_room_progress(agent, "kitchen", "audio")
    # limit 0: every beat is late at once; the hall's microphone is offline (degraded, not stalled)
    assert agent._audio_beats.stalled() == ["audio kitchen"]
    assert LiveAgent._audio_ok(agent) is False
    agent.captures["kitchen"].microphone.state = "offline"
    assert LiveAgent._audio_ok(agent) is True
    LiveAgent._audio_end(agent, "kitchen")
    assert not agent._stop.is_set()  # the hall still has audio
    LiveAgent._audio_end(agent, "hall")
    assert agent._stop.is_set()
