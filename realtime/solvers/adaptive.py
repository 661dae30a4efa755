"""Adaptive-step solvers through torchdiffeq: for training (as in the NijiGAN paper) and as the accuracy reference.

They cannot be exported: torchdiffeq's step-size control is a Python ``while`` loop on tensor values with ``.item()``
calls, so a trace would freeze one input's step count. Export goes through the fixed-step solvers instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Literal

import torch

AdaptiveMethod = Literal["dopri5", "dopri8", "bosh3", "tsit5", "adaptive_heun", "fehlberg2"]
ADAPTIVE_METHODS: tuple[str, ...] = AdaptiveMethod.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True, kw_only=True)
class AdaptiveSolver:
    """An embedded Runge-Kutta pair with error control, run by ``torchdiffeq.odeint``.

    Args:
        method: torchdiffeq method name.
        rtol: Relative tolerance.
        atol: Absolute tolerance.
        t0: Start of the integration interval.
        t1: End of the integration interval.
        adjoint: Backpropagate with the adjoint method (O(1) memory in the number of steps, slower). Needs the
            dynamics to be an ``nn.Module``.
    """

    method: AdaptiveMethod = "dopri5"
    rtol: float = 1e-3
    atol: float = 1e-3
    t0: float = 0.0
    t1: float = 1.0
    adjoint: bool = False

    adaptive: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.method not in ADAPTIVE_METHODS:
            raise ValueError(f"`method` {self.method!r} is not an adaptive solver; expected one of {ADAPTIVE_METHODS}")
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"`{name}` must be a positive number, got {value!r}")
        if not self.t1 != self.t0:
            raise ValueError(f"`t0` and `t1` must differ, got t0={self.t0!r}, t1={self.t1!r}")

    @property
    def nfe(self) -> None:
        """Unknown in advance: the step count depends on the data."""
        return None

    def integrate(self, f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        import torchdiffeq  # imported here so that exported/inference-only code never needs it

        t = torch.tensor([self.t0, self.t1], dtype=torch.float64 if y.dtype == torch.float64 else torch.float32)
        if self.adjoint:
            if not isinstance(f, torch.nn.Module):
                raise TypeError("`adjoint=True` needs the dynamics to be an nn.Module so its parameters are known")
            out = torchdiffeq.odeint_adjoint(f, y, t, rtol=self.rtol, atol=self.atol, method=self.method)
        else:
            out = torchdiffeq.odeint(f, y, t, rtol=self.rtol, atol=self.atol, method=self.method)
        return out[-1]

    @property
    def spec(self) -> str:
        text = f"{self.method}:rtol={self.rtol:g},atol={self.atol:g}"
        if (self.t0, self.t1) != (0.0, 1.0):
            text += f",t0={self.t0:g},t1={self.t1:g}"
        if self.adjoint:
            text += ",adjoint=1"
        return text

    def to_dict(self) -> dict:
        return {"method": self.method, "rtol": self.rtol, "atol": self.atol, "t0": self.t0, "t1": self.t1,
                "adjoint": self.adjoint}
