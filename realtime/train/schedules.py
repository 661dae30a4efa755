"""Schedules of the Scenimefy / NijiGAN recipe: supervised-branch weight λ_sup, hDCE γ curriculum, linear LR decay.

Epochs are 1-based as in the reference trainer (``for epoch in range(epoch_count, n_epochs + n_epochs_decay + 1)``).
Every schedule also takes fractional epochs, because CPU training counts iterations: the ``*_at_iteration``
helpers turn an iteration index into ``1 + iteration / iters_per_epoch``.

Facts (``../shared/reference/models.md`` §6, papers 000 and 001):

* λ_sup(t) = cos(π/40 · (t − 1)) for t = 1 … 20 in both papers, i.e. **cos(π/2 · (t − 1)/N)** with N = 20 epochs.
  The official Scenimefy code computes ``cos(π/2 · N · (t − 1))`` = cos(10π(t − 1)) = 1 for every integer epoch, so
  its supervised branch never decays (bug 1). We implement the papers' formula.
* γ(e) = γ0 + (γ_min − γ0) · e / total with the trainer's 1-based epoch ``e`` (so the first epoch already uses
  γ0 − (γ0 − γ_min)/total); with ``step_gamma`` and e > ``step_gamma_epoch`` γ = 1 (Hneg_SRC's cityscapes setting).
* CUT's ``linear`` LR policy: factor = 1 − max(0, k + epoch_count − n_epochs)/(n_epochs_decay + 1), where k is the
  LambdaLR counter (0 during the first epoch; the scheduler steps at the end of every epoch). The rate is constant
  for ``n_epochs`` epochs and ends at 1/(n_epochs_decay + 1) of the base rate, never 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch


def _check_positive(name: str, value: float, *, integer: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ValueError(f"`{name}` must be {'an integer' if integer else 'a number'}, got {value!r}")
    if not value > 0:
        raise ValueError(f"`{name}` must be > 0, got {value!r}")


def lambda_sup(epoch: float, n_epochs: int) -> float:
    """Weight of the supervised branch at a 1-based (possibly fractional) epoch: cos(π/2 · (epoch − 1)/n_epochs).

    1 at epoch 1, cos(π/2 · (N − 1)/N) at the last integer epoch N, and 0 at the very end of training
    (fractional epoch N + 1).

    Args:
        epoch: 1-based epoch; fractional values interpolate within an epoch.
        n_epochs: Total epochs of training (Scenimefy: 20 = n_epochs + n_epochs_decay).

    Raises:
        ValueError: ``n_epochs`` is not a positive integer, or ``epoch`` is outside [1, n_epochs + 1].
    """
    _check_positive("n_epochs", n_epochs, integer=True)
    if not 1 <= epoch <= n_epochs + 1:
        raise ValueError(f"`epoch` must be in [1, {n_epochs + 1}] (1-based, n_epochs={n_epochs}), got {epoch!r}")
    return math.cos(math.pi / 2 * (epoch - 1) / n_epochs)


def lambda_sup_official(epoch: int, n_epochs: int) -> float:
    """The official Scenimefy expression ``cos(π/2 · n_epochs · (epoch − 1))``, kept only to document bug 1.

    For every integer epoch this is 1 when ``n_epochs`` is a multiple of 4 (and ±1/0 otherwise): it never decays.
    """
    return math.cos(math.pi / 2 * n_epochs * (epoch - 1))


def hdce_gamma(epoch: float, total: int, gamma0: float = 50.0, gamma_min: float = 10.0, *,
               step_gamma_epoch: float | None = None) -> float:
    """The hDCE hard-negative temperature γ of Hneg_SRC's curriculum (``--use_curriculum``).

    Args:
        epoch: Epoch as the reference trainer passes it (1-based; fractional allowed). ``epoch = 0`` gives γ0 and
            ``epoch = total`` gives ``gamma_min``.
        total: Total epochs (``n_epochs + n_epochs_decay``).
        gamma0: Starting γ (``--HDCE_gamma``).
        gamma_min: Final γ (``--HDCE_gamma_min``).
        step_gamma_epoch: With a value, γ = 1 for ``epoch > step_gamma_epoch`` (``--step_gamma``).

    Raises:
        ValueError: ``total`` or a γ is not positive, or ``epoch`` is negative.
    """
    _check_positive("total", total, integer=True)
    _check_positive("gamma0", gamma0)
    _check_positive("gamma_min", gamma_min)
    if epoch < 0:
        raise ValueError(f"`epoch` must be >= 0, got {epoch!r}")
    if step_gamma_epoch is not None and epoch > step_gamma_epoch:
        return 1.0
    return gamma0 + (gamma_min - gamma0) * epoch / total


def linear_lr_factor(epoch: float, n_epochs: int, n_epochs_decay: int, epoch_count: int = 1) -> float:
    """CUT's ``linear`` policy factor for LambdaLR counter ``epoch`` (0 during the first epoch trained).

    Args:
        epoch: LambdaLR's counter: the number of scheduler steps taken (fractional for per-iteration stepping).
        n_epochs: Epochs at the base rate (``--n_epochs``).
        n_epochs_decay: Epochs of linear decay after them (``--n_epochs_decay``).
        epoch_count: The 1-based epoch training starts (or resumes) at (``--epoch_count``).
    """
    _check_positive("n_epochs", n_epochs, integer=True)
    if isinstance(n_epochs_decay, bool) or not isinstance(n_epochs_decay, int) or n_epochs_decay < 0:
        raise ValueError(f"`n_epochs_decay` must be an integer >= 0, got {n_epochs_decay!r}")
    return 1.0 - max(0.0, epoch + epoch_count - n_epochs) / float(n_epochs_decay + 1)


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    """Epoch budget and curricula of a Scenimefy-style run (defaults: ``script/train.sh`` and the papers).

    Args:
        n_epochs: Epochs at the base learning rate.
        n_epochs_decay: Epochs of linear LR decay after them; total = ``n_epochs + n_epochs_decay``.
        epoch_count: First 1-based epoch (larger when resuming).
        gamma0: hDCE γ at the start of the curriculum.
        gamma_min: hDCE γ at the end.
        use_curriculum: ``False`` keeps γ = ``gamma0`` throughout (the reference without ``--use_curriculum``).
        step_gamma_epoch: With a value, γ drops to 1 after this epoch.
        decay_supervised: ``False`` keeps λ_sup = 1 (the reference's ``--isDecay False``).
    """

    n_epochs: int = 10
    n_epochs_decay: int = 10
    epoch_count: int = 1
    gamma0: float = 50.0
    gamma_min: float = 10.0
    use_curriculum: bool = True
    step_gamma_epoch: float | None = None
    decay_supervised: bool = True

    def __post_init__(self) -> None:
        _check_positive("n_epochs", self.n_epochs, integer=True)
        linear_lr_factor(0, self.n_epochs, self.n_epochs_decay)  # validates n_epochs_decay
        _check_positive("epoch_count", self.epoch_count, integer=True)
        _check_positive("gamma0", self.gamma0)
        _check_positive("gamma_min", self.gamma_min)

    @property
    def total_epochs(self) -> int:
        return self.n_epochs + self.n_epochs_decay

    def lambda_sup(self, epoch: float) -> float:
        """λ_sup at a 1-based (fractional) epoch."""
        return lambda_sup(epoch, self.total_epochs) if self.decay_supervised else 1.0

    def gamma(self, epoch: float) -> float:
        """hDCE γ at a 1-based (fractional) epoch."""
        if not self.use_curriculum:
            return self.gamma0
        return hdce_gamma(epoch, self.total_epochs, self.gamma0, self.gamma_min,
                          step_gamma_epoch=self.step_gamma_epoch)

    def lr_factor(self, counter: float) -> float:
        """LR multiplier for a LambdaLR counter (scheduler steps taken, in epochs)."""
        return linear_lr_factor(counter, self.n_epochs, self.n_epochs_decay, self.epoch_count)


def epoch_at_iteration(iteration: int, iters_per_epoch: int, epoch_count: int = 1) -> float:
    """The fractional 1-based epoch at a 0-based global iteration: ``epoch_count + iteration / iters_per_epoch``."""
    _check_positive("iters_per_epoch", iters_per_epoch, integer=True)
    if iteration < 0:
        raise ValueError(f"`iteration` must be >= 0, got {iteration!r}")
    return epoch_count + iteration / iters_per_epoch


def lambda_sup_at_iteration(iteration: int, iters_per_epoch: int, n_epochs: int, *, smooth: bool = True) -> float:
    """λ_sup at a 0-based iteration; ``smooth=False`` holds it per epoch as the reference does."""
    epoch = epoch_at_iteration(iteration, iters_per_epoch)
    return lambda_sup(epoch if smooth else math.floor(epoch), n_epochs)


def hdce_gamma_at_iteration(iteration: int, iters_per_epoch: int, total: int, gamma0: float = 50.0,
                            gamma_min: float = 10.0, *, smooth: bool = True) -> float:
    """hDCE γ at a 0-based iteration; ``smooth=False`` holds it per epoch as the reference does."""
    epoch = epoch_at_iteration(iteration, iters_per_epoch)
    return hdce_gamma(epoch if smooth else math.floor(epoch), total, gamma0, gamma_min)


def linear_lr_lambda(config: ScheduleConfig, iters_per_epoch: int | None = None, *,
                     smooth: bool = False) -> Callable[[int], float]:
    """The LambdaLR function of CUT's linear policy.

    Args:
        config: Epoch budget.
        iters_per_epoch: ``None`` when the scheduler steps once per epoch (the reference); otherwise the scheduler
            steps once per iteration and the counter is converted to epochs.
        smooth: Per-iteration only: decay continuously instead of holding the rate for each epoch.
    """
    if iters_per_epoch is None:
        return config.lr_factor
    _check_positive("iters_per_epoch", iters_per_epoch, integer=True)

    def factor(step: int) -> float:
        epochs = step / iters_per_epoch
        return config.lr_factor(epochs if smooth else math.floor(epochs))

    return factor


def linear_lr_scheduler(optimizer: torch.optim.Optimizer, config: ScheduleConfig, iters_per_epoch: int | None = None,
                        *, smooth: bool = False) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` with CUT's linear decay; step it per epoch, or per iteration when ``iters_per_epoch`` is set."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, linear_lr_lambda(config, iters_per_epoch, smooth=smooth))


__all__ = ["ScheduleConfig", "epoch_at_iteration", "hdce_gamma", "hdce_gamma_at_iteration", "lambda_sup",
           "lambda_sup_at_iteration", "lambda_sup_official", "linear_lr_factor", "linear_lr_lambda",
           "linear_lr_scheduler"]
