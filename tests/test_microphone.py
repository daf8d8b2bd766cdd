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
