"""``edge-agent bench --latency``: end of speech → event at an MQTT subscriber, in real time.

The sample scenes that expect an event are replayed in real time (audio chunks arrive when
they would from a microphone, frames with them) through the whole pipeline and a real
publisher into a Mosquitto the bench starts on loopback; a separate subscriber notes the
arrival time of each event. Latency is arrival minus the *acoustic* end of the spoken phrase
(the scene's timeline, which the VAD does not know), so the VAD's hangover, the recognizer,
the evidence window and the MQTT hop are all inside it.
"""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path
from typing import Any

from agent.config.schema import AgentConfig

_LOGGER = logging.getLogger(__name__)


def _speech_ends(scene: dict[str, Any]) -> list[tuple[float, float]]:
    return [(float(s["start"]), float(s["end"])) for s in scene["timeline"].get("speech", [])]


def event_scenes(root: Path) -> list[Path]:
    """The sample scenes in which an event is expected (the ones latency can be taken on)."""
    found = []
    for meta in sorted(root.glob("*/scene.json")):
        if json.loads(meta.read_text())["expect"]:
            found.append(meta.parent)
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def run_latency(cfg: AgentConfig, scenes: list[Path], runs: int = 3) -> dict[str, Any]:
    """Replay each scene ``runs`` times in real time; one latency per event received."""
    from agent.app import build_pipeline, replay
    from agent.demo import connect_pair
    from agent.models.store import ModelStore
    from agent.publish.broker import LocalBroker

    store = ModelStore(cfg.models.dir)
    rows: list[dict[str, Any]] = []
    missed = 0
    stage_ms: dict[str, list[float]] = {}
    with LocalBroker() as broker:
        publisher, collector, topic = connect_pair(cfg, broker)
        try:
            for run in range(runs):
                for folder in scenes:
                    meta = json.loads((folder / "scene.json").read_text())
                    spoken = _speech_ends(meta)
                    before = len(collector.on(topic))
                    pipeline = build_pipeline(cfg, publisher, store=store)
                    report = replay(
                        pipeline, folder / "video.avi", folder / "audio.wav", realtime=True
                    )
                    publisher.flush()
                    got = collector.wait_for(topic, before + len(meta["expect"]), timeout=5)
                    new = got[before:]
                    missed += max(0, len(meta["expect"]) - len(new))
                    for msg in new:
                        ev = msg.json()
                        # The phrase this event is about: the spoken span it overlaps most.
                        _, end = max(
                            spoken,
                            key=lambda s: min(s[1], ev["end"]) - max(s[0], ev["start"]),
                        )
                        rows.append(
                            {
                                "scene": folder.name,
                                "run": run,
                                "type": ev["type"],
                                "intent": ev["intent"],
                                "speech_end_s": end,
                                "vad_end_s": round(ev["end"], 3),
                                "latency_ms": round((msg.at - (report.started_at + end)) * 1000, 1),
                            }
                        )
                    for stage, ms in pipeline.times.median_ms().items():
                        stage_ms.setdefault(stage, []).append(ms)
        finally:
            publisher.close()
            collector.stop()
    lat = [r["latency_ms"] for r in rows]
    by_type: dict[str, dict[str, float]] = {}
    for kind in sorted({r["type"] for r in rows}):
        xs = [r["latency_ms"] for r in rows if r["type"] == kind]
        by_type[kind] = {
            "n": len(xs),
            "p50": round(percentile(xs, 0.5), 1),
            "p95": round(percentile(xs, 0.95), 1),
        }
    return {
        "scenes": [f.name for f in scenes],
        "runs": runs,
        "events": len(rows),
        "missed": missed,
        "latency_ms": {
            "p50": round(percentile(lat, 0.5), 1),
            "p95": round(percentile(lat, 0.95), 1),
            "max": round(max(lat), 1) if lat else float("nan"),
        },
        "by_type": by_type,
        "stage_median_ms": {k: round(statistics.median(v), 3) for k, v in stage_ms.items()},
        "rows": rows,
    }


def print_latency(result: dict[str, Any]) -> None:
    lat = result["latency_ms"]
    print(
        f"latency, end of speech -> event at a subscriber (real time, {result['runs']} runs of "
        f"{', '.join(result['scenes'])}): p50 {lat['p50']} ms, p95 {lat['p95']} ms, "
        f"max {lat['max']} ms over {result['events']} events ({result['missed']} missed)"
    )
    for kind, t in result["by_type"].items():
        print(f"  {kind:14} n={t['n']:<3} p50 {t['p50']} ms, p95 {t['p95']} ms")
    for r in result["rows"]:
        print(
            f"  {r['scene']:24} run {r['run']} {r['type']}:{r['intent']:10} "
            f"spoken end {r['speech_end_s']:.2f} s, vad end {r['vad_end_s']:.2f} s, "
            f"{r['latency_ms']:.0f} ms"
        )
    print("stage medians (ms): " + json.dumps(result["stage_median_ms"]))


__all__ = ["event_scenes", "percentile", "print_latency", "run_latency"]
