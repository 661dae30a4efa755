"""AnimeGANv2 generator (``animeganv2``), in the layout of bryandlee/animegan2-pytorch.

Paper: Chen et al., "AnimeGAN: A Novel Lightweight GAN for Photo Animation" (ISICA 2019); AnimeGANv2 by
TachibanaYoshino. PyTorch port and weights (``celeba_distill``, ``face_paint_512_v1``, ``face_paint_512_v2``,
``paprika``; all four share one layout, 2,143,552 params): bryandlee/animegan2-pytorch (MIT code; the weights follow
AnimeGANv2's terms — non-commercial). Re-implemented; module names match the port so its ``.pt`` files load by key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._registry import Family, register_family, register_generator
from ._base import Generator, GeneratorOutput
from .cut_resnet import check_coverage


@dataclass(frozen=True, kw_only=True)
class AnimeGANv2Config:
    """Runtime behaviour of the AnimeGANv2 generator (its architecture is fixed).

    Args:
        align_corners: The port's default forward: resize with ``align_corners=True`` to the exact stored sizes, so
            any input size works. ``False`` upsamples by a plain ×2 (``align_corners=False``) and needs sizes that
            are multiples of 4 to return the input size.
    """

    align_corners: bool = True


class ConvNormLReLU(nn.Sequential):
    """Reflect pad, conv (padding 0), GroupNorm(1, C) i.e. layer norm over C×H×W, LeakyReLU(0.2)."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1,
                 padding: "int | tuple[int, int, int, int]" = 1, groups: int = 1, bias: bool = False) -> None:
        super().__init__(
            nn.ReflectionPad2d(padding),
            nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=0, groups=groups, bias=bias),
            nn.GroupNorm(1, cout, affine=True),
            nn.LeakyReLU(0.2, inplace=True),
        )


class InvertedResBlock(nn.Module):
    """MobileNetV2-style block: 1×1 expand, depthwise 3×3 (with bias), 1×1 project, GroupNorm; residual iff cin == cout."""

    def __init__(self, cin: int, cout: int, expansion_ratio: int = 2) -> None:
        super().__init__()
        hidden = int(round(cin * expansion_ratio))
        self.use_res_connect = cin == cout
        self.layers = nn.Sequential(
            ConvNormLReLU(cin, hidden, kernel_size=1, padding=0),
            ConvNormLReLU(hidden, hidden, groups=hidden, bias=True),
            nn.Conv2d(hidden, cout, kernel_size=1, padding=0, bias=False),
            nn.GroupNorm(1, cout, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return x + out if self.use_res_connect else out


class AnimeGANv2(Generator):
    family = "animeganv2"

    def __init__(self, *, config: AnimeGANv2Config) -> None:
        super().__init__()
        self.config = config
        # The stride-2 layers pad only right and bottom, (left, right, top, bottom) = (0, 1, 0, 1), as the port does.
        self.block_a = nn.Sequential(ConvNormLReLU(3, 32, kernel_size=7, padding=3),
                                     ConvNormLReLU(32, 64, stride=2, padding=(0, 1, 0, 1)), ConvNormLReLU(64, 64))
        self.block_b = nn.Sequential(ConvNormLReLU(64, 128, stride=2, padding=(0, 1, 0, 1)), ConvNormLReLU(128, 128))
        self.block_c = nn.Sequential(ConvNormLReLU(128, 128), InvertedResBlock(128, 256),
                                     *(InvertedResBlock(256, 256) for _ in range(3)), ConvNormLReLU(256, 128))
        self.block_d = nn.Sequential(ConvNormLReLU(128, 128), ConvNormLReLU(128, 128))
        self.block_e = nn.Sequential(ConvNormLReLU(128, 64), ConvNormLReLU(64, 64),
                                     ConvNormLReLU(64, 32, kernel_size=7, padding=3))
        self.out_layer = nn.Sequential(nn.Conv2d(32, 3, kernel_size=1, bias=False), nn.Tanh())

    @property
    def size_multiple(self) -> int:
        return 1 if self.config.align_corners else 4

    def _up(self, x: torch.Tensor, size: "torch.Size | Sequence[int]") -> torch.Tensor:
        if self.config.align_corners:
            return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block_a(x)
        half_size = out.shape[-2:]
        out = self.block_d(self._up(self.block_c(self.block_b(out)), half_size))
        return self.out_layer(self.block_e(self._up(out, x.shape[-2:])))

    def forward_features(self, x: torch.Tensor, layers: Sequence[int] = (), *,
                         encode_only: bool = False) -> GeneratorOutput:
        """Layer ids: 0 = block_a, 1 = block_b, 2 = block_c (the bottleneck), 3 = block_d, 4 = block_e outputs."""
        wanted = tuple(int(i) for i in layers)
        bad = [i for i in wanted if not 0 <= i <= 4]
        if bad:
            raise ValueError(f"`layers` {bad} out of range; AnimeGANv2 has feature ids 0..4 (block_a … block_e)")
        if encode_only and not wanted:
            raise ValueError("`encode_only=True` needs at least one layer id in `layers`")
        stop = max(wanted) if encode_only else 5
        feats: list[torch.Tensor] = []
        a = self.block_a(x)
        feats.append(a)
        stages = (lambda t: self.block_b(t), lambda t: self.block_c(t),
                  lambda t: self.block_d(self._up(t, a.shape[-2:])), lambda t: self.block_e(self._up(t, x.shape[-2:])))
        out = a
        for i, stage in enumerate(stages, start=1):
            if i > stop:
                break
            out = stage(out)
            feats.append(out)
        image = self.out_layer(out) if stop == 5 else None
        bottleneck = feats[2] if len(feats) > 2 else None
        return GeneratorOutput(image=image, features=tuple(feats[i] for i in wanted), bottleneck=bottleneck)


# --- checkpoint adapter ------------------------------------------------------------------------------------------

def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor]) -> tuple[AnimeGANv2Config, dict] | None:
    """Recognise an animegan2-pytorch ``Generator`` state dict (sentinels ``block_a.0.1.weight``, ``out_layer.0.weight``).

    The port's keys are ours, so nothing is renamed; coverage and shapes are checked before the strict load.
    """
    if "block_a.0.1.weight" not in state_dict or "out_layer.0.weight" not in state_dict:
        return None
    config = AnimeGANv2Config()
    with torch.device("meta"):
        model = AnimeGANv2(config=config)
    cleaned = dict(state_dict)
    check_coverage(cleaned, model, "AnimeGANv2 (bryandlee/animegan2-pytorch)")
    return config, cleaned


def _layouts() -> dict[str, set[str]]:
    with torch.device("meta"):
        return {"AnimeGANv2 (bryandlee/animegan2-pytorch)": set(AnimeGANv2(config=AnimeGANv2Config()).state_dict())}


register_family(Family(name="animeganv2", model_cls=AnimeGANv2, config_cls=AnimeGANv2Config,
                       checkpoint_filter_fn=checkpoint_filter_fn, layouts=_layouts))

register_generator(name="animeganv2", family="animeganv2",
                   description="AnimeGANv2 generator (bryandlee/animegan2-pytorch layout, 2,143,552 params)")
