"""What every exporter shares: the report it returns, parity inputs, and model fingerprints for caches."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn



@dataclass(frozen=True)
class ExportReport:
    """The outcome of an export, with the parity measured against the eager (unrolled) model.

    Attributes:
        path: The written file.
        format: ``torchscript``, ``onnx`` or ``tensorrt``.
        input_shape: (N, 3, H, W) the export was made for.
        max_abs_err: Max |exported − eager| on the parity input.
        psnr_db: PSNR of exported vs eager output (both mapped to [0, 1]); ``inf`` when identical.
        dynamic: Whether H and W may vary at run time.
        seconds: Wall time of export plus check.
    """

    path: Path
    format: str
    input_shape: tuple[int, int, int, int]
    max_abs_err: float
    psnr_db: float
    dynamic: bool
    seconds: float

    def summary(self) -> str:
        n, c, h, w = self.input_shape
        shape = f"{n}x{c}x{h}x{w}" + (" (dynamic H, W)" if self.dynamic else "")
        psnr = "inf" if math.isinf(self.psnr_db) else f"{self.psnr_db:.1f}"
        return (f"{self.format}: {self.path} input {shape}; parity vs eager: max abs err {self.max_abs_err:.2e}, "
                f"PSNR {psnr} dB ({self.seconds:.1f} s)")


def check_shape(height: int, width: int, batch: int, multiple: int) -> tuple[int, int, int, int]:
    for name, value in (("height", height), ("width", width), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
    if height % multiple or width % multiple:
        raise ValueError(f"`height`x`width` {height}x{width}: this model needs multiples of {multiple}; the pipeline "
                         "pads frames to the multiple, so export at the padded size")
    return (batch, 3, height, width)


def parity_input(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """A smooth image-like input in [-1, 1] (upsampled noise), deterministic."""
    g = torch.Generator().manual_seed(seed)
    n, c, h, w = shape
    coarse = torch.rand(n, c, max(1, h // 8), max(1, w // 8), generator=g) * 2 - 1
    fine = torch.rand(n, c, h, w, generator=g) * 0.2 - 0.1
    x = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False) + fine
    return x.clamp(-1, 1)


def compare(reference: torch.Tensor, other: torch.Tensor) -> tuple[float, float]:
    """(max abs error, PSNR in dB with images mapped from [-1, 1] to [0, 1])."""
    diff = (reference.float() - other.float())
    mse = float(((diff / 2) ** 2).mean())
    psnr = math.inf if mse == 0 else 10 * math.log10(1.0 / mse)
    return float(diff.abs().max()), psnr


def model_fingerprint(model: nn.Module, extra: dict | None = None) -> str:
    """sha256 over parameters, buffers and an optional JSON-able description (for engine cache keys)."""
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps(extra or {}, sort_keys=True, default=str).encode())
    return h.hexdigest()
