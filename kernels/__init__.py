"""Pixel conversion between decoded PyAV frames and the generator's RGB tensor (NCHW-ready, [-1, 1]).

Public API::

    frame_to_tensor(frame, *, device="cpu", method="auto", chroma_location=None, out=None)
        -> Tensor (3, H, W) float32 in [-1, 1]
    frames_to_tensor(frames, *, device="cpu", method="auto", chroma_location=None) -> Tensor (N, 3, H, W)
    tensor_to_frame(t, *, format="yuv420p", colorspace="bt601", color_range="limited", method="auto")
        -> av.VideoFrame
    tensor_to_frames(t, **same) -> list[av.VideoFrame]
    frame_colour(frame) -> (matrix, range)      # what frame_to_tensor assumes for a frame's tags
    cuda_available() -> bool

Input formats: ``yuv420p``, ``yuvj420p``, ``nv12``, ``yuv420p10le``; output formats: ``yuv420p``, ``nv12``,
``yuv420p10le``.  Matrices BT.601/BT.709/BT.2020-NCL (plus FCC and SMPTE 240M, which libswscale also
knows), limited and full range, chosen from ``frame.colorspace``/``frame.color_range`` exactly as
libswscale does (untagged = BT.601 limited).  The conversion itself is the specification in
:mod:`kernels._colour`; PyAV reproduces it with ``interpolation=REFERENCE_SWS_FLAGS``.

``method`` selects the implementation:

* ``"pyav"`` -- libswscale through 8-bit planar RGB, i.e. the PyAV reference conversion itself (10-bit input
  is therefore rounded to 8-bit RGB);
* ``"reference"`` -- the torch specification in :mod:`kernels._cpu`;
* ``"cuda"`` -- the CuPy kernels (needs ``pip install 'rt-anime[gpu]'``);
* ``"auto"`` -- ``"cuda"`` for CUDA devices/tensors when CuPy is usable (without it, the CPU conversion and one
  copy to or from the device), otherwise ``"pyav"``, which ``bench/bench_kernels.py``
  measured fastest among the conversions that meet the <= 1 LSB bar.  Exceptions, both using
  ``"reference"``: ``yuv420p10le`` output (libswscale would only get 8-bit RGB -- its 16-bit/float RGB input
  is biased -- which defeats the point of 10-bit output) and ``chroma_location="left"`` input (PyAV 18 cannot
  tell libswscale a siting).

Chroma siting is centred unless ``chroma_location="left"`` is passed; decoded H.264/HEVC/MPEG-2 frames are
normally left-sited, and libswscale would honour their hidden tag, but PyAV 18 hides it from Python.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import av
import numpy as np
import torch

from kernels import _colour, _cuda, _frames, nv12, yuv420p, yuv420p10
from kernels._colour import MATRICES, REFERENCE_SWS_FLAGS
from kernels._cuda import cuda_available
from kernels._frames import frame_colour

__all__ = [
    "INPUT_FORMATS",
    "MATRICES",
    "METHODS",
    "OUTPUT_FORMATS",
    "REFERENCE_SWS_FLAGS",
    "cuda_available",
    "frame_colour",
    "frame_to_tensor",
    "frames_to_tensor",
    "tensor_to_frame",
    "tensor_to_frames",
]

logger = logging.getLogger(__name__)

_MODULES: dict[str, ModuleType] = {"yuv420p": yuv420p, "yuvj420p": yuv420p, "nv12": nv12, "yuv420p10le": yuv420p10}
INPUT_FORMATS: tuple[str, ...] = tuple(_MODULES)
OUTPUT_FORMATS: tuple[str, ...] = ("yuv420p", "nv12", "yuv420p10le")
METHODS: tuple[str, ...] = ("auto", "pyav", "reference", "cuda")


@dataclass(frozen=True)
class _Conversions:
    """The four plane-level conversions of one pixel layout."""

    to_rgb_cpu: Callable[..., torch.Tensor]
    to_rgb_cuda: Callable[..., torch.Tensor]
    from_rgb_cpu: Callable[..., tuple]
    from_rgb_cuda: Callable[..., tuple]


_CONVERSIONS: dict[ModuleType, _Conversions] = {
    yuv420p: _Conversions(
        yuv420p.yuv420p_to_rgb_cpu, yuv420p.yuv420p_to_rgb_cuda, yuv420p.rgb_to_yuv420p_cpu, yuv420p.rgb_to_yuv420p_cuda
    ),
    nv12: _Conversions(nv12.nv12_to_rgb_cpu, nv12.nv12_to_rgb_cuda, nv12.rgb_to_nv12_cpu, nv12.rgb_to_nv12_cuda),
    yuv420p10: _Conversions(
        yuv420p10.yuv420p10_to_rgb_cpu,
        yuv420p10.yuv420p10_to_rgb_cuda,
        yuv420p10.rgb_to_yuv420p10_cpu,
        yuv420p10.rgb_to_yuv420p10_cuda,
    ),
}


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not supported; expected one of: {', '.join(METHODS)}")


def _input_module(frame: av.VideoFrame) -> ModuleType:
    name = frame.format.name
    if name not in _MODULES:
        raise ValueError(f"frame.format={name!r} is not supported; expected one of: {', '.join(INPUT_FORMATS)}")
    return _MODULES[name]


def _upload_planes(frame: av.VideoFrame, module: ModuleType, device: torch.device) -> list[torch.Tensor]:
    """Device views of a frame's planes, shaped as the module's ``*_cuda`` functions expect."""
    # Each padded plane goes up as one contiguous copy; the kernel then skips the padding via strides.
    dtype = np.uint16 if module is yuv420p10 else np.uint8
    uploaded = []
    for plane in frame.planes:
        host = _frames.padded_plane(plane, dtype)
        uploaded.append(torch.from_numpy(host.view(np.int16) if dtype is np.uint16 else host).to(device))
    cw, ch = _colour.chroma_size(frame.width, frame.height)
    if module is nv12:
        return [uploaded[0][:, : frame.width], uploaded[1][:, : 2 * cw].unflatten(1, (cw, 2))]
    return [uploaded[0][:, : frame.width], uploaded[1][:ch, :cw], uploaded[2][:ch, :cw]]


def frame_to_tensor(
    frame: av.VideoFrame,
    *,
    device: str | torch.device = "cpu",
    method: str = "auto",
    chroma_location: str | int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Convert a decoded frame to the generator's input tensor.

    Args:
        frame: A ``yuv420p``, ``yuvj420p``, ``nv12`` or ``yuv420p10le`` frame; its ``colorspace`` and
            ``color_range`` tags select the matrix and range (untagged: BT.601, limited).
        device: Where the tensor should live.  For CUDA devices (with CuPy) only the 4:2:0 planes are uploaded
            and the conversion runs on the GPU.
        method: ``"auto"``, ``"pyav"``, ``"reference"`` or ``"cuda"`` (see the module docstring).
        chroma_location: Chroma siting of the stream: ``None``/``"center"`` (libswscale's reading of an
            untagged frame) or ``"left"`` (the H.264/HEVC/MPEG-2 default, which FFmpeg's decoders tag).  PyAV 18
            hides the frame's own tag, so pass ``"left"`` for such streams to convert their chroma exactly
            where it belongs; ``"pyav"`` cannot do ``"left"``, so ``"auto"`` then uses ``"reference"`` on CPU.
        out: Optional contiguous float32 tensor (3, H, W) on ``device`` to write into.

    Returns:
        Float32 tensor (3, H, W) in [-1, 1] on ``device``.

    Raises:
        ValueError: For unsupported formats, colour tags or methods.
        RuntimeError: For ``method="cuda"`` without CuPy/CUDA.
    """
    _check_method(method)
    module = _input_module(frame)
    matrix, color_range = frame_colour(frame)
    _colour.check_size(frame.width, frame.height)
    device = torch.device(device)
    shape = (3, frame.height, frame.width)
    if out is not None and (tuple(out.shape) != shape or out.dtype != torch.float32 or not out.is_contiguous()):
        raise ValueError(
            f"out must be a contiguous float32 tensor of shape {shape}, got {out.dtype} {tuple(out.shape)}"
        )
    siting = _colour.resolve_chroma_location(chroma_location)
    if method == "auto":
        on_gpu = device.type == "cuda" and cuda_available()
        method = "cuda" if on_gpu else ("pyav" if siting == "center" else "reference")
    if method == "pyav" and siting != "center":
        raise ValueError(
            f"method='pyav' cannot convert chroma_location={siting!r}: PyAV 18 cannot set a frame's chroma "
            "location; use method='reference', 'cuda' or 'auto'"
        )
    logger.debug(
        "frame_to_tensor %s %dx%d %s/%s/%s via %s",
        frame.format.name,
        *shape[:0:-1],
        matrix,
        color_range,
        siting,
        method,
    )
    kw = {"matrix": matrix, "color_range": color_range, "chroma_location": siting}
    if method == "cuda":
        _cuda.require_cupy()
        if device.type != "cuda":
            raise ValueError(f"method='cuda' needs a CUDA device, got device={str(device)!r}")
        planes = _upload_planes(frame, module, device)
        return _CONVERSIONS[module].to_rgb_cuda(*planes, **kw, out=out)
    if method == "pyav":
        result = out if out is not None and out.device.type == "cpu" else torch.empty(shape, dtype=torch.float32)
        _frames.pyav_to_tensor(frame, matrix, color_range, result)
    else:
        planes = module.frame_planes(frame)
        result = _CONVERSIONS[module].to_rgb_cpu(*planes, **kw)
    if out is not None:
        return result if out is result else out.copy_(result)
    return result.to(device)


def frames_to_tensor(
    frames: Sequence[av.VideoFrame],
    *,
    device: str | torch.device = "cpu",
    method: str = "auto",
    chroma_location: str | int | None = None,
) -> torch.Tensor:
    """Convert equally sized frames into one batch.

    Args:
        frames: Frames as accepted by :func:`frame_to_tensor`; formats and tags may differ per frame.
        device: Where the batch should live.
        method: As for :func:`frame_to_tensor`.
        chroma_location: As for :func:`frame_to_tensor`.

    Returns:
        Float32 tensor (N, 3, H, W) in [-1, 1].

    Raises:
        ValueError: If ``frames`` is empty or the frames differ in size.
    """
    if not frames:
        raise ValueError("frames is empty; expected at least one frame")
    width, height = frames[0].width, frames[0].height
    for i, frame in enumerate(frames):
        if (frame.width, frame.height) != (width, height):
            raise ValueError(f"frames[{i}] is {frame.width}x{frame.height}; expected {width}x{height} like frames[0]")
    batch = torch.empty((len(frames), 3, height, width), dtype=torch.float32, device=device)
    for i, frame in enumerate(frames):
        frame_to_tensor(frame, device=device, method=method, chroma_location=chroma_location, out=batch[i])
    return batch


def tensor_to_frame(
    t: torch.Tensor,
    *,
    format: str = "yuv420p",
    colorspace: str | int | None = "bt601",
    color_range: str | int | None = "limited",
    method: str = "auto",
) -> av.VideoFrame:
    """Convert a generator output tensor to a frame ready for encoding.

    Args:
        t: Float tensor (3, H, W) in [-1, 1] (values outside are clamped), on the CPU or a CUDA device.
        format: ``"yuv420p"``, ``"nv12"`` or ``"yuv420p10le"``.
        colorspace: Matrix name or ``AVColorSpace`` value (pass the source frame's ``colorspace`` to keep
            it); the frame is tagged with it.
        color_range: ``"limited"``/``"full"`` or an ``AVColorRange`` value; the frame is tagged with it.
        method: ``"auto"``, ``"pyav"``, ``"reference"`` or ``"cuda"``; ``"auto"`` converts CUDA tensors on
            the GPU and downloads only the 4:2:0 planes (with CuPy; without it, on the CPU after a download).

    Returns:
        A new frame with ``colorspace`` and ``color_range`` set.

    Raises:
        ValueError: For unsupported formats, colour designations, methods or tensor shapes.
        RuntimeError: For ``method="cuda"`` without CuPy/CUDA.
    """
    _check_method(method)
    if format not in OUTPUT_FORMATS:
        raise ValueError(f"format={format!r} is not supported; expected one of: {', '.join(OUTPUT_FORMATS)}")
    if t.ndim != 3 or t.shape[0] != 3:
        raise ValueError(f"t must have shape (3, H, W), got {tuple(t.shape)}")
    matrix, rng = _colour.resolve_matrix(colorspace), _colour.resolve_range(color_range)
    if method == "auto":
        # libswscale only gets 8-bit RGB in (see _frames.pyav_from_tensor), which would throw away what 10-bit
        # output is for, so 10-bit output on the CPU uses the exact reference instead.
        method = "cuda" if t.is_cuda and cuda_available() else ("reference" if format == "yuv420p10le" else "pyav")
    module = _MODULES[format]
    logger.debug("tensor_to_frame %s %s/%s via %s", format, matrix, rng, method)
    if method == "cuda":
        _cuda.require_cupy()
        planes = _CONVERSIONS[module].from_rgb_cuda(t.detach().to(torch.float32), matrix=matrix, color_range=rng)
        return module.frame_from_planes(*planes, matrix=matrix, color_range=rng)
    rgb = t.detach().to(device="cpu", dtype=torch.float32)
    _colour.check_size(rgb.shape[2], rgb.shape[1])
    if method == "pyav":
        return _frames.pyav_from_tensor(rgb, format, matrix, rng)
    planes = _CONVERSIONS[module].from_rgb_cpu(rgb, matrix=matrix, color_range=rng)
    return module.frame_from_planes(*planes, matrix=matrix, color_range=rng)


def tensor_to_frames(t: torch.Tensor, **kwargs: Any) -> list[av.VideoFrame]:
    """Convert a batch (N, 3, H, W) into N frames; keyword arguments as for :func:`tensor_to_frame`.

    Raises:
        ValueError: If ``t`` is not 4-D.
    """
    if t.ndim != 4:
        raise ValueError(f"t must have shape (N, 3, H, W), got {tuple(t.shape)}")
    return [tensor_to_frame(item, **kwargs) for item in t]
