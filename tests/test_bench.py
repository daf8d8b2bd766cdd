"""``edge-agent bench``: rows per model x back-end x threads, stable keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.bench import bench_models
from agent.config.runtimes import RuntimesConfig
from agent.models.store import ModelStore
from tests.conftest import run_agent
from tests.tiny_models import model_folder

ROW_KEYS = {
    "model",
    "runtime",
    "backend",
    "target",
    "precision",
    "threads",
    "median_ms",
    "warmup_ms",
    "unit",
}


def test_bench_models_on_tiny_store(tmp_path: Path) -> None:
    root = tmp_path / "store"
    model_folder(root, "tiny_onnx")
    model_folder(root, "tiny_tflite", kind="tflite")
    rows = bench_models(ModelStore(root), threads=(1, 2), runs=3)
    assert [(r["model"], r["threads"]) for r in rows] == [
        ("tiny_onnx@1.0.0", 1),
        ("tiny_onnx@1.0.0", 2),
        ("tiny_tflite@1.0.0", 1),
        ("tiny_tflite@1.0.0", 2),
    ]
    for row in rows:
        assert set(row) == ROW_KEYS
        assert row["median_ms"] >= 0 and row["target"] == "cpu"
    assert rows[0]["backend"] == "onnxruntime/CPUExecutionProvider"
    assert rows[2]["backend"] == "litert/xnnpack"


def test_bench_skips_accelerator_that_fell_back(tmp_path: Path) -> None:
    root = tmp_path / "store"
    model_folder(root, "tiny")
    cfg = RuntimesConfig.model_validate({"onnx": {"providers": ["cuda"]}})
    rows = bench_models(ModelStore(root), cfg, threads=(1,), runs=3)
    # No CUDA here: the "config" target ran on the CPU too, so it is not reported twice.
    assert [(r["target"], r["backend"]) for r in rows] == [
        ("cpu", "onnxruntime/CPUExecutionProvider")
    ]


def test_cli_bench_json() -> None:
    res = run_agent("bench", "--json", "--runs", "3", "--threads", "1", timeout=300)
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert {"scene", "models", "speech", "pipeline"} <= set(result)
    assert result["models"] and all(set(r) == ROW_KEYS for r in result["models"])
    assert {r["precision"] for r in result["models"]} >= {"int8", "fp32"}
    assert result["pipeline"]["cpu_s_per_media_s"] > 0
    bad = run_agent("bench", "--threads", "0", timeout=60)
    assert bad.returncode == 78 and "--threads" in bad.stderr


def test_cli_bench_latency_through_a_real_broker() -> None:
    """One real-time pass over the scenes with events, through the bench's own Mosquitto: each
    expected event arrives and gets a latency from the spoken end of its phrase (the figure
    itself is machine-dependent and only reported)."""
    res = run_agent("bench", "--latency", "1", "--json", timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    result = json.loads(res.stdout)
    assert result["missed"] == 0
    assert {r["scene"] for r in result["rows"]} == {
        "lying_help",
        "person_arrives",
        "person_command",
        "person_command_female",
    }
    for row in result["rows"]:
        # The event's own end (the VAD's) lies near the phrase's spoken end it is matched to.
        assert abs(row["vad_end_s"] - row["speech_end_s"]) < 0.3
        assert row["latency_ms"] > 0  # it cannot arrive before the phrase ended
    assert set(result["by_type"]) == {"voice_command", "help_call"}
    bad = run_agent("bench", "--latency", "0", timeout=60)
    assert bad.returncode == 78 and "--latency" in bad.stderr


def test_cli_bench_scenes_in_real_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Short idle, standard and two-pair scenes, made from the samples and replayed in real
    time through a real broker: every command arrives with a latency, the idle room gives no
    event, and every figure is there (the figures themselves are only reported)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # where the scenes are made
    res = run_agent(
        "bench", "--scenes", "idle,standard,pairs2", "--seconds", "12", "--json", timeout=400
    )
    assert res.returncode == 0, res.stderr[-2000:]
    rows = {r["scene"]: r for r in json.loads(res.stdout)}
    assert set(rows) == {"idle", "standard", "pairs2"}
    assert rows["idle"]["events"] == rows["idle"]["commands"] == 0
    assert rows["standard"]["commands"] == 1 and rows["pairs2"]["commands"] == 2
    for name in ("standard", "pairs2"):
        r = rows[name]
        assert r["events"] == r["commands"]
        assert r["latency_ms"]["p95"] > 0
        assert len(r["latency_ms"]["all"]) == r["events"]  # one per event, for spotting outliers
        assert "vision_frame" in r["stage_median_ms"]
    for r in rows.values():
        assert r["cpu_s_per_media_s"] > 0 and r["rss_mb"] > 0 and r["overhead"] > 0
        assert 0 < r["ring_mb"] < 50
    cached = list((tmp_path / "edge-agent" / "bench").iterdir())
    assert sorted(p.name for p in cached) == ["idle-12s-v1", "standard-12s-v1"]
    bad = run_agent("bench", "--scenes", "idle,lazy", timeout=60)
    assert bad.returncode == 78 and "lazy" in bad.stderr
