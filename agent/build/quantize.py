"""The int8 recipe every model builder uses, and ``edge-agent models quantize``.

    edge-agent models quantize --model FLOAT.onnx|FLOAT.tflite --calibration CALIB.npz \
        --out OUT.onnx|OUT.tflite [--exclude NODE ...] [--eval HELDOUT.npz]

``CALIB.npz`` / ``HELDOUT.npz`` hold one array per model input, keyed by input name, samples
along the first axis: ``(N, *input_shape)`` or, when the model's batch is 1, ``(N, *shape[1:])``.

* ONNX (:func:`quantize_onnx`): onnxruntime ``quantize_static``, QDQ, uint8 activations / int8
  per-channel weights (U8S8), MinMax unless told otherwise; ``exclude`` names nodes kept in
  float, ``op_types`` limits the quantized op types. Two switches keep every shipped model
  byte-identical to the way it was first built: ``prepare`` (run onnxruntime's
  ``quant_pre_process`` first, without optimisation or symbolic shapes) and ``canonical``
  (sort initializers / value_info afterwards: ``quantize_static`` emits them in set order, so
  without it the bytes depend on the hash seed). The BlazeFace and pose models use both; the
  VAD, the speech embedding and the trained heads were built without either (their graphs
  came out in a stable order) and keep that.
* TFLite (:func:`quantize_tflite`): two flatbuffer edits first (fp16 weights folded to fp32
  constants, i.e. every DEQUANTIZE of an fp16 constant dropped; standalone RELU/RELU6 fused
  into the CONV_2D / DEPTHWISE_CONV_2D / ADD that feeds it), then LiteRT's own calibrator
  shipped inside ai-edge-litert (``_pywrap_tensorflow_lite_calibration_wrapper``, a private
  module: pinned to ai-edge-litert 2.3.0): feed the samples, ``QuantizeModel`` to int8 with
  per-channel weights, int32 biases and **float32 input/output** (QUANTIZE/DEQUANTIZE inside
  the model), so callers keep feeding float (int8 I/O was measured no faster on BlazeFace:
  2.32 vs 2.32 ms). ``exclude`` is not supported there.

``--eval`` prints the max / mean absolute deviation of each output from the float model.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.build.common import Array
from agent.runtimes.base import RuntimeName, Session, open_session

_LOGGER = logging.getLogger(__name__)

LITERT_PIN = "2.3.0"
MAX_SAMPLES = 100_000  # bound on calibration / evaluation loops
METHODS = ("MinMax", "Percentile", "Entropy")

Feed = Mapping[str, Array]


# ---------------------------------------------------------------- data


def load_samples(path: Path) -> dict[str, Array]:
    with np.load(path, allow_pickle=False) as data:
        return {k: np.asarray(data[k]) for k in data.files}


def iter_feeds(
    samples: Mapping[str, Array], shapes: Mapping[str, tuple[int, ...]]
) -> Iterator[dict[str, Array]]:
    """One feed dict per sample, each array shaped like the model input."""
    missing = set(shapes) - set(samples)
    if missing:
        raise SystemExit(f"calibration data lacks input(s) {sorted(missing)}; has {list(samples)}")
    counts = {len(samples[k]) for k in shapes}
    if len(counts) != 1:
        raise SystemExit(f"inputs have different sample counts: {counts}")
    n = min(counts.pop(), MAX_SAMPLES)
    for i in range(n):
        feed = {}
        for name, shape in shapes.items():
            arr = samples[name]
            x = arr[i : i + 1] if arr.ndim == len(shape) else arr[i]
            feed[name] = np.ascontiguousarray(x)
        yield feed


def input_shapes(session: Session) -> dict[str, tuple[int, ...]]:
    return {t.name: tuple(t.shape) for t in session.inputs}


# ---------------------------------------------------------------- ONNX


def canonicalize_onnx(path: Path) -> None:
    """Sort initializers / value_info: quantize_static emits them in set order (hash seed)."""
    import onnx

    model = onnx.load(str(path))
    for field in (model.graph.initializer, model.graph.value_info):
        items = sorted(field, key=lambda t: t.name)
        del field[:]
        field.extend(items)
    path.write_bytes(model.SerializeToString(deterministic=True))


class _Reader:
    """onnxruntime CalibrationDataReader over a fixed list of feeds (duck-typed: the
    calibrators only call ``get_next``, some versions ``rewind`` too)."""

    def __init__(self, feeds: Sequence[Feed]) -> None:
        self._feeds = feeds
        self._it: Iterator[Feed] = iter(feeds)

    def get_next(self) -> dict[str, Array] | None:
        feed = next(self._it, None)
        return None if feed is None else dict(feed)

    def rewind(self) -> None:
        self._it = iter(self._feeds)


def quantize_onnx(
    model: Path,
    out: Path,
    feeds: Sequence[Feed],
    *,
    exclude: Sequence[str] = (),
    op_types: Sequence[str] | None = None,
    method: str = "MinMax",
    prepare: bool = True,
    canonical: bool = True,
) -> int:
    """Static QDQ U8S8 per-channel int8 of ``model`` calibrated on ``feeds`` (one input dict
    per calibration batch) -> ``out``; returns how many feeds were used."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in METHODS:
        raise SystemExit(f"calibration method {method!r}: one of {', '.join(METHODS)}")
    _LOGGER.info("onnx: calibrating %s on %d samples", model.name, len(feeds))
    with tempfile.TemporaryDirectory(prefix="edge-agent-quantize-") as tmp:
        source = model
        if prepare:
            source = Path(tmp) / "pre.onnx"
            quant_pre_process(
                str(model), str(source), skip_optimization=True, skip_symbolic_shape=True
            )
        quantize_static(
            str(source),
            str(out),
            _Reader(feeds),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=getattr(CalibrationMethod, method),
            op_types_to_quantize=list(op_types) if op_types else None,
            nodes_to_exclude=list(exclude),
        )
    if canonical:
        canonicalize_onnx(out)
    return len(feeds)


def quantize_onnx_samples(
    model: Path, samples: Mapping[str, Array], out: Path, exclude: Sequence[str] = ()
) -> int:
    """:func:`quantize_onnx` on samples keyed by input name (samples on the first axis)."""
    shapes = input_shapes(open_session(model, "onnx"))
    return quantize_onnx(model, out, list(iter_feeds(samples, shapes)), exclude=exclude)


# ---------------------------------------------------------------- TFLite


def _schema() -> Any:
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _opname(schema: Any, model: Any, op: Any) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    num = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return str(names.get(num, f"op{num}"))


def _compact(model: Any) -> None:
    """Drop tensors, operator codes and buffers that nothing uses any more."""
    for sg in model.subgraphs:
        used: list[int] = []
        seen: set[int] = set()
        refs = [*list(sg.inputs), *list(sg.outputs)]
        for op in sg.operators:
            refs += [int(i) for i in op.inputs if i >= 0]
            refs += [int(i) for i in op.outputs]
            refs += [int(i) for i in (op.intermediates if op.intermediates is not None else [])]
        for i in refs:
            if i not in seen:
                seen.add(i)
                used.append(i)
        used.sort()
        remap = {old: new for new, old in enumerate(used)}
        sg.tensors = [sg.tensors[i] for i in used]
        sg.inputs = [remap[int(i)] for i in sg.inputs]
        sg.outputs = [remap[int(i)] for i in sg.outputs]
        for op in sg.operators:
            op.inputs = [remap[int(i)] if i >= 0 else -1 for i in op.inputs]
            op.outputs = [remap[int(i)] for i in op.outputs]
            if op.intermediates is not None:
                op.intermediates = [remap[int(i)] for i in op.intermediates]
    codes = sorted({int(op.opcodeIndex) for sg in model.subgraphs for op in sg.operators})
    cremap = {old: new for new, old in enumerate(codes)}
    model.operatorCodes = [model.operatorCodes[i] for i in codes]
    for sg in model.subgraphs:
        for op in sg.operators:
            op.opcodeIndex = cremap[int(op.opcodeIndex)]
    keep = sorted({0} | {int(t.buffer) for sg in model.subgraphs for t in sg.tensors})
    bremap = {old: new for new, old in enumerate(keep)}
    model.buffers = [model.buffers[i] for i in keep]
    for sg in model.subgraphs:
        for t in sg.tensors:
            t.buffer = bremap[int(t.buffer)]


def prepare_tflite(data: bytes) -> tuple[bytes, dict[str, int]]:
    """Fold fp16 weights to fp32 and fuse standalone RELU/RELU6; returns (model, counts)."""
    import flatbuffers

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    if any(int(b.offset) for b in model.buffers):
        raise SystemExit("tflite: models with buffers outside the flatbuffer are not supported")
    counts = {"folded_fp16": 0, "fused_relu": 0}
    fp16 = schema.TensorType.FLOAT16
    fp32 = schema.TensorType.FLOAT32
    fusable = {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD"}
    acts = {
        "RELU": schema.ActivationFunctionType.RELU,
        "RELU6": schema.ActivationFunctionType.RELU6,
    }
    for sg in model.subgraphs:
        # 1. DEQUANTIZE(fp16 constant) -> fp32 constant.
        kept = []
        for op in sg.operators:
            if _opname(schema, model, op) == "DEQUANTIZE":
                src = sg.tensors[op.inputs[0]]
                buf = model.buffers[src.buffer]
                if src.type == fp16 and buf.data is not None and len(buf.data):
                    values = np.frombuffer(bytes(bytearray(buf.data)), "<f2").astype("<f4")
                    new = schema.BufferT()
                    new.data = np.frombuffer(values.tobytes(), np.uint8)
                    model.buffers.append(new)
                    dst = sg.tensors[op.outputs[0]]
                    dst.buffer = len(model.buffers) - 1
                    dst.type = fp32
                    counts["folded_fp16"] += 1
                    continue
            kept.append(op)
        sg.operators = kept
        # 2. X -> RELU  =>  X with a fused activation (X's output used only by the RELU).
        consumers: dict[int, int] = {}
        for op in sg.operators:
            for i in op.inputs:
                consumers[int(i)] = consumers.get(int(i), 0) + 1
        producer = {int(o): op for op in sg.operators for o in op.outputs}
        outputs = {int(i) for i in sg.outputs}
        kept = []
        for op in sg.operators:
            name = _opname(schema, model, op)
            if name in acts:
                t = int(op.inputs[0])
                prev = producer.get(t)
                opts = None if prev is None else prev.builtinOptions
                if (
                    prev is not None
                    and _opname(schema, model, prev) in fusable
                    and consumers.get(t) == 1
                    and t not in outputs
                    and opts is not None
                    and opts.fusedActivationFunction == schema.ActivationFunctionType.NONE
                ):
                    opts.fusedActivationFunction = acts[name]
                    prev.outputs = [int(op.outputs[0])]
                    producer[int(op.outputs[0])] = prev
                    counts["fused_relu"] += 1
                    continue
            kept.append(op)
        sg.operators = kept
    _compact(model)
    builder = flatbuffers.Builder(len(data) * 2 + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), counts


def _check_litert_version() -> None:
    from importlib.metadata import version

    found = version("ai-edge-litert")
    if found != LITERT_PIN:
        _LOGGER.warning(
            "ai-edge-litert %s: the calibration wrapper is private and was checked with %s",
            found,
            LITERT_PIN,
        )


def calibrate_tflite(data: bytes, samples: Mapping[str, Array]) -> bytes:
    """Calibrate with LiteRT's calibrator and quantize: int8 inside, float32 I/O."""
    from ai_edge_litert import _pywrap_tensorflow_lite_calibration_wrapper as wrapper
    from ai_edge_litert import interpreter

    _check_litert_version()
    it = interpreter.Interpreter(model_content=data)
    details = it.get_input_details()
    shapes = {d["name"]: tuple(int(x) for x in d["shape"]) for d in details}
    order = [d["name"] for d in details]
    cal = wrapper.CalibrationWrapper(data, [], [])
    cal.Prepare([list(shapes[n]) for n in order])
    n = 0
    for feed in iter_feeds(samples, shapes):
        cal.FeedTensor([feed[k].astype(np.float32) for k in order])
        n += 1
    _LOGGER.info("tflite: calibrated on %d samples", n)
    f32, i8, i32 = (np.dtype(t).num for t in (np.float32, np.int8, np.int32))
    # (input type, output type, allow float, activations, bias, disable per-channel,
    #  disable per-channel for dense layers)
    quantized = cal.QuantizeModel(f32, f32, False, i8, i32, False, False)
    return bytes(quantized)


def quantize_tflite(model: Path, samples: Mapping[str, Array], out: Path) -> dict[str, int]:
    prepared, counts = prepare_tflite(model.read_bytes())
    _LOGGER.info(
        "tflite: folded %d fp16 constants, fused %d RELU ops",
        counts["folded_fp16"],
        counts["fused_relu"],
    )
    out.write_bytes(calibrate_tflite(prepared, samples))
    return counts


def op_counts(path: Path) -> dict[str, int]:
    """Operator histogram of a .tflite (for tests / logs)."""
    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    hist: dict[str, int] = {}
    for sg in model.subgraphs:
        for op in sg.operators:
            name = _opname(schema, model, op)
            hist[name] = hist.get(name, 0) + 1
    return hist


# ---------------------------------------------------------------- evaluation / CLI


def runtime_of(path: Path) -> RuntimeName:
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".tflite":
        return "tflite"
    raise SystemExit(f"{path}: expected .onnx or .tflite")


def deviation(
    float_model: Path, int8_model: Path, samples: Mapping[str, Array]
) -> dict[str, dict[str, float]]:
    """Per output: max and mean absolute difference int8 vs float, and the float range."""
    a = open_session(float_model, runtime_of(float_model), threads=1)
    b = open_session(int8_model, runtime_of(int8_model), threads=1)
    stats: dict[str, dict[str, float]] = {}
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for feed in iter_feeds(samples, input_shapes(a)):
        ra, rb = a.run(feed), b.run(feed)
        for name, va in ra.items():
            d = np.abs(np.asarray(va, np.float64) - np.asarray(rb[name], np.float64))
            s = stats.setdefault(name, {"max_abs": 0.0, "float_abs_max": 0.0})
            s["max_abs"] = max(s["max_abs"], float(d.max()))
            s["float_abs_max"] = max(s["float_abs_max"], float(np.abs(va).max()))
            sums[name] = sums.get(name, 0.0) + float(d.sum())
            counts[name] = counts.get(name, 0) + d.size
    for name, s in stats.items():
        s["mean_abs"] = sums[name] / max(counts[name], 1)
    return stats


def quantize(
    model: Path, calibration: Path, out: Path, exclude: list[str] | None = None
) -> dict[str, int]:
    kind = runtime_of(model)
    if runtime_of(out) != kind:
        raise SystemExit("--model and --out must have the same suffix")
    samples = load_samples(calibration)
    if kind == "onnx":
        quantize_onnx_samples(model, samples, out, exclude or [])
        return {}
    if exclude:
        raise SystemExit("--exclude is only supported for ONNX models")
    return quantize_tflite(model, samples, out)


def main(args: argparse.Namespace) -> int:
    """``edge-agent models quantize`` (arguments from :func:`add_parser`)."""
    quantize(args.model, args.calibration, args.out, args.exclude)
    _LOGGER.info("wrote %s (%d bytes)", args.out, args.out.stat().st_size)
    if args.eval:
        for name, s in deviation(args.model, args.out, load_samples(args.eval)).items():
            print(
                f"{name}: max |int8-float| {s['max_abs']:.4g}, mean {s['mean_abs']:.4g} "
                f"(float |max| {s['float_abs_max']:.4g})"
            )
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    q = sub.add_parser(
        "quantize", help="int8 of any float .onnx / .tflite with the models' own recipe"
    )
    q.add_argument("--model", type=Path, required=True, help="float .onnx or .tflite")
    q.add_argument("--calibration", type=Path, required=True, help=".npz keyed by input")
    q.add_argument("--out", type=Path, required=True, help="int8 .onnx or .tflite")
    q.add_argument("--exclude", nargs="*", default=[], help="ONNX nodes kept in float")
    q.add_argument("--eval", type=Path, help="held-out .npz: print deviation from float")
