"""What every rt-anime generator is: an ``nn.Module`` mapping RGB NCHW in [-1, 1] to RGB NCHW in [-1, 1]."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, ClassVar, Mapping, Sequence

import torch
import torch.nn as nn


@dataclass(frozen=True)
class GeneratorOutput:
    """Everything one pass can give, so training never runs the generator twice.

    Attributes:
        image: The translated image, or ``None`` when the pass stopped early (``encode_only``).
        features: Activations at the requested layer ids, in the order requested.
        bottleneck: The state at the end of the middle blocks (for NijiGAN: the ODE output), or ``None`` when the
            pass stopped before it.
    """

    image: torch.Tensor | None
    features: tuple[torch.Tensor, ...]
    bottleneck: torch.Tensor | None


class Generator(nn.Module):
    """Base of the generator families.

    Subclasses set ``family`` and keep their frozen config in ``self.config``. ``size_multiple`` is the granularity
    the input height and width must have; callers pad (reflect) to it and crop back.
    """

    family: ClassVar[str]
    config: Any

    @property
    def size_multiple(self) -> int:
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor, layers: Sequence[int] = (), *,
                         encode_only: bool = False) -> GeneratorOutput:
        raise NotImplementedError

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error for inputs the network cannot take (a common user mistake: HWC or uint8 images)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{type(self).__name__} expects an RGB batch of shape (N, 3, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"{type(self).__name__} expects a float tensor in [-1, 1], got dtype {x.dtype}")
        m = self.size_multiple
        if x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(f"{type(self).__name__} needs H and W to be multiples of {m}, got "
                             f"{x.shape[-2]}x{x.shape[-1]}; pad (reflect) to the multiple and crop the output back")

    def extra_repr(self) -> str:
        return f"config={self.config}"

    def config_dict(self) -> dict:
        """The JSON-able config stored beside the weights."""
        out = {}
        for f in dataclasses.fields(self.config):
            value = getattr(self.config, f.name)
            out[f.name] = value.to_dict() if hasattr(value, "to_dict") else value
        return out


class SequentialGenerator(Generator):
    """A generator whose layers are one ``nn.Sequential`` named ``model``, as CUT's ResnetGenerator.

    Layer ids for features are indices into ``model`` (CUT's ``nce_layers``): the feature at id *i* is the output of
    ``model[i]``. ``bottleneck_index`` is the index of the last middle block.
    """

    model: nn.Sequential
    bottleneck_index: int
    skips: Mapping[int, int] = MappingProxyType({})  # read-only: a shared class default must not be mutable
    """Additive encoder→decoder skips: after layer ``i`` runs, the output of layer ``skips[i]`` is added to it."""

    def _run(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return layer(x)

    def _output(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The image from the input ``x`` and the last layer's output ``y`` (``y`` itself unless a family adds a
        skip from the input)."""
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._output(x, run_layers(self.model, x, skips=self.skips, run=self._run))

    def forward_features(self, x: torch.Tensor, layers: Sequence[int] = (), *,
                         encode_only: bool = False) -> GeneratorOutput:
        wanted = tuple(int(i) for i in layers)
        n = len(self.model)
        bad = [i for i in wanted if not 0 <= i < n]
        if bad:
            raise ValueError(f"`layers` {bad} out of range; {type(self).__name__} has layer ids 0..{n - 1}")
        if encode_only and not wanted:
            raise ValueError("`encode_only=True` needs at least one layer id in `layers`")
        stop = max(wanted) if encode_only else n - 1
        found: dict[int, torch.Tensor] = {}
        bottleneck = None

        def visit(i: int, y: torch.Tensor) -> None:
            nonlocal bottleneck
            if i in wanted:
                found[i] = y
            if i == self.bottleneck_index:
                bottleneck = y

        y = run_layers(self.model, x, skips=self.skips, run=self._run, stop=stop, visit=visit)
        image = None if encode_only and stop < n - 1 else self._output(x, y)
        return GeneratorOutput(image=image, features=tuple(found[i] for i in wanted), bottleneck=bottleneck)


def run_layers(layers: nn.Sequential, x: torch.Tensor, *, skips: Mapping[int, int],
               run: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None, stop: int | None = None,
               visit: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """``layers`` in order with additive skips (after layer ``i``, add the output of layer ``skips[i]``), up to and
    including layer ``stop``; ``visit(i, output)`` sees each layer's output. Shared by the generators and their
    unrolled export copies, so the two cannot disagree on where a skip lands."""
    kept: dict[int, torch.Tensor] = {}
    taps = set(skips.values())
    for i, layer in enumerate(layers):
        x = run(layer, x) if run is not None else layer(x)
        if i in skips:
            x = x + kept[skips[i]]
        if i in taps:
            kept[i] = x
        if visit is not None:
            visit(i, x)
        if i == stop:
            break
    return x
