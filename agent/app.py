"""Composition root: the only place that sees the whole config and wires the stages."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from agent.config.schema import AgentConfig
from agent.core.clock import MonotonicClock
from agent.extractors.speech import build_recognizer
from agent.extractors.vad import Segmenter, SileroVad
from agent.extractors.vision import FaceDetector
from agent.fusion.weighted import WeightedSum
from agent.health.notify import Heartbeats, Notifier, Watchdog
from agent.models.store import ModelStore
from agent.pipeline import Models, Pipeline
from agent.publish.sink import JsonLinesSink, Sink
from agent.sources.files import VideoFileSource, WavFileSource
from agent.sources.supervisor import Capture
from agent.sync.ring import FrameRing

_LOGGER = logging.getLogger(__name__)


def build_pipeline(cfg: AgentConfig, sink: Sink, beats: Heartbeats | None = None) -> Pipeline:
    store = ModelStore(cfg.models.dir)
    vad_session, vad_manifest = store.load(cfg.vad.model)
    vis_session, vis_manifest = store.load(cfg.vision.model, threads=cfg.vision.threads)
    detector = FaceDetector(vis_session, vis_manifest.preprocess, vis_manifest.postprocess)
    recognizer = build_recognizer(cfg.speech, cfg.intents)
    return Pipeline(
        device_id=cfg.device_id,
        frames=FrameRing(cfg.buffer.seconds),
        segmenter=Segmenter(cfg.vad, SileroVad(vad_session)),
        recognizer=recognizer,
        scorer=detector,
        fuser=WeightedSum(cfg.fusion),
        vision_cfg=cfg.vision,
        fusion_cfg=cfg.fusion,
        rule_cfg=cfg.events.voice_command,
        models=Models(vision=vis_manifest.ref, vad=vad_manifest.ref),
        sink=sink,
        on_progress=beats.beat if beats else None,
    )


@dataclass(frozen=True, slots=True)
class ReplayReport:
    media_s: float
    wall_s: float
    cpu_s: float
    frames: int
    chunks: int


def replay(
    pipeline: Pipeline, video: Path, audio: Path, *, realtime: bool = False, chunk_ms: int = 32
) -> ReplayReport:
    """Feed recorded media through ``pipeline`` in timestamp order (one media clock)."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    vsrc = VideoFileSource(video)
    asrc = WavFileSource(audio, chunk_ms=chunk_ms)
    frames = chunks = 0
    asrc_end_ns = int(asrc.duration_s * 1e9)
    grace_ns = int(pipeline.window_after_s * 1e9)
    try:
        nxt = vsrc.read()
        while (chunk := asrc.read()) is not None:
            if realtime:
                delay = chunk.end_ns / 1e9 - (time.perf_counter() - wall0)
                if delay > 0:
                    time.sleep(delay)
            # Frames up to the end of this chunk exist "now", as they would live.
            while nxt is not None and nxt.t_ns <= chunk.end_ns:
                pipeline.on_frame(nxt)
                frames += 1
                nxt = vsrc.read()
            pipeline.on_audio(chunk)
            chunks += 1
        # Decide the last utterance before trailing video could push its frames out of the ring.
        while nxt is not None and nxt.t_ns <= asrc_end_ns + grace_ns:
            pipeline.on_frame(nxt)
            frames += 1
            nxt = vsrc.read()
        pipeline.finish()
    finally:
        vsrc.close()
        asrc.close()
    return ReplayReport(
        media_s=asrc.duration_s,
        wall_s=time.perf_counter() - wall0,
        cpu_s=time.process_time() - cpu0,
        frames=frames,
        chunks=chunks,
    )


class LiveAgent:
    """The daemon: capture threads feed the pipeline; systemd is told how it goes."""

    def __init__(self, cfg: AgentConfig) -> None:
        from agent.publish.mqtt import MqttPublisher

        self.cfg = cfg
        self._stop = threading.Event()
        self.beats = Heartbeats(cfg.health.stall_seconds)
        self.notifier = Notifier()
        self.publisher = MqttPublisher(cfg.mqtt, cfg.device_id) if cfg.mqtt.enabled else None
        sink: Sink = self.publisher if self.publisher else JsonLinesSink(sys.stdout)
        self.pipeline = build_pipeline(cfg, sink, self.beats)
        if self.publisher is not None:
            self.beats.add_check("mqtt", self.publisher.network_alive)
        self.control = None
        if self.publisher is not None:
            from agent.control import MqttControl

            self.control = MqttControl(cfg, self.publisher, self.pipeline)
        self._clock = MonotonicClock()

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        _LOGGER.info("stopping (signal %d)", signum)
        self._stop.set()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        self.capture = Capture(
            self.cfg.camera,
            self.cfg.microphone,
            self._clock,
            self.pipeline.on_frame,
            self.pipeline.on_audio,
            on_audio_end=self._stop.set,
        )
        if self.control is not None:
            self.control.add_capture(self.capture)
            self.control.attach()
        if self.publisher is not None:
            self.publisher.start()
        self.capture.start()
        self.notifier.ready(
            f"running: camera {self.cfg.camera.source}, mic {self.cfg.microphone.source}"
        )
        watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        dog = None
        if watchdog_usec:
            dog = Watchdog(self.notifier, self.beats, watchdog_usec / 2e6)
            dog.start()
        _LOGGER.info("edge-agent %s running", self.cfg.device_id)
        try:
            while not self._stop.wait(0.5):
                if self.control is not None:
                    self.control.tick()
        finally:
            self.notifier.stopping()
            if dog:
                dog.stop()
            self.capture.stop()
            self.pipeline.finish()
            if self.publisher is not None:
                self.publisher.close()
        return 0
