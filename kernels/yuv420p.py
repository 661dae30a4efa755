"""8-bit planar 4:2:0 (``yuv420p``) <-> RGB tensor in [-1, 1].

The CPU functions are the executable specification (see :mod:`kernels._colour`); the CUDA functions run the
same arithmetic as CuPy ``RawKernel`` launches and agree with it to within one 8-bit step.

Example:
    >>> y, u, v = frame_planes(frame)                       # strided views, no copy
    >>> rgb = yuv420p_to_rgb_cpu(y, u, v, matrix="bt709")   # (3, H, W) float32 in [-1, 1]
    >>> out = frame_from_planes(*rgb_to_yuv420p_cpu(rgb, matrix="bt709"), matrix="bt709")
"""

from __future__ import annotations

from typing import Any

import av
import numpy as np
import torch

from kernels import _colour, _cpu, _cuda, _frames

FORMAT = "yuv420p"
BITS = 8


def frame_planes(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Strided views of the Y, U and V planes of a ``yuv420p`` (or ``yuvj420p``) frame.

    Args:
        frame: The frame; its memory is shared with the returned arrays.

    Returns:
        ``(y, u, v)`` uint8 arrays of shapes (H, W), (ceil(H/2), ceil(W/2)) and the same.

    Raises:
        ValueError: If the frame has another pixel format.
    """
    if frame.format.name not in (FORMAT, "yuvj420p"):
        raise ValueError(f"frame.format={frame.format.name!r} is not supported here; expected yuv420p or yuvj420p")
    return tuple(_frames.plane_view(p, np.uint8) for p in frame.planes[:3])  # type: ignore[return-value]


def frame_from_planes(
    y: Any, u: Any, v: Any, *, matrix: str | int = "bt601", color_range: str | int = "limited"
) -> av.VideoFrame:
    """Copy Y, U, V planes (numpy, CPU or CUDA tensors) into a new tagged ``yuv420p`` frame.

    Args:
        y: Luma plane (H, W) of uint8.
        u: Cb plane (ceil(H/2), ceil(W/2)).
        v: Cr plane.
        matrix: Matrix the samples were computed with; written to ``frame.colorspace``.
        color_range: Range of the samples; written to ``frame.color_range``.

    Returns:
        The new frame.

    Raises:
        ValueError: If a plane's shape does not fit the frame size given by the luma plane.
    """
    matrix, color_range = _colour.resolve_matrix(matrix), _colour.resolve_range(color_range)
    planes = [_frames.to_numpy(p, np.uint8) for p in (y, u, v)]
    height, width = planes[0].shape
    frame = _frames.new_frame(FORMAT, width, height, matrix, color_range)
    for dst, src, name in zip(frame.planes, planes, "yuv"):
        _frames.write_plane(dst, src, name)
    return frame


def yuv420p_to_rgb_cpu(
    y: _cpu.ArrayLike,
    u: _cpu.ArrayLike,
    v: _cpu.ArrayLike,
    *,
    matrix: str | int = "bt601",
    color_range: str | int = "limited",
    chroma_location: str | int | None = "center",
) -> torch.Tensor:
    """Convert 8-bit 4:2:0 planes to RGB on the CPU (reference implementation).

    Args:
        y: Luma plane (H, W), uint8; strided views such as :func:`frame_planes` returns are fine.
        u: Cb plane (ceil(H/2), ceil(W/2)), uint8.
        v: Cr plane, same shape as ``u``.
        matrix: Colour matrix name or ``AVColorSpace`` value (see :func:`kernels._colour.resolve_matrix`).
        color_range: ``"limited"``/``"full"`` or an ``AVColorRange`` value.
        chroma_location: ``"center"`` (libswscale's reading of untagged frames) or ``"left"`` (H.264/HEVC).

    Returns:
        Float32 tensor (3, H, W) in [-1, 1].

    Raises:
        TypeError: If a plane is not uint8.
        ValueError: If the plane shapes or colour designations are invalid.
    """
    planes = [_cpu.as_tensor(p, name) for p, name in ((y, "y"), (u, "u"), (v, "v"))]
    for p, name in zip(planes, "yuv"):
        _cpu.check_dtype(p, name, BITS)
    return _cpu.yuv_to_rgb(
        *planes,
        matrix=_colour.resolve_matrix(matrix),
        color_range=_colour.resolve_range(color_range),
        bits=BITS,
        chroma_location=_colour.resolve_chroma_location(chroma_location),
    )


def rgb_to_yuv420p_cpu(
    rgb: torch.Tensor, *, matrix: str | int = "bt601", color_range: str | int = "limited"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert an RGB tensor to 8-bit 4:2:0 planes on the CPU (reference implementation).

    Args:
        rgb: Tensor (3, H, W) in [-1, 1]; out-of-range values are clamped.
        matrix: Colour matrix name or ``AVColorSpace`` value.
        color_range: ``"limited"``/``"full"`` or an ``AVColorRange`` value.

    Returns:
        ``(y, u, v)`` contiguous uint8 arrays of shapes (H, W), (ceil(H/2), ceil(W/2)) and the same.

    Raises:
        ValueError: If ``rgb`` is not (3, H, W) or the colour designations are invalid.
    """
    planes = _cpu.rgb_to_yuv(
        _cpu.as_tensor(rgb, "rgb"),
        matrix=_colour.resolve_matrix(matrix),
        color_range=_colour.resolve_range(color_range),
        bits=BITS,
    )
    return tuple(p.numpy() for p in planes)  # type: ignore[return-value]


def yuv420p_to_rgb_cuda(
    y: Any,
    u: Any,
    v: Any,
    *,
    matrix: str | int = "bt601",
    color_range: str | int = "limited",
    chroma_location: str | int | None = "center",
    out: Any = None,
) -> torch.Tensor:
    """Convert 8-bit 4:2:0 planes on the GPU (one thread per pixel).

    Args:
        y: Luma plane (H, W) as a uint8 CUDA tensor or CuPy array, any strides (a padded upload sliced to
            the frame width is fine).
        u: Cb plane (ceil(H/2), ceil(W/2)).
        v: Cr plane.
        matrix: Colour matrix name or ``AVColorSpace`` value.
        color_range: ``"limited"``/``"full"`` or an ``AVColorRange`` value.
        chroma_location: ``"center"`` (libswscale's reading of untagged frames) or ``"left"`` (H.264/HEVC).
        out: Optional contiguous float32 CUDA tensor (3, H, W) to fill, e.g. one slot of a batch.

    Returns:
        Float32 CUDA tensor (3, H, W) in [-1, 1] on the planes' device.

    Raises:
        RuntimeError: If CuPy or a CUDA device is missing (install ``rt-anime[gpu]``).
        ValueError: If shapes or colour designations are invalid.
    """
    _cuda.require_cupy()
    return _cuda.yuv420_to_rgb(
        y,
        u,
        v,
        matrix=_colour.resolve_matrix(matrix),
        color_range=_colour.resolve_range(color_range),
        bits=BITS,
        chroma_location=_colour.resolve_chroma_location(chroma_location),
        out=out,
    )


def rgb_to_yuv420p_cuda(
    rgb: Any, *, matrix: str | int = "bt601", color_range: str | int = "limited"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Convert an RGB tensor to 8-bit 4:2:0 planes on the GPU (one thread per 2x2 luma block).

    Args:
        rgb: Float32 CUDA tensor or CuPy array (3, H, W) in [-1, 1], any strides.
        matrix: Colour matrix name or ``AVColorSpace`` value.
        color_range: ``"limited"``/``"full"`` or an ``AVColorRange`` value.

    Returns:
        ``(y, u, v)`` contiguous uint8 CUDA tensors on ``rgb``'s device.

    Raises:
        RuntimeError: If CuPy or a CUDA device is missing (install ``rt-anime[gpu]``).
        ValueError: If ``rgb`` is not float32 (3, H, W) or the colour designations are invalid.
    """
    _cuda.require_cupy()
    height, width = rgb.shape[-2:]
    cw, ch = _colour.chroma_size(width, height)
    device = _cuda.device_of(rgb)
    y = torch.empty((height, width), dtype=torch.uint8, device=device)
    u = torch.empty((ch, cw), dtype=torch.uint8, device=device)
    v = torch.empty((ch, cw), dtype=torch.uint8, device=device)
    _cuda.rgb_to_yuv420(
        rgb, y, u, v, matrix=_colour.resolve_matrix(matrix), color_range=_colour.resolve_range(color_range), bits=BITS
    )
    return y, u, v
