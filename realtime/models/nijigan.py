"""NijiGAN: the Scenimefy/CUT ResNet generator with its residual blocks replaced by Neural-ODE blocks (``nijigan``).

Paper: Santoso et al., "NijiGAN: Transform What You See into Anime with Contrastive Semi-Supervised Learning and
Neural Ordinary Differential Equations" (arXiv 2412.19455). No official code or weights exist; this is rt-anime's
reconstruction ("design A", ../shared/reference/models.md §4): four ODE blocks whose dynamics
``f(h) = IN(conv3×3(ReLU(IN(conv3×3(h)))))`` at 4·ngf channels, autonomous (no time channel), integrated over
t ∈ [0, 1]. At ngf 64 that is exactly 5,477,379 parameters, the paper's "5.477M".

The solver is a value held by the model (``model.solver``), not part of it: the same weights run with any solver
(``euler:1`` makes each block exactly ``h + f(h)``, i.e. CUT's ``resnet_4blocks``). A network trained with one solver
is a different function under another, so checkpoints record the solver they were trained with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Literal, Mapping

import torch
import torch.nn as nn

from .._registry import Family, register_family, register_generator
from ..layers import NORMS, Downsample, Upsample, conv_block, cut_decoder, cut_encoder
from ..solvers import FixedStepSolver, Solver, parse_solver
from ._base import SequentialGenerator
from .cut_resnet import check_coverage, official_filter_keys, strip_filter_buffers


SKIP_SITES = ("post_relu", "pre_relu")


@dataclass(frozen=True, kw_only=True)
class NijiGANConfig:
    """Architecture and solver of a NijiGAN generator.

    Args:
        ngf: Channels after the stem; the ODE blocks run at ``4 * ngf``.
        n_ode_blocks: Number of ODE blocks replacing CUT's residual blocks.
        hidden_mult: Width multiplier of the middle of ``f`` (1 = design A; 4 with one block = design B).
        antialias: Blur-pool downsampling, as Scenimefy.
        antialias_up: Bilinear upsampling + conv, as Scenimefy.
        input_skip: Add the input image to the head's output (``clamp(x + conv7(...), -1, 1)``, no Tanh) instead of
            ``tanh(conv7(...))``. No parameters, same checkpoint keys. Off for the paper's network. Why it exists:
            every conv before the head feeds an InstanceNorm, so without the skip the output is exactly invariant to
            ``a * x + c`` (any exposure gain ``a > 0``, any per-channel colour offset ``c``) and the network must
            guess absolute colour from content; with it, colour passes through and the network learns the change
            (MODEL_CARD.md, "Architecture").
        unet_skips: Add the encoder's activations to the decoder's at the same resolution and width (after the
            decoder's ReLUs at 1/2 and full resolution), as LinkNet. No parameters, same checkpoint keys. Off for
            the paper's network. Why it exists: without it, everything the head sees of the photo's fine detail has
            passed the 1/4-resolution bottleneck, and the pseudo-targets' texture removal and line art are
            full-resolution edits of that detail (MODEL_CARD.md, "Architecture").
        unet_skip_at: Where a skip joins the decoder: ``"post_relu"`` (LinkNet: after the decoder's ReLU) or
            ``"pre_relu"`` (before it, after the norm). Same parameters and keys. Why ``"pre_relu"`` exists: after
            the full-resolution ReLU only the head's linear conv is left, so post-ReLU the fine features reach the
            output as a fixed linear function and context from the bottleneck can only add to them; pre-ReLU the
            decoder's activation can switch each fine feature on or off (e.g. ink an edge only where the coarse path
            says it is an outline, not texture).
        norm: ``"instance"`` (CUT's InstanceNorm after every conv but the head) or ``"none"`` (an ``Identity`` in each
            place: no parameters either way, same checkpoint keys and layer ids). Why ``"none"`` exists: an
            InstanceNorm network's head is blind to the input's contrast, but removing texture or inking an edge
            means outputs that scale with it (EDSR drops its norms for the same reason; MODEL_CARD.md).
        solver: Solver spec (``"rk4:1"``, ``"dopri5"``…) or solver value; what the weights were trained with.
    """

    ngf: int = 64
    n_ode_blocks: int = 4
    hidden_mult: int = 1
    antialias: bool = True
    antialias_up: bool = True
    input_skip: bool = False
    unet_skips: bool = False
    unet_skip_at: Literal["post_relu", "pre_relu"] = "post_relu"
    norm: Literal["instance", "none"] = "instance"
    solver: Solver = field(default="dopri5")  # type: ignore[assignment]

    def __post_init__(self) -> None:
        for name, low in (("ngf", 1), ("n_ode_blocks", 1), ("hidden_mult", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}")
        if self.norm not in NORMS:
            raise ValueError(f"`norm` must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.unet_skip_at not in SKIP_SITES:
            raise ValueError(f"`unet_skip_at` must be one of {', '.join(SKIP_SITES)}, got {self.unet_skip_at!r}")
        if self.unet_skip_at != "post_relu" and self.unet_skips is not True:
            raise ValueError(f"`unet_skip_at={self.unet_skip_at!r}` places the encoder skips: it needs "
                             "`unet_skips=True`")
        for name in ("input_skip", "unet_skips"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be true or false, got {getattr(self, name)!r}")
        solver = self.solver
        if isinstance(solver, Mapping):
            from ..solvers import solver_from_dict
            solver = solver_from_dict(solver)
        object.__setattr__(self, "solver", parse_solver(solver))


class ODEFunc(nn.Module):
    """The dynamics ``f(t, h)``; ``t`` is accepted (solvers pass it) and ignored: the system is autonomous."""

    def __init__(self, dim: int, hidden: int, norm: str = "instance") -> None:
        super().__init__()
        self.conv_block = conv_block(dim, hidden, norm=norm)

    def forward(self, t: object, h: torch.Tensor) -> torch.Tensor:
        return self.conv_block(h)


class ODEBlock(nn.Module):
    """``h(t1)`` for ``dh/dt = f(h)``, ``h(t0) = x``, integrated by the solver the caller passes."""

    def __init__(self, dim: int, hidden: int, norm: str = "instance") -> None:
        super().__init__()
        self.odefunc = ODEFunc(dim, hidden, norm)

    def forward(self, x: torch.Tensor, solver: Solver) -> torch.Tensor:
        return solver.integrate(self.odefunc, x)


class NijiGAN(SequentialGenerator):
    family = "nijigan"

    def __init__(self, *, config: NijiGANConfig) -> None:
        super().__init__()
        self.config = config
        dim = 4 * config.ngf
        encoder = cut_encoder(input_nc=3, ngf=config.ngf, antialias=config.antialias, norm=config.norm)
        blocks = [ODEBlock(dim, dim * config.hidden_mult, config.norm) for _ in range(config.n_ode_blocks)]
        decoder = cut_decoder(output_nc=3, ngf=config.ngf, antialias_up=config.antialias_up, norm=config.norm)
        if config.input_skip:
            decoder[-1] = nn.Identity()  # the skip's clamp bounds the output instead of the Tanh
        self.model = nn.Sequential(*encoder, *blocks, *decoder)
        self.bottleneck_index = len(encoder) + config.n_ode_blocks - 1
        self.skips = linknet_skips(encoder, decoder, len(encoder) + len(blocks),
                                   pre_relu=config.unet_skip_at == "pre_relu") if config.unet_skips else {}

    def _output(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x + y).clamp(-1.0, 1.0) if self.config.input_skip else y

    @property
    def size_multiple(self) -> int:
        return 4

    @property
    def solver(self) -> Solver:
        return self.config.solver

    @solver.setter
    def solver(self, value: "str | Solver") -> None:
        self.config = replace(self.config, solver=parse_solver(value))

    @property
    def nfe(self) -> int | None:
        """Dynamics evaluations per frame (all blocks), or ``None`` for adaptive solvers."""
        per_block = self.solver.nfe
        return None if per_block is None else per_block * self.config.n_ode_blocks

    def _run(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return layer(x, self.config.solver) if isinstance(layer, ODEBlock) else layer(x)

    def is_static(self) -> bool:
        """True when the forward is a fixed graph (fixed-step solver), i.e. traceable for export."""
        return isinstance(self.solver, FixedStepSolver)


def linknet_skips(encoder: list[nn.Module], decoder: list[nn.Module], decoder_start: int, *,
                  pre_relu: bool = False) -> dict[int, int]:
    """``{decoder layer id: encoder layer id}`` pairing each decoder ReLU (or, with ``pre_relu``, the layer just
    before it: its norm) with the last encoder activation of the same width and scale (the encoder's ReLU, or its
    blur-pool when antialiased)."""
    def walk(layers: list[nn.Module], start: int, scale: int, taps: type | tuple) -> list[tuple[int, int, int]]:
        channels, out = 0, []
        for i, layer in enumerate(layers, start):
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                channels = layer.out_channels
                if isinstance(layer, nn.ConvTranspose2d):
                    scale //= 2
                elif layer.stride[0] == 2:
                    scale *= 2
            elif isinstance(layer, Downsample):
                scale *= 2
            elif isinstance(layer, Upsample):
                scale //= 2
            if isinstance(layer, taps):
                out.append((i, channels, scale))
        return out

    enc = {(c, s): i for i, c, s in walk(encoder, 0, 1, (nn.ReLU, Downsample))}  # later layers win
    bottom = max(s for _, s in enc)
    return {i - 1 if pre_relu else i: enc[(c, s)] for i, c, s in walk(decoder, decoder_start, bottom, nn.ReLU) if (c, s) in enc}


# --- checkpoint adapter ------------------------------------------------------------------------------------------

_ODE_KEY = re.compile(r"^model\.(\d+)\.odefunc\.conv_block\.(\d+)\.(weight|bias)$")


def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor]) -> tuple[NijiGANConfig, dict] | None:
    """Recognise a NijiGAN state dict in the CUT-style layout (``model.<i>.odefunc.conv_block.{1,5}.*``).

    Raw ``torch.save(model.state_dict())`` files carry no solver, so the config gets the default one; rt-anime's
    own safetensors checkpoints record it in their JSON config instead.
    """
    stem = state_dict.get("model.1.weight")
    blocks = sorted({int(m.group(1)) for k in state_dict if (m := _ODE_KEY.match(k))})
    if stem is None or not blocks:
        return None
    ngf = int(stem.shape[0])
    first = blocks[0]
    if first not in (10, 12) or blocks != list(range(first, first + len(blocks))):
        raise ValueError(f"NijiGAN-layout checkpoint has ODE blocks at model.{blocks}; expected consecutive indices "
                         "starting at 12 (antialiased encoder) or 10")
    hidden = int(state_dict[f"model.{first}.odefunc.conv_block.1.weight"].shape[0])
    after = first + len(blocks)
    config = NijiGANConfig(ngf=ngf, n_ode_blocks=len(blocks), hidden_mult=max(1, hidden // (4 * ngf)),
                           antialias=first == 12, antialias_up=f"model.{after}.weight" not in state_dict)
    with torch.device("meta"):
        model = NijiGAN(config=config)
    cleaned = strip_filter_buffers(state_dict, model)
    check_coverage(cleaned, model, f"NijiGAN (ngf {ngf}, {len(blocks)} ODE blocks)")
    return config, cleaned


def _layouts() -> dict[str, set[str]]:
    with torch.device("meta"):
        model = NijiGAN(config=NijiGANConfig())
    return {"NijiGAN (ngf 64, 4 ODE blocks, antialiased)": set(model.state_dict()) | set(official_filter_keys(model))}


register_family(Family(name="nijigan", model_cls=NijiGAN, config_cls=NijiGANConfig,
                       checkpoint_filter_fn=checkpoint_filter_fn, layouts=_layouts))

register_generator(name="nijigan", family="nijigan",
                   description="NijiGAN, ngf 64, 4 ODE blocks (5,477,379 params); paper solver dopri5")
register_generator(name="nijigan-lite", family="nijigan", ngf=32, solver="euler:1",
                   description="NijiGAN preset for CPU real time: ngf 32, 4 ODE blocks, Euler-1")
