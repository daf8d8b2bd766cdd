"""Speech → intent, restricted to configured phrases, rejecting everything else.

A grammar decoder alone maps *any* speech onto its closest phrase (measured: a LibriVox
sentence became a command, "turn off the light" became "turn on the light"). Each engine
therefore adds a rejection test, chosen by measuring with ``scripts/eval_speech.py``:

command_model (default; ``agent.extractors.command``)
    the project's trained int8 head over a speech embedding, with an explicit "other" class
    learned from near misses and unrelated speech.
pocketsphinx
    1. duration gate (``min/max_phrase_seconds``);
    2. grammar pass over all phrases → best phrase and its word segmentation;
    3. phone-loop pass (allphone search, uniform phone probabilities) → for every recognized
       word, the per-frame log-likelihood ratio of the grammar's word against the best phone
       sequence over the same frames; the worst word must reach ``word_llr_floor``
       (out-of-grammar speech has at least one word that fits badly);
    4. competitor pass: a grammar of the phrases of every *other* intent; the per-speech-frame
       score margin of the winner must reach ``intent_margin_floor`` (on/off confusions).
vosk
    Kaldi grammar decoding (a loop over the phrases' words); the best hypothesis must be
    exactly one phrase, and its lattice score must beat the best alternative with a different
    text by ``vosk_margin_floor``.

Either way ``confidence`` is 0.5 exactly at the floor(s) and the recognizer rejects below
``min_confidence``. Recognizers are not thread-safe across calls; a lock serializes them.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from agent.config.runtimes import RuntimesConfig
from agent.config.speech import SpeechConfig
from agent.errors import ConfigError, ExtractorError
from agent.models.store import ModelStore

_LOGGER = logging.getLogger(__name__)

SAMPLE_RATE = 16000

# Confidence = logistic(slope * (measure - floor)). Slopes put typical accepted commands at
# ≈0.75-0.95 (pocketsphinx: word LLR spread ≈2 units, margin spread ≈0.5 units).
_LLR_SLOPE = 2.0
_MARGIN_SLOPE = 8.0
_VOSK_MARGIN_SLOPE = 1.5
_VOSK_ALTERNATIVES = 5

_PUNCT = re.compile(r"[^\w\s']")


@dataclass(frozen=True, slots=True)
class Posterior:
    """What a classifier engine thought, accepted or not (learned fusion reads it).

    ``intent``/``phrase``: the best configured phrase, even below the threshold; ``p``: its
    probability; ``p_other``: the "not a command" probability; ``margin``: ``p`` minus the
    best other label's probability (negative when "other" or another phrase leads).
    """

    intent: str
    phrase: str
    p: float
    p_other: float
    margin: float


@dataclass(frozen=True, slots=True)
class Recognition:
    """The outcome of one speech segment."""

    intent: str | None  # None when rejected / nothing matched
    text: str  # best phrase or hypothesis ("" if none)
    confidence: float  # 0..1, the audio-side score used by fusion
    model: str  # "name@version" of engine+model
    reason: str = ""  # why rejected, for logs
    posterior: Posterior | None = None  # engines with class probabilities only


class IntentRecognizer(Protocol):
    """Recognizes one VAD-cut speech segment (16 kHz mono int16) as one of the intents."""

    model: str

    def recognize(self, samples: npt.NDArray[np.int16]) -> Recognition: ...


def normalize_phrase(text: str) -> str:
    """Lowercase, strip punctuation (apostrophes kept: "don't" is a dictionary word)."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def _phrase_table(intents: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Normalized phrase → intent, rejecting empty and ambiguous configurations."""
    problems: list[str] = []
    table: dict[str, str] = {}
    if not intents:
        problems.append("speech: no intents configured")
    for intent, phrases in intents.items():
        if isinstance(phrases, str):
            # A bare string would be iterated character by character.
            problems.append(f"intent {intent!r}: phrases must be a list, not a string")
            continue
        if not phrases:
            problems.append(f"intent {intent!r}: no phrases")
        for raw in phrases:
            phrase = normalize_phrase(raw)
            if not phrase:
                problems.append(f"intent {intent!r}: phrase {raw!r} is empty after normalization")
            elif table.get(phrase, intent) != intent:
                problems.append(
                    f"intent {intent!r}: phrase {phrase!r} is also a phrase of {table[phrase]!r}"
                )
            else:
                table[phrase] = intent
    if problems:
        raise ConfigError(problems)
    return table


def _logistic(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _as_samples(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    if samples.dtype != np.int16 or samples.ndim != 1:
        raise ExtractorError(
            f"speech: expected 1-D int16 samples at {SAMPLE_RATE} Hz, "
            f"got {samples.dtype} with shape {samples.shape}"
        )
    return np.ascontiguousarray(samples)


def _import_engine(module: str, install: str) -> Any:
    # Imported by name so that the engine not configured never has to be installed.
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ExtractorError(
            f"speech engine {module!r} is not installed: pip install {install}"
        ) from exc


def _duration_rejection(cfg: SpeechConfig, n_samples: int) -> str:
    seconds = n_samples / SAMPLE_RATE
    if seconds > cfg.max_phrase_seconds:
        return f"segment {seconds:.2f} s is longer than max_phrase_seconds"
    if seconds < cfg.min_phrase_seconds:
        return f"segment {seconds:.2f} s is shorter than min_phrase_seconds"
    return ""


# --------------------------------------------------------------------------- pocketsphinx


@dataclass(frozen=True, slots=True)
class _Seg:
    word: str
    start: int  # first frame (10 ms frames), inclusive
    end: int  # last frame, inclusive
    ascore: float  # natural log acoustic score, relative to the best senone per frame


def _ln(p: float) -> float:
    # The Python API hands scores back through exp(); an underflow means "very bad".
    return math.log(p) if p > 0.0 else -math.inf


def _is_filler(word: str) -> bool:
    return word.startswith(("<", "[", "+"))


class PocketsphinxRecognizer:
    """Grammar decoding + phone-loop likelihood ratio + competing-intent margin."""

    def __init__(self, cfg: SpeechConfig, intents: Mapping[str, Sequence[str]]) -> None:
        ps = _import_engine("pocketsphinx", "pocketsphinx==5.1.1")
        self._cfg = cfg
        self._phrases = _phrase_table(intents)
        version = metadata.version("pocketsphinx")
        self.model = f"pocketsphinx@{version}/en-us"
        try:
            # lm=None: no default n-gram search, only the searches added below. Logs go to
            # /dev/null (pocketsphinx writes several hundred lines per decoder otherwise).
            self._decoder = ps.Decoder(
                lm=None, samprate=SAMPLE_RATE, loglevel="FATAL", logfn=os.devnull
            )
        except (RuntimeError, ValueError) as exc:
            raise ExtractorError(f"pocketsphinx: cannot create decoder: {exc}") from exc
        self._check_dictionary()
        try:
            self._add_grammar("all", list(self._phrases))
            self._intents = sorted(set(self._phrases.values()))
            if len(self._intents) > 1:
                for intent in self._intents:
                    others = [p for p, i in self._phrases.items() if i != intent]
                    self._add_grammar(f"not:{intent}", others)
            # Uniform phone loop: the "anything at all" hypothesis of the likelihood ratio.
            self._decoder.add_allphone_file("loop", None)
        except (RuntimeError, ValueError) as exc:
            raise ExtractorError(f"pocketsphinx: cannot build searches: {exc}") from exc
        self._lock = threading.Lock()

    def _check_dictionary(self) -> None:
        missing = sorted(
            {
                word
                for phrase in self._phrases
                for word in phrase.split()
                if self._decoder.lookup_word(word) is None
            }
        )
        if missing:
            raise ConfigError(
                [
                    f"speech: word {word!r} is not in the pocketsphinx en-us dictionary"
                    for word in missing
                ]
            )

    def _add_grammar(self, name: str, phrases: list[str]) -> None:
        # A finite-state grammar built from transitions: no JSGF quoting pitfalls. State 0
        # starts every phrase with equal probability, state 1 is the single final state.
        transitions: list[tuple[int, int, float, str]] = []
        next_state = 2
        for phrase in phrases:
            words = phrase.split()
            state = 0
            for k, word in enumerate(words):
                last = k == len(words) - 1
                target = 1 if last else next_state
                prob = 1.0 / len(phrases) if k == 0 else 1.0
                transitions.append((state, target, prob, word))
                if not last:
                    state = next_state
                    next_state += 1
        fsg = self._decoder.create_fsg(name, 0, 1, transitions)
        self._decoder.add_fsg(name, fsg)

    def _decode(self, search: str, audio: bytes) -> tuple[str | None, list[_Seg]]:
        dec = self._decoder
        dec.activate_search(search)
        dec.start_utt()
        dec.process_raw(audio, full_utt=True)
        dec.end_utt()
        hyp = dec.hyp()
        if hyp is None:
            return None, []
        segs = [_Seg(s.word, s.start_frame, s.end_frame, _ln(s.ascore)) for s in dec.seg()]
        return str(hyp.hypstr), segs

    @staticmethod
    def _worst_word_llr(words: list[_Seg], loop: list[_Seg]) -> float:
        worst = math.inf
        for w in words:
            # Phone-loop score over the word's frames; phones straddling a word boundary
            # contribute in proportion to their overlap.
            free = 0.0
            for p in loop:
                overlap = min(p.end, w.end) - max(p.start, w.start) + 1
                if overlap > 0:
                    free += p.ascore * overlap / (p.end - p.start + 1)
            if not math.isfinite(free):
                return -math.inf  # an underflow: do not let it turn into a huge ratio
            worst = min(worst, (w.ascore - free) / (w.end - w.start + 1))
        return worst

    def recognize(self, samples: npt.NDArray[np.int16]) -> Recognition:
        x = _as_samples(samples)
        reason = _duration_rejection(self._cfg, len(x))
        if reason:
            return Recognition(None, "", 0.0, self.model, reason)
        audio = x.tobytes()
        cfg = self._cfg
        with self._lock:
            try:
                hyp, segs = self._decode("all", audio)
                text = hyp or ""
                intent = self._phrases.get(text)
                if intent is None:
                    # No hypothesis, or a partial path that never reached the final state.
                    return Recognition(None, text, 0.0, self.model, "no complete phrase")
                words = [s for s in segs if not _is_filler(s.word)]
                _, loop = self._decode("loop", audio)
                llr = self._worst_word_llr(words, loop)
                conf = _logistic(_LLR_SLOPE * (llr - cfg.word_llr_floor))
                margin = math.inf
                if conf >= cfg.min_confidence and len(self._intents) > 1:
                    _, rival = self._decode(f"not:{intent}", audio)
                    speech_frames = sum(w.end - w.start + 1 for w in words)
                    if rival and speech_frames > 0:
                        margin = (
                            sum(s.ascore for s in segs) - sum(s.ascore for s in rival)
                        ) / speech_frames
                    if math.isnan(margin):
                        margin = -math.inf
                    conf = min(conf, _logistic(_MARGIN_SLOPE * (margin - cfg.intent_margin_floor)))
            except RuntimeError as exc:
                raise ExtractorError(f"pocketsphinx: decoding failed: {exc}") from exc
        _LOGGER.debug(
            "pocketsphinx: %r word_llr=%.2f margin=%.3f confidence=%.2f", text, llr, margin, conf
        )
        if conf < cfg.min_confidence:
            why = (
                f"out of grammar (word LLR {llr:.2f} < {cfg.word_llr_floor})"
                if llr < cfg.word_llr_floor
                else f"ambiguous intent (margin {margin:.3f} < {cfg.intent_margin_floor})"
                if margin < cfg.intent_margin_floor
                else "confidence below min_confidence"
            )
            return Recognition(None, text, conf, self.model, why)
        return Recognition(intent, text, conf, self.model)


# --------------------------------------------------------------------------- vosk


class VoskRecognizer:
    """Kaldi grammar decoding; the best hypothesis must be one phrase by a clear margin."""

    def __init__(self, cfg: SpeechConfig, intents: Mapping[str, Sequence[str]]) -> None:
        vosk = _import_engine("vosk", "'edge-agent[vosk]'")
        self._cfg = cfg
        self._phrases = _phrase_table(intents)
        model_dir = cfg.vosk_model
        if model_dir is None or not model_dir.is_dir():
            raise ConfigError([f"speech.vosk_model: {model_dir} is not a directory"])
        vosk.SetLogLevel(-2)  # Kaldi logs warnings at -1; we report problems ourselves
        try:
            model = vosk.Model(str(model_dir))
        except Exception as exc:  # vosk raises a bare Exception on a bad model
            raise ExtractorError(f"vosk: cannot load model {model_dir}: {exc}") from exc
        missing = sorted(
            {
                word
                for phrase in self._phrases
                for word in phrase.split()
                if model.vosk_model_find_word(word) < 0
            }
        )
        if missing:
            raise ConfigError(
                [f"speech: word {w!r} is not in the vocabulary of {model_dir}" for w in missing]
            )
        grammar = list(self._phrases)
        if model.vosk_model_find_word("[unk]") >= 0:
            grammar.append("[unk]")  # lets out-of-grammar speech come out as [unk]
        name = model_dir.name if model_dir.name != "model" else model_dir.parent.name
        self.model = f"vosk@{metadata.version('vosk')}/{name}"
        self._vosk_model = model  # the recognizer borrows it: keep it alive
        self._rec = vosk.KaldiRecognizer(
            model, SAMPLE_RATE, json.dumps(grammar, ensure_ascii=False)
        )
        self._rec.SetWords(True)
        self._rec.SetMaxAlternatives(_VOSK_ALTERNATIVES)
        self._lock = threading.Lock()

    def recognize(self, samples: npt.NDArray[np.int16]) -> Recognition:
        x = _as_samples(samples)
        reason = _duration_rejection(self._cfg, len(x))
        if reason:
            return Recognition(None, "", 0.0, self.model, reason)
        with self._lock:
            self._rec.Reset()
            self._rec.AcceptWaveform(x.tobytes())
            result = json.loads(self._rec.FinalResult())
        alts = sorted(
            result.get("alternatives", []), key=lambda a: float(a["confidence"]), reverse=True
        )
        if not alts:
            return Recognition(None, "", 0.0, self.model, "no hypothesis")
        text = normalize_phrase(str(alts[0].get("text", "")))
        intent = self._phrases.get(text)
        if intent is None:
            reason = "unknown speech" if "[unk]" in text else "not exactly one phrase"
            return Recognition(None, text, 0.0, self.model, reason)
        rivals = [
            float(a["confidence"]) for a in alts[1:] if normalize_phrase(str(a["text"])) != text
        ]
        margin = float(alts[0]["confidence"]) - max(rivals) if rivals else math.inf
        conf = _logistic(_VOSK_MARGIN_SLOPE * (margin - self._cfg.vosk_margin_floor))
        _LOGGER.debug("vosk: %r margin=%.2f confidence=%.2f", text, margin, conf)
        if conf < self._cfg.min_confidence:
            return Recognition(
                None,
                text,
                conf,
                self.model,
                f"ambiguous (margin {margin:.2f} < {self._cfg.vosk_margin_floor})",
            )
        return Recognition(intent, text, conf, self.model)


def build_recognizer(
    cfg: SpeechConfig,
    intents: Mapping[str, Sequence[str]],
    store: ModelStore | None = None,
    runtimes: RuntimesConfig | None = None,
) -> IntentRecognizer:
    """Create the configured engine once; reuse it for every segment."""
    if cfg.engine == "vosk":
        return VoskRecognizer(cfg, intents)
    if cfg.engine == "pocketsphinx":
        return PocketsphinxRecognizer(cfg, intents)
    from agent.extractors.command import CommandModelRecognizer

    return CommandModelRecognizer(cfg, intents, store or ModelStore(), runtimes)


__all__ = [
    "SAMPLE_RATE",
    "IntentRecognizer",
    "Recognition",
    "build_recognizer",
    "normalize_phrase",
]
