"""``edge-agent train --fusion``: learn alpha/beta and an int8 fusion head from scenes.

Each training example is one utterance on one clock: the recognizer's posterior for a corpus
clip (heard directly, or through a "TV": band-limited and quieter) and the face evidence of
an 8-frame window of real photos (``agent.evaluation.people``). The scenes say what is true:

* ``addressed``: a person in view speaks to the device. Commands are positives (when the
  recognizer's best phrase is the right one), near misses and other talk negatives.
* ``tv_turned``: a TV speaks (commands too) while the person in view faces away: negative.
* ``tv_facing``: a TV speaks while a silent person faces the device: negative. Only "who is
  talking" (mouth movement) could tell this from ``addressed``; it is reported, not solved.
* ``nobody``: speech, direct or from a TV, with nobody in view: negative.
* ``arrive_leave``: a person facing the device in view for k of the 8 frames while they say a
  command: positive when k >= 4 (in view for at least half of the utterance window).

Training uses the corpus's *tune* split (espeak voices never used to train the recognizer)
and the *train* split of the photos; ``evaluate --fusion`` uses the held-out test split of
both (``agent.evaluation.fusion``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.config.schema import AgentConfig
from agent.errors import EdgeAgentError
from agent.evaluation.corpus import Clip, Corpus
from agent.extractors.speech import IntentRecognizer, Posterior, Recognition
from agent.extractors.vision import Detection, FaceDetector
from agent.fusion.learned import FEATURES, OPERATING_POINT, features
from agent.rules.base import PersonEvidence
from agent.runtimes.onnx import EXACT_INT8

_LOGGER = logging.getLogger(__name__)

FRAMES = 8  # frames per utterance window (vision.max_frames_per_window's default)
SCENES: dict[str, float] = {  # mixture of the scenes (share of examples)
    "addressed": 0.45,
    "tv_turned": 0.15,
    "tv_facing": 0.10,
    "nobody": 0.20,
    "arrive_leave": 0.10,
}
TV_GAIN_DB = -8.0
TV_BAND_HZ = (250.0, 3800.0)
CANDIDATE_FLOOR = 0.05
HIDDEN = 16
FUSION_NAME = "fusion_head_int8"


@dataclass(frozen=True)
class Heard:
    clip: Clip
    direct: Recognition
    tv: Recognition


@dataclass(frozen=True)
class Utterance:
    scene: str
    clip: Clip
    rec: Recognition
    person: PersonEvidence
    truth: int  # 1: an event with ``intent`` is right (a present person said that command)
    intent: str | None  # what firing would claim (the recognizer's best phrase)

    @property
    def label(self) -> int:
        """The head's target: right, and the face detector saw the person (voice_command
        never fires without a face in view, so the head need not learn those)."""
        return int(self.truth and self.person.with_person > 0)

    def x(self) -> npt.NDArray[np.float32]:
        return features(self.rec, self.person)


def tv(x: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    """The clip as a TV in the room plays it: 250-3800 Hz, 8 dB down."""
    from scipy.signal import butter, sosfilt

    sos = butter(4, TV_BAND_HZ, btype="bandpass", fs=16000, output="sos")
    y = sosfilt(sos, x.astype(np.float64)) * 10.0 ** (TV_GAIN_DB / 20.0)
    out: npt.NDArray[np.int16] = np.clip(y, -32768, 32767).astype(np.int16)
    return out


def hear(
    corpus: Corpus,
    clips: Sequence[Clip],
    recognizer: IntentRecognizer,
    progress: Callable[[str], None] = lambda _: None,
    *,
    key: str = "",
) -> list[Heard]:
    """Each clip through the recognizer, directly and through a TV.

    With ``key`` (what the recognizer's answers depend on: model, phrases, thresholds) the
    answers are kept in the corpus folder and reused by the next run with the same key.
    """
    cache: dict[str, Any] = {}
    path = corpus.root / f"heard-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    if key and path.is_file():
        cache = json.loads(path.read_text(encoding="utf-8"))
    out = []
    fresh = 0
    for clip in clips:
        got = cache.get(clip.path)
        if got is not None:
            out.append(Heard(clip, _rec(got[0]), _rec(got[1])))
            continue
        x = corpus.audio(clip)
        h = Heard(clip, recognizer.recognize(x), recognizer.recognize(tv(x)))
        cache[clip.path] = [asdict(h.direct), asdict(h.tv)]
        out.append(h)
        fresh += 1
        if fresh % 500 == 0:
            progress(f"  heard {fresh} clips")
    if key and fresh:
        path.write_text(json.dumps(cache), encoding="utf-8")
    return out


def hear_key(cfg: AgentConfig, model: str) -> str:
    return json.dumps([model, cfg.speech.model_dump(mode="json"), cfg.intents], sort_keys=True)


def _rec(data: dict[str, Any]) -> Recognition:
    post = data.get("posterior")
    return Recognition(**{**data, "posterior": Posterior(**post) if post else None})


@dataclass(frozen=True)
class Seen:
    """One photo and the face detector's best face in it (None: no face)."""

    name: str
    condition: str
    face: Detection | None


def look(split: str, detector: FaceDetector) -> list[Seen]:
    from agent.evaluation.people import views

    return [Seen(v.name, v.condition, detector.best_face(v.image)) for v in views(split)]  # type: ignore[arg-type]


def window(seen: Seen | None, in_view: int, min_score: float, model: str) -> PersonEvidence:
    """8 frames, ``in_view`` of them showing ``seen`` and the rest an empty room."""
    face = seen.face if seen is not None else None
    if face is None or face.score < min_score or in_view == 0:
        return PersonEvidence(0.0, FRAMES, 0, model)
    return PersonEvidence(
        x_image=face.score * in_view / FRAMES,
        analysed=FRAMES,
        with_person=in_view,
        model=model,
        face_height=face.height,
        facing=face.facing,
    )


def utterances(
    heard: Sequence[Heard],
    seen: Sequence[Seen],
    *,
    help_intent: str,
    count: int,
    seed: int,
    min_score: float,
    model: str = "photos",
) -> list[Utterance]:
    """``count`` seeded utterances drawn from the scene mixture."""
    rng = np.random.default_rng(seed)
    # A call for help never reaches the voice_command fusion: leave those clips out.
    usable = [h for h in heard if h.clip.intent != help_intent]
    commands = [h for h in usable if h.clip.kind == "command"]
    by_cond: dict[str, list[Seen]] = {}
    for s in seen:
        by_cond.setdefault(s.condition, []).append(s)
    # People facing the device whom the detector finds: LFW's 25-pixel crops, blown up, are
    # found in about half of the photos, and a face the detector misses is the vision
    # model's accuracy, not the fusion's (voice_command never fires without a face).
    facing = [s for s in by_cond["facing"] if s.face is not None and s.face.score >= min_score]
    turned, nobody = by_cond.get("turned", []), by_cond["nobody"]
    if not facing:
        raise EdgeAgentError("no photo of a person facing the camera was detected")
    names = list(SCENES)
    probs = np.array([SCENES[n] for n in names])
    out: list[Utterance] = []
    for _ in range(count):
        scene = names[int(rng.choice(len(names), p=probs / probs.sum()))]
        pool = commands if scene == "arrive_leave" else usable
        h = pool[int(rng.integers(len(pool)))]
        rec = h.tv if scene.startswith("tv_") else h.direct
        k = FRAMES
        if scene in ("addressed", "tv_facing"):
            who: Seen | None = facing[int(rng.integers(len(facing)))]
        elif scene == "tv_turned":
            who = turned[int(rng.integers(len(turned)))] if turned else None
        elif scene == "nobody":
            who = nobody[int(rng.integers(len(nobody)))]
            if rng.random() < 0.5:
                rec = h.tv
        else:  # arrive_leave
            who = facing[int(rng.integers(len(facing)))]
            k = int(rng.integers(0, FRAMES + 1))
        person = window(who, k, min_score, model)
        post = rec.posterior
        intent = rec.intent or (post.intent if post is not None else None)
        right = h.clip.kind == "command" and intent == h.clip.intent
        present = who is not None and who.condition == "facing" and k >= FRAMES // 2
        truth = int(right and present and scene in ("addressed", "arrive_leave"))
        out.append(Utterance(scene, h.clip, rec, person, truth, intent))
    return out


# --------------------------------------------------------------------------- fitting


def fit_weights(
    x_image: npt.NDArray[np.float32], x_audio: npt.NDArray[np.float32], y: npt.NDArray[np.int64]
) -> tuple[float, float, float]:
    """Logistic regression on (x_image, x_audio) → (alpha, beta, threshold), alpha+beta=1.

    ``sigmoid(w_i·x_i + w_a·x_a + b) >= 0.5`` is ``alpha·x_i + beta·x_a >= threshold`` with
    alpha = w_i / (w_i + w_a), beta = w_a / (w_i + w_a), threshold = -b / (w_i + w_a).
    """
    x = np.stack([x_image, x_audio], axis=1).astype(np.float64)
    t = y.astype(np.float64)
    w = np.zeros(2)
    b = 0.0
    for _ in range(4000):  # plain gradient descent: two weights, convex, converges
        z = np.clip(x @ w + b, -30, 30)
        p = 1.0 / (1.0 + np.exp(-z))
        g = p - t
        w -= 0.5 * (x.T @ g / len(t) + 1e-4 * w)
        b -= 0.5 * float(g.mean())
    w = np.maximum(w, 1e-6)  # the modalities only ever add evidence
    total = float(w.sum())
    alpha, beta = float(w[0] / total), float(w[1] / total)
    threshold = float(np.clip(-b / total, 0.0, 1.0))
    return round(alpha, 4), round(beta, 4), round(threshold, 4)


def train_head(
    x: npt.NDArray[np.float32], y: npt.NDArray[np.int64], *, seed: int, epochs: int = 60
) -> dict[str, npt.NDArray[np.float32]]:
    """A 7→16→1 MLP (ReLU, sigmoid) with torch; returns its weights."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    first, second = nn.Linear(x.shape[1], HIDDEN), nn.Linear(HIDDEN, 1)
    model = nn.Sequential(first, nn.ReLU(), second)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    xt = torch.from_numpy(x.astype(np.float32))
    yt = torch.from_numpy(y.astype(np.float32)).reshape(-1, 1)
    loss_fn = nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for k in range(0, len(perm), 256):
            i = perm[k : k + 256]
            opt.zero_grad()
            loss = loss_fn(model(xt[i]), yt[i])
            loss.backward()
            opt.step()
    return {
        "w1": first.weight.detach().numpy().astype(np.float32).copy(),
        "b1": first.bias.detach().numpy().astype(np.float32).copy(),
        "w2": second.weight.detach().numpy().astype(np.float32).copy(),
        "b2": second.bias.detach().numpy().astype(np.float32).copy(),
    }


def head_onnx(weights: dict[str, npt.NDArray[np.float32]]) -> bytes:
    """The float head as ONNX, node by node (deterministic bytes)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from agent.training.train import OPSET

    inits = [numpy_helper.from_array(np.ascontiguousarray(v), k) for k, v in weights.items()]
    nodes = [
        helper.make_node("Gemm", ["features", "w1", "b1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["logit"], transB=1),
        helper.make_node("Sigmoid", ["logit"], ["p"]),
    ]
    graph = helper.make_graph(
        nodes,
        "fusion_head",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, len(FEATURES)])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, [1, 1])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edge-agent"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def run_head(path: Path, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.add_session_config_entry(*EXACT_INT8)  # as the agent runs it
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    out = [float(sess.run(None, {"features": row[np.newaxis]})[0].reshape(-1)[0]) for row in x]
    return np.asarray(out, dtype=np.float32)


def choose_threshold(p: npt.NDArray[np.float32], y: npt.NDArray[np.int64], recall: float) -> float:
    """The highest threshold that keeps at least ``recall`` of the positives."""
    pos = np.sort(p[y == 1])[::-1]
    if not len(pos):
        raise EdgeAgentError("fusion training: no positive examples")
    k = min(len(pos) - 1, max(0, int(np.ceil(recall * len(pos))) - 1))
    return float(np.clip(np.floor(pos[k] * 1000) / 1000, 0.01, 0.99))


@dataclass(frozen=True)
class FusionResult:
    bundle: Path
    examples: int
    positives: int
    alpha: float
    beta: float
    weighted_threshold: float
    threshold: float
    seconds: float
    figures: dict[str, Any]


def policy_fires(
    rows: Sequence[Utterance],
    *,
    head_p: npt.NDArray[np.float32] | None,
    head_threshold: float,
    weights: tuple[float, float, float],
    hand: tuple[float, float, float],
    floor: float,
) -> dict[str, npt.NDArray[np.bool_]]:
    """Which utterances each policy fires on (with the recognizer's own gate where it has one)."""
    accepted = np.array([u.rec.intent is not None for u in rows])
    in_view = np.array([u.person.with_person > 0 for u in rows])
    x_img = np.array([u.person.x_image for u in rows])
    x_aud = np.array([u.rec.confidence for u in rows])

    def weighted(a: float, b: float, t: float) -> npt.NDArray[np.bool_]:
        ok: npt.NDArray[np.bool_] = accepted & in_view & (a * x_img + b * x_aud >= t)
        return ok

    out = {
        "audio_only": accepted,
        "image_only": in_view,
        "hand_weights": weighted(*hand),
        "learned_weights": weighted(*weights),
    }
    if head_p is not None:
        out["learned_head"] = candidates(rows, floor) & in_view & (head_p >= head_threshold)
    return out


def candidates(rows: Sequence[Utterance], floor: float) -> npt.NDArray[np.bool_]:
    """Utterances the head sees: accepted by the recognizer, or its best phrase at ``floor``
    (``VoiceCommandRule.takes_candidate``)."""
    return np.array(
        [
            u.rec.intent is not None or (u.rec.posterior is not None and u.rec.posterior.p >= floor)
            for u in rows
        ],
        dtype=bool,
    )


def scene_rows(
    cfg: AgentConfig,
    store: Any,
    heard: Sequence[Heard],
    split: str,
    *,
    count: int,
    seed: int,
) -> tuple[list[Utterance], str]:
    """The scenes of ``split``'s photos around ``heard``; also the face detector's name@version."""
    session, manifest = store.load(
        cfg.vision.model, threads=cfg.vision.threads, runtimes=cfg.runtimes
    )
    seen = look(split, FaceDetector(session, manifest.preprocess, manifest.postprocess))
    rows = utterances(
        heard,
        seen,
        help_intent=cfg.events.help_call.intent,
        count=count,
        seed=seed,
        min_score=cfg.vision.min_score,
    )
    return rows, str(manifest.ref)


def score_policies(
    rows: Sequence[Utterance], fires: dict[str, npt.NDArray[np.bool_]]
) -> dict[str, dict[str, dict[str, float | int]]]:
    """Per policy and scene: positives found, false accepts (a wrong intent counts as one)."""
    label = np.array([u.truth for u in rows], dtype=bool)
    scene = np.array([u.scene for u in rows])
    out: dict[str, dict[str, dict[str, float | int]]] = {}
    for policy, fire in fires.items():
        per: dict[str, dict[str, float | int]] = {}
        for name in (*SCENES, "all"):
            m = np.ones(len(rows), bool) if name == "all" else scene == name
            pos, neg = m & label, m & ~label
            per[name] = {
                "n": int(m.sum()),
                "positives": int(pos.sum()),
                "found": int((fire & pos).sum()),
                "recall": round(float((fire & pos).sum() / max(1, pos.sum())), 4),
                "negatives": int(neg.sum()),
                "false_accepts": int((fire & neg).sum()),
                "fa_rate": round(float((fire & neg).sum() / max(1, neg.sum())), 4),
            }
        out[policy] = per
    return out


def run_fusion_train(
    cfg: AgentConfig,
    corpus: Corpus,
    out_dir: Path,
    *,
    examples: int = 20000,
    seed: int = 0,
    held_out: bool = True,
    version: str = "1.0.0",
    progress: Callable[[str], None] = lambda _: None,
) -> FusionResult:
    """Hear the tune split, look at the training photos, fit, quantize, write the bundle."""
    from agent.extractors.speech import build_recognizer
    from agent.models.store import ModelStore
    from agent.training.train import quantize_head

    t0 = time.perf_counter()
    store = ModelStore(cfg.models.dir)
    recognizer = build_recognizer(cfg.speech, cfg.intents, store, cfg.runtimes)
    clips = [c for c in corpus.clips if c.split == "tune" and c.kind in ("command", "near_miss")]
    if not clips:
        raise EdgeAgentError(
            "fusion training needs the corpus's tune split (edge-agent evaluate builds it)"
        )
    progress(f"hearing {len(clips)} tune clips, direct and through a TV")
    heard = hear(corpus, clips, recognizer, progress, key=hear_key(cfg, recognizer.model))
    rows, detector_ref = scene_rows(cfg, store, heard, "train", count=examples, seed=seed)
    fit_rows, tune_rows = rows[: len(rows) * 4 // 5], rows[len(rows) * 4 // 5 :]
    x = np.stack([u.x() for u in fit_rows])
    y = np.array([u.label for u in fit_rows], dtype=np.int64)
    progress(f"{len(fit_rows)} examples ({int(y.sum())} positive); fitting")
    alpha, beta, wthr = fit_weights(
        np.array([u.person.x_image for u in fit_rows], np.float32),
        np.array([u.rec.confidence for u in fit_rows], np.float32),
        y,
    )
    weights = train_head(x, y, seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    float_path = out_dir / "fusion_head_float.onnx"
    float_path.write_bytes(head_onnx(weights))
    target = out_dir / f"{FUSION_NAME}.onnx"
    quantize_head(float_path, target, x[:2000], input_name="features", op_types=("Gemm",))
    float_path.unlink()
    # Threshold: on examples held back from fitting, keep the hand-set weights' recall in
    # every scene (the lowest of the per-scene thresholds that do).
    xt = np.stack([u.x() for u in tune_rows])
    yt = np.array([u.label for u in tune_rows], dtype=np.int64)
    pt = run_head(target, xt)
    hand = (cfg.fusion.alpha, cfg.fusion.beta, cfg.fusion.threshold)
    base = policy_fires(
        tune_rows, head_p=None, head_threshold=1.0, weights=hand, hand=hand, floor=1.0
    )["hand_weights"]
    scene = np.array([u.scene for u in tune_rows])
    cuts = []
    for name in SCENES:
        m = (scene == name) & (yt == 1)
        if m.any():
            want = float((base & m).sum() / m.sum())
            cuts.append(choose_threshold(pt[scene == name], yt[scene == name], want))
    threshold = min(cuts)
    fires = policy_fires(
        tune_rows,
        head_p=pt,
        head_threshold=threshold,
        weights=(alpha, beta, wthr),
        hand=hand,
        floor=CANDIDATE_FLOOR,
    )
    figures = {"tuning": score_policies(tune_rows, fires), "examples": len(rows)}
    seconds = time.perf_counter() - t0
    accuracy: dict[str, Any] = {"training": figures, "train_seconds": round(seconds, 1)}
    write_fusion_bundle(
        out_dir,
        target,
        threshold=threshold,
        weights=(alpha, beta, wthr),
        recognizer=recognizer.model,
        detector=detector_ref,
        accuracy=accuracy,
        version=version,
    )
    if held_out:
        from agent.evaluation.fusion import evaluate_fusion

        progress("held-out evaluation (test voices, test photos)")
        accuracy["held_out_evaluation"] = evaluate_fusion(
            corpus, cfg, count=examples, bundle=out_dir, progress=progress
        )
        (out_dir / "accuracy.json").write_text(
            json.dumps(accuracy, indent=2) + "\n", encoding="utf-8"
        )
    return FusionResult(
        bundle=out_dir,
        examples=len(rows),
        positives=int(sum(u.label for u in rows)),
        alpha=alpha,
        beta=beta,
        weighted_threshold=wthr,
        threshold=threshold,
        seconds=seconds,
        figures=figures,
    )


def write_fusion_bundle(
    out: Path,
    onnx_path: Path,
    *,
    threshold: float,
    weights: tuple[float, float, float],
    recognizer: str,
    detector: str,
    accuracy: dict[str, Any],
    version: str = "1.0.0",
) -> None:
    sha = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    manifest = {
        "name": FUSION_NAME,
        "version": version,
        "file": onnx_path.name,
        "sha256": sha,
        "runtime": "onnx",
        "task": "fusion",
        "precision": "int8",
        "inputs": [{"name": "features", "shape": [1, len(FEATURES)], "dtype": "float32"}],
        "outputs": [{"name": "p", "shape": [1, 1], "dtype": "float32"}],
        "preprocess": {"features": list(FEATURES), "recognizer": recognizer, "detector": detector},
        "postprocess": {
            "threshold": threshold,
            "operating_point": OPERATING_POINT,
            "candidate_floor": CANDIDATE_FLOOR,
            "weighted_sum": {"alpha": weights[0], "beta": weights[1], "threshold": weights[2]},
        },
        "licence": "Apache-2.0",
        "source": "edge-agent train --fusion (agent/training/fusion.py)",
        "derived_from": "trained by the edge-agent project on its evaluation corpus's tuning "
        "voices and on face-detector outputs (7 numbers per window) for photos read from the "
        "scikit-image wheel: astronaut (public domain), camera (CC0), the LFW subset; no image "
        "is shipped",
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    (out / "accuracy.json").write_text(json.dumps(accuracy, indent=2) + "\n", encoding="utf-8")
    licence = Path(__file__).resolve().parents[2] / "LICENSE"
    if licence.is_file():
        (out / "LICENSE").write_text(licence.read_text(encoding="utf-8"), encoding="utf-8")
