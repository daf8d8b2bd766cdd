"""The timeline report: a bounded trace of the real pipeline, rendered to one HTML page.

Real parts: the sample scenes replayed through the real pipeline (Silero VAD, the command
model, BlazeFace), the page rendered by headless Chromium (the DOM after plotly.js ran), and
the real daemon writing its report on SIGUSR1.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from agent.app import build_pipeline, replay
from agent.config.mqtt import MqttConfig
from agent.config.schema import AgentConfig
from agent.core.media import AudioChunk, Frame
from agent.errors import ReportError
from agent.extractors.speech import Recognition
from agent.extractors.vad import SpeechSegment
from agent.extractors.vision import Detection
from agent.publish.broker import LocalBroker
from agent.publish.mqtt import MqttPublisher
from agent.publish.outbox import Outbox
from agent.publish.sink import MemorySink
from agent.publish.subscriber import Collector
from agent.timeline import trace
from agent.timeline.page import require_plotly, verdict, write_report
from agent.timeline.trace import Snapshot, Timeline
from tests.conftest import SAMPLES, agent_cmd, run_agent
from tests.daemon import long_audio

CHROMIUM_TIMEOUT_S = 90


def _replay(scene: str) -> tuple[Snapshot, MemorySink]:
    sink = MemorySink()
    pipeline = build_pipeline(AgentConfig(), sink)
    timeline = Timeline(1.0)
    timeline.attach(pipeline)
    replay(pipeline, SAMPLES / scene / "video.avi", SAMPLES / scene / "audio.wav")
    return timeline.snapshot(), sink


def test_person_command_is_traced_as_accepted(tmp_path: Path) -> None:
    snap, sink = _replay("person_command")
    assert [e.intent for e in sink.events] == ["light_on"]
    [d] = snap.decisions
    assert d.outcome == "accepted" and d.kind == "voice_command" and d.intent == "light_on"
    assert d.text == "turn on the light"
    assert d.image is not None and d.fused is not None and d.audio is not None
    assert d.fusion_threshold is not None and d.fused >= d.fusion_threshold
    # The trace's span is the event's span, and it was decided after the speech ended.
    assert abs(d.start_ns / 1e9 - sink.events[0].start) < 1e-3
    assert d.decided_ns >= d.end_ns
    # Frames analysed around the utterance carry the astronaut's face; presence frames too.
    boxed = [f for f in snap.frames if f.box is not None]
    assert len(boxed) >= 4 and all(f.jpeg.startswith(b"\xff\xd8") for f in snap.frames)
    assert any(d.start_ns - 1e9 <= f.t_ns <= d.end_ns + 1e9 for f in boxed)
    # 8 s of audio at one envelope row per 20 ms, and every stage's timing.
    assert 350 <= len(snap.envelope) <= 450
    assert snap.envelope[:, 2].max() > 0.9  # the VAD heard the phrase
    stages = {s for _, s, _ in snap.timings}
    assert {"vad_chunk", "vision_frame", "presence_frame"} <= stages

    page = tmp_path / "report.html"
    size = write_report(snap, page, title="person_command")
    text = page.read_text()
    assert size == len(text.encode()) and "accepted: voice_command light_on" in text
    assert "“turn on the light” → light_on" in text


def test_nobody_command_is_traced_as_rejected_with_the_reason(tmp_path: Path) -> None:
    snap, sink = _replay("nobody_command")
    assert sink.events == []
    [d] = snap.decisions
    assert d.outcome == "nobody_in_view" and d.intent == "light_on"
    assert d.image == 0.0
    assert verdict(d).startswith("rejected: nobody in view")
    assert snap.frames and all(f.box is None for f in snap.frames)
    write_report(snap, tmp_path / "r.html", title="nobody_command")
    assert "rejected: nobody in view" in (tmp_path / "r.html").read_text()


def test_chatter_is_traced_as_not_a_command_with_the_recognizers_reason() -> None:
    snap, sink = _replay("person_chatter")
    assert sink.events == [] and len(snap.decisions) == 2
    for d in snap.decisions:
        assert d.kind == "speech" and d.outcome == "not_a_command" and d.intent is None
        assert d.fused is None and d.reason  # no fusion; the recognizer said why
        assert verdict(d) == f"rejected: {d.reason}" or verdict(d).endswith(f"({d.reason})")
    # The person was in view all along: the frames say so even though nothing was decided.
    assert snap.frames and all(f.score >= 0.6 for f in snap.frames)


@pytest.mark.parametrize(
    ("change", "outcome", "says"),
    [
        ({"fusion_threshold": 0.95}, "below_threshold", "rejected: below threshold (fused 0."),
        ({"enabled": False}, "disabled", "rejected: event type disabled"),
    ],
)
def test_run_time_settings_show_in_the_reason(
    change: dict[str, object], outcome: str, says: str
) -> None:
    """What MQTT commands change (threshold, the type's switch) is why the command failed."""
    sink = MemorySink()
    pipeline = build_pipeline(AgentConfig(), sink)
    if "enabled" in change:
        pipeline.settings.set_enabled("voice_command", False)
    else:
        pipeline.settings.update(fusion_threshold=change["fusion_threshold"])
    timeline = Timeline(1.0)
    timeline.attach(pipeline)
    scene = SAMPLES / "person_command"
    replay(pipeline, scene / "video.avi", scene / "audio.wav")
    [d] = timeline.snapshot().decisions
    assert sink.events == [] and d.outcome == outcome and d.intent == "light_on"
    assert verdict(d).startswith(says), verdict(d)
    if outcome == "below_threshold":
        assert d.fusion_threshold == 0.95 and verdict(d).endswith(" < 0.95)")


def _frame(t_s: float, index: int) -> Frame:
    return Frame(int(t_s * 1e9), index, np.zeros((48, 64, 3), np.uint8))


def _seg(start_s: float, end_s: float) -> SpeechSegment:
    return SpeechSegment(int(start_s * 1e9), int(end_s * 1e9), np.zeros(0, np.int16), 0.9)


def test_the_trace_stays_bounded_however_long_it_runs() -> None:
    """The daemon runs for months: time and count bound every part of the trace."""
    timeline = Timeline(0.1)  # 6 s
    face = Detection(0.9, (0.2, 0.2, 0.6, 0.7))
    rec = Recognition("light_on", "turn on the light", 0.8, "m@1")
    chunk_n = 512
    t = 0.0
    for i in range(2000):  # 65 s of audio, a frame scored per chunk, timings, decisions
        samples = np.full(chunk_n, 1000 * (i % 7), np.int16)
        timeline.stage("vad_chunk", 0.1)
        timeline.stage("vision_frame", 9.0)
        timeline.frame_scored(_frame(t, i), face if i % 2 else None, 0.9 if i % 2 else 0.0)
        if i % 10 == 0:
            timeline.decided(_seg(t - 0.3, t), rec, 0.9, 0.85)
            timeline.outcome("voice_command", int((t - 0.3) * 1e9), int(t * 1e9), "accepted", "")
        timeline.audio(AudioChunk(int(t * 1e9), i * chunk_n, samples), 0.5, False)
        t += chunk_n / 16_000
    snap = timeline.snapshot()
    lo = snap.end_ns - timeline.window_ns
    assert snap.start_ns == lo
    for times in (
        snap.envelope[:, 0].tolist(),
        [f.t_ns for f in snap.frames],
        [t_ns for t_ns, _, _ in snap.timings],
        [d.end_ns for d in snap.decisions],
    ):
        assert times and min(times) >= lo
    assert len(timeline._envelope.rows()) <= timeline._envelope.capacity
    assert len(snap.envelope) == pytest.approx(6 * trace.ENVELOPE_PER_S, abs=3)
    assert len(snap.decisions) == pytest.approx(6 / (10 * chunk_n / 16_000), abs=1)
    assert all(d.outcome == "accepted" for d in snap.decisions)

    # A burst inside the window is capped by count, not only by time.
    burst = Timeline(60.0)
    for i in range(trace.MAX_FRAMES + 50):
        burst.frame_scored(_frame(i * 1e-3, i), None, 0.0)
    for i in range(trace.MAX_DECISIONS + 50):
        burst.decided(_seg(i * 1e-3, i * 1e-3 + 1e-4), rec, None, None)
    for _ in range(3):  # chunks far larger than the envelope's capacity
        burst.audio(AudioChunk(0, 0, np.ones(16_000 * 3600, np.int16)), 0.1, True)
    snap = burst.snapshot()
    assert len(snap.frames) == trace.MAX_FRAMES and snap.frames[0].index == 50
    assert len(snap.decisions) == trace.MAX_DECISIONS
    assert len(burst._envelope.rows()) == burst._envelope.capacity


def test_a_frame_without_a_thumbnail_does_not_break_the_decision(
    caplog: pytest.LogCaptureFixture,
) -> None:
    timeline = Timeline(1.0)
    bad = Frame(0, 0, np.zeros((0, 0, 3), np.uint8))  # cv2.resize refuses an empty image
    timeline.frame_scored(bad, None, 0.0)
    timeline.frame_scored(bad, None, 0.0)
    [shot] = timeline.snapshot().frames
    assert shot.jpeg == b"" and shot.score == 0.0
    assert caplog.text.count("no thumbnail") == 1  # logged once, not per frame


def test_a_missing_plotly_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "plotly", None)  # import plotly -> ImportError
    with pytest.raises(ReportError, match=re.escape("pip install 'edge-agent[report]'")):
        require_plotly()


def test_replay_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    """`replay --report`, then the page as a browser shows it: the DOM after plotly.js ran."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (scripts/bootstrap.sh --dev installs it)")
    page = tmp_path / "out.html"
    scene = SAMPLES / "person_command"
    res = run_agent(
        "replay",
        "--video",
        str(scene / "video.avi"),
        "--audio",
        str(scene / "audio.wav"),
        "--report",
        str(page),
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert '"intent":"light_on"' in res.stdout
    assert f"timeline report: {page}" in res.stderr
    html = page.read_text()
    # Self-contained: no script, style or image is fetched from anywhere.
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']?(https?:)?//", html)
    # Static HTML holds no plot yet: the SVG below exists only once plotly.js has run.
    assert 'class="main-svg"' not in html

    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1400,1500",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=CHROMIUM_TIMEOUT_S,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    out = dom.stdout
    assert 'class="main-svg"' in out, out[:2000]
    annotations = re.findall(r'class="annotation-text"[^>]*>(.*?)</text>', out, re.S)
    assert any("accepted: voice_command light_on" in a for a in annotations), annotations
    assert any("turn on the light" in a and "light_on" in a for a in annotations), annotations
    # One subplot per row of the timeline, and the analysed frames drawn as images.
    titles = re.findall(r'class="annotation-text"[^>]*>([^<]*)</text>', out)
    for row in ("camera: analysed frames", "audio: waveform, VAD, words", "decision"):
        assert row in titles
    assert len(re.findall(r"<image[^>]+data:image/jpeg;base64", out)) >= 8
    assert out.count('class="scatterlayer') >= 6  # one per subplot (traces drawn)


def test_the_daemon_writes_its_report_on_sigusr1(tmp_path: Path) -> None:
    scene = SAMPLES / "person_command"
    report = tmp_path / "timeline.html"
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        f"device_id: box7\ncamera:\n  source: {scene / 'video.avi'}\n"
        f"microphone:\n  source: {long_audio(16, tmp_path / 'long.wav')}\n"
        f"mqtt:\n  enabled: false\nreport:\n  minutes: 1\n  path: {report}\n"
    )
    log = tmp_path / "agent.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            agent_cmd("run", "--config", str(cfg)),
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the first event, on stdout without MQTT (~4 s)
        assert '"intent":"light_on"' in line, log.read_text()[-2000:]
        proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 60
        while not report.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert report.exists(), log.read_text()[-2000:]
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    text = report.read_text()
    assert "accepted: voice_command light_on" in text and "last 1 min" in text
    assert "local time" in text  # a live report is on the wall clock
    assert f"timeline report written to {report}" in log.read_text()
    assert proc.returncode == 0


def test_a_home_assistant_button_writes_the_report_over_mqtt(
    broker: LocalBroker, tmp_path: Path
) -> None:
    scene = SAMPLES / "person_command"
    report = tmp_path / "state" / "timeline.html"  # the default: $STATE_DIRECTORY
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        f"device_id: box8\ncamera:\n  source: {scene / 'video.avi'}\n"
        f"microphone:\n  source: {long_audio(16, tmp_path / 'long.wav')}\n"
        f"mqtt:\n  host: {broker.host}\n  port: {broker.port}\n"
    )
    sub = Collector(broker.host, broker.port, "#").start()
    sender = MqttPublisher(
        MqttConfig(host=broker.host, port=broker.port), "sender", outbox=Outbox(None)
    )
    log = tmp_path / "agent.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            agent_cmd("run", "--config", str(cfg)),
            stdout=subprocess.DEVNULL,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    try:
        [button] = sub.wait_for("homeassistant/button/box8/timeline_report/config", timeout=60)
        config = button.json()
        assert config["command_topic"] == "edge-agent/box8/set/timeline_report"
        assert config["payload_press"] == "PRESS"
        sub.wait_for("edge-agent/box8/events", timeout=30)
        sender.start()
        sender.publish_raw(config["command_topic"], config["payload_press"])
        deadline = time.monotonic() + 60
        while not report.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert report.exists(), log.read_text()[-2000:]
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        sender.close()
        sub.stop()
    assert "accepted: voice_command light_on" in report.read_text()
    # The press is handled beside the commands: no "unknown_key" error answers it.
    assert sub.on("edge-agent/box8/error") == []
    assert "timeline_report pressed over MQTT" in log.read_text()
