"""Fixed-step solvers against torchdiffeq, and the solver spec grammar."""

import math

import pytest
import torch
import torchdiffeq

from realtime.solvers import RK4, AdaptiveSolver, Euler, Midpoint, parse_solver, solver_from_dict


class Dynamics(torch.nn.Module):
    """A non-linear, time-dependent system, so that a wrong stage time or weight shows up."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(6, 6) * 0.5)

    def forward(self, t, y):
        t = torch.as_tensor(t, dtype=y.dtype)
        return torch.tanh(y @ self.w) * torch.cos(3 * t) - 0.3 * y * t


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
@pytest.mark.parametrize("steps", [1, 2, 5])
@pytest.mark.parametrize("span", [(0.0, 1.0), (0.5, 2.0)])
def test_fixed_solver_matches_torchdiffeq(method, steps, span):
    f = Dynamics()
    y0 = torch.randn(4, 6)
    solver = parse_solver(f"{method}:{steps},t0={span[0]},t1={span[1]}")
    grid = torch.tensor(solver.timesteps())
    with torch.no_grad():
        ours = solver.integrate(f, y0)
        ref = torchdiffeq.odeint(f, y0, grid, method=method)[-1]
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_rk4_is_the_three_eighths_rule_not_classic():
    # For dy/dt = t^4 one step of the 3/8 rule and of classic RK4 give different, known values.
    f = lambda t, y: torch.full_like(y, float(t) ** 4)  # noqa: E731
    y = RK4(steps=1).integrate(f, torch.zeros(1))
    three_eighths = (0 + 3 * (1 / 3) ** 4 + 3 * (2 / 3) ** 4 + 1) / 8
    classic = (0 + 4 * 0.5 ** 4 + 1) / 6
    assert y.item() == pytest.approx(three_eighths, abs=1e-7)
    assert abs(y.item() - classic) > 1e-3


def test_orders_of_accuracy():
    f = lambda t, y: -y  # noqa: E731
    exact = math.exp(-1)
    errs = {cls.method: [abs(cls(steps=n).integrate(f, torch.ones(1, dtype=torch.float64)).item() - exact)
                         for n in (4, 8)] for cls in (Euler, Midpoint, RK4)}
    for method, order in (("euler", 1), ("midpoint", 2), ("rk4", 4)):
        assert math.log2(errs[method][0] / errs[method][1]) == pytest.approx(order, abs=0.3)


def test_timesteps_are_constant_python_floats():
    ts = RK4(steps=3, t0=0.0, t1=1.5).timesteps()
    assert isinstance(ts, tuple) and all(type(t) is float for t in ts)
    assert ts[0] == 0.0 and ts[-1] == 1.5 and len(ts) == 4


def test_adaptive_matches_analytic_solution():
    y = AdaptiveSolver(rtol=1e-7, atol=1e-9).integrate(lambda t, y: -y, torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(y, torch.full((3,), math.exp(-1), dtype=torch.float64), atol=1e-7, rtol=0)


@pytest.mark.parametrize("spec, expected", [
    ("euler:1", Euler(steps=1)), ("rk4:2", RK4(steps=2)), ("midpoint", Midpoint(steps=1)),
    ("RK4:steps=3,t1=2", RK4(steps=3, t1=2.0)),
    ("dopri5", AdaptiveSolver()), ("dopri5:rtol=1e-5,atol=1e-6", AdaptiveSolver(rtol=1e-5, atol=1e-6)),
])
def test_parse(spec, expected):
    solver = parse_solver(spec)
    assert solver == expected
    assert parse_solver(solver.spec) == solver
    assert solver_from_dict(solver.to_dict()) == solver


@pytest.mark.parametrize("spec, message", [
    ("rk5:1", "unknown method 'rk5'"), ("rk4:0", "positive integer"), ("rk4:two", "cannot read 'two'"),
    ("euler:1,rtol=1e-3", "only apply to adaptive"), ("dopri5:4", "cannot read '4'"),
    ("dopri5:rtol=-1", "`rtol` must be a positive number"), ("", "non-empty"), ("rk4:1,foo=2", "unknown key 'foo'"),
])
def test_parse_errors_name_the_problem(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_solver(spec)


def test_nfe():
    assert Euler(steps=2).nfe == 2 and Midpoint(steps=1).nfe == 2 and RK4(steps=2).nfe == 8
    assert AdaptiveSolver().nfe is None
