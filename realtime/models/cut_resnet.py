"""CUT / Scenimefy ResNet generator (``cut-resnet``).

Papers: Park et al., "Contrastive Learning for Unpaired Image-to-Image Translation" (ECCV 2020);
Jiang et al., "Scenimefy: Learning to Craft Anime Scene via Semi-Supervised Image-to-Image Translation" (ICCV 2023).
Original code: taesungp/contrastive-unpaired-translation ``models/networks.py`` (BSD) and Yuxinn-J/Scenimefy
``Semi_translation/models/networks.py`` (S-Lab License 1.0, non-commercial: the released ``Shinkai_net_G.pth``
weights inherit it). Re-implemented here; layer indices match the original so checkpoints load by key.

Layer list (``self.model``), antialiased down and up as released by Scenimefy: reflect-pad 3, conv 7×7 → ngf, IN,
ReLU; [conv 3×3 stride 1, IN, ReLU, blur-downsample] × 2; n_blocks × ResnetBlock(4·ngf); [bilinear ×2, conv 3×3, IN,
ReLU] × 2; reflect-pad 3, conv 7×7 → 3, Tanh. Without antialiasing the down stages are stride-2 convs and the up
stages are stride-2 transposed convs (fewer Sequential entries, so later indices shift).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn as nn

from .._registry import Family, register_family, register_generator
from ..layers import Downsample, Upsample, conv_block, cut_decoder, cut_encoder
from ._base import SequentialGenerator


@dataclass(frozen=True, kw_only=True)
class CutResnetConfig:
    """Architecture of a CUT ResnetGenerator.

    Args:
        ngf: Channels after the stem; the middle runs at ``4 * ngf``.
        n_blocks: Number of residual blocks (Scenimefy: 9).
        antialias: Blur-pool downsampling (CUT default; ``--no_antialias`` turns it off).
        antialias_up: Bilinear upsampling + conv (CUT default; ``--no_antialias_up`` uses transposed convs).
    """

    ngf: int = 64
    n_blocks: int = 9
    antialias: bool = True
    antialias_up: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.ngf, int) or self.ngf < 1:
            raise ValueError(f"`ngf` must be a positive integer, got {self.ngf!r}")
        if not isinstance(self.n_blocks, int) or self.n_blocks < 0:
            raise ValueError(f"`n_blocks` must be a non-negative integer, got {self.n_blocks!r}")


class ResnetBlock(nn.Module):
    """``x + conv_block(x)``, no activation after the sum (CUT)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_block = conv_block(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class CutResnetGenerator(SequentialGenerator):
    family = "cut-resnet"

    def __init__(self, *, config: CutResnetConfig) -> None:
        super().__init__()
        self.config = config
        encoder = cut_encoder(input_nc=3, ngf=config.ngf, antialias=config.antialias)
        blocks = [ResnetBlock(4 * config.ngf) for _ in range(config.n_blocks)]
        decoder = cut_decoder(output_nc=3, ngf=config.ngf, antialias_up=config.antialias_up)
        self.model = nn.Sequential(*encoder, *blocks, *decoder)
        self.bottleneck_index = len(encoder) + config.n_blocks - 1

    @property
    def size_multiple(self) -> int:
        return 4


# --- checkpoint adapter ------------------------------------------------------------------------------------------

_BLOCK_KEY = re.compile(r"^model\.(\d+)\.conv_block\.(\d+)\.(weight|bias)$")


def official_filter_keys(model: SequentialGenerator) -> dict[str, torch.Tensor]:
    """The anti-alias ``filt`` buffers an official checkpoint carries for ``model``'s layout, with their values."""
    out = {}
    for i, layer in enumerate(model.model):
        if isinstance(layer, (Downsample, Upsample)):
            out[f"model.{i}.filt"] = type(layer).reference_filter(layer.channels)
    return out


def strip_filter_buffers(state_dict: Mapping[str, torch.Tensor], model: SequentialGenerator) -> dict[str, torch.Tensor]:
    """Check the constant blur kernels an official checkpoint carries, then drop them (ours are regenerated)."""
    expected = official_filter_keys(model)
    out = {}
    for key, value in state_dict.items():
        if key.endswith(".filt"):
            if key not in expected:
                raise ValueError(f"checkpoint has anti-alias buffer {key!r} where the inferred layout has none")
            if tuple(value.shape) != tuple(expected[key].shape) or not torch.allclose(value.float(), expected[key]):
                raise ValueError(f"checkpoint buffer {key!r} is not the standard blur kernel (shape "
                                 f"{tuple(value.shape)}); this is not a CUT-layout anti-aliasing filter")
            continue
        out[key] = value
    return out


def check_coverage(state_dict: Mapping[str, torch.Tensor], model: nn.Module, layout: str) -> None:
    """Full-coverage and shape check before a strict load, with an error that lists what differs."""
    ours = model.state_dict()
    missing = sorted(set(ours) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(ours))
    if missing or unexpected:
        raise ValueError(f"checkpoint does not match the {layout} layout: missing keys {missing[:8]}"
                         f"{' …' if len(missing) > 8 else ''}, unexpected keys {unexpected[:8]}"
                         f"{' …' if len(unexpected) > 8 else ''}")
    for key, value in state_dict.items():
        if tuple(value.shape) != tuple(ours[key].shape):
            raise ValueError(f"checkpoint tensor {key!r} has shape {tuple(value.shape)}, the {layout} layout needs "
                             f"{tuple(ours[key].shape)}")


def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor]) -> tuple[CutResnetConfig, dict] | None:
    """Recognise a CUT/Scenimefy ``ResnetGenerator`` state dict and infer its config.

    Sentinels: the 7×7 RGB stem ``model.1.weight`` and ``model.<i>.conv_block.1.weight`` residual blocks. The block
    indices give ``n_blocks`` and whether the encoder was antialiased (blocks start at 12 rather than 10); the first
    key after the blocks tells a transposed-conv decoder (``model.<e>.weight``) from an antialiased one.
    """
    stem = state_dict.get("model.1.weight")
    if stem is None or stem.dim() != 4 or tuple(stem.shape[1:]) != (3, 7, 7):
        return None
    blocks = sorted({int(m.group(1)) for k in state_dict if (m := _BLOCK_KEY.match(k))})
    if not blocks or any("odefunc" in k for k in state_dict):
        return None
    ngf = int(stem.shape[0])
    first = blocks[0]
    if first not in (10, 12):
        raise ValueError(f"CUT-layout checkpoint has its first residual block at model.{first}; expected model.12 "
                         "(antialiased encoder) or model.10 (--no_antialias)")
    if blocks != list(range(first, first + len(blocks))):
        raise ValueError(f"CUT-layout checkpoint has non-contiguous residual blocks at {blocks}")
    after = first + len(blocks)
    antialias_up = f"model.{after}.weight" not in state_dict
    config = CutResnetConfig(ngf=ngf, n_blocks=len(blocks), antialias=first == 12, antialias_up=antialias_up)
    with torch.device("meta"):  # only keys and shapes are needed here
        model = CutResnetGenerator(config=config)
    cleaned = strip_filter_buffers(state_dict, model)
    check_coverage(cleaned, model, _layout_name(config))
    return config, cleaned


def _layout_name(config: CutResnetConfig) -> str:
    aa = "antialiased" if config.antialias and config.antialias_up else (
        "no antialias" if not (config.antialias or config.antialias_up) else
        f"antialias down={config.antialias} up={config.antialias_up}")
    return f"CUT ResnetGenerator (ngf {config.ngf}, {config.n_blocks} blocks, {aa})"


def _layouts() -> dict[str, set[str]]:
    out = {}
    for config in (CutResnetConfig(), CutResnetConfig(n_blocks=6, antialias=False, antialias_up=False)):
        with torch.device("meta"):
            model = CutResnetGenerator(config=config)
        out[_layout_name(config)] = set(model.state_dict()) | set(official_filter_keys(model))
    return out


register_family(Family(name="cut-resnet", model_cls=CutResnetGenerator, config_cls=CutResnetConfig,
                       checkpoint_filter_fn=checkpoint_filter_fn, layouts=_layouts))

register_generator(name="cut-resnet", family="cut-resnet",
                   description="CUT/Scenimefy ResNet generator, ngf 64, 9 blocks, antialiased (11,378,179 params)")
