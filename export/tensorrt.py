"""TensorRT export through torch-tensorrt: static shape per resolution, fp16 or fp32, with an engine cache.

Optional and GPU-only: ``torch_tensorrt`` is imported lazily and a clear error names the ``gpu`` extra when it is
missing. Engines are specific to one input shape, precision, TensorRT version and GPU model, so the cache key hashes
all of them together with the model weights; a hit skips the (minutes-long) engine build.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Literal

import torch

from realtime.errors import RtAnimeError, require
from realtime._fileio import write_atomic
from realtime.models._base import Generator

from ._common import ExportReport, check_shape, compare, model_fingerprint, parity_input
from .unroll import unroll

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "fp16"]
PRECISIONS: tuple[str, ...] = Precision.__args__  # type: ignore[attr-defined]
# fp16 engines are checked by PSNR: half precision cannot meet a 1e-4 max-abs bound, yet must look the same.
FP16_MIN_PSNR_DB = 40.0
FP32_ATOL = 1e-3


def default_cache_dir() -> Path:
    return Path(os.environ.get("RT_ANIME_CACHE", Path.home() / ".cache" / "rt-anime")) / "trt-engines"


def engine_cache_key(model: Generator, *, shape: tuple[int, ...], precision: str, solver_spec: str | None,
                     trt_version: str, gpu_name: str) -> str:
    """Hash of everything an engine depends on (model weights and config, shape, precision, TensorRT, GPU)."""
    described = {"shape": list(shape), "precision": precision, "solver": solver_spec, "tensorrt": trt_version,
                 "gpu": gpu_name, "family": model.family, "config": model.config_dict()}
    return hashlib.sha256(model_fingerprint(model, described).encode()).hexdigest()[:32]


def _require_cuda() -> None:
    if not torch.cuda.is_available():
        raise RtAnimeError("TensorRT export needs a CUDA GPU, and torch sees none (torch.cuda.is_available() is False)")


def export_tensorrt(model: Generator, path: "str | Path", *, height: int, width: int, batch: int = 1, solver=None,
                    precision: Precision = "fp16", cache_dir: "str | Path | None" = None) -> ExportReport:
    """Build (or fetch from the cache) a TensorRT engine for one input shape and save it as TorchScript.

    The saved file loads with ``torch.jit.load`` once ``torch_tensorrt`` is imported. Parity is checked on the GPU:
    fp32 by max abs error (≤ 1e-3), fp16 by PSNR (≥ 40 dB).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"`precision` {precision!r} is not supported; expected one of {PRECISIONS}")
    shape = check_shape(height, width, batch, model.size_multiple)
    _require_cuda()
    torch_tensorrt = require("torch_tensorrt", extra="gpu", feature="TensorRT export")
    start = time.perf_counter()
    device = torch.device("cuda")
    static = unroll(model, solver).to(device).eval()
    example = parity_input(shape, seed=1).to(device)
    trt_version = getattr(torch_tensorrt, "__version__", "unknown")
    try:
        import tensorrt

        trt_version = f"{trt_version}/trt{tensorrt.__version__}"
    except ImportError:
        pass
    key = engine_cache_key(model, shape=shape, precision=precision, solver_spec=getattr(static, "solver_spec", None),
                           trt_version=trt_version, gpu_name=torch.cuda.get_device_name(device))
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    cached = cache / f"{key}.ts"
    if cached.exists():
        logger.info("TensorRT engine cache hit: %s", cached)
        engine = torch.jit.load(str(cached), map_location=device)
    else:
        logger.info("building TensorRT engine for %s %s (cache miss, key %s)", shape, precision, key)
        dtypes = {torch.float16, torch.float32} if precision == "fp16" else {torch.float32}
        engine = torch_tensorrt.compile(static, ir="dynamo", inputs=[torch_tensorrt.Input(shape, dtype=torch.float32)],
                                        enabled_precisions=dtypes)
        tmp = cache / f".{key}.{os.getpid()}.tmp"
        torch_tensorrt.save(engine, str(tmp), output_format="torchscript", inputs=[example])
        os.replace(tmp, cached)
        (cache / f"{key}.json").write_text(json.dumps({"shape": shape, "precision": precision,
                                                       "tensorrt": trt_version, "family": model.family}))
        engine = torch.jit.load(str(cached), map_location=device)
    check = parity_input(shape, seed=2).to(device)
    with torch.no_grad():
        reference = static(check)
        out = engine(check)
    err, psnr = compare(reference, out)
    if precision == "fp16" and psnr < FP16_MIN_PSNR_DB or precision == "fp32" and err > FP32_ATOL:
        raise RuntimeError(f"TensorRT {precision} engine parity failed: max abs err {err:.3e}, PSNR {psnr:.1f} dB")
    write_atomic(Path(path), lambda tmp: shutil.copyfile(cached, tmp))
    return ExportReport(path=Path(path), format="tensorrt", input_shape=shape, max_abs_err=err, psnr_db=psnr,
                        dynamic=False, seconds=time.perf_counter() - start)
