"""Self-ensembles: run a generator on several flips / quarter-turns of a frame and average the results.

A generator trained with dihedral augmentation is only approximately equivariant: its error on a frame changes with
the frame's orientation, and part of it cancels when the orientations are averaged (EDSR's "self-ensemble",
waifu2x's TTA). For ``niji.cpu-v13`` on offline-v2's held-out set (MODEL_CARD.md) the 8-fold ensemble scores
+0.44 dB against the teacher, the 4 quarter-turns +0.40, two orientations +0.23-0.26, at 8x / 4x / 2x the network's
work. Translations (phase shifts under the 1/4-resolution bottleneck) gave much less (+0.08 dB for four), so they
are not offered.

Element ``k`` of the dihedral group here is ``k % 4`` quarter-turns counter-clockwise, then a left-right flip when
``k >= 4``; :func:`dihedral` applies it to the last two dimensions and :func:`undo_dihedral` inverts it.
"""

from __future__ import annotations

from typing import Callable

import torch

# Which group elements each size uses. 2: the identity and the half turn (measured +0.26 dB, the flip +0.23);
# 4: the four rotations (+0.40; the flips' subgroup {id, half turn, two flips} +0.37).
ENSEMBLE_ELEMENTS: dict[int, tuple[int, ...]] = {1: (0,), 2: (0, 2), 4: (0, 1, 2, 3), 8: tuple(range(8))}
ENSEMBLE_SIZES: tuple[int, ...] = tuple(ENSEMBLE_ELEMENTS)


def _check_element(k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < 8:
        raise ValueError(f"dihedral element k must be an int in 0..7, got {k!r}")


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """``x`` (…, H, W) turned ``k % 4`` quarter-turns, then flipped left-right when ``k >= 4``."""
    _check_element(k)
    y = torch.rot90(x, k % 4, (-2, -1)) if k % 4 else x
    return y.flip(-1) if k >= 4 else y


def undo_dihedral(y: torch.Tensor, k: int) -> torch.Tensor:
    """The inverse of :func:`dihedral`: ``undo_dihedral(dihedral(x, k), k) == x``."""
    _check_element(k)
    y = y.flip(-1) if k >= 4 else y
    return torch.rot90(y, -(k % 4), (-2, -1)) if k % 4 else y


def check_ensemble_size(n: object, *, param: str = "ensemble") -> int:
    """``n`` if it is an offered ensemble size, else a ValueError naming ``param``."""
    if not isinstance(n, int) or isinstance(n, bool) or n not in ENSEMBLE_ELEMENTS:
        raise ValueError(f"{param} must be one of {', '.join(map(str, ENSEMBLE_SIZES))} (orientations averaged per "
                         f"frame), got {n!r}")
    return int(n)  # type: ignore[call-overload]


def self_ensemble(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, n: int) -> torch.Tensor:
    """The mean of ``undo_dihedral(fn(dihedral(x, k)), k)`` over the ``n`` elements of :data:`ENSEMBLE_ELEMENTS`.

    ``fn`` must take any (N, C, H, W) whose H and W are multiples of its size multiple; a quarter turn swaps H and W,
    so a padded frame stays valid. Accumulates in float32 whatever ``fn`` returns.
    """
    elements = ENSEMBLE_ELEMENTS[check_ensemble_size(n)]
    if len(elements) == 1:
        return fn(x)
    total: torch.Tensor | None = None
    for k in elements:
        y = undo_dihedral(fn(dihedral(x, k)), k).float()
        # Out of place: backends return inference-mode tensors, which refuse in-place updates outside that mode.
        total = y if total is None else total + y
    assert total is not None
    return total / len(elements)


class EnsembleTranslate:
    """Wraps a translate function (a backend) ``(N, 3, H, W) → (N, 3, H, W)`` so that each call is
    :func:`self_ensemble` of ``n`` orientations; ``name`` and ``device`` follow the wrapped backend's, as
    :class:`realtime.tiling.TiledTranslate` does. Graph backends compile once per shape, so a non-square frame costs
    them a second compile (the quarter-turned shape) on first use."""

    def __init__(self, translate: Callable[[torch.Tensor], torch.Tensor], n: int) -> None:
        self.translate = translate
        self.n = check_ensemble_size(n, param="n")
        self.name = f"{getattr(translate, 'name', 'model')}+ensemble{self.n}"
        self.device = getattr(translate, "device", torch.device("cpu"))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self_ensemble(self.translate, x, self.n)


class SelfEnsemble(torch.nn.Module):
    """A generator wrapped so that its forward is :func:`self_ensemble` of ``n`` orientations, for code that takes
    a module (``rt-anime evaluate``); pipelines wrap their backend in :class:`EnsembleTranslate` instead."""

    def __init__(self, model: torch.nn.Module, n: int) -> None:
        super().__init__()
        self.model = model
        self.n = check_ensemble_size(n, param="n")

    @property
    def size_multiple(self) -> int:
        return int(getattr(self.model, "size_multiple", 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self_ensemble(self.model, x, self.n)

    def extra_repr(self) -> str:
        return f"n={self.n}"


__all__ = ["ENSEMBLE_ELEMENTS", "ENSEMBLE_SIZES", "EnsembleTranslate", "SelfEnsemble", "check_ensemble_size",
           "dihedral", "self_ensemble", "undo_dihedral"]
