"""Command line: run, check-config, replay, demo, models."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from agent import __version__
from agent.config.loader import load_config, locate_words
from agent.config.schema import AgentConfig
from agent.errors import ConfigError, EdgeAgentError

if TYPE_CHECKING:
    from agent.models.store import Manifest

_LOGGER = logging.getLogger(__name__)

EX_OK, EX_FAIL, EX_USAGE, EX_CONFIG = 0, 1, 64, 78
SAMPLES = Path(__file__).resolve().parent / "samples"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-agent",
        description="Sees and hears in the same moment; publishes what it recognizes over MQTT.",
    )
    p.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", "-c", type=Path, required=True, help="config YAML")

    check = sub.add_parser("check-config", help="validate a config file (exit 0 or 78)")
    check.add_argument("config", type=Path)

    rp = sub.add_parser(
        "replay", help="run the pipeline over recorded media; JSON events on stdout"
    )
    rp.add_argument("--config", "-c", type=Path, help="config YAML (default: built-in defaults)")
    rp.add_argument("--video", type=Path, required=True, help="video file (e.g. MJPG AVI)")
    rp.add_argument("--audio", type=Path, required=True, help="WAV file (resampled to 16 kHz mono)")
    rp.add_argument("--broker", metavar="HOST:PORT", help="also publish the events to this broker")
    rp.add_argument("--realtime", action="store_true", help="pace the media at real time")
    rp.add_argument("--stats", action="store_true", help="print stage timings to stderr at the end")
    rp.add_argument(
        "--report",
        type=Path,
        metavar="HTML",
        help="write the timeline report (frames, speech, scores, decisions and why) to this "
        "self-contained HTML file; needs the 'report' extra (plotly)",
    )

    demo = sub.add_parser(
        "demo", help="bundled sample scenes through the whole pipeline and a broker"
    )
    demo.add_argument("--scene", action="append", help="only this scene (repeatable)")
    demo.add_argument(
        "--no-broker", action="store_true", help="skip MQTT; print events from the in-process sink"
    )

    bench = sub.add_parser(
        "bench",
        help="per-model ms (per runtime, back-end, threads) and pipeline CPU per media second",
    )
    bench.add_argument("--scene", default="person_command", help="sample scene for the pipeline")
    bench.add_argument("--runs", type=int, default=20, help="runs per figure (median)")
    bench.add_argument(
        "--threads", default="1,2", help="comma-separated thread counts per model (default 1,2)"
    )
    bench.add_argument(
        "--config",
        "-c",
        type=Path,
        help="config YAML: its runtimes (providers, delegates) are benched beside the CPU",
    )
    bench.add_argument("--json", action="store_true", help="print JSON")
    bench.add_argument(
        "--latency",
        type=int,
        metavar="RUNS",
        help="instead: replay the scenes with events RUNS times in real time through a local "
        "broker and print end-of-speech -> subscriber latency (p50/p95)",
    )
    bench.add_argument(
        "--scenes",
        metavar="LIST",
        help="instead: bench scenes in real time through a local broker, comma-separated from "
        "idle, standard, busy, pairsN (N standard pairs in one process), or 'all' "
        "(= idle,standard,busy,pairs4): CPU-s per media s, p50/p95 latency to a subscriber, "
        "RSS, ring memory, per-stage ms and the overhead ratio",
    )
    bench.add_argument(
        "--seconds",
        type=float,
        default=60.0,
        help="length of each bench scene (--scenes) in seconds (default 60)",
    )

    models = sub.add_parser("models", help="model store")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    ml = msub.add_parser("list", help="list models")
    ml.add_argument("--json", action="store_true")
    msub.add_parser("verify", help="check every model file against its manifest sha256")
    mi = msub.add_parser(
        "install",
        help="install a signed bundle (manifest.json, manifest.sig, files) after checking the "
        "signature against models.trusted_keys, every file's sha256 and size, the release "
        "counter, expiry, licence and a test load; the replaced version is kept for rollback",
    )
    mi.add_argument("source", help="bundle folder, or an http(s) URL of the bundle as a tar file")
    mi.add_argument("--sha256", help="expected sha256 of the downloaded tar (URLs)")
    mi.add_argument(
        "--max-mb", type=float, default=200.0, help="download size limit in MB (default 200)"
    )
    mi.add_argument(
        "--stall-s", type=float, default=30.0, help="give up on a download silent this long"
    )
    mi.add_argument("--config", "-c", type=Path, help="config YAML (runtimes for the test load)")
    mi.add_argument("--force", action="store_true", help="install even if inputs/outputs differ")
    mr = msub.add_parser("rollback", help="reactivate the version the last install replaced")
    mr.add_argument("name", help="model name")
    for m in msub.choices.values():
        m.add_argument("--dir", type=Path, help="model store (default: bundled models/)")
    mk = msub.add_parser(
        "keygen", help="make an Ed25519 signing key; prints the public key for trusted_keys"
    )
    mk.add_argument("--out", type=Path, required=True, help="private key file to write (0600)")
    ms = msub.add_parser(
        "sign", help="list every file of a bundle in its manifest, set its release, sign it"
    )
    ms.add_argument("bundle", type=Path, help="bundle folder (manifest.json + files)")
    ms.add_argument("--key", type=Path, required=True, help="private key from `models keygen`")
    ms.add_argument("--release", type=int, help="release counter (default: the manifest's + 1)")
    ms.add_argument("--expires-days", type=float, help="the bundle expires this many days on")
    ms.add_argument("--min-agent-version", help="oldest edge-agent version that may run it")
    from agent.build.cli import add_parsers as add_build_parsers

    add_build_parsers(msub)

    dev = sub.add_parser(
        "devices", help="cameras (/dev/video*) and microphones, with what they support"
    )
    dev.add_argument("--json", action="store_true", help="print JSON")

    from agent.training.cli import add_parsers as add_training_parsers

    add_training_parsers(sub)

    from agent.evaluation.cli import add_parser as add_evaluate_parser

    add_evaluate_parser(sub)
    return p


def _config(path: Path | None) -> AgentConfig:
    return load_config(path) if path is not None else AgentConfig()


def cmd_check(args: argparse.Namespace) -> int:
    from agent.config.rooms import shared_devices
    from agent.extractors.speech import build_recognizer
    from agent.models.store import ModelStore
    from agent.sources.base import video_kind
    from agent.sources.camera import redact

    cfg = load_config(args.config)
    # The engine knows its vocabulary; building it opens no device.
    build_recognizer(cfg.speech, cfg.intents, ModelStore(cfg.models.dir), cfg.runtimes)
    print(f"{args.config}: OK (device {cfg.device_id}, {len(cfg.intents)} intents)")
    kind = {"stream": "network stream", "file": "video file", "device": "V4L2 device"}
    if not cfg.rooms:
        print(f"camera: {kind[video_kind(cfg.camera.source)]} {redact(cfg.camera.source)}")
    for warning in shared_devices(cfg.rooms):
        print(f"warning: {warning}")
    for room in cfg.rooms:
        cam = room.camera.source
        print(
            f"room {room.id}: camera: {kind[video_kind(cam)]} {redact(cam)}, "
            f"microphone: {room.microphone.source}"
        )
    return EX_OK


def cmd_run(args: argparse.Namespace) -> int:
    from agent.app import LiveAgent

    cfg = load_config(args.config)
    if not args.verbose:
        logging.getLogger().setLevel(cfg.log_level.upper())
    return LiveAgent(cfg, args.config, verbose=args.verbose).run()


def _parse_broker(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError([f"--broker: expected HOST:PORT, got {text!r}"])
    return host, int(port)


def _replay_minutes(audio: Path) -> float:
    """A replay's report covers the whole recording (at most the last hour)."""
    import wave

    try:
        with wave.open(str(audio), "rb") as wav:
            seconds = wav.getnframes() / max(1, wav.getframerate())
    except (OSError, EOFError, wave.Error):
        seconds = 0.0  # replay itself reports the unreadable file
    return min(60.0, max(1.0, seconds / 60 + 0.1))


def cmd_replay(args: argparse.Namespace) -> int:
    from agent.app import build_pipeline, replay
    from agent.publish.sink import FanOut, JsonLinesSink, Sink

    cfg = _config(args.config)
    if args.report is not None:
        from agent.timeline.page import require_plotly

        require_plotly()
    publisher = None
    sink: Sink = JsonLinesSink(sys.stdout)
    if args.broker:
        from agent.publish.mqtt import MqttPublisher
        from agent.publish.outbox import Outbox

        host, port = _parse_broker(args.broker)
        mqtt_cfg = cfg.mqtt.model_copy(update={"host": host, "port": port})
        # Replay is a one-shot tool: an in-memory outbox, never the daemon's file.
        publisher = MqttPublisher(mqtt_cfg, cfg.device_id, outbox=Outbox(None))
        publisher.start()
        sink = FanOut(sink, publisher)
    timeline = None
    try:
        pipeline = build_pipeline(cfg, sink)
        if args.report is not None:
            from agent.timeline.trace import Timeline

            timeline = Timeline(_replay_minutes(args.audio))
            timeline.attach(pipeline)
        report = replay(pipeline, args.video, args.audio, realtime=args.realtime)
    finally:
        undelivered = 0
        if publisher is not None:
            publisher.flush(10.0)
            undelivered = publisher.outbox_depth  # replay's outbox is in memory only
            publisher.close()
    if undelivered:
        print(
            f"error: {undelivered} MQTT messages were not delivered to {args.broker}",
            file=sys.stderr,
        )
        return EX_FAIL
    _LOGGER.info(
        "replayed %.1f s of media in %.2f s (%.3f CPU s per media s), %d events",
        report.media_s,
        report.wall_s,
        report.cpu_s / max(report.media_s, 1e-9),
        pipeline.decisions.emitted,
    )
    if timeline is not None:
        from agent.timeline.page import write_report

        size = write_report(
            timeline.snapshot(), args.report, title=f"edge-agent replay: {args.audio.name}"
        )
        print(f"timeline report: {args.report} ({size // 1024} KB)", file=sys.stderr)
    if args.stats:
        stats = {
            "media_s": round(report.media_s, 3),
            "wall_s": round(report.wall_s, 3),
            "cpu_s_per_media_s": round(report.cpu_s / max(report.media_s, 1e-9), 4),
            "median_ms": {k: round(v, 3) for k, v in pipeline.times.median_ms().items()},
            "counts": pipeline.times.counts(),
            "decisions": vars(pipeline.decisions),
        }
        print(json.dumps(stats), file=sys.stderr)
    return EX_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from agent.demo import run_demo

    return run_demo(SAMPLES, scenes=args.scene, use_broker=not args.no_broker)


def _thread_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        counts = ()
    if not counts or not all(1 <= n <= 64 for n in counts):
        raise ConfigError([f"--threads: expected counts 1-64 such as 1,2; got {text!r}"])
    return counts


def cmd_bench(args: argparse.Namespace) -> int:
    from agent.bench import print_table, run_bench

    if args.latency is not None:
        from agent.latency import event_scenes, print_latency, run_latency

        if not 1 <= args.latency <= 100:
            raise ConfigError([f"--latency: expected 1-100 runs, got {args.latency}"])
        lat = run_latency(_config(args.config), event_scenes(SAMPLES), runs=args.latency)
        if args.json:
            print(json.dumps(lat, indent=2))
        else:
            print_latency(lat)
        return EX_OK
    if args.scenes is not None:
        return _bench_scenes(args)
    scene = SAMPLES / args.scene
    if not (scene / "scene.json").is_file():
        raise ConfigError([f"--scene: no sample scene {args.scene!r} in {SAMPLES}"])
    result = run_bench(
        scene,
        runs=max(3, args.runs),
        threads=_thread_counts(args.threads),
        cfg=_config(args.config),
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return EX_OK


def _bench_scenes(args: argparse.Namespace) -> int:
    import re

    from agent.bench_scenes import SCENES, print_scenes, run_scenes

    names = list(SCENES) if args.scenes == "all" else [n.strip() for n in args.scenes.split(",")]
    bad = [n for n in names if n not in SCENES[:3] and not re.fullmatch(r"pairs([1-9]|1[0-6])", n)]
    if bad or not names:
        raise ConfigError(
            [
                f"--scenes: unknown {', '.join(bad) or 'empty list'}; use idle, standard, busy, "
                "pairs1-pairs16 or all"
            ]
        )
    if not 10 <= args.seconds <= 3600:
        raise ConfigError([f"--seconds: expected 10-3600, got {args.seconds:g}"])
    rows = run_scenes(
        _config(args.config),
        names,
        seconds=args.seconds,
        progress=lambda n: print(
            f"bench scene {n} ({args.seconds:g} s in real time)...", file=sys.stderr
        ),
    )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_scenes(rows)
    return EX_OK


def _manifest_row(m: Manifest) -> dict[str, str]:
    return {
        "name": m.name,
        "version": m.version,
        "runtime": m.runtime,
        "precision": m.precision,
        "task": m.task,
        "licence": m.licence,
        "source": m.source,
        "sha256": m.sha256,
    }


def cmd_models(args: argparse.Namespace) -> int:
    from agent.models.store import ModelStore

    if args.models_command in ("keygen", "sign"):
        return _models_keys(args)
    if args.models_command in ("build", "quantize"):
        from agent.build.cli import cmd_build, cmd_quantize

        return cmd_build(args) if args.models_command == "build" else cmd_quantize(args)
    store = ModelStore(args.dir or (_config(args.config).models.dir if "config" in args else None))
    if args.models_command == "install":
        cfg = _config(args.config)
        with tempfile.TemporaryDirectory(prefix="edge-agent-bundle-") as tmp:
            source = _bundle_source(args, Path(tmp))
            installed = store.install(
                source, cfg.runtimes, force=args.force, trusted=cfg.models.public_keys()
            )
        # A running agent loads it at its next start, which then has to stay healthy for
        # models.health_window_s, or the update is rolled back (as for MQTT updates).
        store.mark_pending(installed.name)
        print(f"installed {installed.ref} into {installed.folder}; active from the next start")
        return EX_OK
    if args.models_command == "rollback":
        active = store.rollback(args.name)
        print(f"rolled back: {active.ref} is active")
        return EX_OK
    manifests = [store.manifest(n) for n in store.names()]
    if args.models_command == "list":
        if args.json:
            print(json.dumps([_manifest_row(m) for m in manifests], indent=2))
        else:
            for m in manifests:
                print(f"{m.ref:32} {m.runtime:7} {m.precision:5} {m.licence:11} {m.source}")
        return EX_OK
    bad = 0
    for m in manifests:
        try:
            store.verify(m)
            print(f"ok   {m.ref}")
        except EdgeAgentError as err:
            bad += 1
            print(f"FAIL {err}")
    return EX_OK if bad == 0 else EX_FAIL


def _bundle_source(args: argparse.Namespace, tmp: Path) -> Path:
    """The bundle folder: ``args.source`` itself, or downloaded and unpacked into ``tmp``."""
    from agent.models.download import download, unpack

    text = str(args.source)
    if not text.startswith(("http://", "https://")):
        return Path(text)
    archive = download(
        text,
        tmp / "bundle.tar",
        max_bytes=int(args.max_mb * 1e6),
        stall_s=args.stall_s,
        sha256=args.sha256,
    )
    return unpack(archive, tmp / "bundle")


def _models_keys(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from agent.models.bundle import generate_key, key_id, sign_bundle, write_key

    if args.models_command == "keygen":
        if args.out.exists():
            raise EdgeAgentError(f"models keygen: {args.out} exists; not overwriting a key")
        pair = generate_key()
        write_key(pair, args.out)
        print(f"private key: {args.out} (key id {key_id(pair.public)}); keep it off the box")
        print("add to the box's config:")
        print(f"models:\n  trusted_keys:\n    - {pair.public_b64}")
        return EX_OK
    expires = None
    if args.expires_days is not None:
        expires = datetime.now(UTC) + timedelta(days=args.expires_days)
    data = sign_bundle(
        args.bundle,
        args.key,
        release=args.release,
        expires=expires,
        min_agent_version=args.min_agent_version,
    )
    print(f"signed {data.get('name')} release {data['release']} ({len(data['files'])} files)")
    return EX_OK


def cmd_devices(args: argparse.Namespace) -> int:
    from agent.sources.devices import cameras, microphones

    found = {"cameras": cameras(), "microphones": microphones()}
    if args.json:
        print(json.dumps(found, indent=2))
        return EX_OK
    print("cameras:" if found["cameras"] else "cameras: none (/dev/video*)")
    for cam in found["cameras"]:
        print(f"  {cam['path']}  {cam.get('name', cam.get('card', ''))}  {cam.get('error', '')}")
        for f in cam.get("formats", []):
            sizes = ", ".join(
                s.get("size", f"{s.get('min')}..{s.get('max')}")
                + (f"@{'/'.join(str(x) for x in s['fps'])}" if s.get("fps") else "")
                for s in f["sizes"]
            )
            print(f"    {f['fourcc']} ({f['description']}): {sizes}")
    print("microphones:" if found["microphones"] else "microphones: none")
    for mic in found["microphones"]:
        if "error" in mic:
            print(f"  {mic['error']}")
            continue
        native = "16 kHz mono" if mic["supports_16k_mono"] else "resampled to 16 kHz mono"
        print(
            f"  [{mic['index']}] {mic['name']}  {mic['max_channels']} ch, "
            f"{mic['default_rate']} Hz default, {native}"
        )
    return EX_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from agent.evaluation.cli import cmd_evaluate as run

    return run(args)


def cmd_train(args: argparse.Namespace) -> int:
    from agent.training.cli import cmd_train as run

    return run(args)


def cmd_enroll(args: argparse.Namespace) -> int:
    from agent.training.cli import cmd_enroll as run

    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    from agent.logsetup import setup_logging

    args = _parser().parse_args(argv)
    setup_logging("debug" if args.verbose else "info")
    handlers = {
        "run": cmd_run,
        "check-config": cmd_check,
        "replay": cmd_replay,
        "demo": cmd_demo,
        "models": cmd_models,
        "bench": cmd_bench,
        "devices": cmd_devices,
        "train": cmd_train,
        "enroll": cmd_enroll,
        "evaluate": cmd_evaluate,
    }
    try:
        return handlers[args.command](args)
    except ConfigError as err:
        config = getattr(args, "config", None)
        problems = err.problems
        if isinstance(config, Path) and not all(p.startswith(str(config)) for p in problems):
            problems = [
                p if p.startswith(str(config)) else q
                for p, q in zip(problems, locate_words(problems, config), strict=True)
            ]
        for line in problems:
            print(f"config error: {line}", file=sys.stderr)
        return EX_CONFIG
    except EdgeAgentError as err:
        print(f"error: {err}", file=sys.stderr)
        return EX_FAIL
    except KeyboardInterrupt:
        return 130
