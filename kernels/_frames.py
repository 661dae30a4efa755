"""PyAV frame plumbing: zero-copy plane views, tagged output frames and the libswscale conversion path.

PyAV pads every plane row to ``plane.line_size`` bytes (typically a multiple of 32 or 64), so a plane is a
``(height, line_size / itemsize)`` buffer of which only the first ``width * components`` columns are pixels.
Everything here hands out strided numpy views of those buffers instead of copies.

:func:`pyav_to_tensor` / :func:`pyav_from_tensor` are the ``method="pyav"`` implementations: libswscale with
``REFERENCE_SWS_FLAGS``, through 8-bit planar RGB (``gbrp``).
"""

from __future__ import annotations

import threading
from typing import Any

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from kernels import _colour

# Canonical names -> PyAV's reformat() enum names.
SWS_COLORSPACE = {"bt601": "ITU601", "bt709": "ITU709", "bt2020": "BT2020", "fcc": "FCC", "smpte240m": "SMPTE240M"}
SWS_RANGE = {"limited": "MPEG", "full": "JPEG"}
# PyAV's reformatter keeps its SwsContext between calls with the same parameters; one per thread because
# an SwsContext must not be shared by concurrent conversions.
_local = threading.local()


def _reformatter() -> VideoReformatter:
    if not hasattr(_local, "reformatter"):
        _local.reformatter = VideoReformatter()
    return _local.reformatter


def plane_view(plane: Any, dtype: np.dtype | type, components: int = 1) -> np.ndarray:
    """A strided view of the pixels of one plane.

    Args:
        plane: A ``VideoPlane`` (or anything exposing ``width``, ``height``, ``line_size`` and the buffer
            protocol).
        dtype: Sample type (``np.uint8``, ``np.uint16`` or ``np.float32``).
        components: Interleaved samples per pixel (2 for the NV12 chroma plane).

    Returns:
        Array of shape (height, width) -- or (height, width, components) when ``components > 1`` -- that
        shares memory with the frame.
    """
    itemsize = np.dtype(dtype).itemsize
    rows = np.frombuffer(plane, dtype=dtype, count=plane.height * (plane.line_size // itemsize))
    rows = rows.reshape(plane.height, plane.line_size // itemsize)[:, : plane.width * components]
    if components > 1:
        rows = rows.reshape(plane.height, plane.width, components)
    return rows


def write_plane(plane: Any, src: np.ndarray, name: str, components: int = 1) -> None:
    """Copy ``src`` into the pixel area of a plane, leaving its row padding alone.

    Args:
        plane: Destination ``VideoPlane``.
        src: Samples of the plane's dtype, shaped like :func:`plane_view` of the plane.
        name: Parameter name used in error messages.
        components: Interleaved samples per pixel (2 for the NV12 chroma plane).

    Raises:
        ValueError: If ``src`` does not have the plane's shape.
    """
    dst = plane_view(plane, src.dtype, components)
    if src.shape != dst.shape:
        raise ValueError(f"{name} has shape {src.shape}; this frame needs {dst.shape}")
    dst[...] = src


def untagged_copy(frame: av.VideoFrame) -> av.VideoFrame:
    """Copy a frame's pixels into a fresh frame whose ``chroma_location`` is unspecified.

    libswscale honours ``AVFrame.chroma_location`` (decoders tag H.264/HEVC frames LEFT), but PyAV 18 can
    neither read nor reset it, so a copy is the only way to make libswscale use the centred siting the
    other paths assume.  Only pixel rows are copied (~0.1 ms for 720p); colour tags are not.

    Args:
        frame: The source frame.

    Returns:
        The copy.
    """
    copy = av.VideoFrame(frame.width, frame.height, frame.format.name)
    for src, dst in zip(frame.planes, copy.planes):
        row_bytes = min(src.line_size, dst.line_size)  # both are at least the pixel bytes of a row
        src_rows = np.frombuffer(src, np.uint8, count=src.height * src.line_size).reshape(src.height, -1)
        dst_rows = np.frombuffer(dst, np.uint8, count=dst.height * dst.line_size).reshape(dst.height, -1)
        dst_rows[:, :row_bytes] = src_rows[:, :row_bytes]
    return copy


def padded_plane(plane: Any, dtype: np.dtype | type) -> np.ndarray:
    """The whole (height, line_size / itemsize) buffer of a plane, padding included, as one contiguous array.

    Uploading this (rather than the strided pixel view) lets a GPU copy run as one contiguous transfer.
    """
    itemsize = np.dtype(dtype).itemsize
    rows = np.frombuffer(plane, dtype=dtype, count=plane.height * (plane.line_size // itemsize))
    return rows.reshape(plane.height, plane.line_size // itemsize)


def to_numpy(a: Any, dtype: np.dtype | type) -> np.ndarray:
    """Host numpy view/copy of a plane produced by a CPU or CUDA conversion, reinterpreted as ``dtype``."""
    if isinstance(a, torch.Tensor):
        a = a.detach()
        if a.dtype == torch.uint16:  # numpy interop of torch.uint16 is not guaranteed across versions
            a = a.view(torch.int16)
        a = a.cpu().numpy()
    elif not isinstance(a, np.ndarray):  # CuPy
        a = a.get()
    dtype = np.dtype(dtype)
    if a.dtype == dtype:
        return a
    return a.view(dtype) if a.dtype.itemsize == dtype.itemsize else a.astype(dtype)


def new_frame(fmt: str, width: int, height: int, matrix: str, color_range: str) -> av.VideoFrame:
    """Allocate a frame tagged with the colour matrix and range its samples were computed with.

    Args:
        fmt: Pixel format name.
        width: Frame width.
        height: Frame height.
        matrix: Canonical matrix name.
        color_range: ``"limited"`` or ``"full"``.

    Returns:
        A new, writable frame whose planes still have to be filled.
    """
    frame = av.VideoFrame(width, height, fmt)
    frame.colorspace = _colour.MATRIX_TO_AVCOL_SPC[matrix]
    frame.color_range = _colour.RANGE_TO_AVCOL_RANGE[color_range]
    return frame


def frame_colour(frame: av.VideoFrame) -> tuple[str, str]:
    """Matrix and range a frame's samples are in, resolved the way libswscale resolves them.

    ``yuvj420p`` is full range whatever its tag says, as in libswscale.

    Args:
        frame: The decoded frame.

    Returns:
        ``(matrix, color_range)`` canonical names.

    Raises:
        ValueError: If the frame carries a colour matrix libswscale cannot convert either.
    """
    matrix = _colour.resolve_matrix(frame.colorspace)
    color_range = "full" if frame.format.name == "yuvj420p" else _colour.resolve_range(frame.color_range)
    return matrix, color_range


def pyav_to_tensor(frame: av.VideoFrame, matrix: str, color_range: str, out: torch.Tensor) -> None:
    """Convert a 4:2:0 frame with libswscale into ``out``, with centred chroma siting.

    Args:
        frame: Any frame libswscale can read; ``matrix`` and ``color_range`` override its tags, and its
            (invisible) chroma location is replaced by "unspecified" (see :func:`untagged_copy`).
        matrix: Canonical matrix name.
        color_range: ``"limited"`` or ``"full"``.
        out: Float32 CPU tensor (3, H, W) that receives RGB in [-1, 1].
    """
    # 8-bit planar RGB is bit-identical to PyAV's rgb24 reference but needs no HWC->CHW shuffle, and planar
    # RGB output always gets full chroma interpolation.  (gbrpf32le/gbrp16le would skip the 8-bit rounding,
    # but libswscale's high-depth RGB output is biased by about -0.4 LSB; see bench/bench_kernels.py.)
    rgb = _reformatter().reformat(
        untagged_copy(frame),
        format="gbrp",
        src_colorspace=SWS_COLORSPACE[matrix],
        src_color_range=SWS_RANGE[color_range],
        interpolation=_colour.REFERENCE_SWS_FLAGS,
    )
    for channel, plane in zip((1, 2, 0), rgb.planes):  # planes are G, B, R
        torch.mul(torch.from_numpy(plane_view(plane, np.uint8)), 2.0 / 255.0, out=out[channel])
    out.sub_(1.0)


def pyav_from_tensor(rgb: torch.Tensor, fmt: str, matrix: str, color_range: str) -> av.VideoFrame:
    """Convert an RGB tensor to a tagged frame with libswscale.

    Args:
        rgb: Float32 CPU tensor (3, H, W) in [-1, 1]; values outside are clamped.
        fmt: Output pixel format.
        matrix: Canonical matrix name.
        color_range: ``"limited"`` or ``"full"``.

    Returns:
        The new frame, tagged with ``matrix`` and ``color_range``.
    """
    _, height, width = rgb.shape
    src = av.VideoFrame(width, height, "gbrp")
    # (t + 1) * 127.5 + 0.5, clamped, then truncated by the uint8 copy: round half up, like the reference.
    # 8-bit RGB input because libswscale's float/16-bit RGB input path biases luma (white -> Y=943 in 10-bit).
    codes = rgb.mul(127.5).add_(128.0).clamp_(0.0, 255.0)
    for channel, plane in zip((1, 2, 0), src.planes):  # planes are G, B, R
        torch.from_numpy(plane_view(plane, np.uint8)).copy_(codes[channel])
    out = _reformatter().reformat(
        src,
        format=fmt,
        dst_colorspace=SWS_COLORSPACE[matrix],
        dst_color_range=SWS_RANGE[color_range],
        interpolation=_colour.REFERENCE_SWS_FLAGS,
    )
    out.colorspace = _colour.MATRIX_TO_AVCOL_SPC[matrix]
    out.color_range = _colour.RANGE_TO_AVCOL_RANGE[color_range]
    return out
