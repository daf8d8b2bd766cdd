"""The real PortAudio path: PyAudio reads a raw file through an ALSA `file` device.

ALSA reads $HOME/.asoundrc, so each check runs in a subprocess with HOME set to tmp_path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TESTDATA

pytest.importorskip("pyaudio")

PROBE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from agent.config.capture import MicrophoneConfig
    from agent.core.clock import MonotonicClock
    from agent.errors import SourceError
    from agent.sources.microphone import PyAudioMicrophone
    try:
        PyAudioMicrophone(MicrophoneConfig(source="USB Mic"), MonotonicClock())
        missing = "opened?!"
    except SourceError as err:
        missing = str(err)
    mic = PyAudioMicrophone(MicrophoneConfig(source=sys.argv[1]), MonotonicClock())
    chunks, total = [], 0
    while total < int(sys.argv[2]):
        c = mic.read(timeout=5)
        chunks.append(c)
        total += len(c.samples)
    mic.close()
    firsts = [c.first_sample for c in chunks]
    pairs = list(zip(chunks, chunks[1:]))
    contiguous = all(b.first_sample == a.first_sample + len(a.samples) for a, b in pairs)
    np.concatenate([c.samples for c in chunks]).tofile(sys.argv[3])
    print(json.dumps({"missing": missing, "contiguous": contiguous, "first": firsts[0],
                      "monotonic_t": all(b.t_ns > a.t_ns for a, b in pairs)}))
    """
)


@pytest.mark.parametrize("source", ["default", "pyaudio://defa"])
def test_pyaudio_reads_alsa_file_device_bit_for_bit(tmp_path: Path, source: str) -> None:
    raw = TESTDATA / "goforward.raw"
    if not raw.exists():
        pytest.skip("pocketsphinx-testdata not installed")
    (tmp_path / "mic.raw").write_bytes(raw.read_bytes())
    (tmp_path / ".asoundrc").write_text(
        'pcm.!default { type file; slave.pcm "null"; file "/dev/null"; '
        f'infile "{tmp_path / "mic.raw"}"; format "raw" }}\npcm.null {{ type null }}\n'
    )
    ref = np.frombuffer(raw.read_bytes(), dtype="<i2")
    out = tmp_path / "got.s16"
    res = subprocess.run(
        [sys.executable, "-c", PROBE, source, str(len(ref)), str(out)],
        env={**os.environ, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert "no input device matching 'USB Mic'" in info["missing"]
    assert info["contiguous"] and info["first"] == 0 and info["monotonic_t"]
    got = np.fromfile(out, dtype=np.int16)
    assert np.array_equal(got[: len(ref)], ref)


OVERFLOW = textwrap.dedent(
    """
    import json, sys, time
    from agent.config.capture import MicrophoneConfig
    from agent.core.clock import MonotonicClock
    from agent.sources.microphone import PyAudioMicrophone
    cfg = MicrophoneConfig(source="default", queue_seconds=0.3)
    mic = PyAudioMicrophone(cfg, MonotonicClock())
    first = mic.read(timeout=5)
    time.sleep(2.0)  # the consumer stalls: the device keeps delivering, the queue fills
    chunks = [mic.read(timeout=5) for _ in range(40)]
    stats = mic.stats()
    mic.close()
    pairs = list(zip(chunks, chunks[1:]))
    jumps = [b.first_sample - (a.first_sample + len(a.samples)) for a, b in pairs]
    print(json.dumps({"stats": stats, "jumps": [j for j in jumps if j],
                      "after": all(c is not None for c in chunks)}))
    """
)


def test_audio_overflow_is_counted_and_the_stream_continues(tmp_path: Path) -> None:
    """RELIABILITY C5: a consumer that stalls longer than microphone.queue_seconds: the
    chunks that did not fit are counted (dropped_chunks, reported in the capture stats), the
    sample counter skips exactly over them, and reading goes on."""
    raw = tmp_path / "mic.raw"
    rng = np.random.default_rng(0)
    raw.write_bytes((rng.normal(0, 2000, 16000 * 20)).astype("<i2").tobytes())
    (tmp_path / ".asoundrc").write_text(
        'pcm.!default { type file; slave.pcm "null"; file "/dev/null"; '
        f'infile "{raw}"; format "raw" }}\npcm.null {{ type null }}\n'
    )
    res = subprocess.run(
        [sys.executable, "-c", OVERFLOW],
        env={**os.environ, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert info["after"], info
    assert info["stats"]["dropped_chunks"] > 0, info
    # The counter skips over what was dropped (never backwards, never spliced); this file
    # device is not paced, so it keeps overflowing while we read and there may be more jumps.
    assert info["jumps"] and all(j > 0 for j in info["jumps"]), info
    assert info["stats"]["lost_samples"] >= info["jumps"][0], info
    assert "samples dropped (queue full)" in res.stderr
