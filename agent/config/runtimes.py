"""Inference back-ends: onnxruntime execution providers, LiteRT delegates, thread counts.

The model's runtime (``onnx`` or ``tflite``) is fixed by its manifest (it is the file format);
this section only says *how* each runtime runs: on which accelerator and with how many threads.
Validators never probe hardware: an accelerator that is not there is found at load time and
replaced by the CPU with one warning.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from agent.config.base import Section

OnnxProvider = Literal[
    "cpu",
    "cuda",
    "tensorrt",
    "openvino",
    "coreml",
    "directml",
    "rocm",
    "migraphx",
    "qnn",
    "nnapi",
    "xnnpack",
    "dnnl",
    "acl",
    "armnn",
]
TfliteDelegate = Literal["edgetpu", "gpu"]

# Short config names -> onnxruntime's provider names.
ORT_PROVIDER_NAMES: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "nnapi": "NnapiExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "dnnl": "DnnlExecutionProvider",
    "acl": "ACLExecutionProvider",
    "armnn": "ArmNNExecutionProvider",
}
_SHORT_NAMES = {v.lower(): k for k, v in ORT_PROVIDER_NAMES.items()}


def _short_provider(value: object) -> object:
    """Accept onnxruntime's own names too: ``CUDAExecutionProvider`` -> ``cuda``."""
    if isinstance(value, str):
        return _SHORT_NAMES.get(value.strip().lower(), value.strip().lower())
    return value


Provider = Annotated[OnnxProvider, BeforeValidator(_short_provider)]
Threads = Annotated[int, Field(ge=1, le=64)]
OptionValue = str | int | float | bool


class OnnxRuntimeConfig(Section):
    providers: list[Provider] = Field(
        default_factory=lambda: list[OnnxProvider](["cpu"]),
        max_length=8,
        description=(
            "onnxruntime execution providers in order of preference (short names such as cuda, "
            "tensorrt, openvino, coreml, or onnxruntime's own CUDAExecutionProvider ...). "
            "The CPU is always the last resort; unavailable ones are skipped with one warning."
        ),
    )
    provider_options: dict[Provider, dict[str, OptionValue]] = Field(
        default_factory=dict,
        description="Options per provider, passed to onnxruntime (e.g. cuda: {device_id: 0}).",
    )
    threads: Threads = Field(
        1, description="Intra-op threads (per model) unless the model's own setting says otherwise."
    )
    optimization: Literal["disable", "basic", "extended", "all"] = Field(
        "all", description="onnxruntime graph optimization level."
    )
    exact_int8: bool = Field(
        True,
        description=(
            "Run int8 models exactly on x86 CPUs without VNNI (AVX2-only: many mini PCs, "
            "AMD before Zen 4): onnxruntime's fast u8s8 kernels there saturate 16-bit sums "
            "and the int8 models lose accuracy (measured for the VAD and command models). "
            "A little slower on those CPUs; no effect on others. false = the fast kernels."
        ),
    )


class EdgeTpuConfig(Section):
    library: str = Field(
        "libedgetpu.so.1",
        min_length=1,
        description="EdgeTPU delegate library (libedgetpu.1.dylib on macOS, edgetpu.dll on "
        "Windows).",
    )
    device: str | None = Field(
        None,
        description="Which EdgeTPU: 'usb', 'pci', 'usb:0', 'pci:1'; null = the first found.",
    )


class GpuDelegateConfig(Section):
    library: str = Field(
        "libtensorflowlite_gpu_delegate.so",
        min_length=1,
        description="LiteRT GPU delegate library (built for the board; not shipped in wheels).",
    )
    options: dict[str, OptionValue] = Field(
        default_factory=dict, description="Options passed to the GPU delegate."
    )


class TfliteRuntimeConfig(Section):
    delegates: list[TfliteDelegate] = Field(
        default_factory=list,
        max_length=4,
        description=(
            "LiteRT delegates to try, in order (edgetpu, gpu); empty = CPU. A delegate that "
            "cannot load is skipped with one warning and the model runs on the CPU."
        ),
    )
    threads: Threads = Field(
        1, description="CPU (XNNPACK) threads unless the model's own setting says otherwise."
    )
    xnnpack: bool = Field(
        True, description="Use LiteRT's default XNNPACK CPU delegate (false: reference kernels)."
    )
    edgetpu: EdgeTpuConfig = Field(
        default_factory=EdgeTpuConfig, description="EdgeTPU (Coral) delegate."
    )
    gpu: GpuDelegateConfig = Field(default_factory=GpuDelegateConfig, description="GPU delegate.")


class ModelRuntimeConfig(Section):
    providers: list[Provider] | None = Field(
        None, max_length=8, description="onnx models: providers for this model only."
    )
    delegates: list[TfliteDelegate] | None = Field(
        None, max_length=4, description="tflite models: delegates for this model only."
    )
    threads: Threads | None = Field(None, description="Threads for this model only.")
    warmup: bool | None = Field(None, description="Warm-up inference at load for this model.")


class RuntimesConfig(Section):
    onnx: OnnxRuntimeConfig = Field(
        default_factory=OnnxRuntimeConfig, description="onnxruntime (.onnx models)."
    )
    tflite: TfliteRuntimeConfig = Field(
        default_factory=TfliteRuntimeConfig, description="LiteRT (.tflite models)."
    )
    warmup: bool = Field(
        True,
        description="Run one inference on zeros at load, so the first real frame is not slow "
        "and a model that cannot run is rejected before it replaces a working one.",
    )
    models: dict[str, ModelRuntimeConfig] = Field(
        default_factory=dict,
        description="Per-model overrides, keyed by model name in the store.",
    )
