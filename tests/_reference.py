"""Deterministic weights for parity fixtures.

The reference outputs in ``tests/fixtures/`` were produced by running the *official* CUT / Scenimefy /
animegan2-pytorch code (fetched beside the project, never vendored) on weights made by
:func:`seeded_state_dict`. The tests rebuild the very same weights from the recorded key/shape manifest, write
them in the official checkpoint layout, load them through ``realtime.load_generator`` and compare outputs.
Only the manifest, the non-parameter buffers, the input and the output are committed.
"""

from __future__ import annotations

import math

import torch


def seeded_tensor(shape: tuple[int, ...], key: str, generator: torch.Generator) -> torch.Tensor:
    """One parameter, scaled so that activations stay O(1) through normalisation-free stretches."""
    t = torch.randn(shape, generator=generator, dtype=torch.float32)
    if len(shape) >= 2:
        fan_in = math.prod(shape[1:])
        return t / math.sqrt(fan_in)
    if key.endswith("weight"):  # affine norm scale
        return 1.0 + 0.1 * t
    return 0.1 * t


def seeded_state_dict(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Weights for every key in ``shapes``, drawn in sorted key order from one seeded generator."""
    g = torch.Generator().manual_seed(seed)
    return {k: seeded_tensor(tuple(shapes[k]), k, g) for k in sorted(shapes)}


def official_state_dict(fixture: dict) -> dict[str, torch.Tensor]:
    """The full official checkpoint of a fixture, in the official key order ``fixture['keys']``.

    Parameters are rebuilt with :func:`seeded_state_dict` from ``fixture['shapes']`` and ``fixture['seed']``;
    everything else (e.g. the anti-alias ``filt`` buffers) comes from ``fixture['buffers']``.
    """
    params = seeded_state_dict({k: tuple(v) for k, v in fixture["shapes"].items()}, int(fixture["seed"]))
    buffers = fixture["buffers"]
    both = set(params) & set(buffers)
    if both:
        raise ValueError(f"keys both parameter and buffer: {sorted(both)}")
    keys = list(fixture["keys"])
    missing = [k for k in keys if k not in params and k not in buffers]
    extra = sorted((set(params) | set(buffers)) - set(keys))
    if missing or extra:
        raise KeyError(f"fixture manifest inconsistent: missing={missing} extra={extra}")
    return {k: params[k] if k in params else buffers[k] for k in keys}
