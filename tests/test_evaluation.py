"""The evaluation corpus, its splits, the metrics, and ``edge-agent evaluate`` end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from agent.config.schema import AgentConfig
from agent.evaluation.corpus import (
    EXCLUDED_FROM_TRAINING,
    HELD_OUT_ESPEAK,
    TUNE_ESPEAK,
    build_corpus,
    ensure_corpus,
    espeak_base,
    is_training_voice,
    load_corpus,
    read_wav,
    split_of,
)
from agent.evaluation.metrics import (
    ANY_INTENT,
    ClipResult,
    Firing,
    Truth,
    match,
    per_hour,
    rate,
    rtf_summary,
)
from agent.training.voices import EVAL_ONLY_FAMILIES, Voice, VoiceUnavailable, family_voices
from tests.conftest import run_agent

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


# --------------------------------------------------------------------------- metrics


def _t(a: float, b: float, intent: str | None, text: str = "x") -> Truth:
    return Truth(a, b, text, intent, "command" if intent else "background")


def test_match_hits_wrong_intents_and_false_accepts_by_time() -> None:
    truths = [
        _t(1.0, 2.0, "light_on"),
        _t(5.0, 6.0, "fan_off"),
        _t(9.0, 12.0, None, "the night is young"),
        _t(15.0, 16.0, "light_off"),
    ]
    firings = [
        Firing(1.1, 1.9, "light_on"),  # hit
        Firing(1.2, 1.8, "light_on"),  # second firing on the same utterance: still one hit
        Firing(5.1, 6.2, "fan_on"),  # wrong intent
        Firing(10.0, 11.0, "light_on", "lights on"),  # false accept on talk
        Firing(20.0, 21.0, "fan_on"),  # false accept on nothing at all
        Firing(16.3, 16.9, "light_off"),  # 0.3 s after the utterance: within tolerance
    ]
    m = match(truths, firings)
    assert (m.commands, m.hits, m.wrong_intent, m.false_accepts) == (3, 2, 1, 2)
    assert m.recall.frac() == "2/3"
    assert {e["truth"] for e in m.false_examples} == {"the night is young", ""}


def test_match_picks_the_most_overlapping_utterance_and_any_intent() -> None:
    truths = [_t(0.0, 1.0, None), _t(1.2, 2.0, "fan_on")]
    m = match(truths, [Firing(0.9, 2.0, "fan_on")])
    assert (m.hits, m.false_accepts) == (1, 0)
    m = match(truths, [Firing(0.1, 0.5, ANY_INTENT), Firing(1.3, 1.9, ANY_INTENT)])
    assert (m.hits, m.false_accepts) == (1, 1)
    assert match([], []).recall.pct() == "-"


def _clip(truth: str | None, got: str | None, cpu: float = 0.1) -> ClipResult:
    return ClipResult(
        "p", "command", "flite", "flite:kal", "test", "clean", 1.0, "t", truth, got,
        0.5, "", "", 2.0, cpu,
    )  # fmt: skip


def test_clip_outcomes_rates_and_rtf() -> None:
    rows = [
        _clip("light_on", "light_on"),
        _clip("light_on", None),
        _clip("light_on", "light_off"),
        _clip(None, "fan_on"),
        _clip(None, None, cpu=0.3),
    ]
    assert [r.outcome for r in rows] == [
        "accepted", "rejected", "wrong_intent", "false_accept", "true_reject",
    ]  # fmt: skip
    assert rate(rows[:3], "accepted").frac() == "1/3"
    rtf = rtf_summary(rows)
    assert rtf["median"] == pytest.approx(0.05)
    assert rtf["overall"] == pytest.approx(0.7 / 10.0)
    assert per_hour(2, 1800.0) == pytest.approx(4.0)
    assert per_hour(1, 0.0) is None


# --------------------------------------------------------------------------- splits


def test_split_rules() -> None:
    assert split_of(Voice("flite", "kal16", "flite:kal16")) == "test"
    assert split_of(Voice("piper", "joe", "piper:joe")) == "test"
    assert split_of(Voice("espeak", "en-029+f3", "espeak:en-029+f3")) == "test"
    assert split_of(Voice("espeak", f"{TUNE_ESPEAK[0]}+m1", "x")) == "tune"
    assert split_of(Voice("espeak", "en-us+f3", "espeak:en-us+f3")) is None
    assert split_of(Voice("festival", "ked_diphone", "festival:ked_diphone")) is None
    assert espeak_base(Voice("espeak", "en-gb-scotland+klatt2", "x")) == "en-gb-scotland"
    assert set(HELD_OUT_ESPEAK) | set(TUNE_ESPEAK) == EXCLUDED_FROM_TRAINING
    assert not set(HELD_OUT_ESPEAK) & set(TUNE_ESPEAK)


@needs_espeak
def test_no_corpus_speaker_is_a_training_side_voice(quick_corpus: Path) -> None:
    training: set[str] = set()
    for family in ("espeak", "festival", "kokoro", "flite", "piper"):
        try:
            voices = family_voices(family)
        except VoiceUnavailable:
            continue
        training |= {v.speaker for v in voices if is_training_voice(v)}
        assert not any(v.family in EVAL_ONLY_FAMILIES for v in voices if is_training_voice(v))
    assert training, "no training-side voices found at all"
    corpus = load_corpus(quick_corpus)
    speakers = {c.speaker for c in corpus.clips if c.kind != "real"}
    assert speakers
    assert not speakers & training
    # Every espeak voice in the corpus is a held-out (test) or tune base, never both.
    for c in corpus.clips:
        if c.family == "espeak":
            base = c.voice.split("+", 1)[0]
            assert base in (HELD_OUT_ESPEAK if c.split == "test" else TUNE_ESPEAK)


# --------------------------------------------------------------------------- corpus + evaluate


@pytest.fixture(scope="module")
def quick_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs espeak-ng")
    root = tmp_path_factory.mktemp("corpus")
    build_corpus(root, AgentConfig().intents, quick=True, warn=lambda _m: None)
    return root


@needs_espeak
def test_quick_corpus_is_reproducible_and_well_formed(quick_corpus: Path, tmp_path: Path) -> None:
    corpus = load_corpus(quick_corpus)
    kinds = {c.kind for c in corpus.clips}
    assert {"command", "near_miss", "background"} <= kinds
    for c in corpus.clips:
        x = read_wav(quick_corpus / c.path)
        assert x.dtype == np.int16 and len(x) > 1000
        assert c.condition in ("clean", "noise", "reverb")
        assert c.split in ("test", "tune")
        assert (c.intent is not None) == (c.kind == "command")
    rows = (quick_corpus / "manifest.jsonl").read_text().splitlines()
    assert {"path", "text", "intent", "kind", "family", "speaker", "speed", "condition",
            "split"} <= set(json.loads(rows[0]))  # fmt: skip
    # Same seeds, same bytes: rebuild a subset of families elsewhere and compare.
    other = build_corpus(tmp_path, AgentConfig().intents, quick=True, families=["espeak"])
    same = [c for c in other.clips if c.kind != "background" and c.family == "espeak"]
    assert len(same) >= 10
    for c in same:
        assert (tmp_path / c.path).read_bytes() == (quick_corpus / c.path).read_bytes()
    # A present, matching corpus is reused; other intents trigger a rebuild.
    _, built = ensure_corpus(quick_corpus, AgentConfig().intents, quick=True)
    assert not built


@needs_espeak
def test_missing_family_is_skipped_with_a_warning(tmp_path: Path) -> None:
    warnings: list[str] = []
    corpus = build_corpus(
        tmp_path, {"fan_on": ["turn on the fan"]}, quick=True, families=["espeak", "nonesuch"],
        warn=warnings.append,
    )  # fmt: skip
    assert corpus.meta["families_missing"] == ["nonesuch"]
    assert any("nonesuch" in w for w in warnings)


@needs_espeak
@pytest.mark.slow
def test_evaluate_end_to_end_quick(quick_corpus: Path, tmp_path: Path) -> None:
    report, out = tmp_path / "r.html", tmp_path / "r.json"
    proc = run_agent(
        "evaluate", "--quick", "--corpus", str(quick_corpus), "--report", str(report),
        "--json", str(out), timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Commands per clip" in proc.stdout
    assert "background_person false" in proc.stdout
    res = json.loads(out.read_text())
    fams = res["clips"]["test"]["families"]
    assert "espeak" in fams
    bg = res["scenes"]["background_person"]
    assert bg["duration_s"] > 30
    assert set(bg["policies"]) == {"fused", "audio_only", "image_only"}
    # With nobody in view the fused policy never fires; image-only fires on speech with a person.
    assert res["scenes"]["background_nobody"]["policies"]["fused"]["false_accepts"] == 0
    assert res["scenes"]["commands_nobody"]["policies"]["fused"]["hits"] == 0
    assert res["scenes"]["commands_person"]["policies"]["image_only"]["hits"] > 0
    html = report.read_text()
    assert "data:image/png;base64," in html and "<pre>" in html


@needs_espeak
def test_train_fusion_installs_and_evaluates(quick_corpus: Path, tmp_path: Path) -> None:
    """`train --fusion` → a bundle `models install` takes → `evaluate --fusion` compares."""
    import shutil as sh

    bundle, store = tmp_path / "bundle", tmp_path / "store"
    sh.copytree(Path(__file__).resolve().parents[1] / "models", store)
    (store / "fusion_head_int8").exists() and sh.rmtree(store / "fusion_head_int8")
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"mqtt:\n  enabled: false\nmodels:\n  dir: {store}\n")
    proc = run_agent(
        "train", "--fusion", "--quick", "--config", str(cfg), "--corpus", str(quick_corpus),
        "--out", str(bundle), timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout[: proc.stdout.rindex("}") + 1])
    lw = summary["learned_weights"]
    assert lw["alpha"] + lw["beta"] == pytest.approx(1.0, abs=1e-3)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["precision"] == "int8" and manifest["task"] == "fusion"
    assert (bundle / "accuracy.json").is_file() and (bundle / "LICENSE").is_file()
    proc = run_agent("models", "install", str(bundle), "--dir", str(store), "-c", str(cfg))
    assert proc.returncode == 1 and "empty_trust_store" in proc.stderr  # unsigned: refused
    key = tmp_path / "signing.key"
    proc = run_agent("models", "keygen", "--out", str(key))
    public = proc.stdout.strip().splitlines()[-1].split("- ", 1)[1]
    cfg.write_text(cfg.read_text() + f"  trusted_keys:\n    - {public}\n")
    assert run_agent("models", "sign", str(bundle), "--key", str(key)).returncode == 0
    proc = run_agent("models", "install", str(bundle), "--dir", str(store), "-c", str(cfg))
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "fusion.json"
    proc = run_agent(
        "evaluate", "--fusion", "--quick", "--config", str(cfg), "--corpus", str(quick_corpus),
        "--json", str(out), timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "learned_head" in proc.stdout and "tv_turned" in proc.stdout
    res = json.loads(out.read_text())
    assert set(res["policies"]) == {
        "audio_only", "image_only", "hand_weights", "learned_weights", "learned_head",
    }  # fmt: skip
    # Nobody in view: no fused policy ever fires.
    for policy in ("hand_weights", "learned_weights", "learned_head"):
        assert res["policies"][policy]["nobody"]["false_accepts"] == 0
