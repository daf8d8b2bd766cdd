"""onnxruntime back-end: execution providers from config, the CPU as the last resort."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from agent.config.runtimes import ORT_PROVIDER_NAMES, OnnxRuntimeConfig
from agent.errors import RuntimeBackendError
from agent.runtimes.base import Array, RuntimeOptions, TensorSpec

_LOGGER = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
_OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def _dims(shape: list[object]) -> tuple[int, ...]:
    # Symbolic dims (None / "batch") are reported as -1.
    return tuple(d if isinstance(d, int) else -1 for d in shape)


def _import_ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as err:  # pragma: no cover - onnxruntime is a core dependency
        raise RuntimeBackendError("onnxruntime is not installed: pip install onnxruntime") from err
    return ort


def plan_providers(
    cfg: OnnxRuntimeConfig, available: list[str]
) -> tuple[list[tuple[str, dict[str, str]]], list[str]]:
    """The providers to ask onnxruntime for (with options), and the wanted ones it lacks.

    Asking onnxruntime for a provider it was not built with only earns a warning from it, so
    those are left out here and reported by the caller in one line.
    """
    chosen: list[tuple[str, dict[str, str]]] = []
    missing: list[str] = []
    for short in dict.fromkeys(cfg.providers):  # keep order, drop repeats
        name = ORT_PROVIDER_NAMES[short]
        if name not in available:
            missing.append(name)
            continue
        opts = {k: str(v) for k, v in cfg.provider_options.get(short, {}).items()}
        chosen.append((name, opts))
    if all(name != CPU for name, _ in chosen):
        chosen.append((CPU, {}))
    return chosen, missing


# On x86 without VNNI onnxruntime multiplies u8 activations by s8 weights with an instruction
# that saturates 16-bit pair sums (vpmaddubsw); this option makes it use u8u8 kernels there,
# which do not. Other CPUs ignore it.
EXACT_INT8 = ("session.x64quantprecision", "1")


class OnnxSession:
    """One onnxruntime InferenceSession. ``backend`` names the provider that runs it."""

    def __init__(self, path: Path, options: RuntimeOptions | None = None) -> None:
        options = options or RuntimeOptions()
        cfg = options.onnx
        ort = _import_ort()
        label = options.label or path.name
        self.threads = options.threads or cfg.threads
        self.warmup_ms: float | None = None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        if self.threads > 1:
            # The agent's models run now and then, not back to back: idle pool threads that
            # spin waiting for the next run would only burn CPU.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        if cfg.exact_int8:
            opts.add_session_config_entry(*EXACT_INT8)
        opts.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, _OPT_LEVELS[cfg.optimization]
        )
        chosen, missing = plan_providers(cfg, list(ort.get_available_providers()))
        try:
            self._sess = self._create(ort, path, opts, chosen)
        except RuntimeBackendError:
            if [name for name, _ in chosen] == [CPU]:
                raise
            # A provider that is built in but cannot start (no driver, no device) may fail
            # the whole session rather than fall back by itself.
            missing += [name for name, _ in chosen if name != CPU]
            chosen = [(CPU, {})]
            self._sess = self._create(ort, path, opts, chosen)
        actual = list(self._sess.get_providers())
        # onnxruntime drops a provider that fails to initialise and carries on without it.
        missing += [name for name, _ in chosen if name not in actual and name not in missing]
        self.provider = actual[0] if actual else CPU
        self.backend = f"onnxruntime/{self.provider}"
        if missing:
            _LOGGER.warning(
                "%s: onnxruntime execution provider(s) %s not available (this onnxruntime has "
                "%s); running on %s. Install the matching onnxruntime build (e.g. "
                "onnxruntime-gpu, onnxruntime-openvino) or change runtimes.onnx.providers",
                label,
                ", ".join(missing),
                ", ".join(ort.get_available_providers()),
                self.provider,
            )
        self.inputs = [TensorSpec(i.name, _dims(i.shape), i.type) for i in self._sess.get_inputs()]
        self.outputs = [
            TensorSpec(o.name, _dims(o.shape), o.type) for o in self._sess.get_outputs()
        ]
        self._names = [o.name for o in self.outputs]
        _LOGGER.debug("loaded %s with %s (%d threads)", label, self.backend, self.threads)

    @staticmethod
    def _create(
        ort: Any, path: Path, opts: Any, providers: list[tuple[str, dict[str, str]]]
    ) -> Any:
        try:
            return ort.InferenceSession(
                str(path),
                sess_options=opts,
                providers=[name for name, _ in providers],
                provider_options=[o for _, o in providers],
            )
        except Exception as err:  # onnxruntime raises its own untyped errors
            raise RuntimeBackendError(f"onnxruntime cannot load {path.name}: {err}") from err

    def run(self, feeds: dict[str, Array]) -> dict[str, Array]:
        values = self._sess.run(self._names, feeds)
        return {n: np.asarray(v) for n, v in zip(self._names, values, strict=True)}
