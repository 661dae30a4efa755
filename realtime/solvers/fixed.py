"""Fixed-step explicit Runge-Kutta solvers: a constant tuple of timesteps plus a pure step.

These are what rt-anime exports. Because ``timesteps()`` is a plain Python tuple fixed at construction, a loop over it
traces to a static conv graph (TorchScript, ONNX, TensorRT) with no ``.item()`` calls and no data-dependent control
flow. The step formulas reproduce torchdiffeq 0.2.5's ``euler``, ``midpoint`` and ``rk4`` methods on the same grid;
note that torchdiffeq's ``rk4`` is Kutta's 3/8 rule, not the classic 1/6-1/3-1/3-1/6 scheme, and we match it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import torch

Dynamics = Callable[[float, torch.Tensor], torch.Tensor]

_THIRD = 1.0 / 3.0
_TWO_THIRDS = 2.0 / 3.0


@dataclass(frozen=True, kw_only=True)
class FixedStepSolver:
    """Base of the fixed-step solvers; subclasses define ``method``, ``nfe_per_step`` and ``step``.

    Args:
        steps: Number of equal steps between ``t0`` and ``t1``.
        t0: Start of the integration interval.
        t1: End of the integration interval.
    """

    steps: int = 1
    t0: float = 0.0
    t1: float = 1.0

    method: ClassVar[str]
    nfe_per_step: ClassVar[int]
    adaptive: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"`steps` must be a positive integer for solver {self.method!r}, got {self.steps!r}")
        if not self.t1 != self.t0:
            raise ValueError(f"`t0` and `t1` must differ, got t0={self.t0!r}, t1={self.t1!r}")

    def timesteps(self) -> tuple[float, ...]:
        """The ``steps + 1`` grid points, as plain floats (constants under tracing)."""
        span = self.t1 - self.t0
        return tuple(self.t0 + span * i / self.steps for i in range(self.steps)) + (float(self.t1),)

    @property
    def nfe(self) -> int:
        """Evaluations of the dynamics per integration."""
        return self.steps * self.nfe_per_step

    @staticmethod
    def step(f: Dynamics, t: float, dt: float, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def integrate(self, f: Dynamics, y: torch.Tensor) -> torch.Tensor:
        """Integrate ``dy/dt = f(t, y)`` from ``t0`` to ``t1`` and return the final state."""
        ts = self.timesteps()
        for t_start, t_end in zip(ts[:-1], ts[1:]):
            y = self.step(f, t_start, t_end - t_start, y)
        return y

    @property
    def spec(self) -> str:
        """The short spelling accepted by :func:`realtime.solvers.parse_solver`, e.g. ``rk4:2``."""
        text = f"{self.method}:{self.steps}"
        if (self.t0, self.t1) != (0.0, 1.0):
            text += f",t0={self.t0:g},t1={self.t1:g}"
        return text

    def to_dict(self) -> dict:
        return {"method": self.method, "steps": self.steps, "t0": self.t0, "t1": self.t1}


@dataclass(frozen=True, kw_only=True)
class Euler(FixedStepSolver):
    """Forward Euler. With one step over [0, 1] an ODE block is exactly a residual block ``h + f(h)``."""

    method: ClassVar[str] = "euler"
    nfe_per_step: ClassVar[int] = 1

    @staticmethod
    def step(f: Dynamics, t: float, dt: float, y: torch.Tensor) -> torch.Tensor:
        return y + dt * f(t, y)


@dataclass(frozen=True, kw_only=True)
class Midpoint(FixedStepSolver):
    """Explicit midpoint rule (second order), as torchdiffeq's ``midpoint``."""

    method: ClassVar[str] = "midpoint"
    nfe_per_step: ClassVar[int] = 2

    @staticmethod
    def step(f: Dynamics, t: float, dt: float, y: torch.Tensor) -> torch.Tensor:
        half = 0.5 * dt
        return y + dt * f(t + half, y + half * f(t, y))


@dataclass(frozen=True, kw_only=True)
class RK4(FixedStepSolver):
    """Kutta's 3/8 rule (fourth order), which is what torchdiffeq's ``rk4`` method computes."""

    method: ClassVar[str] = "rk4"
    nfe_per_step: ClassVar[int] = 4

    @staticmethod
    def step(f: Dynamics, t: float, dt: float, y: torch.Tensor) -> torch.Tensor:
        k1 = f(t, y)
        k2 = f(t + dt * _THIRD, y + dt * k1 * _THIRD)
        k3 = f(t + dt * _TWO_THIRDS, y + dt * (k2 - k1 * _THIRD))
        k4 = f(t + dt, y + dt * (k1 - k2 + k3))
        return y + dt * (k1 + 3.0 * (k2 + k3) + k4) * 0.125


FIXED_SOLVERS: dict[str, type[FixedStepSolver]] = {cls.method: cls for cls in (Euler, Midpoint, RK4)}
