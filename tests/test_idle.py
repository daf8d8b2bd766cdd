"""Idle gating: frames kept as JPEG, the VAD's energy gate, motion-gated presence, batched
idle audio and an MQTT thread that sleeps until woken. Real parts where there are any (the
sample videos' MJPEG, the MJPEG test camera, Silero, Mosquitto); fakes only for counting."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.bench_scenes import room_noise
from agent.config.capture import CameraConfig, MicrophoneConfig
from agent.config.sections import PresenceConfig, VadConfig
from agent.core.clock import MonotonicClock
from agent.core.media import AUDIO_RATE, AudioChunk, Frame
from agent.extractors.vad import WINDOW, Segmenter, SileroVad, VadState
from agent.models.store import ModelStore
from agent.pipeline import Presence
from agent.publish.broker import LocalBroker
from agent.sources.files import VideoFileSource, read_wav
from agent.sources.supervisor import MicrophoneSupervisor

SAMPLES = Path(__file__).resolve().parents[1] / "agent" / "samples"


def test_mjpeg_file_frames_stay_jpeg_until_used() -> None:
    lazy = VideoFileSource(SAMPLES / "person_command" / "video.avi")
    eager = VideoFileSource(SAMPLES / "person_command" / "video.avi", compressed=False)
    try:
        assert lazy.compressed and not eager.compressed
        for _ in range(5):
            a, b = lazy.read(), eager.read()
            assert a is not None and b is not None
            assert not a.decoded and b.decoded
            assert a.nbytes < b.nbytes / 5  # JPEG, not 320x240x3
            thumb = a.thumbnail()
            assert thumb.shape == (30, 40) and not a.decoded  # motion checks do not decode
            img = a.image
            assert a.decoded and img.shape == b.image.shape
            # libjpeg and FFmpeg convert YUV to BGR a level or so apart (measured 1.03).
            assert float(np.mean(np.abs(img.astype(int) - b.image.astype(int)))) < 2.0
    finally:
        lazy.close()
        eager.close()


def test_frame_needs_an_image_or_jpeg() -> None:
    with pytest.raises(ValueError, match="image or its JPEG"):
        Frame(0, 0)
    bad = Frame(0, 0, jpeg=np.frombuffer(b"\xff\xd8 not really", np.uint8))
    with pytest.raises(ValueError, match="undecodable"):
        _ = bad.image


def test_live_mjpeg_camera_keeps_jpeg(tmp_path: Path) -> None:
    from agent.sources.camera import OpenCvCamera
    from testbed import free_port, start_mjpeg, stop

    port = free_port()
    server = start_mjpeg(port, SAMPLES / "person_command" / "video.avi", fps=10)
    try:
        url = f"http://127.0.0.1:{port}/stream.mjpg"
        cam = _open_when_up(lambda: OpenCvCamera(CameraConfig(source=url), MonotonicClock()))
        off = _open_when_up(
            lambda: OpenCvCamera(CameraConfig(source=url, compressed_ring=False), MonotonicClock())
        )
        try:
            assert cam.compressed and not off.compressed
            frame = cam.read()
            assert not frame.decoded and frame.image.shape == (240, 320, 3)
            assert off.read().decoded
        finally:
            cam.close()
            off.close()
    finally:
        stop(server)


def _open_when_up(make):  # type: ignore[no-untyped-def]
    from agent.errors import SourceError

    for _ in range(50):  # the server needs a moment to listen
        try:
            return make()
        except SourceError:
            time.sleep(0.1)
    return make()


class _CountingVad:
    def __init__(self, inner: SileroVad) -> None:
        self.inner = inner
        self.calls = 0

    def __call__(self, window: np.ndarray) -> float:
        self.calls += 1
        return self.inner(window)

    @property
    def state(self) -> VadState:
        return self.inner.state

    @state.setter
    def state(self, value: VadState) -> None:
        self.inner.state = value


def _cut(
    samples: np.ndarray, gate_db: float
) -> tuple[list[tuple[int, int, bytes]], _CountingVad, Segmenter]:
    vad = _CountingVad(SileroVad(ModelStore().load("silero_vad_int8")[0]))
    seg = Segmenter(VadConfig(gate_db=gate_db), vad)
    out: list[tuple[int, int, bytes]] = []
    for i in range(0, len(samples), WINDOW):
        chunk = AudioChunk(i * 1_000_000_000 // AUDIO_RATE, i, samples[i : i + WINDOW])
        out += [(s.start_ns, s.end_ns, s.samples.tobytes()) for s in seg.feed(chunk)]
    out += [(s.start_ns, s.end_ns, s.samples.tobytes()) for s in seg.flush()]
    return out, vad, seg


def test_energy_gate_skips_the_model_in_a_quiet_room_and_keeps_speech() -> None:
    speech = read_wav(SAMPLES / "person_command" / "audio.wav").astype(np.float64)
    noise = room_noise(30.0, seed=3)
    mix = noise.copy()
    mix[6 * AUDIO_RATE : 6 * AUDIO_RATE + len(speech)] += speech  # after the floor is known
    # A door knock in the quiet after it: it opens the gate, the probe hears no speech.
    knock = 20 * AUDIO_RATE
    mix[knock : knock + 800] += 8000 * np.exp(-np.arange(800) / 150.0) * np.sin(
        np.arange(800) * 0.35
    )
    audio = np.clip(mix, -32768, 32767).astype(np.int16)
    gated, vad_gated, seg = _cut(audio, gate_db=8.0)
    plain, vad_plain, _ = _cut(audio, gate_db=0.0)
    assert plain, "the sample's command must be found"
    # The same utterances, to the sample: the model heard what it would have heard without
    # a gate, and the windows the gate held back add no pre-roll.
    assert gated == plain
    windows = len(audio) // WINDOW
    assert vad_plain.calls == windows
    assert vad_gated.calls < windows / 2  # most room-noise windows never reach the model
    assert seg.replays == 1  # the command's onset; the knock cost the probe only


def _arrival() -> tuple[np.ndarray, np.ndarray]:
    """person_arrives: the empty room at 0 s and someone in it by 6.9 s."""
    cap = cv2.VideoCapture(str(SAMPLES / "person_arrives" / "video.avi"))
    images = []
    while len(images) < 70:
        ok, img = cap.read()
        if not ok:
            break
        images.append(img)
    cap.release()
    return images[0], images[-1]


def test_presence_runs_the_detector_only_when_the_picture_moves() -> None:
    empty, person = _arrival()
    tracker = Presence(PresenceConfig(motion_threshold=1.5, refresh_s=30))
    runs: list[int] = []

    def check(i: int, img: np.ndarray) -> None:
        frame = Frame(i * 1_000_000_000, i, img)
        assert tracker.fresh(frame)
        if tracker.changed(frame):
            runs.append(i)
            tracker.scored(0.9 if img is person else 0.0)

    for i in range(5):
        check(i, empty)  # a still, empty room: one run, then the answer stands
    check(5, person)  # someone came in
    for i in range(6, 10):
        check(i, person)
    check(40, person)  # refresh_s passed
    assert runs == [0, 5, 40]
    assert tracker.still == 8 and tracker.last_score == 0.9


class _QueuedMic:
    """Chunks captured in real time into a queue, like PortAudio's callback."""

    name = "fake"
    live = True

    def __init__(self, chunks: int) -> None:
        self.total = chunks
        self.delivered = 0
        self.reads = 0
        self._t0 = time.monotonic()

    def waiting(self) -> int:
        ready = int((time.monotonic() - self._t0) / 0.032)
        return max(0, min(self.total, ready) - self.delivered)

    def read(self) -> AudioChunk | None:
        self.reads += 1
        if self.delivered >= self.total:
            return None
        while self.waiting() == 0:
            time.sleep(0.002)
        i = self.delivered
        self.delivered += 1
        return AudioChunk(
            i * 32_000_000, i * 512, (np.arange(i * 512, (i + 1) * 512) % 30_000).astype(np.int16)
        )

    def close(self) -> None:
        pass


def test_idle_audio_is_taken_in_batches_and_nothing_is_lost() -> None:
    got: list[AudioChunk] = []
    done = threading.Event()
    mic = _QueuedMic(40)
    wakes = []

    def idle() -> bool:
        wakes.append(mic.waiting())
        return True

    sup = MicrophoneSupervisor(
        MicrophoneConfig(idle_batch_ms=96),
        MonotonicClock(),
        got.append,
        opener=lambda c, k: mic,  # type: ignore[arg-type,return-value]
        on_end=done.set,
        idle=idle,
    )
    sup.start()
    assert done.wait(20)
    sup.stop()
    # Every sample once, in order, on its own clock ...
    assert np.array_equal(np.concatenate([c.samples for c in got]), np.arange(40 * 512) % 30_000)
    for before, after in itertools.pairwise(got):
        assert after.first_sample == before.first_sample + len(before.samples)
        assert after.t_ns == before.end_ns
    # ... and what queued up during each idle wait reached the consumer in one call.
    assert len(got) <= 40 // 2
    assert max(len(c.samples) for c in got) >= 3 * 512


def test_mqtt_thread_sleeps_until_a_message_is_stored(broker: LocalBroker) -> None:
    from agent.config.mqtt import MqttConfig
    from agent.publish.mqtt import MqttPublisher
    from agent.publish.subscriber import Collector

    host, port = broker.host, broker.port
    cfg = MqttConfig(host=host, port=port)
    pub = MqttPublisher(cfg, "idle-test")
    turns = 0
    inner = pub._service

    def counting(timeout: float):  # type: ignore[no-untyped-def]
        nonlocal turns
        turns += 1
        return inner(timeout)

    pub._service = counting  # type: ignore[method-assign]
    col = Collector(host, port, "edge-agent/idle-test/probe").start()
    try:
        pub.start()
        assert pub.connected
        time.sleep(0.5)
        before = turns
        time.sleep(2.0)
        # Polling every 20 ms would be ~100 turns; asleep in select() it is a handful.
        assert turns - before <= 10
        pub.publish_raw("edge-agent/idle-test/probe", "x", qos=1)
        assert col.wait_for("edge-agent/idle-test/probe", timeout=5.0)
    finally:
        pub.close()
        col.stop()


def test_ring_keeps_decoded_images_only_for_recent_frames() -> None:
    from agent.sync.ring import KEEP_DECODED_NS, FrameRing

    src = VideoFileSource(SAMPLES / "person_command" / "video.avi")
    ring = FrameRing(10.0)
    try:
        frames = []
        for _ in range(50):  # 5 s at 10 fps
            f = src.read()
            assert f is not None
            _ = f.image  # analysed
            frames.append(f)
            ring.push(f)
    finally:
        src.close()
    newest = frames[-1].t_ns
    for f in frames:
        assert f.decoded == (f.t_ns >= newest - KEEP_DECODED_NS)
    assert frames[0].image.shape == (240, 320, 3)  # decodes again when asked
    assert ring.nbytes() < 25 * 240 * 320 * 3


def test_presence_only_confirms_a_person_every_half_hold_even_while_the_picture_moves() -> None:
    empty, person = _arrival()
    moved = np.roll(person, 40, axis=1)  # the same person, the picture moved
    tracker = Presence(PresenceConfig(interval_s=1.0, hold_s=5.0, motion_threshold=1.5))
    runs: list[int] = []
    present: list[bool] = []
    for i in range(15):
        img = empty if i < 2 else (person if i % 2 else moved)
        if i >= 10:
            img = empty if i % 2 else np.roll(empty, 40, axis=1)  # gone, the picture moves
        t = i * 1_000_000_000
        frame = Frame(t, i, img)
        assert tracker.fresh(frame)
        score = None
        if not tracker.confirmed(t) and tracker.changed(frame):
            runs.append(i)
            score = 0.9 if i >= 2 and i < 10 else 0.0
            tracker.scored(score)
        tracker.update(t, frame, score, 0.5, speaking=False)
        present.append(tracker.present)
    # Arrival at 2 s is seen at once; then a run every 2.5 s (hold_s / 2) while present,
    # and every check again once the confirmation is due and nobody is there.
    assert runs == [0, 2, 5, 8, 11, 12, 13, 14], runs
    # Last confirmed at 8 s: on until 8 + hold_s (a detector on every check: 9 + hold_s).
    assert present == [False] * 2 + [True] * 12 + [False], present


def test_speech_that_starts_below_the_gate_is_cut_as_without_it_to_the_sample() -> None:
    """A soft onset the gate held back (it opens a few windows later, on louder speech) is
    replayed to the model and the utterance keeps the same pre-roll as without a gate."""

    def loudness_vad(window: np.ndarray) -> float:  # stateless: the gate cannot change it
        return 0.9 if float(np.sqrt(np.mean(window**2))) > 0.0015 else 0.0

    rng = np.random.default_rng(5)
    parts = [
        rng.normal(0, 30, 188 * WINDOW),  # 6 s room noise: the floor, then the gate engages
        rng.normal(0, 60, 3 * WINDOW),  # soft onset: speech to the model, below the gate
        rng.normal(0, 600, 30 * WINDOW),  # loud: the gate opens
        rng.normal(0, 30, 2 * AUDIO_RATE),
    ]
    audio = np.clip(np.concatenate(parts), -32768, 32767).astype(np.int16)

    def cut(gate_db: float) -> list[tuple[int, int, bytes]]:
        seg = Segmenter(VadConfig(gate_db=gate_db, endpoint_ms=0), loudness_vad)
        out = []
        for i in range(0, len(audio), WINDOW):
            chunk = AudioChunk(i * 1_000_000_000 // AUDIO_RATE, i, audio[i : i + WINDOW])
            out += [(s.start_ns, s.end_ns, s.samples.tobytes()) for s in seg.feed(chunk)]
        if gate_db:
            assert seg.gated > 50  # the gate was closed before the onset
        return out

    gated, plain = cut(8.0), cut(0.0)
    assert len(plain) == 1
    assert plain[0][0] == 188 * WINDOW * 1_000_000_000 // AUDIO_RATE  # at the soft onset
    assert gated == plain
