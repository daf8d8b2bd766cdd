"""Pure scoring: per-clip outcomes, and firings matched to ground-truth utterances by time.

Nothing here runs a model; ``scenes.py`` produces the inputs. Every rate is returned with its
counts (``n``/``of``) so a table can print "3/126" rather than a bare percentage.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["accepted", "rejected", "wrong_intent", "false_accept", "true_reject"]
POLICIES = ("fused", "audio_only", "image_only")
Policy = Literal["fused", "audio_only", "image_only"]

# An event's span is the VAD segment (unpadded speech), the truth is the synthesized clip's
# span: they differ by VAD onset/hangover, so matching allows this much slack either side.
MATCH_TOLERANCE_S = 0.5
ANY_INTENT = "*"  # a firing that names no intent (image-only): right for any command


@dataclass(frozen=True, slots=True)
class ClipResult:
    """One clip through the recognizer (per-clip evaluation)."""

    path: str
    kind: str  # command | near_miss | real | background
    family: str
    speaker: str
    split: str  # test | tune
    condition: str
    speed: float
    text: str
    truth: str | None  # the clip's intent (None: not a command)
    got: str | None  # recognized intent (None: rejected)
    confidence: float
    hypothesis: str
    reason: str
    duration_s: float
    cpu_s: float

    @property
    def outcome(self) -> Outcome:
        if self.truth is None:
            return "true_reject" if self.got is None else "false_accept"
        if self.got is None:
            return "rejected"
        return "accepted" if self.got == self.truth else "wrong_intent"


@dataclass(frozen=True, slots=True)
class Rate:
    n: int
    of: int

    @property
    def value(self) -> float | None:
        return self.n / self.of if self.of else None

    def pct(self) -> str:
        return "-" if not self.of else f"{100.0 * self.n / self.of:.1f}%"

    def frac(self) -> str:
        return f"{self.n}/{self.of}"

    def as_dict(self) -> dict[str, float | int | None]:
        return {"n": self.n, "of": self.of, "rate": self.value}


def rate(results: Iterable[ClipResult], hit: Outcome) -> Rate:
    rows = list(results)
    return Rate(sum(r.outcome == hit for r in rows), len(rows))


def group(results: Iterable[ClipResult], *keys: str) -> dict[tuple[str, ...], list[ClipResult]]:
    out: dict[tuple[str, ...], list[ClipResult]] = {}
    for r in results:
        out.setdefault(tuple(str(getattr(r, k)) for k in keys), []).append(r)
    return dict(sorted(out.items()))


def rtf_summary(results: Iterable[ClipResult]) -> dict[str, float]:
    """CPU seconds per second of segment audio: median, p95 and overall."""
    rtfs = sorted(r.cpu_s / r.duration_s for r in results if r.duration_s > 0)
    if not rtfs:
        return {}
    total_cpu = sum(r.cpu_s for r in results if r.duration_s > 0)
    total_s = sum(r.duration_s for r in results if r.duration_s > 0)
    p95 = rtfs[min(len(rtfs) - 1, round(0.95 * (len(rtfs) - 1)))]
    return {
        "median": statistics.median(rtfs),
        "p95": p95,
        "overall": total_cpu / total_s,
        "segments": float(len(rtfs)),
    }


# --------------------------------------------------------------------------- scenes


@dataclass(frozen=True, slots=True)
class Truth:
    """One utterance placed in a scene (seconds on the scene's media clock)."""

    start_s: float
    end_s: float
    text: str
    intent: str | None  # None: background talk, near miss, real recording
    kind: str
    family: str = ""
    speaker: str = ""


@dataclass(frozen=True, slots=True)
class Firing:
    """A policy said "command" for a span (an event, or a per-segment decision)."""

    start_s: float
    end_s: float
    intent: str
    text: str = ""


@dataclass
class MatchResult:
    """Firings of one policy on one scene against its truth."""

    commands: int = 0  # truth utterances with an intent
    hits: int = 0  # ... fired with the right intent
    wrong_intent: int = 0  # ... fired only with another intent
    false_accepts: int = 0  # firings on non-command talk or on nothing at all
    false_examples: list[dict[str, object]] = field(default_factory=list)

    @property
    def recall(self) -> Rate:
        return Rate(self.hits, self.commands)

    def as_dict(self) -> dict[str, object]:
        return {
            "commands": self.commands,
            "hits": self.hits,
            "recall": self.recall.value,
            "wrong_intent": self.wrong_intent,
            "false_accepts": self.false_accepts,
            "false_examples": self.false_examples[:50],
        }


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return min(a1, b1) - max(a0, b0)


def match(
    truths: Sequence[Truth], firings: Sequence[Firing], tolerance_s: float = MATCH_TOLERANCE_S
) -> MatchResult:
    """Assign each firing to the truth utterance it overlaps most (within ``tolerance_s``).

    A command utterance counts once: a hit if any firing on it has its intent, else a wrong
    intent if any firing landed on it. Every firing on non-command talk, and every firing that
    overlaps no utterance, is a false accept (each one is an event a user would see).
    """
    result = MatchResult(commands=sum(t.intent is not None for t in truths))
    on_truth: dict[int, list[Firing]] = {}
    for f in firings:
        best, best_ov = -1, -tolerance_s
        for i, t in enumerate(truths):
            ov = _overlap(f.start_s, f.end_s, t.start_s, t.end_s)
            if ov > best_ov:
                best, best_ov = i, ov
        if best < 0:
            result.false_accepts += 1
            result.false_examples.append(
                {"at_s": round(f.start_s, 2), "heard": f.text, "intent": f.intent, "truth": ""}
            )
            continue
        on_truth.setdefault(best, []).append(f)
    for i, fs in sorted(on_truth.items()):
        t = truths[i]
        if t.intent is None:
            result.false_accepts += len(fs)
            for f in fs:
                result.false_examples.append(
                    {
                        "at_s": round(f.start_s, 2),
                        "heard": f.text,
                        "intent": f.intent,
                        "truth": t.text,
                        "family": t.family,
                        "speaker": t.speaker,
                    }
                )
        elif any(f.intent in (t.intent, ANY_INTENT) for f in fs):
            result.hits += 1
        else:
            result.wrong_intent += 1
    return result


def per_hour(count: int, seconds: float) -> float | None:
    return count * 3600.0 / seconds if seconds > 0 else None


__all__ = [
    "ANY_INTENT",
    "MATCH_TOLERANCE_S",
    "POLICIES",
    "ClipResult",
    "Firing",
    "MatchResult",
    "Outcome",
    "Policy",
    "Rate",
    "Truth",
    "group",
    "match",
    "per_hour",
    "rate",
    "rtf_summary",
]
