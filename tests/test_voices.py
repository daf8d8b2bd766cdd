"""Synthetic voice families and waveform augmentation (agent/training)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from agent.training import augment
from agent.training.voices import (
    EVAL_ONLY_FAMILIES,
    FAMILIES,
    RATE,
    Voice,
    VoiceUnavailable,
    family_voices,
    param_variants,
    synthesize,
)

PHRASE = "turn on the light"


def _voices(family: str) -> list[Voice]:
    try:
        return family_voices(family)
    except VoiceUnavailable as err:
        pytest.skip(f"{family} not installed: {err}")


def _check_speech(x: npt.NDArray[np.int16]) -> None:
    assert x.dtype == np.int16
    assert x.ndim == 1
    assert 0.4 * RATE < len(x) < 4.0 * RATE  # a short phrase, silence trimmed
    assert int(np.abs(x.astype(np.int32)).max()) > 1000
    # Trimmed to about 50 ms: the first and last 20 ms are quiet, the middle is not.
    mid = x[len(x) // 4 : 3 * len(x) // 4].astype(np.float64)
    edge = np.concatenate([x[: RATE // 50], x[-RATE // 50 :]]).astype(np.float64)
    assert np.sqrt(np.mean(edge**2)) < 0.25 * np.sqrt(np.mean(mid**2))


@pytest.mark.parametrize("family", FAMILIES)
def test_family_synthesizes(family: str) -> None:
    voices = _voices(family)
    assert voices
    speakers = [v.speaker for v in voices]
    assert len(set(speakers)) == len(speakers)
    assert all(v.family == family and v.speaker.startswith(f"{family}:") for v in voices)
    x = synthesize(voices[0], PHRASE)
    _check_speech(x)
    if family in ("espeak", "flite", "festival", "rhvoice", "pico", "mbrola"):  # cheap engines
        fast = synthesize(voices[0], PHRASE, speed=1.5)
        assert len(fast) < 0.85 * len(x)
        for v in param_variants(voices[0])[:2]:
            assert v.speaker == voices[0].speaker
            _check_speech(synthesize(v, PHRASE))


def test_espeak_has_many_distinct_voices() -> None:
    voices = _voices("espeak")
    bases = {v.name.split("+")[0] for v in voices}
    assert {"en-us", "en-gb"} <= bases
    assert len(bases) >= 5
    assert len(voices) >= 200
    assert not any(v.name.endswith(("+whisper", "+whisperf")) for v in voices)
    a = synthesize(Voice("espeak", "en-us+f3", "espeak:en-us+f3"), PHRASE)
    b = synthesize(Voice("espeak", "en-gb-scotland+m3", "espeak:en-gb-scotland+m3"), PHRASE)
    assert not (len(a) == len(b) and np.array_equal(a, b))


def test_festival_never_offers_evaluation_speakers() -> None:
    names = {v.name for v in _voices("festival")}
    assert not names & {"kal_diphone", "cmu_us_slt_arctic_hts"}
    with pytest.raises(VoiceUnavailable):
        synthesize(Voice("festival", "kal_diphone", "festival:kal_diphone"), PHRASE)


def test_training_engines_never_offer_reserved_or_non_commercial_voices() -> None:
    """RHVoice's slt is flite's slt (evaluation only), evgeniy-eng / lyubov are CC BY-NC-ND;
    MBROLA us1-us3 may not go into a sold product: none of them is ever offered."""
    names = {v.name for v in _voices("rhvoice")}
    assert names <= {"alan", "bdl", "clb"} and names
    for name in ("slt", "evgeniy-eng", "lyubov"):
        with pytest.raises(VoiceUnavailable):
            synthesize(Voice("rhvoice", name, f"rhvoice:{name}"), PHRASE)
    with pytest.raises(VoiceUnavailable):
        synthesize(Voice("mbrola", "mb-us1", "mbrola:us1"), PHRASE)
    assert not any(v.name.startswith("mb-") for v in _voices("espeak"))


def test_eval_only_families() -> None:
    assert frozenset({"flite", "piper"}) == EVAL_ONLY_FAMILIES
    assert set(FAMILIES) >= EVAL_ONLY_FAMILIES


def test_unknown_family() -> None:
    with pytest.raises(ValueError, match="unknown voice family"):
        family_voices("nope")


# --------------------------------------------------------------------------- augment


def _tone() -> npt.NDArray[np.int16]:
    """1 s of a voiced-like signal: 120 Hz harmonics under a syllable-rate envelope."""
    t = np.arange(RATE) / RATE
    sig = sum(np.sin(2 * np.pi * 120 * k * t) / k for k in range(1, 20))
    env = 0.2 + np.sin(2 * np.pi * 3 * t) ** 2
    return augment.to_int16(8000 * sig * env / 3)


def _f0(x: npt.NDArray[np.int16]) -> float:
    a = x[RATE // 4 : RATE // 4 + 1600].astype(np.float64)
    c = np.correlate(a, a, "full")[len(a) - 1 :]
    lo, hi = RATE // 400, RATE // 50
    return RATE / (lo + int(np.argmax(c[lo:hi])))


def test_augment_lengths_dtype_determinism() -> None:
    x = _tone()
    n = len(x)

    def rng() -> np.random.Generator:
        return np.random.default_rng(7)

    cases: dict[str, Callable[[], npt.NDArray[np.int16]]] = {
        "vtlp": lambda: augment.vtlp(x, 0.9),
        "pitch": lambda: augment.pitch_shift(x, 2.0),
        "formant": lambda: augment.formant_shift(x, 1.1),
        "white": lambda: augment.add_noise(x, 10.0, rng()),
        "pink": lambda: augment.add_noise(x, 10.0, rng(), kind="pink"),
        "babble": lambda: augment.add_noise(x, 10.0, rng(), kind="babble"),
        "babble_src": lambda: augment.add_noise(x, 5.0, rng(), kind="babble", babble_source=x),
        "reverb": lambda: augment.reverb(x, 0.4, rng()),
        "gain": lambda: augment.gain(x, -6.0),
    }
    for name, fn in cases.items():
        y1, y2 = fn(), fn()
        assert y1.dtype == np.int16, name
        assert len(y1) == n, name
        assert np.array_equal(y1, y2), name
        assert not np.array_equal(y1, x), name
    for factor in (0.8, 1.25):
        y = augment.change_speed(x, factor)
        assert y.dtype == np.int16
        assert len(y) == round(n / factor)
    p = augment.pad(x, rng(), pre_s=0.25, post_s=0.5)
    assert p.dtype == np.int16
    assert len(p) == n + RATE // 4 + RATE // 2
    assert np.array_equal(p, augment.pad(x, rng(), pre_s=0.25, post_s=0.5))
    lead = p[: RATE // 4].astype(np.float64)
    assert 20 < np.sqrt(np.mean(lead**2)) < 50  # -60 dBFS RMS


def test_augment_effects() -> None:
    x = _tone()
    f0 = _f0(x)
    assert abs(_f0(augment.change_speed(x, 1.2)) - f0) < 6  # tempo keeps pitch
    assert _f0(augment.vtlp(x, 1.12)) == pytest.approx(f0 * 1.12, rel=0.06)
    assert _f0(augment.pitch_shift(x, -3.0)) == pytest.approx(f0 * 2 ** (-3 / 12), rel=0.06)
    # Clipping saturates, never wraps around.
    loud = augment.gain(x, 30.0)
    assert loud.max() == 32767 and loud.min() == -32768
    assert np.all(np.sign(loud[np.abs(x) > 100]) == np.sign(x[np.abs(x) > 100]))
    # SNR is honoured (white noise, measured against the clean signal).
    y = augment.add_noise(x, 10.0, np.random.default_rng(1)).astype(np.float64)
    noise = y - x
    snr = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(noise**2))
    assert snr == pytest.approx(10.0, abs=1.5)


def test_training_babble_comes_from_training_voices_and_leaves_other_examples_alone() -> None:
    from agent.evaluation.corpus import is_training_voice
    from agent.training import dataset

    voices = {"espeak": [v for v in _voices("espeak") if is_training_voice(v)][:6]}
    recipe = dataset.Recipe(babble_share=0.35, babble_tracks=2)
    tracks = dataset.babble_tracks(recipe, voices)
    assert len(tracks) == 2
    for t in tracks:
        assert t.dtype == np.int16 and len(t) > 2 * RATE  # several seconds of talk
        assert int(np.abs(t.astype(np.int32)).max()) > 8000
    assert dataset.babble_tracks(dataset.Recipe(babble_share=0.0), voices) == []
    # Same tracks from the same seed: training data stays reproducible.
    again = dataset.babble_tracks(recipe, voices)
    assert all(np.array_equal(a, b) for a, b in zip(tracks, again, strict=True))

    speech = synthesize(voices["espeak"][0], PHRASE)
    window = 3 * RATE

    def varied(seed: int, **kw: Any) -> npt.NDArray[np.int16]:
        out = dataset.vary(speech, np.random.default_rng(seed), 1, window, warp=True, **kw)
        assert out is not None and len(out) == window
        return out

    seeds = range(12)
    plain = [varied(s) for s in seeds]
    # No babble (or a share of 0): the very examples a recipe without babble made.
    assert all(
        np.array_equal(p, varied(s, babble=tracks, babble_share=0.0))
        for p, s in zip(plain, seeds, strict=True)
    )
    # Every noisy example in babble (share 1): some differ from their white/pink twins.
    babbled = [varied(s, babble=tracks, babble_share=1.0) for s in seeds]
    assert sum(not np.array_equal(p, b) for p, b in zip(plain, babbled, strict=True)) >= 3
