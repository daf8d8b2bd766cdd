"""``evaluate()``: the configured recognizer per clip, then scenes through the real pipeline.

Another recognizer plugs in two ways: configure it (``speech.engine`` in the config passed as
``cfg``; ``build_pipeline`` builds it), or hand any ``IntentRecognizer`` as ``recognizer=``
(it is then used per clip and swapped into every scene's pipeline).
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from agent.app import build_pipeline
from agent.config.schema import AgentConfig
from agent.evaluation.corpus import HELD_OUT_ESPEAK, TUNE_ESPEAK, Corpus
from agent.evaluation.metrics import (
    ClipResult,
    Rate,
    group,
    per_hour,
    rate,
    rtf_summary,
)
from agent.evaluation.scenes import (
    EMPTY_VIDEO,
    PERSON_VIDEO,
    Camera,
    Scene,
    SceneRun,
    background_scene,
    clip_scene,
    load_frames,
    run_scene,
    sample_clips,
)
from agent.extractors.speech import IntentRecognizer
from agent.extractors.vision import FaceDetector
from agent.models.store import ModelStore
from agent.publish.sink import MemorySink

_LOGGER = logging.getLogger(__name__)

# Scene sizes (full corpus / quick): command clips per scene.
COMMANDS_WITH_PERSON = (240, 6)
COMMANDS_NOBODY = (120, 4)


def evaluate_clips(
    corpus: Corpus,
    recognizer: IntentRecognizer,
    progress: Callable[[str], None] = lambda _: None,
) -> list[ClipResult]:
    """Every command, near-miss and real clip through the recognizer on its own."""
    results: list[ClipResult] = []
    clips = [c for c in corpus.clips if c.kind != "background"]
    for i, clip in enumerate(clips):
        x = corpus.audio(clip)
        t0 = time.thread_time()
        rec = recognizer.recognize(x)
        cpu = time.thread_time() - t0
        results.append(
            ClipResult(
                path=clip.path,
                kind=clip.kind,
                family=clip.family,
                speaker=clip.speaker,
                split=clip.split,
                condition=clip.condition,
                speed=clip.speed,
                text=clip.text,
                truth=clip.intent,
                got=rec.intent,
                confidence=round(rec.confidence, 4),
                hypothesis=rec.text,
                reason=rec.reason,
                duration_s=len(x) / 16000,
                cpu_s=cpu,
            )
        )
        if (i + 1) % 500 == 0:
            progress(f"  {i + 1}/{len(clips)} clips")
    return results


def _clip_figures(results: list[ClipResult], help_intent: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for split in ("test", "tune"):
        rows = [r for r in results if r.split == split]
        if not rows:
            continue
        cmds = [r for r in rows if r.kind == "command"]
        near = [r for r in rows if r.kind == "near_miss"]
        real = [r for r in rows if r.kind == "real"]
        fig: dict[str, Any] = {"families": {}}
        for (family,), fr in group(cmds, "family").items():
            fam: dict[str, Any] = {
                "accepted": rate(fr, "accepted").as_dict(),
                "wrong_intent": rate(fr, "wrong_intent").as_dict(),
                "by_condition": {
                    c: rate(g, "accepted").as_dict() for (c,), g in group(fr, "condition").items()
                },
                "by_speed": {
                    s: rate(g, "accepted").as_dict() for (s,), g in group(fr, "speed").items()
                },
                "by_intent": {
                    i: rate(g, "accepted").as_dict() for (i,), g in group(fr, "truth").items()
                },
                "speakers": len({r.speaker for r in fr}),
            }
            nf = [r for r in near if r.family == family]
            fam["near_miss_accepted"] = rate(nf, "false_accept").as_dict()
            fig["families"][family] = fam
        fig["all"] = {
            "accepted": rate(cmds, "accepted").as_dict(),
            "wrong_intent": rate(cmds, "wrong_intent").as_dict(),
            "near_miss_accepted": rate(near, "false_accept").as_dict(),
            "near_miss_accepted_as_help": Rate(
                sum(r.got == help_intent for r in near), len(near)
            ).as_dict(),
        }
        fig["wrong_intent_examples"] = [
            {"text": r.text, "got": r.got, "family": r.family, "voice": r.speaker}
            for r in cmds
            if r.outcome == "wrong_intent"
        ][:40]
        accepted_near: dict[str, list[str]] = {}
        for r in near:
            if r.got is not None:
                accepted_near.setdefault(f"{r.text} -> {r.got}", []).append(r.family)
        fig["near_miss_examples"] = {k: sorted(v) for k, v in sorted(accepted_near.items())}
        if real:
            fig["real"] = {
                "false_commands": rate(real, "false_accept").as_dict(),
                "examples": [
                    {"file": r.speaker, "text": r.text, "got": r.got, "heard": r.hypothesis}
                    for r in real
                    if r.got is not None
                ],
            }
        out[split] = fig
    return out


def evaluate(
    corpus: Corpus,
    cfg: AgentConfig,
    *,
    recognizer: IntentRecognizer | None = None,
    quick: bool | None = None,
    background_max_s: float | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """All figures of one evaluation as a JSON-able dict (see ``report.py`` for the table)."""
    quick = bool(corpus.meta.get("quick")) if quick is None else quick
    q = 1 if quick else 0
    t_start = time.perf_counter()
    pipeline_sink = MemorySink()
    first = build_pipeline(cfg, pipeline_sink)
    rec = recognizer if recognizer is not None else first.recognizer
    help_intent = cfg.events.help_call.intent
    progress(f"recognizer {rec.model}: {sum(c.kind != 'background' for c in corpus.clips)} clips")
    t0 = time.perf_counter()
    clip_results = evaluate_clips(corpus, rec, progress)
    clips_wall = time.perf_counter() - t0

    store = ModelStore(cfg.models.dir)
    session, manifest = store.load(
        cfg.vision.model, threads=cfg.vision.threads, runtimes=cfg.runtimes
    )
    detector = FaceDetector(session, manifest.preprocess, manifest.postprocess)
    cameras = {}
    for person, video in ((True, PERSON_VIDEO), (False, EMPTY_VIDEO)):
        images = load_frames(video)
        cameras[person] = Camera(images, [detector.person_score(im) for im in images])

    test_cmds = [c for c in corpus.select(kind="command", split="test") if c.intent != help_intent]
    reals = corpus.select(kind="real")
    scenes: list[Scene] = [
        background_scene(corpus, "background_person", True, max_s=background_max_s),
        background_scene(corpus, "background_nobody", False, max_s=background_max_s),
        clip_scene(
            corpus, sample_clips(test_cmds, COMMANDS_WITH_PERSON[q], 41), "commands_person", True
        ),
        clip_scene(
            corpus, sample_clips(test_cmds, COMMANDS_NOBODY[q], 42), "commands_nobody", False
        ),
    ]
    if reals:
        scenes.append(clip_scene(corpus, reals, "real_person", True))
    runs: list[SceneRun] = []
    for i, scene in enumerate(scenes):
        progress(f"scene {scene.name}: {scene.duration_s / 60:.1f} min")
        if i > 0:  # a fresh pipeline per scene: VAD state, cooldowns and events start empty
            pipeline_sink = MemorySink()
            first = build_pipeline(cfg, pipeline_sink)
        runs.append(run_scene(scene, first, pipeline_sink, cameras[scene.person], cfg, rec))
    scene_figs = {r.name: r.as_dict() for r in runs}
    for r in runs:
        fig = scene_figs[r.name]
        fig["false_per_hour"] = {
            p: per_hour(m.false_accepts, r.duration_s) for p, m in r.policies.items()
        }
    return {
        "meta": {
            "recognizer": rec.model,
            "engine": cfg.speech.engine,
            "speech_config": cfg.speech.model_dump(mode="json"),
            "fusion": cfg.fusion.model_dump(mode="json"),
            "require_person": cfg.events.voice_command.require_person,
            "intents": cfg.intents,
            "corpus": {k: v for k, v in corpus.meta.items() if k != "voices"},
            "corpus_dir": str(corpus.root),
            "voices": corpus.meta.get("voices", {}),
            "held_out_espeak": list(HELD_OUT_ESPEAK),
            "tune_espeak": list(TUNE_ESPEAK),
            "quick": quick,
            "machine": f"{platform.machine()} {platform.python_version()}",
            "clips_wall_s": round(clips_wall, 1),
            "wall_s": round(time.perf_counter() - t_start, 1),
        },
        "clips": _clip_figures(clip_results, help_intent),
        "rtf": {
            "per_segment": rtf_summary([r for r in clip_results if r.split == "test"]),
            "note": "recognizer CPU seconds per second of segment audio (one thread)",
        },
        "scenes": scene_figs,
        "clip_results": [asdict(r) for r in clip_results],
    }


__all__ = ["evaluate", "evaluate_clips"]
