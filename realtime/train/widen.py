"""Warm starts: initialise a generator from a trained one, widening it when it is narrower (Net2WiderNet).

``niji`` (ngf 64) costs ~2.5× ``niji-lite`` (ngf 32) per iteration on a CPU. Rather than train it from scratch, the
recipe can start it from trained ``niji-lite`` weights widened without changing the function they compute
(Chen, Goodfellow & Shlens, "Net2Net", ICLR 2016): channel ``j`` of a layer that is ``k`` times wider is a copy of
channel ``j mod n`` of the narrow one, and the weights that *read* a widened input are divided by ``k``, so every
sum over input channels is what it was. The NijiGAN / CUT layers between convs keep that exact:

* InstanceNorm (no affine) normalises each channel over its own plane, so copies of a channel stay copies;
* ReLU, reflect padding, the blur-pool down/upsampling (depthwise, fixed kernels) and the ODE blocks' ``h + f(h)``
  act per channel or on copies alike.

Copies get identical gradients forever unless something tells them apart, so ``noise`` (relative to each tensor's
standard deviation) breaks the symmetry; at the default 1e-2 the widened network's output moves by ~1e-3.
"""

from __future__ import annotations

import logging

import torch
import torch.nn as nn

from ..errors import RtAnimeError

logger = logging.getLogger(__name__)


def _factor(key: str, dim: int, small: int, large: int) -> int:
    if large % small:
        raise RtAnimeError(f"cannot widen {key}: dimension {dim} goes from {small} to {large}, not a whole multiple")
    return large // small


def widen_tensor(key: str, small: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``small`` tiled to ``shape``: dimension 0 (outputs) copied, dimension 1 of a conv weight (inputs) copied and
    divided by its factor. Only conv weights (4-D) and biases (1-D) occur in CUT-style generators."""
    if small.dim() not in (1, 4) or len(shape) != small.dim():
        raise RtAnimeError(f"cannot widen {key}: shape {tuple(small.shape)} -> {tuple(shape)} is not a conv weight or "
                           "bias")
    if small.dim() == 4 and small.shape[2:] != shape[2:]:
        raise RtAnimeError(f"cannot widen {key}: kernel {tuple(small.shape[2:])} differs from {tuple(shape[2:])}")
    k_out = _factor(key, 0, small.shape[0], shape[0])
    out = small.repeat(k_out, *([1] * (small.dim() - 1)))
    if small.dim() == 4:
        k_in = _factor(key, 1, small.shape[1], shape[1])
        out = out.repeat(1, k_in, 1, 1) / k_in
    return out


def warm_start(target: nn.Module, source: nn.Module, *, noise: float = 1e-2, seed: int = 0) -> str:
    """Load ``source``'s weights into ``target`` in place: as they are when the shapes match, widened (see the module
    docstring) when ``target`` is a whole-multiple wider. Returns ``"copied"`` or ``"widened"``.

    Raises:
        RtAnimeError: the two are different families, their keys differ, or a shape cannot be widened to the other.
    """
    if getattr(target, "family", None) != getattr(source, "family", None):
        raise RtAnimeError(f"cannot start a {getattr(target, 'family', '?')} generator from a "
                           f"{getattr(source, 'family', '?')} one")
    for name in ("input_skip", "n_ode_blocks", "antialias", "antialias_up", "hidden_mult"):
        a, b = getattr(target.config, name, None), getattr(source.config, name, None)
        if a != b:
            raise RtAnimeError(f"cannot start from these weights: their `{name}` is {b!r}, the trained model's {a!r}")
    # These change what the same weights compute, not which weights exist: allowed (fine-tuning into a changed
    # architecture is a use), but the run then starts from a different function than the source's, so say so.
    changed = [f"`{name}` {getattr(source.config, name, None)!r} -> {getattr(target.config, name, None)!r}"
               for name in ("unet_skips", "unet_skip_at", "norm")
               if getattr(target.config, name, None) != getattr(source.config, name, None)]
    if changed:
        logger.warning("starting from weights trained with different settings (%s): they load, but the network "
                       "starts from a different function than the one they were trained as", ", ".join(changed))
    t_state, s_state = target.state_dict(), source.state_dict()
    missing, extra = sorted(set(t_state) - set(s_state)), sorted(set(s_state) - set(t_state))
    if missing or extra:
        raise RtAnimeError(f"cannot start from these weights: keys missing {missing[:4]}, unexpected {extra[:4]}")
    widened = any(t_state[k].shape != s_state[k].shape for k in t_state)
    gen = torch.Generator().manual_seed(seed)
    new: dict[str, torch.Tensor] = {}
    for key, ref in t_state.items():
        value = s_state[key].detach().to(torch.float32).cpu()
        if value.shape != ref.shape:
            value = widen_tensor(key, value, ref.shape)
            if noise > 0 and value.numel() > 1:
                value = value + noise * value.std() * torch.randn(value.shape, generator=gen)
        new[key] = value.to(ref.dtype)
    target.load_state_dict(new)
    mode = "widened" if widened else "copied"
    logger.info("generator initialised from trained weights (%s)", mode)
    return mode


__all__ = ["warm_start", "widen_tensor"]
