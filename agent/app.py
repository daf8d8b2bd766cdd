"""Composition root: the only place that sees the whole config and wires the stages."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from agent.config.schema import AgentConfig
from agent.core.clock import MonotonicClock
from agent.core.media import AudioChunk, join_chunks
from agent.core.settings import RuntimeSettings, Settings
from agent.errors import ConfigError, EdgeAgentError, ModelError, ReportError
from agent.extractors.speech import build_recognizer
from agent.extractors.vad import Segmenter, SileroVad
from agent.extractors.vision import FaceDetector
from agent.fusion.learned import build_fuser
from agent.fusion.weighted import WeightedSum
from agent.health.notify import Heartbeats, Notifier, Watchdog
from agent.models.shared import SharedModelStore
from agent.models.store import ModelStore
from agent.pipeline import Decisions, Pipeline, Presence, StageTimes
from agent.publish.outbox import default_outbox_path
from agent.publish.sink import JsonLinesSink, Sink
from agent.rules.base import Models, Parts, RuleContext, Window
from agent.rules.registry import build_rules
from agent.sources.files import VideoFileSource, WavFileSource
from agent.sources.supervisor import Capture
from agent.sync.ring import FrameRing
from agent.timeline.trace import Timeline

if TYPE_CHECKING:
    from agent.control import MqttControl
    from agent.publish.discovery import Discovery
    from agent.publish.mqtt import MqttPublisher, RoomPublisher

_LOGGER = logging.getLogger(__name__)

# Per capture thread at shutdown; the whole stop stays below the unit's TimeoutStopSec=20.
STOP_JOIN_S = 3.0
# MQTT …/set/<key> (a Home Assistant button) that writes the timeline report, like SIGUSR1.
TIMELINE_KEY = "timeline_report"


def build_pipeline(
    cfg: AgentConfig,
    sink: Sink,
    on_progress: Callable[[str], None] | None = None,
    store: ModelStore | None = None,
) -> Pipeline:
    store = store or ModelStore(cfg.models.dir)
    vad_session, vad_manifest = store.load(cfg.vad.model, runtimes=cfg.runtimes)
    vis_session, vis_manifest = store.load(
        cfg.vision.model, threads=cfg.vision.threads, runtimes=cfg.runtimes
    )
    detector = FaceDetector(vis_session, vis_manifest.preprocess, vis_manifest.postprocess)
    recognizer = build_recognizer(cfg.speech, cfg.intents, store, cfg.runtimes)
    segmenter = Segmenter(cfg.vad, SileroVad(vad_session))
    settings = RuntimeSettings(
        Settings(
            fusion_threshold=cfg.fusion.threshold,
            require_person=cfg.events.voice_command.require_person,
            vision_min_score=cfg.vision.min_score,
        )
    )
    ctx = RuleContext(
        device=cfg.device_id,
        frames=FrameRing(cfg.buffer.seconds),
        scorer=detector,
        window=Window(cfg.fusion.window_before_s, cfg.fusion.window_after_s),
        models=Models(vision=vis_manifest.ref, vad=vad_manifest.ref),
        settings=settings,
        sink=sink,
        times=StageTimes(),
        decisions=Decisions(),
    )
    parts = Parts(
        store=store,
        fuser=build_fuser(
            cfg.fusion, lambda name: store.load(name, threads=1, runtimes=cfg.runtimes)
        ),
        weights=WeightedSum(cfg.fusion),
        vad=segmenter,
    )
    rules = build_rules(cfg, ctx, parts)
    for rule in rules:
        settings.set_enabled(rule.TYPE, rule.enabled)
    return Pipeline(
        frames=ctx.frames,
        segmenter=segmenter,
        recognizer=recognizer,
        ctx=ctx,
        rules=rules,
        window_after_s=cfg.fusion.window_after_s,
        presence=Presence(cfg.presence),
        on_progress=on_progress,
    )


def build_pipelines(
    cfg: AgentConfig,
    sink_for_room: Callable[[str], Sink],
    on_progress: Callable[[str, str], None] | None = None,
    store: ModelStore | None = None,
) -> dict[str, Pipeline]:
    """One pipeline per room (``cfg.room_configs()``), in config order, sharing one loaded
    copy of every model.

    Each pipeline has its own frame ring, VAD state, recognizer, rules and settings; only
    model sessions are shared (see agent.models.shared for why that is thread-safe).
    ``sink_for_room(room_id)`` gives each room its own sink; ``on_progress(room_id, stage)``
    reports each room's progress. A plain ``store`` is wrapped so that it shares sessions.
    """
    shared = store if isinstance(store, SharedModelStore) else None
    if shared is None:
        shared = SharedModelStore(store.root if store is not None else cfg.models.dir)
    pipelines: dict[str, Pipeline] = {}
    for room in cfg.room_configs():
        progress = partial(on_progress, room.id) if on_progress is not None else None
        pipelines[room.id] = build_pipeline(
            room.cfg, sink_for_room(room.id), progress, store=shared
        )
    return pipelines


@dataclass(frozen=True, slots=True)
class ReplayReport:
    media_s: float
    wall_s: float
    cpu_s: float
    frames: int
    chunks: int
    started_at: float = 0.0  # time.time() when media time 0 was "now" (realtime latency)


def replay(
    pipeline: Pipeline,
    video: Path,
    audio: Path,
    *,
    realtime: bool = False,
    chunk_ms: int = 32,
    idle_batch_ms: int = 0,
) -> ReplayReport:
    """Feed recorded media through ``pipeline`` in timestamp order (one media clock).

    ``realtime`` delivers each chunk when a microphone would; ``idle_batch_ms`` then also
    takes chunks in batches while the pipeline is idle, as the live audio worker does
    (``microphone.idle_batch_ms``)."""
    wall0, cpu0, started_at = time.perf_counter(), time.process_time(), time.time()
    vsrc = VideoFileSource(video)
    asrc = WavFileSource(audio, chunk_ms=chunk_ms)
    frames = chunks = 0
    asrc_end_ns = int(asrc.duration_s * 1e9)
    grace_ns = int(pipeline.window_after_s * 1e9)
    try:
        nxt = vsrc.read()
        hold_until = 0.0  # media seconds: idle, so chunks wait until then and go together
        ahead: AudioChunk | None = None
        while (chunk := ahead or asrc.read()) is not None:
            ahead = None
            if realtime:
                due = max(chunk.end_ns / 1e9, hold_until)
                delay = due - (time.perf_counter() - wall0)
                if delay > 0:
                    time.sleep(delay)
                if chunk.end_ns / 1e9 < hold_until:
                    # The chunks captured during the idle wait reach the pipeline in one call.
                    parts = [chunk]
                    while (more := asrc.read()) is not None and more.end_ns / 1e9 <= hold_until:
                        parts.append(more)
                    ahead = more
                    chunk = join_chunks(parts)[0]  # a file has no gaps
            # Frames up to the end of this chunk exist "now", as they would live.
            while nxt is not None and nxt.t_ns <= chunk.end_ns:
                pipeline.on_frame(nxt)
                frames += 1
                started = time.perf_counter_ns()
                nxt = vsrc.read()
                pipeline.times.add("frame_read", started)  # the camera's share, as live
            pipeline.on_audio(chunk)
            chunks += 1
            end_s = chunk.end_ns / 1e9
            if realtime and idle_batch_ms and hold_until <= end_s and pipeline.idle():
                hold_until = end_s + idle_batch_ms / 1000
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
        started_at=started_at,
    )


class LiveAgent:
    """The daemon: capture threads feed the pipeline; systemd is told how it goes."""

    def __init__(
        self, cfg: AgentConfig, config_path: Path | None = None, verbose: bool = False
    ) -> None:
        from agent.publish.mqtt import MqttPublisher

        self.cfg = cfg
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.config_path = config_path
        self._verbose = verbose
        self.beats = Heartbeats(cfg.health.stall_seconds)
        self._audio_beats = Heartbeats(cfg.health.stall_seconds)
        self.notifier = Notifier()
        self.exit_code = 0
        self.publisher = MqttPublisher(cfg.mqtt, cfg.device_id) if cfg.mqtt.enabled else None
        # Several rooms (camera + microphone pairs) share this process, its models and its one
        # MQTT connection; without ``rooms`` there is one room, device_id, as always.
        self.rooms = {room.id: room.cfg for room in cfg.room_configs()}
        self._multi = bool(cfg.rooms)
        if self._multi:
            from agent.config.rooms import shared_devices
            from agent.logsetup import name_threads_in_log

            name_threads_in_log()
            for warning in shared_devices(cfg.rooms):
                _LOGGER.warning("%s", warning)
        self.room_publishers: dict[str, RoomPublisher] = {}
        # Before any model loads: a pending update that keeps failing is rolled back here.
        self.store = SharedModelStore(cfg.models.dir)
        self.store.seed()  # first start of an installed agent: the bundled models
        self.rolled_back = self.store.start_attempt(cfg.models.max_failed_starts)
        # Only inference progress is a heartbeat; a camera that is offline is "degraded"
        # (the supervisor reconnects), not a reason for systemd to restart the agent.
        # The health window commits only an update this start loaded (not one installed by
        # `models install` while this process runs on the old model).
        self._update_on_trial = self.store.pending() is not None
        try:
            self.pipelines = build_pipelines(
                cfg, self._sink_for, self._on_room_progress, store=self.store
            )
        except EdgeAgentError as err:
            self._undo_update_that_breaks_start(err)
            raise
        self.pipeline = next(iter(self.pipelines.values()))  # the first room (the only one)
        if self.publisher is not None:
            self.beats.add_check("mqtt", self.publisher.network_alive)
        self.controls: dict[str, MqttControl] = {}
        self.control: MqttControl | None = None
        self.updater = None
        self.drop = None
        if self.publisher is not None or cfg.models.drop_dir is not None:
            from agent.models.updates import ModelUpdater

            self.updater = ModelUpdater(
                self.store,
                cfg.models.public_keys(),
                self.publisher.topics.base if self.publisher else cfg.device_id,
                self.publisher.publish_raw if self.publisher else _no_publish,
                self._restart_for_update,
                max_bytes=int(cfg.models.update_max_mb * 1e6),
                stall_s=cfg.models.update_stall_s,
                model=cfg.speech.command_model,
                runtimes=cfg.runtimes,
            )
            if self.rolled_back:
                self.updater.rolled_back(self.rolled_back)
            if cfg.models.drop_dir is not None:
                from agent.models.drop import DropFolder

                self.drop = DropFolder(cfg.models.drop_dir, self.updater, cfg.models.drop_poll_s)
        # Timeline reports: one per room, each written on the main loop when asked for
        # (SIGUSR1: every room's; a room's Home Assistant button: that room's).
        self._timeline_asked = {room: threading.Event() for room in self.rooms}
        self.timelines = self._start_timelines(cfg)
        self.agent_discovery: Discovery | None = None
        if self.publisher is not None:
            self._build_controls(self.publisher)
        self._clock = MonotonicClock()
        self.captures: dict[str, Capture] = {}
        self._audio_ended: set[str] = set()

    def _sink_for(self, room: str) -> Sink:
        if self.publisher is None:
            return JsonLinesSink(sys.stdout)
        if not self._multi:
            return self.publisher
        self.room_publishers[room] = self.publisher.room(room)
        return self.room_publishers[room]

    def _build_controls(self, publisher: MqttPublisher) -> None:
        """Commands, states, stats and discovery per room; model updates at agent level."""
        from agent.control import MqttControl
        from agent.publish.discovery import ButtonEntity, Discovery

        for room, pipeline in self.pipelines.items():
            pub: MqttPublisher | RoomPublisher = self.room_publishers.get(room, publisher)
            buttons: dict[ButtonEntity, Callable[[], None]] = {}
            if room in self.timelines:
                # Written on the main loop, like on SIGUSR1; the page stays on the box.
                report = ButtonEntity(TIMELINE_KEY, "Write timeline report")
                buttons[report] = self._timeline_asked[room].set
            control = MqttControl(
                self.rooms[room],
                pub,
                pipeline,
                updates=not self._multi,
                buttons=buttons,
                agent_id=self.cfg.device_id if self._multi else None,
                agent_status=publisher.topics.status if self._multi else None,
            )
            presence = pipeline.presence_state
            if presence is not None and presence.enabled:
                control.add_state("presence", "Presence", partial(_present, presence), "occupancy")
                control.add_state("talking", "Talking", partial(_talking, presence))
            self.controls[room] = control
        self.control = self.controls[next(iter(self.controls))]
        if self._multi and self.updater is not None:
            # The agent's own Home Assistant device: the model update entity (the models are
            # the agent's, shared by every room) under <base>/<device_id>.
            self.agent_discovery = Discovery(
                self.cfg.homeassistant, publisher.topics, self.cfg.device_id, updates=True
            )

    def _start_timelines(self, cfg: AgentConfig) -> dict[str, Timeline]:
        """The bounded traces behind the timeline reports (``report.minutes``), per room."""
        if cfg.report.minutes <= 0:
            return {}
        from agent.timeline.page import require_plotly

        try:
            require_plotly()
        except ReportError as err:  # an optional extra (64 MB): the agent runs without it
            _LOGGER.info("timeline report off: %s", err)
            return {}
        timelines = {}
        for room, pipeline in self.pipelines.items():
            # Capture stamps: monotonic.
            timelines[room] = Timeline(cfg.report.minutes, wall_clock=True)
            timelines[room].attach(pipeline)
        return timelines

    @property
    def timeline(self) -> Timeline | None:
        """The first room's timeline (the only one without ``rooms``)."""
        return next(iter(self.timelines.values()), None)

    def timeline_path(self, room: str | None = None) -> Path:
        """``report.path`` (default ``timeline.html`` in the state directory); with several
        rooms one page each, the room's id added to the name (``timeline-kitchen.html``)."""
        path = self.cfg.report.path or default_outbox_path(dict(os.environ)).with_name(
            "timeline.html"
        )
        if self._multi and room is not None:
            path = path.with_name(f"{path.stem}-{room}{path.suffix}")
        return path

    def request_timeline(self, signum: int = 0, frame: FrameType | None = None) -> None:
        # Every room's, written on the main loop, not inside the signal handler.
        for asked in self._timeline_asked.values():
            asked.set()

    def _timeline_report(self, room: str) -> None:
        timeline = self.timelines.get(room)
        if timeline is None:
            _LOGGER.warning(
                "no timeline report to write (report.minutes is 0 or the 'report' extra is missing)"
            )
            return
        from agent.timeline.page import write_report

        try:
            write_report(
                timeline.snapshot(),
                self.timeline_path(room),
                title=f"edge-agent {room}: last {self.cfg.report.minutes:g} min",
            )
        except ReportError as err:
            _LOGGER.error("%s", err)
        except Exception:  # a diagnostic page must never take the daemon down
            _LOGGER.exception("the timeline report failed")

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        _LOGGER.info("stopping (signal %d)", signum)
        self._stop.set()

    def _undo_update_that_breaks_start(self, err: EdgeAgentError) -> None:
        """A pending update that makes the start fail (even as a config error, which systemd
        would not restart) is rolled back now; the start then fails as a plain error (exit 1)
        so that the unit restarts the agent on the old model."""
        pending = self.store.pending()
        if pending is None:
            return
        name = str(pending["name"])
        try:
            self.store.rollback(name)
        except ModelError as why:
            _LOGGER.error("model %s: start failed and rollback failed too: %s", name, why)
        finally:
            self.store.commit()  # the mark goes either way: never loop on it
        raise ModelError(
            f"the update of {name} made the start fail and was rolled back: {err}"
        ) from err

    def _restart_for_update(self, name: str) -> None:
        """A new model is installed: stop, and let systemd start us again to load it
        (exit status 75 = EX_TEMPFAIL; the unit restarts on failure)."""
        _LOGGER.warning("restarting to activate the update of %s", name)
        self.exit_code = 75
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
        old_d, new_d = self.cfg.model_dump(), new.model_dump()
        applied: dict[str, Any] = {}
        for path, apply in self._live_fields().items():
            before, after = _pop_path(old_d, path), _pop_path(new_d, path)
            if before != after:
                apply(after)
                applied[path] = after
        later = sorted(k for k in new_d if new_d[k] != old_d.get(k))
        # The running config takes the live changes, not those awaiting a restart.
        self.cfg = _with_paths(self.cfg, applied)
        for control in self.controls.values() if applied else ():
            if control.commands is not None:
                control.commands.publish_states()
        _LOGGER.info(
            "config reloaded from %s: %s",
            self.config_path,
            ", ".join(f"{k}={v}" for k, v in applied.items()) or "no live change",
        )
        if later:
            _LOGGER.warning("changes to %s take effect after a restart", ", ".join(later))

    def _live_fields(self) -> dict[str, Callable[[Any], object]]:
        """Config paths a SIGHUP applies at once (to every room), and how."""
        every = [p.settings for p in self.pipelines.values()]

        def update(**values: Any) -> None:
            for settings in every:
                settings.update(**values)

        def set_enabled(event_type: str, on: Any) -> None:
            for settings in every:
                settings.set_enabled(event_type, on)

        def log_level(value: Any) -> None:
            logging.getLogger().setLevel(str(value).upper())

        live: dict[str, Callable[[Any], object]] = {}
        if not self._verbose:  # -v wins over the file's log_level
            live["log_level"] = log_level
        return (
            live
            | {
                "fusion.threshold": lambda v: update(fusion_threshold=v),
                "vision.min_score": lambda v: update(vision_min_score=v),
                "events.voice_command.require_person": lambda v: update(require_person=v),
            }
            | {
                # Each rule's own section: ``events.<type>.enabled`` switches it on and off.
                f"events.{t}.enabled": partial(set_enabled, t)
                for t in (r.TYPE for r in self.pipeline.rules)
                if t in type(self.cfg.events).model_fields
            }
        )

    def _status(self) -> str:
        """``running``, or which devices are not online (``degraded: camera offline, …``;
        with several rooms each named: ``degraded: kitchen camera offline, …``)."""
        down = []
        for room, capture in self.captures.items():
            cam, mic = capture.camera.state, capture.microphone.state
            if cam == "online" and mic == "online":
                continue
            prefix = f"{room} " if self._multi else ""
            down.append(f"{prefix}camera {cam}, {prefix}microphone {mic}")
        return f"degraded: {'; '.join(down)}" if down else "running"

    def _audio_stage(self, room: str) -> str:
        return f"audio {room}" if self._multi else "audio"

    def _on_progress(self, stage: str, room: str | None = None) -> None:
        if stage == "audio":  # frames arriving is the camera's business, not a heartbeat
            self._audio_beats.beat(stage if room is None else self._audio_stage(room))

    def _on_room_progress(self, room: str, stage: str) -> None:
        self._on_progress(stage, room)

    def _audio_ok(self) -> bool:
        # No audio while a microphone is offline is degraded, not stalled; each room's own.
        late = set(self._audio_beats.stalled())
        return all(
            capture.microphone.state != "online" or self._audio_stage(room) not in late
            for room, capture in self.captures.items()
        )

    def _capture_alive(self) -> bool:
        return all(c.camera.alive() and c.microphone.alive() for c in self.captures.values())

    def _audio_end(self, room: str) -> None:
        """A file microphone reached its end: the agent stops once every room's has."""
        self._audio_ended.add(room)
        if self._audio_ended >= set(self.rooms):
            self._stop.set()

    def _publish_agent_discovery(self) -> None:
        """On every (re)connect: the agent's own Home Assistant device (several rooms)."""
        if self.agent_discovery is not None and self.publisher is not None:
            self.agent_discovery.publish(self.publisher.publish_raw)

    @property
    def capture(self) -> Capture:
        """The first room's capture (the only one without ``rooms``)."""
        return next(iter(self.captures.values()))

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_reload)
        signal.signal(signal.SIGUSR1, self.request_timeline)
        for room, pipeline in self.pipelines.items():
            cfg = self.rooms[room]
            self.captures[room] = Capture(
                cfg.camera,
                cfg.microphone,
                self._clock,
                pipeline.on_frame,
                pipeline.on_audio,
                on_audio_end=partial(self._audio_end, room),
                idle=pipeline.idle,
                room=room if self._multi else None,
            )
        for room, control in self.controls.items():
            control.add_capture(self.captures[room])
            control.attach()
        if self.agent_discovery is not None and self.publisher is not None:
            self.agent_discovery.attach(self.publisher.publish_raw, self.publisher.subscribe)
            self.publisher.add_connect_hook(self._publish_agent_discovery)
        if self.updater is not None and self.publisher is not None:
            updater = self.updater
            updater.attach(self.publisher.subscribe)
            self.publisher.add_connect_hook(updater.publish_state)
        if self.publisher is not None:
            self.publisher.start()
        for capture in self.captures.values():
            capture.start()
        # Counted from now: audio that never gets processed at all is a stall too.
        for room in self.rooms:
            self._audio_beats.beat(self._audio_stage(room))
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
        if self._multi:
            _LOGGER.info(
                "edge-agent %s running rooms %s", self.cfg.device_id, ", ".join(self.rooms)
            )
        else:
            _LOGGER.info("edge-agent %s running", self.cfg.device_id)
        healthy_since: float | None = None
        try:
            while not self._stop.wait(0.5):
                healthy_since = self._health_window(healthy_since)
                if self._reload.is_set():
                    self._reload.clear()
                    self._reload_config()
                for room, asked in self._timeline_asked.items():
                    if asked.is_set():
                        asked.clear()
                        self._timeline_report(room)
                for control in self.controls.values():
                    control.tick()
                if self.drop is not None:
                    self.drop.tick()
                if (now := self._status()) != status:
                    status = now
                    self.notifier.send(f"STATUS={status}")
        finally:
            self._shutdown(dog)
        return self.exit_code

    def _health_window(self, since: float | None) -> float | None:
        """Commit a pending model update once the agent has run healthy long enough."""
        if not self._update_on_trial or self.store.pending() is None:
            return None
        # Healthy = the pipeline and the threads make progress; a camera that is offline
        # (degraded) says nothing about the model.
        if self.beats.stalled():
            return None  # the window starts again
        now = time.monotonic()
        if since is None:
            return now
        if now - since >= self.cfg.models.health_window_s:
            name = self.store.commit()
            self._update_on_trial = False
            if name and self.updater is not None:
                self.updater.committed(name)
            return None
        return since

    def _shutdown(self, dog: Watchdog | None) -> None:
        """Stop capture, decide what is pending, then always publish ``stopped`` and flush."""
        self.notifier.stopping()
        try:
            if dog:
                dog.stop()
            for capture in self.captures.values():
                capture.stop(timeout=STOP_JOIN_S)
            for room, capture in self.captures.items():
                if capture.microphone.alive():
                    # The audio worker is still inside the pipeline: don't race it.
                    _LOGGER.warning(
                        "audio worker of %s still busy at shutdown; pending speech dropped", room
                    )
                else:
                    self.pipelines[room].finish()
        except Exception:
            _LOGGER.exception("error while stopping capture")
        finally:
            for pub in self.room_publishers.values():
                try:
                    pub.say_stopped()
                except EdgeAgentError as err:
                    _LOGGER.warning("room status not published: %s", err)
            if self.publisher is not None:
                self.publisher.close(timeout=3.0)  # keeps the whole stop under TimeoutStopSec
            self.notifier.close()


def _present(presence: Presence) -> bool:
    return presence.present


def _talking(presence: Presence) -> bool:
    return presence.talking


def _no_publish(topic: str, payload: str | bytes, qos: int, retain: bool) -> None:
    """Updates from the drop folder without MQTT: their state goes to the log only."""


def _pop_path(data: dict[str, Any], path: str) -> Any:
    """Remove and return ``data[a][b]`` for ``"a.b"`` (so the rest can be compared)."""
    *parents, leaf = path.split(".")
    for key in parents:
        data = data[key]
    return data.pop(leaf)


def _with_paths(cfg: AgentConfig, values: dict[str, Any]) -> AgentConfig:
    data = cfg.model_dump()
    for path, value in values.items():
        *parents, leaf = path.split(".")
        node = data
        for key in parents:
            node = node[key]
        node[leaf] = value
    return AgentConfig.model_validate(data)
