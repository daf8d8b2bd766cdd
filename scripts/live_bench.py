"""The bench scenes against a live `edge-agent run`, measured from outside the process.

Each room gets an MJPEG camera over HTTP (testbed.mjpeg_server looping the scene's video at
15 fps) and a microphone through PortAudio (an ALSA file device whose FIFO is fed the scene's
audio in real time); events go to a Mosquitto on loopback and a separate subscriber. CPU
seconds per second come from /proc/PID/stat over the scene (after a warm-up), RSS from
/proc/PID/status at its end, latency from the acoustic end of each command (scene.json) to its
arrival at the subscriber. Prints one JSON object.

    python -m scripts.live_bench --scene standard --rooms 1 --seconds 60
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

import testbed
from agent.bench_scenes import make_scene
from agent.latency import percentile
from agent.publish.broker import LocalBroker
from agent.publish.subscriber import Collector
from agent.sources.files import read_wav

WARMUP_S = 8.0  # models load, devices open, the first frames arrive


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _asoundrc(home: Path, fifos: list[Path]) -> None:
    """One ALSA PCM per room (mic0, mic1, ...), each reading its own FIFO."""
    pcms = "".join(
        f'pcm.mic{i} {{ type file; slave.pcm "null"; file "/dev/null"; '
        f'infile "{fifo}"; format "raw" }}\n'
        for i, fifo in enumerate(fifos)
    )
    (home / ".asoundrc").write_text(pcms + "pcm.null { type null }\n")


def _config(broker: LocalBroker, ports: list[int]) -> str:
    mqtt = f"mqtt:\n  host: {broker.host}\n  port: {broker.port}\n"
    if len(ports) == 1:
        return (
            f"device_id: live\ncamera:\n  source: http://127.0.0.1:{ports[0]}/stream.mjpg\n"
            f"microphone:\n  source: mic0\n{mqtt}"
        )
    rooms = "".join(
        f"  - id: room{i}\n    camera:\n      source: http://127.0.0.1:{port}/stream.mjpg\n"
        f"    microphone:\n      source: mic{i}\n"
        for i, port in enumerate(ports)
    )
    return f"device_id: live\nrooms:\n{rooms}{mqtt}"


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        old = out.get(key)
        out[key] = (
            _merged(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
        )
    return out


def run(
    scene: str,
    rooms: int,
    seconds: float,
    agent: Sequence[str],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    folder = make_scene(scene, seconds, Path(tempfile.gettempdir()) / "edge-agent-bench")
    meta = json.loads((folder / "scene.json").read_text())
    ends = [float(s["end"]) for s in meta["speech"] if s["command"]]
    with tempfile.TemporaryDirectory(prefix="live-bench-") as tmp:
        home = Path(tmp)
        raw = home / "audio.raw"
        read_wav(folder / "audio.wav").astype("<i2").tofile(raw)
        fifos = [testbed.make_fifo(home / f"mic{i}.fifo") for i in range(rooms)]
        _asoundrc(home, fifos)
        ports = [testbed.free_port() for _ in range(rooms)]
        procs = []
        with LocalBroker() as broker:
            try:
                for port in ports:
                    procs.append(testbed.start_mjpeg(port, folder / "video.avi", fps=15))
                text = _config(broker, ports)
                if extra:
                    buf = io.StringIO()
                    YAML(typ="safe").dump(_merged(YAML(typ="safe").load(text), extra), buf)
                    text = buf.getvalue()
                (home / "agent.yaml").write_text(text)
                col = Collector(broker.host, broker.port, "edge-agent/+/events").start()
                log = (home / "agent.log").open("w")
                proc = subprocess.Popen(
                    [*agent, "run", "--config", str(home / "agent.yaml")],
                    env={**os.environ, "HOME": str(home)},
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
                time.sleep(WARMUP_S)
                t0 = time.monotonic() + 0.5
                t0_wall = time.time() + (t0 - time.monotonic())
                feeders = [
                    threading.Thread(
                        target=testbed.feed_fifo,
                        args=(fifo, seconds),
                        kwargs={"raw": raw, "block": 512, "t0": t0},
                        daemon=True,
                    )
                    for fifo in fifos
                ]
                for f in feeders:
                    f.start()
                time.sleep(max(0.0, t0 - time.monotonic()))
                cpu0, wall0 = _cpu_s(proc.pid), time.monotonic()
                for f in feeders:
                    f.join(seconds + 30)
                cpu1, wall1 = _cpu_s(proc.pid), time.monotonic()
                rss = _rss_mb(proc.pid)
                time.sleep(2.0)  # the last decision and its event
                testbed.stop(proc)
                log.close()
                col.stop()
            finally:
                for p in procs:
                    testbed.stop(p)
        latencies = []
        for msg in col.messages:
            heard = msg.at - t0_wall
            before = [e for e in ends if e <= heard]
            if before:
                latencies.append(round((heard - before[-1]) * 1000, 1))
        tail = (home / "agent.log").read_text()[-2000:] if proc.returncode not in (0, -15) else ""
    xs = sorted(latencies)

    def pct(q: float) -> float | None:
        return percentile(xs, q) if xs else None

    return {
        "scene": scene,
        "rooms": rooms,
        "seconds": seconds,
        "cpu_s_per_s": round((cpu1 - cpu0) / (wall1 - wall0), 4),
        "rss_mb": round(rss, 1),
        "commands": len(ends) * rooms,
        "events": len(latencies),
        "latency_ms": {"p50": pct(0.5), "p95": pct(0.95), "all": xs},
        "agent_exit": proc.returncode,
        "agent_log_tail": tail,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--scene", default="standard", choices=("idle", "standard", "busy"))
    ap.add_argument("--rooms", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument(
        "--config-extra",
        type=Path,
        help="YAML merged into the generated agent config (e.g. speech: {threads: 1})",
    )
    args = ap.parse_args(argv)
    extra = YAML(typ="safe").load(args.config_extra) if args.config_extra else None
    result = run(args.scene, args.rooms, args.seconds, _agent_cmd(), extra)
    print(json.dumps(result, indent=1))
    return 0


def _agent_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("edge-agent")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "agent"]


if __name__ == "__main__":
    raise SystemExit(main())
