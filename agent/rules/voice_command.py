"""``voice_command``: an intent spoken while a person was in view.

Trigger: a recognized utterance of any intent no other rule owns. Evidence: the person score
of up to ``vision.max_frames_per_window`` frames from ``fusion.window_before_s`` before the
utterance to ``fusion.window_after_s`` after it, scored while the phrase is spoken
(``RuleContext.prescore``) so the decision at its end does not wait for the face detector.
Fusion: ``fusion.method`` (the weighted sum ``alpha·x_image + beta·x_audio`` by default)
against the run-time fusion threshold; with ``require_person`` a window without any face above
``vision.min_score`` never fires.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from agent.config.schema import AgentConfig
from agent.config.sections import VoiceCommandConfig
from agent.events.rules import Cooldown
from agent.events.types import VoiceCommand
from agent.extractors.speech import Recognition
from agent.fusion.learned import Fuser
from agent.rules.base import (
    Heard,
    Parts,
    Rule,
    RuleContext,
    audio_evidence,
    fusion_info,
    skew_ms,
)

_LOGGER = logging.getLogger(__name__)


class VoiceCommandRule(Rule):
    TYPE = VoiceCommand.TYPE
    intents = None  # every intent no other rule owns

    def __init__(
        self,
        ctx: RuleContext,
        cfg: VoiceCommandConfig,
        *,
        fuser: Fuser,
        max_frames: int,
    ) -> None:
        super().__init__(ctx, cfg.enabled)
        self._fuser = fuser
        self._max_frames = max_frames
        self._cooldown = Cooldown(cfg.cooldown_s)

    def takes_candidate(self, rec: Recognition) -> bool:
        """A learned head also weighs utterances the recognizer alone rejected."""
        post = rec.posterior
        floor = getattr(self._fuser, "candidate_floor", 1.0)
        return self._fuser.wants_candidates and post is not None and post.p >= floor

    def during_speech(self, start_ns: int) -> None:
        self.ctx.prescore(start_ns, self._max_frames)

    def on_speech(self, heard: Heard) -> None:
        ctx = self.ctx
        now = ctx.settings.current
        seg, rec = heard.segment, heard.recognition
        said = rec  # what the recognizer alone decided (for ``on_decision``)
        if rec.intent is None and rec.posterior is not None:  # a candidate (takes_candidate)
            rec = replace(rec, intent=rec.posterior.intent, text=rec.posterior.phrase)
            heard = Heard(seg, rec)
        assert rec.intent is not None
        chosen = ctx.speech_frames(seg.start_ns, seg.end_ns, self._max_frames)
        person = ctx.person_in_view(chosen)
        x_image = person.x_image
        fused = self._fuser.fuse(rec, person)
        if ctx.on_decision is not None:
            ctx.on_decision(seg, said, x_image, fused.score)
        if now.require_person and not person.with_person:
            ctx.decisions.nobody_in_view += 1
            ctx.note(
                self.TYPE,
                seg.start_ns,
                seg.end_ns,
                "nobody_in_view",
                f"no face in {person.analysed} frames",
            )
            _LOGGER.info(
                "heard %r (%s) at %s but nobody was in view (%d frames)",
                rec.text,
                rec.intent,
                heard.span,
                person.analysed,
            )
            return
        if fused.score < now.fusion_threshold:
            ctx.decisions.below_threshold += 1
            ctx.note(
                self.TYPE,
                seg.start_ns,
                seg.end_ns,
                "below_threshold",
                f"fused {fused.score:.2f} < {now.fusion_threshold:.2f}",
            )
            _LOGGER.info(
                "heard %r at %s: fused %.2f < %.2f (image %.2f, audio %.2f)",
                rec.text,
                heard.span,
                fused.score,
                now.fusion_threshold,
                x_image,
                rec.confidence,
            )
            return
        if not self._cooldown.allow(rec.intent, seg.start_ns):
            ctx.decisions.cooled_down += 1
            ctx.note(self.TYPE, seg.start_ns, seg.end_ns, "cooled_down", rec.intent)
            return
        event = VoiceCommand(
            device=ctx.device,
            start=seg.start_ns / 1e9,
            end=seg.end_ns / 1e9,
            confidence=fused.score,
            intent=rec.intent,
            text=rec.text,
            image=person.evidence(),
            audio=audio_evidence(heard, ctx.models.vad),
            fusion=fusion_info(self._fuser, now.fusion_threshold, fused.score),
            skew_ms=skew_ms(seg, chosen),
        )
        ctx.emit(event, heard.span)


def build(cfg: AgentConfig, ctx: RuleContext, parts: Parts) -> VoiceCommandRule:
    return VoiceCommandRule(
        ctx,
        cfg.events.voice_command,
        fuser=parts.fuser,
        max_frames=cfg.vision.max_frames_per_window,
    )
