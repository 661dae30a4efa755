"""Unroll ODE blocks into a static graph for export.

``unroll(model, solver)`` returns a plain ``nn.Module`` in which every ODE block is integrated by a Python loop over a
constant tuple of (t, dt) pairs taken from a fixed-step solver. Tracing it records a fixed conv graph: no torchdiffeq,
no ``.item()``, no data-dependent control flow. The unrolled module shares its parameters with ``model``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from realtime.models._base import Generator, SequentialGenerator, run_layers
from realtime.models.nijigan import ODEBlock
from realtime.solvers import FixedStepSolver, Solver, parse_solver


class UnrolledODEBlock(nn.Module):
    """One ODE block integrated over a constant grid; ``grid`` and ``step`` are Python constants, not tensors."""

    def __init__(self, odefunc: nn.Module, solver: FixedStepSolver) -> None:
        super().__init__()
        self.odefunc = odefunc
        ts = solver.timesteps()
        self.grid: tuple[tuple[float, float], ...] = tuple((a, b - a) for a, b in zip(ts[:-1], ts[1:]))
        self.step = type(solver).step
        self.method = solver.spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for t, dt in self.grid:
            x = self.step(self.odefunc, t, dt, x)
        return x

    def extra_repr(self) -> str:
        return f"solver={self.method}"


class UnrolledGenerator(nn.Module):
    """A CUT-style generator as one flat ``nn.Sequential`` with ODE blocks unrolled."""

    def __init__(self, model: SequentialGenerator, solver: FixedStepSolver | None) -> None:
        super().__init__()
        layers = []
        for layer in model.model:
            if isinstance(layer, ODEBlock):
                assert solver is not None
                layer = UnrolledODEBlock(layer.odefunc, solver)
            layers.append(layer)
        self.model = nn.Sequential(*layers)
        self.size_multiple = model.size_multiple
        self.family = model.family
        self.solver_spec = solver.spec if solver is not None else None
        self.output = model._output  # a Python-level branch on the config: constant under tracing
        self.skips = dict(getattr(model, "skips", {}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(x, run_layers(self.model, x, skips=self.skips))


def _has_ode(model: nn.Module) -> bool:
    return any(isinstance(m, ODEBlock) for m in model.modules())


def unroll(model: Generator, solver: "str | Solver | None" = None) -> nn.Module:
    """A static-graph, eval-mode version of ``model`` for tracing and export.

    Args:
        model: Any rt-anime generator.
        solver: Fixed-step solver for the ODE blocks (``"rk4:1"``…). Defaults to the model's own solver, which must
            then be fixed-step. Ignored for generators without ODE blocks, which are static already.

    Raises:
        ValueError: The solver is adaptive (its step count depends on the data, so it cannot become a static graph).
    """
    if not _has_ode(model):
        return model.eval()
    chosen = parse_solver(solver) if solver is not None else getattr(model, "solver", None)
    if not isinstance(chosen, FixedStepSolver):
        spec = getattr(chosen, "spec", chosen)
        raise ValueError(f"cannot unroll with solver {spec!r}: adaptive solvers have a data-dependent number of steps; "
                         "pass a fixed-step solver such as 'euler:1', 'midpoint:1' or 'rk4:1'")
    if not isinstance(model, SequentialGenerator):
        raise TypeError(f"unroll supports CUT-style generators with ODE blocks, got {type(model).__name__}")
    return UnrolledGenerator(model, chosen).eval()
