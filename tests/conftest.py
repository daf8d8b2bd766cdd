"""Shared fixtures: a real Mosquitto per test on 127.0.0.1 and a free port."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.publish.broker import LocalBroker, find_mosquitto

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "agent" / "samples"
TESTDATA = Path("/usr/share/pocketsphinx/test/data")


@pytest.fixture(autouse=True)
def _state_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test (and every agent it starts) keeps its MQTT outbox in its own directory."""
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("STATE_DIRECTORY", str(state))


@pytest.fixture
def broker() -> Iterator[LocalBroker]:
    if find_mosquitto() is None:
        # The test command installs mosquitto; a missing one is a broken setup, not a skip.
        pytest.fail("mosquitto is not installed: run scripts/bootstrap.sh --dev")
    b = LocalBroker().start()
    try:
        yield b
    finally:
        b.close()


def agent_cmd(*args: str) -> list[str]:
    """The installed console script when present, else ``python -m agent``."""
    exe = Path(sys.executable).with_name("edge-agent")
    if exe.exists():
        return [str(exe), *args]
    return [sys.executable, "-m", "agent", *args]


def run_agent(*args: str, timeout: float = 180, **kw: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "error::DeprecationWarning"}
    return subprocess.run(
        agent_cmd(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
        stdin=subprocess.DEVNULL,
        **kw,  # type: ignore[arg-type]
    )


def espeak(text: str, out: Path, voice: str = "en-us") -> Path:
    """Synthesize ``text`` to a 16 kHz mono s16 WAV with espeak-ng and sox."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng/sox not installed")
    raw = out.with_suffix(".22k.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True, timeout=60)
    subprocess.run(
        ["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(out)], check=True, timeout=60
    )
    return out
