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
from agent.errors import ConfigError
from agent.extractors.pose import PoseEstimator
from agent.extractors.speech import build_recognizer
from agent.extractors.vad import Segmenter, SileroVad
from agent.extractors.vision import FaceDetector
from agent.fusion.help import HelpRule
from agent.fusion.weighted import WeightedSum
from agent.health.notify import Heartbeats, Notifier, Watchdog
from agent.models.store import ModelStore
from agent.pipeline import HelpParts, Models, Pipeline, Presence
from agent.publish.sink import JsonLinesSink, Sink
from agent.sources.files import VideoFileSource, WavFileSource
from agent.sources.supervisor import Capture
from agent.sync.ring import FrameRing

_LOGGER = logging.getLogger(__name__)


def build_pipeline(cfg: AgentConfig, sink: Sink, beats: Heartbeats | None = None) -> Pipeline:
    store = ModelStore(cfg.models.dir)
    vad_session, vad_manifest = store.load(cfg.vad.model, runtimes=cfg.runtimes)
    vis_session, vis_manifest = store.load(
        cfg.vision.model, threads=cfg.vision.threads, runtimes=cfg.runtimes
    )
    detector = FaceDetector(vis_session, vis_manifest.preprocess, vis_manifest.postprocess)
    recognizer = build_recognizer(cfg.speech, cfg.intents)
    help_parts = None
    help_cfg = cfg.events.help_call
    if help_cfg.intent in cfg.intents:
        det_session, det_manifest = store.load(
            cfg.pose.detector, threads=cfg.pose.threads, runtimes=cfg.runtimes
        )
        lm_session, lm_manifest = store.load(
            cfg.pose.landmarks, threads=cfg.pose.threads, runtimes=cfg.runtimes
        )
        help_parts = HelpParts(
            intent=help_cfg.intent,
            pose=PoseEstimator(det_session, det_manifest, lm_session, lm_manifest),
            rule=HelpRule.from_fusion(cfg.fusion, min_lying_frames=help_cfg.min_lying_frames),
            detector_ref=det_manifest.ref,
            landmark_ref=lm_manifest.ref,
            max_frames=cfg.pose.max_frames_per_window,
            cooldown_s=help_cfg.cooldown_s,
            enabled=help_cfg.enabled,
        )
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
        help_parts=help_parts,
        presence=Presence(cfg.presence),
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

    def __init__(self, cfg: AgentConfig, config_path: Path | None = None) -> None:
        from agent.publish.mqtt import MqttPublisher

        self.cfg = cfg
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.config_path = config_path
        self.beats = Heartbeats(cfg.health.stall_seconds)
        self._audio_beats = Heartbeats(cfg.health.stall_seconds)
        self.notifier = Notifier()
        self.publisher = MqttPublisher(cfg.mqtt, cfg.device_id) if cfg.mqtt.enabled else None
        sink: Sink = self.publisher if self.publisher else JsonLinesSink(sys.stdout)
        # Only inference progress is a heartbeat; a camera that is offline is "degraded"
        # (the supervisor reconnects), not a reason for systemd to restart the agent.
        self.pipeline = build_pipeline(cfg, sink, self._audio_beats)
        if self.publisher is not None:
            self.beats.add_check("mqtt", self.publisher.network_alive)
        self.control = None
        if self.publisher is not None:
            from agent.control import MqttControl

            self.control = MqttControl(cfg, self.publisher, self.pipeline)
            presence = self.pipeline.presence_state
            if presence is not None and presence.enabled:
                self.control.add_state(
                    "presence", "Presence", lambda: presence.present, "occupancy"
                )
                self.control.add_state("talking", "Talking", lambda: presence.talking)
        self._clock = MonotonicClock()

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        _LOGGER.info("stopping (signal %d)", signum)
        self._stop.set()

    def request_reload(self, signum: int = 0, frame: FrameType | None = None) -> None:
        self._reload.set()  # handled on the main loop, not inside the signal handler

    def _reload_config(self) -> None:
        """SIGHUP: re-read the file; keep the running config if the new one is bad."""
        from agent.config.loader import load_config

        if self.config_path is None:
            _LOGGER.warning("SIGHUP ignored: no config file to reload")
            return
        try:
            new = load_config(self.config_path)
        except ConfigError as err:
            _LOGGER.error(
                "reload of %s rejected, keeping the running config: %s",
                self.config_path,
                "; ".join(err.problems),
            )
            return
        settings = self.pipeline.settings
        settings.update(
            fusion_threshold=new.fusion.threshold,
            require_person=new.events.voice_command.require_person,
            vision_min_score=new.vision.min_score,
        )
        settings.set_enabled("voice_command", new.events.voice_command.enabled)
        logging.getLogger().setLevel(new.log_level.upper())
        # What differs once the live-applied fields are set aside needs a restart.
        old = self.cfg
        rest = new.model_copy(
            update={
                "log_level": old.log_level,
                "fusion": new.fusion.model_copy(update={"threshold": old.fusion.threshold}),
                "vision": new.vision.model_copy(update={"min_score": old.vision.min_score}),
                "events": old.events,
            }
        )
        later = [n for n in type(new).model_fields if getattr(rest, n) != getattr(old, n)]
        _LOGGER.info("config reloaded from %s", self.config_path)
        if later:
            _LOGGER.warning("changes to %s take effect after a restart", ", ".join(later))

    def _status(self) -> str:
        cam = self.capture.camera.state
        mic = self.capture.microphone.state
        if cam == "online" and mic == "online":
            return "running"
        return f"degraded: camera {cam}, microphone {mic}"

    def _audio_ok(self) -> bool:
        # No audio while the microphone is offline is degraded, not stalled.
        return self.capture.microphone.state != "online" or not self._audio_beats.stalled()

    def _capture_alive(self) -> bool:
        return self.capture.camera.alive() and self.capture.microphone.alive()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_reload)
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
        self.beats.add_check("audio", self._audio_ok)
        self.beats.add_check("capture", self._capture_alive)
        # Give the devices a moment, so READY says honestly whether we run degraded.
        deadline = time.monotonic() + 5.0
        while self._status() != "running" and time.monotonic() < deadline:
            if self._stop.wait(0.1):
                break
        status = self._status()
        self.notifier.ready(status)
        watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        dog = None
        if watchdog_usec:
            dog = Watchdog(self.notifier, self.beats, watchdog_usec / 2e6)
            dog.start()
        _LOGGER.info("edge-agent %s running", self.cfg.device_id)
        try:
            while not self._stop.wait(0.5):
                if self._reload.is_set():
                    self._reload.clear()
                    self._reload_config()
                if self.control is not None:
                    self.control.tick()
                if (now := self._status()) != status:
                    status = now
                    self.notifier.send(f"STATUS={status}")
        finally:
            self.notifier.stopping()
            if dog:
                dog.stop()
            self.capture.stop()
            self.pipeline.finish()
            if self.publisher is not None:
                self.publisher.close()
            self.notifier.close()
        return 0
