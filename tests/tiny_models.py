"""Tiny real models built in tests: ONNX with the onnx helper API, TFLite with flatbuffers.

Both compute ``y = x @ W + b`` style arithmetic on a [1, 4] float input so a test can check
the numbers, not only that something ran.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

W = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
B = np.array([0.5, -1.0, 2.0], dtype=np.float32)
TFLITE_CONST = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)


def build_onnx(path: Path, bias: np.ndarray[Any, Any] = B) -> Path:
    """``y = x @ W + bias`` (MatMul, Add); x: [1, 4] float32, y: [1, 3]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(bias.astype(np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


INT8_K = 64


def build_int8_matmul(path: Path) -> Path:
    """``y = a @ B`` (MatMulInteger), a: [1, 64] uint8, B: [64, 8] int8, all 127; y: int32.
    With a = 255 the exact answer is 255 * 127 * 64; a kernel that saturates pair sums at
    16 bits (onnxruntime's u8s8 on x86 without VNNI) gives 32767 * 32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "B"], ["y"])],
        "int8_matmul",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [1, INT8_K])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 8])],
        [numpy_helper.from_array(np.full((INT8_K, 8), 127, np.int8), "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def build_tflite(path: Path, const: np.ndarray[Any, Any] = TFLITE_CONST) -> Path:
    """``y = x + const`` (one ADD op); x, y: [1, 4] float32. Written with flatbuffers."""
    import importlib

    import flatbuffers

    def mod(name: str) -> Any:
        # tflite/__init__ re-exports the classes under the module names; the builder
        # functions live in the modules.
        return importlib.import_module(f"tflite.{name}")

    AddOptions, Buffer, Operator, OperatorCode = (
        mod(n) for n in ("AddOptions", "Buffer", "Operator", "OperatorCode")
    )
    SubGraph, Tensor, Model = (mod(n) for n in ("SubGraph", "Tensor", "Model"))
    float32 = mod("TensorType").TensorType.FLOAT32
    add_options = mod("BuiltinOptions").BuiltinOptions.AddOptions
    add = mod("BuiltinOperator").BuiltinOperator.ADD

    b = flatbuffers.Builder(1024)

    def ints(start: Any, values: list[int]) -> int:
        start(b, len(values))
        for v in reversed(values):
            b.PrependInt32(v)
        return int(b.EndVector())

    def offsets(start: Any, values: list[int]) -> int:
        start(b, len(values))
        for v in reversed(values):
            b.PrependUOffsetTRelative(v)
        return int(b.EndVector())

    # Buffers: 0 is the empty sentinel, 1 holds the constant.
    data = b.CreateByteVector(const.astype("<f4").tobytes())
    Buffer.BufferStart(b)
    empty = Buffer.BufferEnd(b)
    Buffer.BufferStart(b)
    Buffer.BufferAddData(b, data)
    full = Buffer.BufferEnd(b)

    def tensor(name: str, buffer: int) -> int:
        shape = ints(Tensor.TensorStartShapeVector, [1, 4])
        n = b.CreateString(name)
        Tensor.TensorStart(b)
        Tensor.TensorAddShape(b, shape)
        Tensor.TensorAddType(b, float32)
        Tensor.TensorAddBuffer(b, buffer)
        Tensor.TensorAddName(b, n)
        return int(Tensor.TensorEnd(b))

    tensors = [tensor("x", 0), tensor("const", 1), tensor("y", 0)]
    AddOptions.AddOptionsStart(b)
    add_opts = AddOptions.AddOptionsEnd(b)
    op_in = ints(Operator.OperatorStartInputsVector, [0, 1])
    op_out = ints(Operator.OperatorStartOutputsVector, [2])
    Operator.OperatorStart(b)
    Operator.OperatorAddOpcodeIndex(b, 0)
    Operator.OperatorAddInputs(b, op_in)
    Operator.OperatorAddOutputs(b, op_out)
    Operator.OperatorAddBuiltinOptionsType(b, add_options)
    Operator.OperatorAddBuiltinOptions(b, add_opts)
    op = Operator.OperatorEnd(b)

    tvec = offsets(SubGraph.SubGraphStartTensorsVector, tensors)
    sg_in = ints(SubGraph.SubGraphStartInputsVector, [0])
    sg_out = ints(SubGraph.SubGraphStartOutputsVector, [2])
    ops = offsets(SubGraph.SubGraphStartOperatorsVector, [op])
    sg_name = b.CreateString("main")
    SubGraph.SubGraphStart(b)
    SubGraph.SubGraphAddTensors(b, tvec)
    SubGraph.SubGraphAddInputs(b, sg_in)
    SubGraph.SubGraphAddOutputs(b, sg_out)
    SubGraph.SubGraphAddOperators(b, ops)
    SubGraph.SubGraphAddName(b, sg_name)
    subgraph = SubGraph.SubGraphEnd(b)

    OperatorCode.OperatorCodeStart(b)
    OperatorCode.OperatorCodeAddDeprecatedBuiltinCode(b, add)
    OperatorCode.OperatorCodeAddBuiltinCode(b, add)
    OperatorCode.OperatorCodeAddVersion(b, 1)
    opcode = OperatorCode.OperatorCodeEnd(b)

    codes = offsets(Model.ModelStartOperatorCodesVector, [opcode])
    subgraphs = offsets(Model.ModelStartSubgraphsVector, [subgraph])
    buffers = offsets(Model.ModelStartBuffersVector, [empty, full])
    desc = b.CreateString("edge-agent test model")
    Model.ModelStart(b)
    Model.ModelAddVersion(b, 3)
    Model.ModelAddOperatorCodes(b, codes)
    Model.ModelAddSubgraphs(b, subgraphs)
    Model.ModelAddDescription(b, desc)
    Model.ModelAddBuffers(b, buffers)
    b.Finish(Model.ModelEnd(b), file_identifier=b"TFL3")
    path.write_bytes(bytes(b.Output()))
    return path


def write_manifest(
    folder: Path,
    file: str,
    *,
    name: str | None = None,
    version: str = "1.0.0",
    runtime: str | None = None,
    licence: str = "MIT",
    sha256: str | None = None,
    **extra: Any,
) -> Path:
    """A manifest for ``folder/file``; ``sha256`` defaults to the file's real digest."""
    digest = sha256 or hashlib.sha256((folder / file).read_bytes()).hexdigest()
    manifest = {
        "name": name or folder.name,
        "version": version,
        "file": file,
        "sha256": digest,
        "runtime": runtime or ("onnx" if file.endswith(".onnx") else "tflite"),
        "licence": licence,
        "source": "built by tests/tiny_models.py",
        "precision": "fp32",
        **extra,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return folder


def model_folder(
    root: Path, name: str, kind: str = "onnx", version: str = "1.0.0", **kw: Any
) -> Path:
    """``root/name`` holding a tiny model of ``kind`` (onnx | tflite) and its manifest."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "onnx":
        build_onnx(folder / "model.onnx", **kw)
        return write_manifest(folder, "model.onnx", name=name, version=version)
    build_tflite(folder / "model.tflite", **kw)
    return write_manifest(folder, "model.tflite", name=name, version=version)
