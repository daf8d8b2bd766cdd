"""``edge-agent bench --scenes``: the agent's running cost in real time, one command.

Scenes are made once from the bundled samples (cached under
``$XDG_CACHE_HOME/edge-agent/bench``, by default ``~/.cache/edge-agent/bench``):
a 640x480 15 fps MJPEG camera (as common IP cameras send) and a microphone hearing room noise
(pink, -50 dBFS) plus what the scene says:

- ``idle``: an empty room, nobody talks;
- ``standard``: a person in view, three commands a minute;
- ``busy``: a person in view talking all the time, three commands a minute among the talk;
- ``pairsN`` (e.g. ``pairs4``): N standard camera + microphone pairs in one process.

Each scene is replayed in real time (audio chunks when a microphone would deliver them,
frames with them) through the whole pipeline and a real publisher into a Mosquitto the bench
starts on loopback; a separate subscriber times each event. Printed per scene: CPU seconds per
media second (the whole process), latency from the acoustic end of each command to the
subscriber (p50/p95), RSS, the frame ring's memory, per-stage milliseconds and the overhead
ratio (process CPU over the sum of the stages' own times).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.config.schema import AgentConfig
from agent.core.media import AUDIO_RATE
from agent.latency import percentile

_LOGGER = logging.getLogger(__name__)

SCENES = ("idle", "standard", "busy", "pairs4")
SIZE = (640, 480)
FPS = 15
NOISE_DBFS = -50.0
COMMAND_EVERY_S = 20.0  # three a minute
GAP_S = 0.8  # between utterances of continuous talk
_VERSION = 1  # bump when the recipe changes: cached scenes are remade


def _samples() -> Path:
    return Path(__file__).resolve().parent / "samples"


def _frames(sample: str) -> list[npt.NDArray[np.uint8]]:
    import cv2

    cap = cv2.VideoCapture(str(_samples() / sample / "video.avi"))
    out: list[npt.NDArray[np.uint8]] = []
    try:
        for _ in range(10_000):
            ok, image = cap.read()
            if not ok:
                break
            out.append(np.asarray(cv2.resize(image, SIZE, interpolation=cv2.INTER_LINEAR)))
    finally:
        cap.release()
    if not out:
        raise ValueError(f"sample {sample} has no frames")
    return out


def _utterances(sample: str) -> list[tuple[str, npt.NDArray[np.float64]]]:
    """The sample's spoken phrases (text, audio with 0.25 s either side)."""
    from agent.sources.files import read_wav

    meta = json.loads((_samples() / sample / "scene.json").read_text())
    audio = read_wav(_samples() / sample / "audio.wav").astype(np.float64)
    out = []
    for s in meta["timeline"].get("speech", []):
        lo = max(0, int((float(s["start"]) - 0.25) * AUDIO_RATE))
        hi = min(len(audio), int((float(s["end"]) + 0.25) * AUDIO_RATE))
        out.append((str(s["text"]), audio[lo:hi]))
    return out


def room_noise(seconds: float, seed: int) -> npt.NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(int(seconds * AUDIO_RATE))
    spec = np.fft.rfft(white)
    spec[1:] /= np.sqrt(np.arange(1, len(spec)))  # 1/f power: pink, like a room
    pink = np.fft.irfft(spec, len(white))
    level: npt.NDArray[np.float64] = pink / np.sqrt(np.mean(pink**2))
    return level * 32768 * 10 ** (NOISE_DBFS / 20)


def make_scene(name: str, seconds: float, root: Path) -> Path:
    """The scene folder (video.avi, audio.wav, scene.json), made once per recipe."""
    import cv2

    folder = root / f"{name}-{seconds:g}s-v{_VERSION}"
    if (folder / "scene.json").is_file():
        return folder
    if name not in ("idle", "standard", "busy"):
        raise ValueError(f"unknown bench scene {name!r}; known: {', '.join(SCENES)}")
    tmp = folder.with_name(folder.name + ".part")
    tmp.mkdir(parents=True, exist_ok=True)
    audio = room_noise(seconds, seed=7)
    speech: list[dict[str, Any]] = []
    commands = _utterances("person_command") + _utterances("person_command_female")
    talk = _utterances("person_chatter") + _utterances("person_background_speech")

    def place(at: float, text: str, clip: npt.NDArray[np.float64], command: bool) -> float:
        i = int(at * AUDIO_RATE)
        audio[i : i + len(clip)] += clip[: len(audio) - i]
        # The acoustic span: the clip less its 0.25 s padding.
        speech.append(
            {
                "start": round(at + 0.25, 3),
                "end": round(at + len(clip) / AUDIO_RATE - 0.25, 3),
                "text": text,
                "command": command,
            }
        )
        return at + len(clip) / AUDIO_RATE

    if name in ("standard", "busy"):
        t, n_cmd, n_talk = 1.0, 0, 0
        next_cmd = 5.0
        for _ in range(10_000):
            if t >= seconds - 4.0:
                break
            if t >= next_cmd:
                text, clip = commands[n_cmd % len(commands)]
                t = place(t, text, clip, True) + GAP_S
                n_cmd += 1
                next_cmd += COMMAND_EVERY_S
            elif name == "busy":
                text, clip = talk[n_talk % len(talk)]
                if t + len(clip) / AUDIO_RATE > next_cmd:
                    t = next_cmd  # never talk over a command
                    continue
                t = place(t, text, clip, False) + GAP_S
                n_talk += 1
            else:
                t = next_cmd
    pcm = np.clip(np.round(audio), -32768, 32767).astype("<i2")
    with wave.open(str(tmp / "audio.wav"), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(AUDIO_RATE)
        wav.writeframes(pcm.tobytes())
    images = _frames("nobody_command" if name == "idle" else "person_command")
    writer = cv2.VideoWriter(str(tmp / "video.avi"), cv2.VideoWriter.fourcc(*"MJPG"), FPS, SIZE)
    try:
        for i in range(int(seconds * FPS)):
            # The samples are 10 fps: each is shown for its own time at 15 fps.
            writer.write(images[(i * 10 // FPS) % len(images)])
    finally:
        writer.release()
    meta = {
        "name": name,
        "duration_s": seconds,
        "fps": FPS,
        "size": list(SIZE),
        "person_in_view": name != "idle",
        "speech": speech,
    }
    (tmp / "scene.json").write_text(json.dumps(meta, indent=1))
    tmp.rename(folder)
    return folder


def _rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB."""
    now = peak = 0.0
    with Path("/proc/self/status").open(encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                now = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return now, peak


def run_scene(
    cfg: AgentConfig, name: str, seconds: float, root: Path, store: Any = None
) -> dict[str, Any]:
    """Replay scene ``name`` (``pairsN``: N standard pairs at once) in real time."""
    from agent.app import build_pipelines, replay
    from agent.demo import connect_pair
    from agent.models.shared import SharedModelStore
    from agent.publish.broker import LocalBroker

    m = re.fullmatch(r"pairs(\d+)", name)
    pairs = int(m.group(1)) if m else 1
    if not 1 <= pairs <= 16:
        raise ValueError(f"{name}: 1-16 pairs")
    folder = make_scene("standard" if m else name, seconds, root)
    meta = json.loads((folder / "scene.json").read_text())
    ends = sorted(s["end"] for s in meta["speech"] if s["command"])
    store = store or SharedModelStore(cfg.models.dir)
    # N pairs = N rooms of one agent: one loaded copy of every model, one MQTT connection.
    rooms = AgentConfig.model_validate(
        {
            **cfg.model_dump(exclude={"camera", "microphone", "rooms"}),
            "rooms": [{"id": f"pair{i}"} for i in range(pairs)],
        }
    )
    with LocalBroker() as broker:
        publisher, collector, topic = connect_pair(cfg, broker)
        try:
            built = build_pipelines(rooms, lambda room: publisher, store=store)
            pipelines = [built[f"pair{i}"] for i in range(pairs)]
            reports: list[Any] = [None] * pairs

            def play(i: int) -> None:
                reports[i] = replay(
                    pipelines[i],
                    folder / "video.avi",
                    folder / "audio.wav",
                    realtime=True,
                    idle_batch_ms=cfg.microphone.idle_batch_ms,  # as the live audio worker
                )

            cpu0, wall0 = time.process_time(), time.perf_counter()
            workers = [
                threading.Thread(target=play, args=(i,), name=f"bench-pair-{i}")
                for i in range(pairs)
            ]
            for w in workers:
                w.start()
            for w in workers:
                w.join(seconds * 3 + 60)
            cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
            rss, peak = _rss_mb()
            ring_mb = sum(p.frames.nbytes() for p in pipelines) / 1e6
            expected = sum(p.decisions.emitted for p in pipelines)
            publisher.flush()
            got = collector.wait_for(topic, expected, timeout=5)
        finally:
            publisher.close()
            collector.stop()
    if any(r is None for r in reports):
        raise RuntimeError(f"bench scene {name}: a replay did not finish")
    latencies: list[float] = []
    for msg in got:
        ev = msg.json()
        pair = int(str(ev["device"]).removeprefix("pair"))
        heard = msg.at - reports[pair].started_at
        before = [e for e in ends if e <= heard]
        if before:
            latencies.append((heard - before[-1]) * 1000)
    stage_ms: dict[str, float] = {}
    stage_total_s = 0.0
    for p in pipelines:
        for stage, ms in p.times.median_ms().items():
            stage_ms[stage] = max(stage_ms.get(stage, 0.0), ms)
        stage_total_s += sum(p.times.total_ms.values()) / 1000
    media = reports[0].media_s
    p50, p95 = (percentile(latencies, q) if latencies else None for q in (0.5, 0.95))
    return {
        "scene": name,
        "pairs": pairs,
        "media_s": round(media, 1),
        "cpu_s_per_media_s": round(cpu_s / media, 4),
        "realtime_factor": round(wall_s / media, 3),
        "commands": len(ends) * pairs,
        "events": len(got),
        "latency_ms": {
            "p50": None if p50 is None else round(p50, 1),
            "p95": None if p95 is None else round(p95, 1),
            "all": sorted(round(x, 1) for x in latencies),
        },
        "rss_mb": round(rss, 1),
        "peak_rss_mb": round(peak, 1),
        "ring_mb": round(ring_mb, 2),
        "stage_median_ms": {k: round(v, 3) for k, v in sorted(stage_ms.items())},
        "stage_cpu_s_per_media_s": round(stage_total_s / media, 4),
        "overhead": round(cpu_s / stage_total_s, 2) if stage_total_s > 0 else None,
    }


def run_scenes(
    cfg: AgentConfig,
    names: list[str],
    seconds: float = 60.0,
    root: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    from agent.models.shared import SharedModelStore

    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    root = root or Path(cache) / "edge-agent" / "bench"
    store = SharedModelStore(cfg.models.dir)
    rows = []
    for name in names:
        if progress is not None:
            progress(name)
        rows.append(run_scene(cfg, name, seconds, root, store=store))
    return rows


def print_scenes(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'scene':10} {'pairs':>5} {'media s':>7} {'CPU-s/s':>8} {'overhead':>8} "
        f"{'events':>9} {'p50 ms':>7} {'p95 ms':>7} {'RSS MB':>7} {'ring MB':>7}"
    )
    for r in rows:
        lat = r["latency_ms"]
        print(
            f"{r['scene']:10} {r['pairs']:>5} {r['media_s']:>7} {r['cpu_s_per_media_s']:>8} "
            f"{_fmt(r['overhead']):>8} {str(r['events']) + '/' + str(r['commands']):>9} "
            f"{_fmt(lat['p50']):>7} {_fmt(lat['p95']):>7} {r['rss_mb']:>7} {r['ring_mb']:>7}"
        )
    for r in rows:
        print(f"  {r['scene']} stage medians (ms): {json.dumps(r['stage_median_ms'])}")


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"


__all__ = ["SCENES", "make_scene", "print_scenes", "run_scene", "run_scenes"]
