"""``help_call``: a call for help heard while a person in view was lying down.

Trigger: a recognized utterance of the intent named by ``events.help_call.intent`` (any name,
in any language: its phrases are the config's). Such an utterance is never a voice command,
whether or not help_call is on. Evidence: the posture in up to ``pose.max_frames_per_window``
frames of the window; posture is only read when a call for help is heard. Fusion:
``agent.fusion.help.HelpFusion`` with this section's ``threshold`` (default: the fusion
threshold and its run-time changes).
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

import numpy as np
import numpy.typing as npt

from agent.config.schema import AgentConfig
from agent.config.sections import HelpCallConfig
from agent.events.help import HelpCall, PoseEvidence
from agent.events.rules import Cooldown
from agent.events.types import FusionInfo
from agent.extractors.pose import Pose, PoseEstimator
from agent.fusion.help import HelpFusion
from agent.rules.base import Heard, Parts, Rule, RuleContext, audio_evidence, skew_ms

_LOGGER = logging.getLogger(__name__)


class PoseReader(Protocol):
    def estimate(self, image_bgr: npt.NDArray[np.uint8]) -> Pose | None: ...


class HelpCallRule(Rule):
    TYPE = HelpCall.TYPE

    def __init__(
        self,
        ctx: RuleContext,
        cfg: HelpCallConfig,
        *,
        pose: PoseReader,
        fusion: HelpFusion,
        max_frames: int,
        detector_ref: str,
        landmark_ref: str,
    ) -> None:
        super().__init__(ctx, cfg.enabled)
        self.intents = frozenset({cfg.intent})
        self._intent = cfg.intent
        self._own_threshold = cfg.threshold
        self._pose = pose
        self._fusion = fusion
        self._max_frames = max_frames
        self._refs = (detector_ref, landmark_ref)
        self._cooldown = Cooldown(cfg.cooldown_s)

    def on_speech(self, heard: Heard) -> None:
        ctx = self.ctx
        seg, rec = heard.segment, heard.recognition
        if ctx.on_decision is not None:
            ctx.on_decision(seg, rec, None, None)
        chosen = ctx.frames_around(seg, self._max_frames)
        postures = []
        for frame in chosen:
            started = time.perf_counter_ns()
            pose = self._pose.estimate(frame.image)
            ctx.times.add("pose_frame", started)
            postures.append(pose.posture if pose is not None else None)
        threshold = self._own_threshold
        if threshold is None:
            threshold = ctx.settings.current.fusion_threshold
        d = self._fusion(
            postures,
            intent=rec.intent,
            text=rec.text,
            speech_score=rec.confidence,
            threshold=threshold,
        )
        if not d.accepted:
            ctx.decisions.below_threshold += 1
            ctx.note(self.TYPE, seg.start_ns, seg.end_ns, "below_threshold", d.reason)
            _LOGGER.info("heard %r at %s: no help_call (%s)", rec.text, heard.span, d.reason)
            return
        if not self._cooldown.allow(self.TYPE, seg.start_ns):
            ctx.decisions.cooled_down += 1
            ctx.note(self.TYPE, seg.start_ns, seg.end_ns, "cooled_down", self.TYPE)
            return
        event = HelpCall(
            device=ctx.device,
            start=seg.start_ns / 1e9,
            end=seg.end_ns / 1e9,
            confidence=d.confidence,
            intent=self._intent,
            text=rec.text,
            image=PoseEvidence(
                score=round(d.x_image, 4),
                frames_analysed=d.frames,
                frames_with_person=d.frames_with_person,
                frames_lying=d.frames_lying,
                posture=d.posture or "none",
                model=self._refs[0],
                landmark_model=self._refs[1],
            ),
            audio=audio_evidence(heard, ctx.models.vad),
            fusion=FusionInfo(
                method=self._fusion.method,
                alpha=self._fusion.alpha,
                beta=self._fusion.beta,
                threshold=threshold,
                score=round(d.confidence, 4),
            ),
            skew_ms=skew_ms(seg, chosen),
        )
        ctx.emit(event, heard.span)


def build(cfg: AgentConfig, ctx: RuleContext, parts: Parts) -> HelpCallRule | None:
    """None when no configured intent is the help intent (the pose models load only then)."""
    own = cfg.events.help_call
    if own.intent not in cfg.intents:
        return None
    det_session, det_manifest = parts.store.load(
        cfg.pose.detector, threads=cfg.pose.threads, runtimes=cfg.runtimes
    )
    lm_session, lm_manifest = parts.store.load(
        cfg.pose.landmarks, threads=cfg.pose.threads, runtimes=cfg.runtimes
    )
    return HelpCallRule(
        ctx,
        own,
        pose=PoseEstimator(det_session, det_manifest, lm_session, lm_manifest),
        fusion=HelpFusion.from_fusion(
            cfg.fusion,
            own.min_lying_frames,
            intent=own.intent,
            phrases=cfg.intents[own.intent],
            min_audio=own.min_audio,
            threshold=own.threshold,
        ),
        max_frames=cfg.pose.max_frames_per_window,
        detector_ref=det_manifest.ref,
        landmark_ref=lm_manifest.ref,
    )
