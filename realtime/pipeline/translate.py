"""Translate stage: batch frames, fit them to the model's size rules, call ``translate``, restore the size.

The user's ``translate(batch) -> batch`` sees ``(N, 3, H, W)`` float32 RGB in ``[-1, 1]`` with ``H`` and ``W``
multiples of ``size_multiple`` and is called under :func:`torch.inference_mode`. Geometry (see
:class:`~realtime.pipeline.PipelineConfig`): scale to the output size, cap the longer side at ``max_side``,
reflect-pad right/bottom to the multiple; afterwards crop the padding and scale back to the output size.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..frames import Frame, FrameBatch
from ..images import pad_to
from .config import PipelineConfig
from .errors import TranslateOutputError
from .stage import Channel, PipelineStopped, Stage

__all__ = ["Geometry", "TranslateStage", "TranslateFn"]

logger = logging.getLogger(__name__)

TranslateFn = Callable[[torch.Tensor], torch.Tensor]


# The smallest side every generator here takes: two stride-2 stages bring 8 px down to 2, the least a reflect pad
# of 1 accepts in the blocks after them. Smaller pictures (a 2x2 video, a thumbnail) are padded up to it and
# cropped back; tests/test_pipeline_units.py runs every registered generator at this size.
MIN_MODEL_SIDE = 8


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@dataclass(frozen=True, slots=True)
class Geometry:
    """Sizes for one source frame size; all sizes are ``(height, width)``."""

    source: tuple[int, int]
    output: tuple[int, int]
    model: tuple[int, int]
    padded: tuple[int, int]

    @classmethod
    def plan(
        cls, source_hw: tuple[int, int], *, output_hw: tuple[int, int], max_side: int | None, size_multiple: int
    ) -> Geometry:
        model = output_hw
        if max_side is not None and max(output_hw) > max_side:
            scale = max_side / max(output_hw)
            model = (max(round(output_hw[0] * scale), 1), max(round(output_hw[1] * scale), 1))
        padded = (_round_up(max(model[0], MIN_MODEL_SIDE), size_multiple),
                  _round_up(max(model[1], MIN_MODEL_SIDE), size_multiple))
        return cls(source=source_hw, output=output_hw, model=model, padded=padded)

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, *source)`` → ``(N, 3, *padded)``."""
        return pad_to(_resize(x, self.model), self.padded)

    def from_model(self, y: torch.Tensor) -> torch.Tensor:
        """``(N, 3, *padded)`` → ``(N, 3, *output)``."""
        y = y[..., : self.model[0], : self.model[1]]
        return _resize(y, self.output)


def _resize(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == hw:
        return x
    downscale = hw[0] < x.shape[-2] or hw[1] < x.shape[-1]
    dtype = x.dtype
    # antialias avoids aliasing on downscale; interpolate wants float32 on some CPU builds.
    y = F.interpolate(x.float(), size=hw, mode="bilinear", align_corners=False, antialias=downscale)
    return y.to(dtype)


class TranslateStage(Stage):
    """Thread calling ``translate`` on batches of equal-size frames.

    Args:
        translate: The model call, ``(N, 3, H, W) -> (N, 3, H, W)``.
        config: Pipeline configuration (geometry, batch size, device, mode).
        output_hw: Fixed output ``(height, width)``, frames of another size are scaled to it; ``None`` keeps each
            frame's own size (live sources).
        inputs: Frames from the source.
        outputs: Stylized frames to the encoder or sink.
        stop: The pipeline's shared stop event.
    """

    def __init__(
        self,
        *,
        translate: TranslateFn,
        config: PipelineConfig,
        output_hw: tuple[int, int] | None,
        inputs: Channel[Frame],
        outputs: Channel[Frame],
        stop: threading.Event,
    ) -> None:
        super().__init__(name="translate", stop=stop)
        if not callable(translate):
            raise TypeError(f"translate must be callable, got {type(translate).__name__}")
        self._translate = translate
        self._config = config
        self._output_hw = output_hw
        self._geometries: dict[tuple[int, int], Geometry] = {}
        self._inputs = inputs
        self._outputs = outputs
        self._device = torch.device(config.device)
        self.model_seconds = 0.0
        self.frames_in = 0
        self.frames_out = 0
        self.batches = 0

    def geometry(self, source_hw: tuple[int, int]) -> Geometry:
        geometry = self._geometries.get(source_hw)
        if geometry is None:
            geometry = self._geometries[source_hw] = Geometry.plan(
                source_hw,
                output_hw=self._output_hw or source_hw,
                max_side=self._config.max_side,
                size_multiple=self._config.size_multiple,
            )
            logger.debug("geometry for %s: %s", source_hw, geometry)
        return geometry

    def run(self) -> None:
        live = self._config.mode == "live"
        carry: Frame | None = None
        while True:
            first = carry if carry is not None else self._inputs.get()
            carry = None
            if first is None:
                return
            batch = [first]
            while len(batch) < self._config.batch_size:
                # Live mode never waits for a batch to fill: latency beats throughput there.
                nxt = self._inputs.get(block=not live)
                if nxt is None:
                    break
                if nxt.data.shape != first.data.shape or nxt.time_base != first.time_base:
                    carry = nxt
                    break
                batch.append(nxt)
            self.frames_in += len(batch)
            with self.timed():
                frames = self._process(batch)
            for frame in frames:
                self._outputs.put(frame)
                self.frames_out += 1

    def finish(self) -> None:
        self._outputs.close()

    def _process(self, frames: list[Frame]) -> list[Frame]:
        if self.stop_event.is_set():
            raise PipelineStopped
        batch = FrameBatch.from_frames(frames)
        geometry = self.geometry((frames[0].height, frames[0].width))
        with torch.inference_mode():
            x = geometry.to_model(batch.data.to(self._device, non_blocking=True))
            t0 = time.perf_counter()
            y = self._translate(x)
            if isinstance(y, torch.Tensor) and y.device.type == "cuda":
                torch.cuda.synchronize(y.device)  # model time must not include later stages' waits
            self.model_seconds += time.perf_counter() - t0
            _check_output(x, y)
            out = geometry.from_model(y)
        self.batches += 1
        return batch.to_frames(out)


def _check_output(x: torch.Tensor, y: object) -> None:
    if not isinstance(y, torch.Tensor):
        raise TranslateOutputError(f"translate must return a torch.Tensor, got {type(y).__name__}")
    if y.shape != x.shape:
        raise TranslateOutputError(
            f"translate must return its input's shape (N, 3, H, W) = {tuple(x.shape)}, got {tuple(y.shape)}"
        )
    if not y.is_floating_point():
        raise TranslateOutputError(f"translate must return a floating-point tensor in [-1, 1], got dtype {y.dtype}")
