"""TorchScript export by tracing the unrolled generator."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch

from realtime._fileio import write_atomic
from realtime.models._base import Generator

from ._common import ExportReport, check_shape, compare, parity_input
from .unroll import unroll


def trace(model: "Generator | torch.nn.Module", example: torch.Tensor, *, solver=None,
          freeze: bool = True) -> torch.jit.ScriptModule:
    """Trace ``unroll(model, solver)`` (or an already unrolled module) on ``example``.

    ``freeze`` inlines the weights as constants so the JIT can fold and fuse them (conv + add/ReLU on CPU).
    """
    static = unroll(model, solver)
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # The unrolled graph has no data-dependent control flow, so the tracer's generic warnings do not apply.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(static, example, check_trace=False)
    traced = traced.eval()
    return torch.jit.freeze(traced) if freeze else traced


def export_torchscript(model: Generator, path: "str | Path", *, height: int, width: int, batch: int = 1,
                       solver=None, freeze: bool = True, atol: float = 1e-4) -> ExportReport:
    """Trace, save and reload the generator, and check the reloaded module against eager execution.

    Raises:
        RuntimeError: Parity is worse than ``atol`` (the file is not written).
    """
    start = time.perf_counter()
    shape = check_shape(height, width, batch, model.size_multiple)
    static = unroll(model, solver)
    example = parity_input(shape, seed=1)
    traced = trace(model, example, solver=solver, freeze=freeze)
    path = Path(path)
    check = parity_input(shape, seed=2)
    with torch.no_grad():
        reference = static(check)
    outputs: list[torch.Tensor] = []

    # Save to a temporary file, reload from it and check before the file appears at `path`.
    def write(tmp: str) -> None:
        torch.jit.save(traced, tmp)
        with torch.no_grad():
            outputs.append(torch.jit.load(tmp)(check))
        err, _ = compare(reference, outputs[-1])
        if not err <= atol:
            raise RuntimeError(f"TorchScript export parity failed: max abs err {err:.3e} > {atol:g}")

    write_atomic(path, write)
    err, psnr = compare(reference, outputs[-1])
    return ExportReport(path=path, format="torchscript", input_shape=shape, max_abs_err=err, psnr_db=psnr,
                        dynamic=False, seconds=time.perf_counter() - start)
