"""Config section for intent speech recognition (``speech:``).

The thresholds below were chosen by measuring with ``scripts/eval_speech.py`` (espeak-ng
commands in 8 voices and 3 speeds, out-of-grammar espeak sentences, and every real recording
of Debian's pocketsphinx-testdata). Each engine turns its raw measures into a confidence that is
exactly 0.5 at the configured floor, so ``min_confidence`` = 0.5 means "the floors as measured";
raise it to trade missed commands for fewer false ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SpeechConfig(BaseModel):
    """How speech segments are turned into intents, and when they are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Literal["command_model", "pocketsphinx", "vosk"] = Field(
        "command_model",
        description=(
            "Recognition engine. 'command_model' is the project's trained int8 command model "
            "(`command_model` in the model store; `edge-agent train` makes one for your "
            "phrases); 'pocketsphinx' uses its bundled US-English model; 'vosk' needs "
            "`vosk_model` and the optional dependency (pip install 'edge-agent[vosk]')."
        ),
    )
    command_model: str = Field(
        "speech_command_int8",
        min_length=1,
        description=(
            "command_model: the head's name in the model store. Every configured phrase must "
            "be one it was trained on (`edge-agent train --config ...` makes one)."
        ),
    )
    threads: int = Field(
        1,
        ge=1,
        le=16,
        description=(
            "command_model: intra-op threads of the speech front end. Most of its work is done "
            "while the end of an utterance is still being confirmed; what is left at the end "
            "adds to the latency (2 threads on an otherwise idle box: about 0.6x the time of 1, "
            "for a little more CPU). Never more than the machine's cores."
        ),
    )
    command_threshold: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description=(
            "command_model: probability a phrase needs; null = the threshold tuned at training "
            "time (in the model's manifest). Higher: fewer false commands, more missed ones."
        ),
    )
    vosk_model: Path | None = Field(
        None,
        description="Directory of a Vosk (Kaldi) model. Required when engine is 'vosk'.",
    )
    min_confidence: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description=(
            "Reject a segment whose confidence is below this. Confidence is 0.5 exactly at the "
            "engine's floor(s) below and rises towards 1 above them."
        ),
    )
    max_phrase_seconds: float = Field(
        4.0,
        gt=0.0,
        le=30.0,
        description=(
            "Segments longer than this (padding included) are rejected without decoding: a "
            "command is short, a long segment is conversation, TV or radio."
        ),
    )
    min_phrase_seconds: float = Field(
        0.25,
        ge=0.0,
        le=10.0,
        description="Segments shorter than this are rejected without decoding (clicks, bumps).",
    )
    word_llr_floor: float = Field(
        -3.6,
        ge=-50.0,
        le=0.0,
        description=(
            "pocketsphinx: floor on the worst per-frame log-likelihood ratio of a recognized word "
            "(grammar path against an unconstrained phone loop over the same frames, acoustic "
            "score units). Rejects speech that is not one of the phrases. Measured: commands "
            "median -3.1, out-of-grammar speech at most -3.9."
        ),
    )
    intent_margin_floor: float = Field(
        0.2,
        ge=0.0,
        le=10.0,
        description=(
            "pocketsphinx: floor on the per-speech-frame score margin of the best phrase over "
            "the best phrase of any OTHER intent (a second grammar pass). Rejects on/off and "
            "start/stop confusions; 0 disables the margin test."
        ),
    )
    vosk_margin_floor: float = Field(
        2.0,
        ge=0.0,
        le=100.0,
        description=(
            "vosk: floor on the lattice score margin between the best hypothesis (which must be "
            "exactly one phrase) and the best alternative with a different text."
        ),
    )

    @model_validator(mode="after")
    def _check_engine(self) -> Self:
        # Only shape checks here: whether the directory exists is checked when the engine loads,
        # so that a config can be validated on a machine without the model.
        if self.engine == "vosk" and self.vosk_model is None:
            raise ValueError("speech.vosk_model is required when speech.engine is 'vosk'")
        if self.min_phrase_seconds >= self.max_phrase_seconds:
            raise ValueError("speech.min_phrase_seconds must be below speech.max_phrase_seconds")
        return self
