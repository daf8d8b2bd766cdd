"""``edge-agent bench``: per-model milliseconds and the pipeline's CPU cost per media second.

Every model in the store is timed with each thread count on the CPU and, when the config
asks for an accelerator (``runtimes.onnx.providers`` / ``runtimes.tflite.delegates``), on that
too; each row names the back-end that actually ran (after any fallback). Medians of repeated
runs in one process, so figures compare as ratios on a noisy machine.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from agent.config.runtimes import RuntimesConfig
from agent.config.schema import AgentConfig
from agent.models.store import Manifest, ModelStore, open_model
from agent.runtimes.base import Session, session_backend, warmup_feeds

_LOGGER = logging.getLogger(__name__)


def _median_ms(fn: Callable[[], object], runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return statistics.median(times)


def _cpu_only(cfg: RuntimesConfig) -> RuntimesConfig:
    onnx = cfg.onnx.model_copy(update={"providers": ["cpu"]})
    tflite = cfg.tflite.model_copy(update={"delegates": []})
    models = {
        k: v.model_copy(update={"providers": None, "delegates": None})
        for k, v in cfg.models.items()
    }
    return cfg.model_copy(update={"onnx": onnx, "tflite": tflite, "models": models})


def _targets(cfg: RuntimesConfig) -> list[tuple[str, RuntimesConfig]]:
    """("cpu", CPU-only config) and, when the config names an accelerator, ("config", cfg)."""
    cpu = _cpu_only(cfg)
    accelerated = (
        cfg.onnx.providers != ["cpu"]
        or bool(cfg.tflite.delegates)
        or any(m.providers or m.delegates for m in cfg.models.values())
    )
    return [("cpu", cpu), ("config", cfg)] if accelerated else [("cpu", cpu)]


def _timer(
    session: Session, manifest: Manifest, frame: np.ndarray[Any, Any] | None, audio: Any
) -> tuple[Callable[[], object], str]:
    """What to time for this model: the extractor around it when there is one, else the
    bare session on the warm-up feeds."""
    if manifest.task == "face_detection" and frame is not None:
        from agent.extractors.vision import FaceDetector

        det = FaceDetector(session, manifest.preprocess, manifest.postprocess)
        return partial(det.person_score, frame), "per frame (incl. pre/post)"
    if manifest.task == "vad" and audio is not None:
        from agent.extractors.vad import WINDOW, SileroVad

        vad = SileroVad(session)
        window = audio[:WINDOW].astype(np.float32) / 32768.0
        return partial(vad, window), "per 32 ms window"
    from agent.models.store import warmup_inputs

    feeds, _ = warmup_feeds(session.inputs, warmup_inputs(manifest))
    return partial(session.run, feeds), "per inference (bare session)"


def bench_models(
    store: ModelStore,
    runtimes: RuntimesConfig | None = None,
    threads: tuple[int, ...] = (1, 2),
    runs: int = 20,
    frame: np.ndarray[Any, Any] | None = None,
    audio: Any = None,
) -> list[dict[str, Any]]:
    """One row per model x target (cpu / configured accelerator) x thread count."""
    rows: list[dict[str, Any]] = []
    for name in store.names():
        manifest = store.manifest(name)
        store.verify(manifest)
        seen: set[tuple[str, int]] = set()
        for target, cfg in _targets(runtimes or RuntimesConfig()):
            # The bench sets the threads itself, over any per-model override.
            override = cfg.models.get(name)
            if override is not None and override.threads is not None:
                models = {**cfg.models, name: override.model_copy(update={"threads": None})}
                cfg = cfg.model_copy(update={"models": models})
            for n in threads:
                session = open_model(manifest, cfg, threads=n)
                backend = session_backend(session)
                if (backend, n) in seen:  # the accelerator fell back to what was measured
                    continue
                seen.add((backend, n))
                fn, unit = _timer(session, manifest, frame, audio)
                ms = _median_ms(fn, runs)
                warm = getattr(session, "warmup_ms", None)
                rows.append(
                    {
                        "model": manifest.ref,
                        "runtime": manifest.runtime,
                        "backend": backend,
                        "target": target,
                        "precision": manifest.precision,
                        "threads": n,
                        "median_ms": round(ms, 3),
                        "warmup_ms": round(warm, 3) if warm is not None else None,
                        "unit": unit,
                    }
                )
    return rows


def run_bench(
    scene: Path,
    runs: int = 20,
    threads: tuple[int, ...] = (1, 2),
    cfg: AgentConfig | None = None,
) -> dict[str, Any]:
    from agent.app import build_pipeline, replay
    from agent.extractors.speech import build_recognizer
    from agent.publish.sink import MemorySink
    from agent.sources.files import VideoFileSource, read_wav

    cfg = cfg or AgentConfig()
    store = ModelStore(cfg.models.dir)
    video = VideoFileSource(scene / "video.avi")
    frame = video.read()
    video.close()
    if frame is None:
        raise ValueError(f"{scene}/video.avi has no frames")
    audio = read_wav(scene / "audio.wav")
    models = bench_models(store, cfg.runtimes, threads, runs, frame=frame.image, audio=audio)
    recognizer = build_recognizer(cfg.speech, cfg.intents, store, cfg.runtimes)
    sink = MemorySink()
    reports = []
    pipeline = None
    for _ in range(max(3, runs // 5)):
        pipeline = build_pipeline(cfg, sink)
        reports.append(replay(pipeline, scene / "video.avi", scene / "audio.wav"))
    assert pipeline is not None
    speech_ms = pipeline.times.median_ms().get("speech_segment", float("nan"))
    media = reports[0].media_s
    return {
        "scene": scene.name,
        "models": models,
        "speech": {"engine": recognizer.model, "median_ms_per_segment": round(speech_ms, 2)},
        "pipeline": {
            "media_s": round(media, 3),
            "runs": len(reports),
            "models": {"vision": cfg.vision.model, "vad": cfg.vad.model},
            "cpu_s_per_media_s": round(statistics.median(r.cpu_s for r in reports) / media, 4),
            "wall_s_per_media_s": round(statistics.median(r.wall_s for r in reports) / media, 4),
            "stage_median_ms": {k: round(v, 3) for k, v in pipeline.times.median_ms().items()},
        },
    }


def print_table(result: dict[str, Any]) -> None:
    print(
        f"{'model':30} {'runtime':7} {'backend':34} {'prec':5} {'thr':>3} {'median ms':>10}  unit"
    )
    for m in result["models"]:
        print(
            f"{m['model']:30} {m['runtime']:7} {m['backend']:34} {m['precision']:5} "
            f"{m['threads']:>3} {m['median_ms']:>10.3f}  {m['unit']}"
        )
    sp = result["speech"]
    print(f"{sp['engine']:82} {sp['median_ms_per_segment']:>10.2f}  per utterance")
    p = result["pipeline"]
    print(
        f"\npipeline on scene {result['scene']} ({p['media_s']} s media, "
        f"median of {p['runs']} runs, vision {p['models']['vision']}, vad {p['models']['vad']}): "
        f"{p['cpu_s_per_media_s']} CPU s per media s, "
        f"{p['wall_s_per_media_s']} wall s per media s"
    )
    print("stage medians (ms): " + json.dumps(p["stage_median_ms"]))
