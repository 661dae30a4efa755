"""Stateless ODE solvers, kept apart from the models (as diffusers keeps schedulers apart from UNets).

A solver is a frozen value. Models hold one and call ``solver.integrate(f, y)``; exporting swaps in a fixed-step
solver whose constant ``timesteps()`` tuple makes the traced graph static. Spell a solver as a short string:

* ``euler:1``, ``midpoint:2``, ``rk4:1`` — fixed step, ``METHOD:STEPS``;
* ``dopri5``, ``dopri5:rtol=1e-5,atol=1e-5`` — adaptive, with optional tolerances;
* any of them may add ``t0=…`` / ``t1=…`` (the integration interval, default [0, 1]).
"""

from __future__ import annotations

from typing import Union

from .adaptive import ADAPTIVE_METHODS, AdaptiveSolver
from .fixed import FIXED_SOLVERS, RK4, Euler, FixedStepSolver, Midpoint

Solver = Union[FixedStepSolver, AdaptiveSolver]

__all__ = [
    "ADAPTIVE_METHODS", "FIXED_SOLVERS", "AdaptiveSolver", "Euler", "FixedStepSolver", "Midpoint", "RK4", "Solver",
    "parse_solver", "solver_from_dict", "solver_names",
]


def solver_names() -> list[str]:
    """Every method name a spec may start with."""
    return sorted(FIXED_SOLVERS) + list(ADAPTIVE_METHODS)


def _number(text: str, key: str, spec: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"solver spec {spec!r}: `{key}` must be a number, got {text!r}") from None


def parse_solver(spec: "str | Solver") -> Solver:
    """Build a solver from a spec string such as ``rk4:2`` or ``dopri5:rtol=1e-5,atol=1e-5``.

    A solver instance is returned unchanged, so callers can accept either form.
    """
    if isinstance(spec, (FixedStepSolver, AdaptiveSolver)):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"solver spec must be a non-empty string like 'rk4:2' or 'dopri5', got {spec!r}")
    method, _, rest = spec.strip().partition(":")
    method = method.lower()
    if method not in FIXED_SOLVERS and method not in ADAPTIVE_METHODS:
        raise ValueError(f"solver spec {spec!r}: unknown method {method!r}; expected one of {solver_names()}")
    fields: dict[str, object] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            if method in FIXED_SOLVERS and "steps" not in fields and key.isdigit():
                fields["steps"] = int(key)
                continue
            raise ValueError(f"solver spec {spec!r}: cannot read {item!r}; write METHOD:STEPS for fixed-step solvers "
                             "or METHOD:key=value,... (keys rtol, atol, t0, t1)")
        key = key.strip()
        if key == "steps":
            if not value.strip().isdigit():
                raise ValueError(f"solver spec {spec!r}: `steps` must be a positive integer, got {value!r}")
            fields["steps"] = int(value)
        elif key == "adjoint":
            fields["adjoint"] = value.strip().lower() in ("1", "true", "yes")
        elif key in ("rtol", "atol", "t0", "t1"):
            fields[key] = _number(value, key, spec)
        else:
            raise ValueError(f"solver spec {spec!r}: unknown key {key!r}; allowed: steps, rtol, atol, t0, t1, adjoint")
    if method in FIXED_SOLVERS:
        bad = {"rtol", "atol", "adjoint"} & fields.keys()
        if bad:
            raise ValueError(f"solver spec {spec!r}: {sorted(bad)} only apply to adaptive solvers {ADAPTIVE_METHODS}")
        return FIXED_SOLVERS[method](**fields)  # type: ignore[arg-type]
    if "steps" in fields:
        raise ValueError(f"solver spec {spec!r}: adaptive solver {method!r} takes tolerances, not a step count")
    return AdaptiveSolver(method=method, **fields)  # type: ignore[arg-type]


def solver_from_dict(data: dict) -> Solver:
    """Inverse of ``solver.to_dict()`` (the form stored in checkpoint configs)."""
    data = dict(data)
    method = data.pop("method", None)
    if method in FIXED_SOLVERS:
        return FIXED_SOLVERS[method](**data)
    if method in ADAPTIVE_METHODS:
        return AdaptiveSolver(method=method, **data)
    raise ValueError(f"solver config has unknown method {method!r}; expected one of {solver_names()}")
