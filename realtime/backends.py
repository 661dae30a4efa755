"""Inference backends: one class per runtime behind one call signature, chosen by name.

A backend maps a float32 NCHW batch in [-1, 1] (already padded to the model's size multiple) to the stylized batch.
Graph backends (TorchScript, ONNX, TensorRT) compile per input shape on first use and keep the result, so a video
pays the compile once; ONNX files and TensorRT engines are also cached on disk, keyed by the model's hash.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Protocol

import torch

from .errors import RtAnimeError
from .models._base import Generator

logger = logging.getLogger(__name__)

BackendName = Literal["torch", "torchscript", "onnx", "tensorrt"]
BACKEND_NAMES: tuple[str, ...] = BackendName.__args__  # type: ignore[attr-defined]


def cache_root() -> Path:
    return Path(os.environ.get("RT_ANIME_CACHE", Path.home() / ".cache" / "rt-anime"))


def resolve_device(name: str, *, param: str = "device") -> torch.device:
    """``auto`` → CUDA when torch sees a GPU, else CPU; anything else must name a torch device that exists here.
    ``param`` is the option or config key the name came from, for the error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"{param} {name!r} is not a torch device; allowed: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RtAnimeError(f"{param} {name!r}: torch sees no CUDA GPU here; use auto or cpu")
    return device


PRECISION_CHOICES: tuple[str, ...] = ("auto", "fp32", "fp16")


def resolve_precision(name: str, device: torch.device, *, param: str = "--precision") -> str:
    """``auto`` → fp16 on CUDA (1.24-1.37x faster than TF32 on an H200, outputs within 0.002; BENCHMARKS.md, GPU) and
    fp32 elsewhere; an explicit fp16 needs CUDA, where CPUs run half precision 10-50x slower."""
    if name not in PRECISION_CHOICES:
        raise ValueError(f"{param} {name!r} is not supported; allowed: {', '.join(PRECISION_CHOICES)}")
    if name == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if name == "fp16" and device.type != "cuda":
        raise RtAnimeError(f"{param} fp16 needs a CUDA device, and the model runs on {device}: CPUs run half "
                           "precision 10-50x slower (allowed here: auto, fp32)")
    return name


@dataclass(frozen=True, kw_only=True)
class BackendConfig:
    """How to run the generator.

    Args:
        name: ``torch`` (eager; any solver), ``torchscript`` (traced, frozen), ``onnx`` (onnxruntime),
            ``tensorrt`` (CUDA only). The graph backends need a fixed-step solver.
        device: ``cpu`` or ``cuda[:i]``; ``auto`` picks CUDA when torch sees one.
        precision: ``fp16`` only on CUDA (half precision is 10–50× slower than fp32 on CPUs without native support).
        channels_last: NHWC memory layout for the torch backends. Off by default: whole CUT-style networks ran as fast
            or faster in NCHW on CPU, and 1.5-1.8x slower in NHWC fp16 on an H200 (BENCHMARKS.md, GPU).
        threads: CPU threads for torch and onnxruntime (None: leave torch's setting).
    """

    name: BackendName = "torch"
    device: str = "auto"
    precision: Literal["fp32", "fp16"] = "fp32"
    channels_last: bool = False
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.name not in BACKEND_NAMES:
            raise ValueError(f"backend {self.name!r} is not supported; expected one of {', '.join(BACKEND_NAMES)}")
        if self.precision not in ("fp32", "fp16"):
            raise ValueError(f"precision {self.precision!r} is not supported; expected fp32 or fp16")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")

    def resolved_device(self) -> torch.device:
        return resolve_device(self.device)


class Backend(Protocol):
    name: str
    device: torch.device

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


class _PerShape:
    """Compiles lazily per input shape and remembers the result."""

    def __init__(self, build: Callable[[tuple[int, ...]], Callable[[torch.Tensor], torch.Tensor]]) -> None:
        self._build = build
        self._compiled: dict[tuple[int, ...], Callable[[torch.Tensor], torch.Tensor]] = {}

    def get(self, shape: tuple[int, ...]) -> Callable[[torch.Tensor], torch.Tensor]:
        fn = self._compiled.get(shape)
        if fn is None:
            fn = self._compiled[shape] = self._build(shape)
        return fn


class TorchBackend:
    name = "torch"

    def __init__(self, model: Generator, config: BackendConfig) -> None:
        import export

        self.device = config.resolved_device()
        static = getattr(model, "is_static", lambda: True)()
        # Fixed-step models run unrolled (no solver dispatch); adaptive ones run as they are.
        module = export.unroll(model) if static else model.eval()
        self.dtype = torch.float16 if config.precision == "fp16" and self.device.type == "cuda" else torch.float32
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        if self.device.type != "cpu" or self.dtype != torch.float32 or config.channels_last:
            # unroll() shares parameters with the caller's model, and .to() converts them in place: copy first so
            # building a backend never moves or re-lays-out the user's model.
            module = copy.deepcopy(module)
        self.module = module.to(self.device, self.dtype, memory_format=self.memory_format)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.dtype, non_blocking=True).contiguous(memory_format=self.memory_format)
        with torch.inference_mode():
            return self.module(x).float()


class TorchScriptBackend(TorchBackend):
    name = "torchscript"

    def __init__(self, model: Generator, config: BackendConfig) -> None:
        super().__init__(model, config)
        import export

        def build(shape: tuple[int, ...]):
            example = torch.zeros(shape, device=self.device, dtype=self.dtype).contiguous(
                memory_format=self.memory_format)
            logger.info("tracing %s for input %s", model.family, shape)
            # Freezing folds conv + add/ReLU for the CPU's oneDNN kernels; on CUDA it bought nothing measurable and
            # its conv folding hit an internal assert in torch 2.11 on the bundled NijiGAN models (BENCHMARKS.md, GPU).
            return export.trace(self.module, example, freeze=self.device.type == "cpu")

        self._graphs = _PerShape(build)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.dtype, non_blocking=True).contiguous(memory_format=self.memory_format)
        with torch.inference_mode():
            return self._graphs.get(tuple(x.shape))(x).float()


class OnnxBackend:
    name = "onnx"

    def __init__(self, model: Generator, config: BackendConfig) -> None:
        import export
        from export._common import model_fingerprint

        self.device = torch.device("cpu")
        key = model_fingerprint(model, {"family": model.family, "config": model.config_dict()})[:24]
        path = cache_root() / "onnx" / f"{model.family}-{key}.onnx"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            m = model.size_multiple
            logger.info("exporting %s to ONNX (dynamic shape) at %s", model.family, path)
            export.export_onnx(model, path, height=8 * m, width=8 * m, dynamic=True)
        self.session = export.ort_session(path, threads=config.threads)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {"image": x.detach().float().cpu().contiguous().numpy()})[0]
        return torch.from_numpy(out)


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, model: Generator, config: BackendConfig) -> None:
        import export

        self.device = config.resolved_device()
        if self.device.type != "cuda":
            raise RtAnimeError("backend 'tensorrt' needs a CUDA GPU; use --backend torch, torchscript or onnx on CPU")
        precision = config.precision

        def build(shape: tuple[int, ...]):
            n, _, h, w = shape
            path = cache_root() / "trt" / f"{model.family}-{n}x{h}x{w}-{precision}.ts"
            path.parent.mkdir(parents=True, exist_ok=True)
            export.export_tensorrt(model, path, height=h, width=w, batch=n, precision=precision)
            return torch.jit.load(str(path), map_location=self.device)

        self._engines = _PerShape(build)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, torch.float32, non_blocking=True).contiguous()
        with torch.inference_mode():
            return self._engines.get(tuple(x.shape))(x).float()


BACKENDS: dict[str, type] = {cls.name: cls for cls in (TorchBackend, TorchScriptBackend, OnnxBackend,
                                                        TensorRTBackend)}


def make_backend(model: Generator, config: BackendConfig | None = None) -> Backend:
    """Build the backend ``config.name`` for ``model``."""
    config = config or BackendConfig()
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.name != "torch" and not getattr(model, "is_static", lambda: True)():
        raise ValueError(f"backend {config.name!r} needs a fixed-step solver, but the model uses "
                         f"{model.solver.spec}; pass --solver euler:1 / rk4:1 … or use --backend torch")
    return BACKENDS[config.name](model, config)
