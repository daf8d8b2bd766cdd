"""``edge-agent bench``: per-model milliseconds and the pipeline's CPU cost per media second.

Medians of repeated runs in one process, so figures compare as ratios on a noisy machine.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from agent.app import build_pipeline, replay
from agent.config.schema import AgentConfig
from agent.extractors.speech import build_recognizer
from agent.extractors.vad import WINDOW, SileroVad
from agent.extractors.vision import FaceDetector
from agent.models.store import ModelStore
from agent.publish.sink import MemorySink
from agent.sources.files import VideoFileSource, read_wav


def _median_ms(fn: Callable[[], object], runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return statistics.median(times)


def run_bench(scene: Path, runs: int = 20, threads: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    cfg = AgentConfig()
    store = ModelStore(cfg.models.dir)
    video = VideoFileSource(scene / "video.avi")
    frame = video.read()
    video.close()
    if frame is None:
        raise ValueError(f"{scene}/video.avi has no frames")
    audio = read_wav(scene / "audio.wav")
    models: list[dict[str, Any]] = []
    for name in store.names():
        manifest = store.manifest(name)
        for n in threads:
            session, _ = store.load(name, threads=n)
            if manifest.task == "face_detection":
                det = FaceDetector(session, manifest.preprocess, manifest.postprocess)
                ms = _median_ms(partial(det.person_score, frame.image), runs)
                unit = "per frame (incl. pre/post)"
            elif manifest.task == "vad":
                vad = SileroVad(session)
                ms = _median_ms(partial(vad, audio[:WINDOW].astype(np.float32) / 32768.0), runs)
                unit = "per 32 ms window"
            else:
                continue
            models.append(
                {
                    "model": manifest.ref,
                    "runtime": manifest.runtime,
                    "precision": manifest.precision,
                    "threads": n,
                    "median_ms": round(ms, 3),
                    "unit": unit,
                }
            )
    recognizer = build_recognizer(cfg.speech, cfg.intents)
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
            "cpu_s_per_media_s": round(statistics.median(r.cpu_s for r in reports) / media, 4),
            "wall_s_per_media_s": round(statistics.median(r.wall_s for r in reports) / media, 4),
            "stage_median_ms": {k: round(v, 3) for k, v in pipeline.times.median_ms().items()},
        },
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"{'model':30} {'runtime':8} {'prec':5} {'thr':>3} {'median ms':>10}  unit")
    for m in result["models"]:
        print(
            f"{m['model']:30} {m['runtime']:8} {m['precision']:5} {m['threads']:>3} "
            f"{m['median_ms']:>10.3f}  {m['unit']}"
        )
    sp = result["speech"]
    print(f"{sp['engine']:46} {sp['median_ms_per_segment']:>10.2f}  per utterance")
    p = result["pipeline"]
    print(
        f"\npipeline on scene {result['scene']} ({p['media_s']} s media, "
        f"median of {p['runs']} runs): {p['cpu_s_per_media_s']} CPU s per media s, "
        f"{p['wall_s_per_media_s']} wall s per media s"
    )
    print("stage medians (ms): " + json.dumps(p["stage_median_ms"]))
