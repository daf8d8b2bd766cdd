"""Soak the whole daemon in real time: `edge-agent run` on an MJPEG camera over HTTP and a
microphone through PortAudio (an ALSA file device fed at real time), events to Mosquitto.

Every ``--camera-every`` seconds the camera server is killed and started again after
``--down-s``; every ``--broker-every`` seconds the broker is restarted. Once a minute the
agent's RSS, open file descriptors and threads are sampled from /proc. At the end every
event the agent logged as emitted is looked up at the subscriber (by id: the outbox delivers
each at least once). Prints one JSON summary; exit 1 when an event was lost or the agent died.

    python -m scripts.soak_agent --seconds 3600
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

import testbed
from agent.publish.broker import LocalBroker
from agent.publish.subscriber import Collector

ROOT = Path(__file__).resolve().parents[1]

SCENE = ROOT / "agent" / "samples" / "person_command"


def _proc(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    fds = sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())
    return {"rss_mib": round(rss, 1), "fds": fds, "threads": threads}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=3600.0)
    p.add_argument("--camera-every", type=float, default=300.0)
    p.add_argument("--down-s", type=float, default=5.0)
    p.add_argument("--broker-every", type=float, default=420.0)
    p.add_argument("--out", type=Path, help="write the summary JSON here too")
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="soak-agent-"))
    raw = tmp / "mic.raw"
    with wave.open(str(SCENE / "audio.wav")) as w:
        np.frombuffer(w.readframes(w.getnframes()), "<i2").tofile(raw)
    fifo = testbed.make_fifo(tmp / "mic.fifo")
    testbed.alsa_file_mic(tmp, fifo)
    cam_port = testbed.free_port()
    broker = LocalBroker(persistence=True).start()
    feeder = testbed.start_feeder(fifo, args.seconds + 300, raw)
    camera = testbed.start_mjpeg(cam_port, video=SCENE / "video.avi", fps=10.0)
    cfg = tmp / "agent.yaml"
    cfg.write_text(
        "device_id: soak\n"
        f"camera:\n  source: http://127.0.0.1:{cam_port}/stream.mjpg\n  fps: 10\n"
        "  backoff_initial_s: 1\n  backoff_max_s: 5\n"
        "microphone:\n  source: default\n"
        f"mqtt:\n  host: 127.0.0.1\n  port: {broker.port}\n"
        "log_level: info\n"
    )
    sub = Collector(
        "127.0.0.1", broker.port, "edge-agent/soak/events", client_id="soak-sub", durable=True
    )
    sub.start()
    env = {**os.environ, "HOME": str(tmp), "STATE_DIRECTORY": str(tmp / "state")}
    log = (tmp / "agent.log").open("w")
    agent = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "edge-agent"), "run", "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=log,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    samples: list[dict[str, float]] = []
    events: dict[str, Any] = {"camera_restarts": 0, "broker_restarts": 0}
    t0 = time.monotonic()
    next_sample, next_cam, next_broker = t0 + 60, t0 + args.camera_every, t0 + args.broker_every
    died = False
    try:
        while time.monotonic() - t0 < args.seconds:
            time.sleep(1.0)
            if agent.poll() is not None:
                died = True
                break
            now = time.monotonic()
            if now >= next_sample:
                samples.append({"t_s": round(now - t0), **_proc(agent.pid)})
                next_sample += 60
            if now >= next_cam:
                testbed.stop(camera, kill=True)
                time.sleep(args.down_s)
                camera = testbed.start_mjpeg(cam_port, video=SCENE / "video.avi", fps=10.0)
                events["camera_restarts"] += 1
                next_cam += args.camera_every
            if now >= next_broker:
                broker.restart()
                events["broker_restarts"] += 1
                next_broker += args.broker_every
        # Let the outbox drain after the last broker restart.
        time.sleep(15)
    finally:
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            agent.wait(60)
        log.close()
        testbed.stop(camera, kill=True)
        testbed.stop(feeder, kill=True)
    text = (tmp / "agent.log").read_text(errors="replace")
    emitted = len(re.findall(r"voice_command light_on", text))
    got = {m.json()["id"] for m in sub.on("edge-agent/soak/events")}
    sub.stop()
    broker.close()
    summary = {
        "seconds": args.seconds,
        "agent_exit": agent.returncode,
        "died_early": died,
        **events,
        "events_emitted": emitted,
        "events_received_unique": len(got),
        "samples": samples,
        "rss_mib_first_last_max": [
            samples[0]["rss_mib"] if samples else None,
            samples[-1]["rss_mib"] if samples else None,
            max((s["rss_mib"] for s in samples), default=None),
        ],
        "fds_first_last": [samples[0]["fds"], samples[-1]["fds"]] if samples else None,
        "threads_first_last": [samples[0]["threads"], samples[-1]["threads"]] if samples else None,
        "log": str(tmp / "agent.log"),
    }
    text_out = json.dumps(summary, indent=2)
    print(text_out)
    if args.out:
        args.out.write_text(text_out + "\n")
    ok = not died and len(got) >= emitted > 0
    if ok:
        shutil.rmtree(tmp / "state", ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
