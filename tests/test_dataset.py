"""Training data for the command head (agent/training/dataset.py): made-up near misses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.training import dataset
from agent.training.texts import EVAL_NEAR_MISSES


def test_sound_alikes_are_one_phone_away_and_never_the_command() -> None:
    alikes = set(dataset.sound_alikes("Turn on the light"))
    assert {"turn on the kite", "burn on the light", "turn on the night"} <= alikes
    # The command itself, its inflections and their homophones mean the same: never negatives.
    same_meaning = ("turn on the light", "turn on the lights", "turn on the lite",
                    "turns on the light", "terns on the light", "turned on the light")  # fmt: skip
    for same in same_meaning:
        assert same not in alikes
    # Function words are left alone ("thee" is how many say "the").
    assert not any(a.split()[1:3] != ["on", "the"] for a in alikes)
    assert {"kelp", "yelp", "helm"} <= set(dataset.sound_alikes("help"))
    assert dataset.sound_alikes("on") == ()  # nothing with three phones to change


def test_plan_adds_sound_alikes_for_any_phrase_but_no_evaluation_sentence() -> None:
    from agent.training.voices import Voice

    voices = {"espeak": [Voice("espeak", "en-us", "espeak:en-us")]}
    base = dataset.Recipe(
        positives_per_phrase=1, near_misses=0, other_commands=0, partials=0, word_salad=0,
        noise_only=0, sound_alikes=0,
    )  # fmt: skip
    intents = {"blinds": ["open the blinds"], "help": ["help"]}
    assert len(dataset.plan(intents, base, voices)) == 2
    recipe = dataset.Recipe(**{**base.__dict__, "sound_alikes": 400})
    items = dataset.plan(intents, recipe, voices)
    negatives = [i.text for i in items if i.label == 0]
    assert len(negatives) == 400
    assert any(t.startswith("open the") and t != "open the blinds" for t in negatives)
    assert "help" not in negatives and "open the blinds" not in negatives
    assert not set(negatives) & set(EVAL_NEAR_MISSES)  # "kelp", "yelp" are evaluation's
    assert {"held", "health"} <= set(negatives)
    # Seeded: the same plan twice.
    assert [i.text for i in dataset.plan(intents, recipe, voices)] == [i.text for i in items]
    assert np.unique(negatives).size > 40


def _head_weights(rng: np.random.Generator, labels: int = 3) -> dict[str, np.ndarray]:
    from agent.training.train import HIDDEN, LAYERS

    sizes = [96] + [HIDDEN] * LAYERS
    w: dict[str, np.ndarray] = {}
    for k in range(LAYERS):
        w[f"conv{k}.w"] = (rng.standard_normal((sizes[k + 1], sizes[k], 3)) * 0.1).astype(
            np.float32
        )
        w[f"conv{k}.b"] = (rng.standard_normal(sizes[k + 1]) * 0.1).astype(np.float32)
    w["fc.w"] = (rng.standard_normal((labels, HIDDEN)) * 0.1).astype(np.float32)
    w["fc.b"] = np.zeros(labels, np.float32)
    return w


def test_several_heads_make_one_model_that_averages_them(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from agent.training.train import head_onnx, run_onnx

    rng = np.random.default_rng(3)
    a, b = _head_weights(rng), _head_weights(rng)
    x = rng.standard_normal((5, 28, 96)).astype(np.float32)
    root = tmp_path
    out = {}
    for name, w in (("a", a), ("b", b), ("ab", [a, b])):
        path = root / f"{name}.onnx"
        path.write_bytes(head_onnx(w, 28))
        out[name] = run_onnx(path, x)
    np.testing.assert_allclose(out["ab"], (out["a"] + out["b"]) / 2, atol=1e-6)
    np.testing.assert_allclose(out["ab"].sum(axis=1), 1.0, atol=1e-5)
    # One head in a list is the same model, byte for byte, as the head alone.
    assert head_onnx([a], 28) == head_onnx(a, 28)


def test_shipped_recipes() -> None:
    (plain,) = dataset.shipped_recipes()
    assert plain == dataset.Recipe() and (plain.babble_share, plain.sound_alikes) == (0.0, 0)
    first, second = dataset.shipped_recipes(heads=2)
    assert first == plain and second.babble_share > 0 and second.sound_alikes > 0
    with pytest.raises(ValueError, match="heads"):
        dataset.shipped_recipes(heads=3)
