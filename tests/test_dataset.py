"""Training data for the command head (agent/training/dataset.py): made-up near misses."""

from __future__ import annotations

import numpy as np

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
