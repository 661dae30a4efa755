"""ONNX export (torch.export-based exporter, opset ≥ 18) with checker and onnxruntime parity."""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from pathlib import Path

import torch

from realtime.errors import require
from realtime._fileio import write_atomic
from realtime.models._base import Generator

from ._common import ExportReport, check_shape, compare, parity_input
from .unroll import unroll

logger = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "stylized"


@contextlib.contextmanager
def _quiet_torch_onnx():
    # torch's exporter logs a warning per torchvision op it cannot register; rt-anime never uses torchvision.
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        yield
    finally:
        registration.setLevel(level)


def ort_session(path: "str | Path", *, threads: int | None = None):
    """An onnxruntime CPU session with graph optimisations on (``threads`` None = ORT's default)."""
    ort = require("onnxruntime", extra=None, feature="ONNX inference")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def export_onnx(model: Generator, path: "str | Path", *, height: int, width: int, batch: int = 1, solver=None,
                dynamic: bool = False, opset: int = 18, atol: float = 1e-4) -> ExportReport:
    """Export ``unroll(model, solver)`` to ONNX, run ``onnx.checker`` and compare onnxruntime with eager.

    Args:
        model: The generator.
        path: Output ``.onnx`` file (weights embedded; written atomically, only if parity holds).
        height: Export height (a multiple of ``model.size_multiple``).
        width: Export width.
        batch: Export batch size.
        solver: Fixed-step solver for ODE blocks; default the model's own.
        dynamic: Make N, H and W symbolic. Parity is then also checked at a second size.
        opset: ONNX opset; the torch.export-based exporter implements 18 and newer.
        atol: Largest acceptable max abs difference between onnxruntime and eager.
    """
    onnx = require("onnx", extra=None, feature="ONNX export")
    if opset < 18:
        raise ValueError(f"`opset` {opset} is not supported: torch's ONNX exporter emits opset 18 or newer")
    start = time.perf_counter()
    shape = check_shape(height, width, batch, model.size_multiple)
    static = unroll(model, solver)
    example = parity_input(shape, seed=1)
    dynamic_shapes = None
    if dynamic:
        auto = torch.export.Dim.AUTO
        dynamic_shapes = {"x": {0: auto, 2: auto, 3: auto}}
    checks = [parity_input(shape, seed=2)]
    if dynamic:
        m = model.size_multiple
        checks.append(parity_input((batch + 1, 3, height + 2 * m, width + m), seed=3))
    with torch.no_grad():
        references = [static(x) for x in checks]
    results: list[tuple[float, float]] = []

    def write(tmp: str) -> None:
        # The exporter narrates every phase on stdout; keep it for the log, not the user's terminal.
        buffer = io.StringIO()
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(buffer), _quiet_torch_onnx():
            warnings.simplefilter("ignore")
            torch.onnx.export(static, (example,), tmp, dynamo=True, opset_version=opset, external_data=False,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_shapes=dynamic_shapes)
        logger.debug("torch.onnx.export: %s", buffer.getvalue())
        onnx.checker.check_model(onnx.load(tmp), full_check=True)
        session = ort_session(tmp)
        for x, ref in zip(checks, references):
            out = torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0])
            results.append(compare(ref, out))
            if not results[-1][0] <= atol:
                raise RuntimeError(f"ONNX export parity failed at input {tuple(x.shape)}: max abs err "
                                   f"{results[-1][0]:.3e} > {atol:g}")

    write_atomic(Path(path), write)
    err = max(r[0] for r in results)
    psnr = min(r[1] for r in results)
    return ExportReport(path=Path(path), format="onnx", input_shape=shape, max_abs_err=err, psnr_db=psnr,
                        dynamic=dynamic, seconds=time.perf_counter() - start)
