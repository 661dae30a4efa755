"""8-bit semi-planar 4:2:0 (``nv12``: Y plane + interleaved CbCr plane) <-> RGB tensor in [-1, 1].

NV12 is what hardware decoders (NVDEC, VA-API, VideoToolbox) hand out, so on the GPU path it avoids a
deinterleave: the kernels read the CbCr plane directly with a column stride of two.  The CPU functions are
the executable specification (see :mod:`kernels._colour`); the CUDA functions run the same arithmetic.

Example:
    >>> y, uv = frame_planes(frame)                       # strided views, no copy; uv is (H/2, W/2, 2)
    >>> rgb = nv12_to_rgb_cpu(y, uv, matrix="bt709")      # (3, H, W) float32 in [-1, 1]
    >>> out = frame_from_planes(*rgb_to_nv12_cpu(rgb, matrix="bt709"), matrix="bt709")
"""

from __future__ import annotations

from typing import Any

import av
import numpy as np
import torch

from kernels import _colour, _cpu, _cuda, _frames

FORMAT = "nv12"
BITS = 8


def _split_uv(uv: Any, name: str = "uv") -> tuple[Any, Any]:
    """Cb and Cr as strided views of an interleaved (rows, cols, 2) chroma plane."""
    if uv.ndim != 3 or uv.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (rows, cols, 2) with interleaved Cb, Cr; got {tuple(uv.shape)}")
    return uv[..., 0], uv[..., 1]


def frame_planes(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray]:
    """Strided views of the Y plane and the interleaved CbCr plane of an ``nv12`` frame.

    Args:
        frame: The frame; its memory is shared with the returned arrays.

    Returns:
        ``(y, uv)`` uint8 arrays of shapes (H, W) and (ceil(H/2), ceil(W/2), 2).

    Raises:
        ValueError: If the frame has another pixel format.
    """
    if frame.format.name != FORMAT:
        raise ValueError(f"frame.format={frame.format.name!r} is not supported here; expected {FORMAT}")
    return _frames.plane_view(frame.planes[0], np.uint8), _frames.plane_view(frame.planes[1], np.uint8, 2)


def frame_from_planes(
    y: Any, uv: Any, *, matrix: str | int = "bt601", color_range: str | int = "limited"
) -> av.VideoFrame:
    """Copy a Y plane and an interleaved CbCr plane (numpy, CPU or CUDA tensors) into a new ``nv12`` frame.

    Args:
        y: Luma plane (H, W) of uint8.
        uv: Interleaved chroma (ceil(H/2), ceil(W/2), 2) of uint8.
        matrix: Matrix the samples were computed with; written to ``frame.colorspace``.
        color_range: Range of the samples; written to ``frame.color_range``.

    Returns:
        The new frame.

    Raises:
        ValueError: If a plane's shape does not fit the frame size given by the luma plane.
    """
    matrix, color_range = _colour.resolve_matrix(matrix), _colour.resolve_range(color_range)
    y_np, uv_np = _frames.to_numpy(y, np.uint8), _frames.to_numpy(uv, np.uint8)
    height, width = y_np.shape
    frame = _frames.new_frame(FORMAT, width, height, matrix, color_range)
    _frames.write_plane(frame.planes[0], y_np, "y")
    _frames.write_plane(frame.planes[1], uv_np, "uv", components=2)
    return frame


def nv12_to_rgb_cpu(
    y: _cpu.ArrayLike,
    uv: _cpu.ArrayLike,
    *,
    matrix: str | int = "bt601",
    color_range: str | int = "limited",
    chroma_location: str | int | None = "center",
) -> torch.Tensor:
    """Convert NV12 planes to RGB on the CPU (reference implementation).

    Args:
        y: Luma plane (H, W), uint8; strided views such as :func:`frame_planes` returns are fine.
        uv: Interleaved chroma (ceil(H/2), ceil(W/2), 2), uint8.
        matrix: Colour matrix name or ``AVColorSpace`` value (see :func:`kernels._colour.resolve_matrix`).
        color_range: ``"limited"``/``"full"`` or an ``AVColorRange`` value.
        chroma_location: ``"center"`` (libswscale's reading of untagged frames) or ``"left"`` (H.264/HEVC).

    Returns:
        Float32 tensor (3, H, W) in [-1, 1].

    Raises:
        TypeError: If a plane is not uint8.
        ValueError: If the plane shapes or colour designations are invalid.
    """
    y_t, uv_t = _cpu.as_tensor(y, "y"), _cpu.as_tensor(uv, "uv")
    _cpu.check_dtype(y_t, "y", BITS)
    _cpu.check_dtype(uv_t, "uv", BITS)
    u_t, v_t = _split_uv(uv_t)
    return _cpu.yuv_to_rgb(
        y_t,
        u_t,
        v_t,
        matrix=_colour.resolve_matrix(matrix),
        color_range=_colour.resolve_range(color_range),
        bits=BITS,
        chroma_location=_colour.resolve_chroma_location(chroma_location),
    )


def rgb_to_nv12_cpu(
    rgb: torch.Tensor, *, matrix: str | int = "bt601", color_range: str | int = "limited"
) -> tuple[np.ndarray, np.ndarray]:
    """Convert an RGB tensor to NV12 planes on the CPU (reference implementation).

    Args:
        rgb: Tensor (3, H, W) in [-1, 1]; out-of-range values are clamped.
        matrix: Colour matrix name or ``AVColorSpace`` value.
        color_range: ``"limited"``/``"full"`` or an ``AVColorRange`` value.

    Returns:
        ``(y, uv)`` contiguous uint8 arrays of shapes (H, W) and (ceil(H/2), ceil(W/2), 2).

    Raises:
        ValueError: If ``rgb`` is not (3, H, W) or the colour designations are invalid.
    """
    y, u, v = _cpu.rgb_to_yuv(
        _cpu.as_tensor(rgb, "rgb"),
        matrix=_colour.resolve_matrix(matrix),
        color_range=_colour.resolve_range(color_range),
        bits=BITS,
    )
    return y.numpy(), torch.stack((u, v), dim=-1).numpy()


def nv12_to_rgb_cuda(
    y: Any,
    uv: Any,
    *,
    matrix: str | int = "bt601",
    color_range: str | int = "limited",
    chroma_location: str | int | None = "center",
    out: Any = None,
) -> torch.Tensor:
    """Convert NV12 planes on the GPU (one thread per pixel), reading CbCr in place.

    Args:
        y: Luma plane (H, W) as a uint8 CUDA tensor or CuPy array, any strides.
        uv: Interleaved chroma (ceil(H/2), ceil(W/2), 2), any row stride (column stride 2, component stride 1
            as in the frame).
        matrix: Colour matrix name or ``AVColorSpace`` value.
        color_range: ``"limited"``/``"full"`` or an ``AVColorRange`` value.
        chroma_location: ``"center"`` (libswscale's reading of untagged frames) or ``"left"`` (H.264/HEVC).
        out: Optional contiguous float32 CUDA tensor (3, H, W) to fill.

    Returns:
        Float32 CUDA tensor (3, H, W) in [-1, 1] on the planes' device.

    Raises:
        RuntimeError: If CuPy or a CUDA device is missing (install ``rt-anime[gpu]``).
        ValueError: If shapes or colour designations are invalid.
    """
    _cuda.require_cupy()
    u, v = _split_uv(uv)
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


def rgb_to_nv12_cuda(
    rgb: Any, *, matrix: str | int = "bt601", color_range: str | int = "limited"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert an RGB tensor to NV12 planes on the GPU (one thread per 2x2 luma block).

    Args:
        rgb: Float32 CUDA tensor or CuPy array (3, H, W) in [-1, 1], any strides.
        matrix: Colour matrix name or ``AVColorSpace`` value.
        color_range: ``"limited"``/``"full"`` or an ``AVColorRange`` value.

    Returns:
        ``(y, uv)`` contiguous uint8 CUDA tensors of shapes (H, W) and (ceil(H/2), ceil(W/2), 2).

    Raises:
        RuntimeError: If CuPy or a CUDA device is missing (install ``rt-anime[gpu]``).
        ValueError: If ``rgb`` is not float32 (3, H, W) or the colour designations are invalid.
    """
    _cuda.require_cupy()
    height, width = rgb.shape[-2:]
    cw, ch = _colour.chroma_size(width, height)
    device = _cuda.device_of(rgb)
    y = torch.empty((height, width), dtype=torch.uint8, device=device)
    uv = torch.empty((ch, cw, 2), dtype=torch.uint8, device=device)
    u, v = _split_uv(uv)
    _cuda.rgb_to_yuv420(
        rgb, y, u, v, matrix=_colour.resolve_matrix(matrix), color_range=_colour.resolve_range(color_range), bits=BITS
    )
    return y, uv
