"""Vectorised torch implementation of the specification in :mod:`kernels._colour`.

These functions are the executable specification that the CUDA kernels are tested against, so they favour
exactness (float32 throughout, one rounding at the end) over shortcuts, while staying allocation-light
enough to be usable on the CPU.  The per-format modules only unpack plane layouts and call in here.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from kernels import _colour

ArrayLike = np.ndarray | torch.Tensor


def as_tensor(a: ArrayLike, name: str) -> torch.Tensor:
    """Wrap a numpy array (possibly a strided plane view) or CPU tensor without copying.

    Args:
        a: The array.
        name: Parameter name used in error messages.

    Returns:
        A CPU tensor sharing memory with ``a`` where possible.

    Raises:
        TypeError: If ``a`` is neither a numpy array nor a torch tensor.
    """
    if isinstance(a, torch.Tensor):
        return a
    if isinstance(a, np.ndarray):
        if a.dtype == np.uint16:
            # torch's uint16 support is partial; int32 holds every 10/16-bit code exactly.
            return torch.from_numpy(a.astype(np.int32))
        with warnings.catch_warnings():
            # Read-only plane buffers are only ever read here.
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(a)
    raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(a).__name__}")


def check_dtype(a: torch.Tensor, name: str, bits: int) -> None:
    """Reject planes whose sample type cannot hold ``bits``-bit codes.

    Args:
        a: The plane.
        name: Parameter name used in error messages.
        bits: Bit depth the caller expects.

    Raises:
        TypeError: If the dtype does not match the bit depth.
    """
    allowed = (torch.uint8,) if bits == 8 else (torch.uint16, torch.int16, torch.int32)
    if a.dtype not in allowed:
        names = ", ".join(str(d).replace("torch.", "") for d in allowed)
        raise TypeError(f"{name} has dtype {str(a.dtype).replace('torch.', '')}; {bits}-bit planes need {names}")


def check_planes(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> tuple[int, int]:
    """Validate 4:2:0 plane shapes.

    Args:
        y: Luma plane.
        u: Cb plane.
        v: Cr plane.

    Returns:
        ``(height, width)`` of the luma plane.

    Raises:
        ValueError: If a plane is not 2-D or the chroma planes do not have ceil(h/2) x ceil(w/2) samples.
    """
    for name, p in (("y", y), ("u", u), ("v", v)):
        if p.ndim != 2:
            raise ValueError(f"{name} plane must be 2-D (rows, columns), got shape {tuple(p.shape)}")
    height, width = y.shape
    _colour.check_size(width, height)
    cw, ch = _colour.chroma_size(width, height)
    for name, p in (("u", u), ("v", v)):
        if tuple(p.shape) != (ch, cw):
            raise ValueError(
                f"{name} plane has shape {tuple(p.shape)}; a {width}x{height} 4:2:0 frame needs ({ch}, {cw})"
            )
    return height, width


def yuv_to_rgb(
    y: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    *,
    matrix: str,
    color_range: str,
    bits: int,
    chroma_location: str = "center",
) -> torch.Tensor:
    """Convert 4:2:0 planes (integer codes) to an RGB tensor in [-1, 1].

    Args:
        y: Luma plane (H, W).
        u: Cb plane (ceil(H/2), ceil(W/2)).
        v: Cr plane, same shape as ``u``.
        matrix: Canonical matrix name.
        color_range: ``"limited"`` or ``"full"``.
        bits: Bit depth of the codes.
        chroma_location: ``"center"`` or ``"left"``.

    Returns:
        Float32 tensor (3, H, W), clamped to [-1, 1].
    """
    height, width = check_planes(y, u, v)
    uv = torch.stack((u, v)).to(torch.float32)
    # align_corners=False with an explicit size is exactly libswscale's bilinear chroma upsampling for
    # centred samples: src = (dst + 0.5) * n_in / n_out - 0.5 with the edge sample replicated.
    if chroma_location == "center":
        if uv.shape[1:] != (height, width):
            uv = F.interpolate(uv[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    else:
        if uv.shape[1] != height:
            uv = F.interpolate(uv[None], size=(height, uv.shape[2]), mode="bilinear", align_corners=False)[0]
        i0, i1, w = _up_taps(uv.shape[2], width, _colour.CHROMA_H_OFFSET[chroma_location])
        uv = torch.lerp(uv.index_select(2, i0), uv.index_select(2, i1), w)
    a, b = _colour.yuv_to_rgb_affine(matrix, color_range, bits)
    # Every row has the same luma weight and R/B ignore one chroma plane, so per-channel fused adds beat a
    # (3x3) @ (3xN) matmul by ~2x on two cores.  (Applying the chroma terms before upsampling trades these
    # cheap adds for a third interpolated plane, which measured slower.)
    luma = y.to(torch.float32).mul_(float(a[0, 0]))
    out = torch.empty((3, height, width), dtype=torch.float32)
    for c in range(3):
        torch.add(luma, float(b[c]), out=out[c])
        for k in (1, 2):
            if a[c, k] != 0.0:
                out[c].add_(uv[k - 1], alpha=float(a[c, k]))
    return out.clamp_(-1.0, 1.0)


@functools.lru_cache(maxsize=64)
def _up_taps(n_in: int, n_out: int, offset: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    i0, i1, w = _colour.upsample_taps(n_in, n_out, offset)
    return torch.from_numpy(i0), torch.from_numpy(i1), torch.from_numpy(w)


@functools.lru_cache(maxsize=64)
def _taps(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx, w = _colour.downsample_taps(n_in, n_out)
    return torch.from_numpy(np.ascontiguousarray(idx.T)), torch.from_numpy(np.ascontiguousarray(w.T))


def downsample_axis(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Apply libswscale's bilinear 2:1 chroma decimation along one dimension.

    Args:
        x: Float tensor.
        dim: Dimension to decimate (negative indices allowed).

    Returns:
        Tensor with ``ceil(n / 2)`` samples along ``dim``.
    """
    n = x.shape[dim]
    m = (n + 1) // 2
    if n == m:
        return x
    if n % 2 == 0:
        # Even length: the filter is the fixed [1, 3, 3, 1] / 8 kernel on the edge-replicated signal, which
        # strided views compute without gathers.
        p = torch.cat((x.narrow(dim, 0, 1), x, x.narrow(dim, n - 1, 1)), dim)

        def phase(k: int) -> torch.Tensor:
            # Samples k, k + 2, ... of the padded signal as a view (unfold with size 1, step 2).
            return p.narrow(dim, k, n - 1 if k == 3 else n).unfold(dim, 1, 2).squeeze(-1)

        outer = phase(0).add(phase(3))
        return outer.mul_(0.125).add_(phase(1).add(phase(2)), alpha=0.375)
    idx, w = _taps(n, m)
    shape = [1] * x.ndim
    shape[dim] = m
    out = x.index_select(dim, idx[0]).mul_(w[0].reshape(shape))
    for k in range(1, idx.shape[0]):
        out.add_(x.index_select(dim, idx[k]).mul_(w[k].reshape(shape)))
    return out


def rgb_to_yuv(
    rgb: torch.Tensor, *, matrix: str, color_range: str, bits: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Convert an RGB tensor in [-1, 1] to rounded 4:2:0 planes.

    Args:
        rgb: Float tensor (3, H, W); values outside [-1, 1] are clamped first, as an 8-bit RGB frame would be.
        matrix: Canonical matrix name.
        color_range: ``"limited"`` or ``"full"``.
        bits: Bit depth of the output codes.

    Returns:
        ``(y, u, v)`` tensors (uint8 for 8 bits, int16 otherwise) of shapes (H, W), (ceil(H/2), ceil(W/2))
        and the same.

    Raises:
        ValueError: If ``rgb`` is not (3, H, W).
    """
    if rgb.ndim != 3 or rgb.shape[0] != 3:
        raise ValueError(f"rgb must have shape (3, H, W), got {tuple(rgb.shape)}")
    _, height, width = rgb.shape
    _colour.check_size(width, height)
    a, b = _colour.rgb_to_yuv_affine(matrix, color_range, bits)
    # +0.5 then truncation rounds half up; it commutes with the chroma filter because its weights sum to 1.
    b = b + 0.5
    top = float((1 << bits) - 1)
    src = rgb.to(torch.float32).clamp(-1.0, 1.0)
    yuv = torch.empty((3, height, width), dtype=torch.float32)
    for c in range(3):
        torch.mul(src[0], float(a[c, 0]), out=yuv[c])
        yuv[c].add_(src[1], alpha=float(a[c, 1])).add_(src[2], alpha=float(a[c, 2])).add_(float(b[c]))
    # int16 holds every 10-bit code; callers reinterpret it as uint16 for the frame buffer.
    dtype = torch.uint8 if bits == 8 else torch.int16
    luma = yuv[0].clamp_(0.0, top).to(dtype)
    uv = downsample_axis(downsample_axis(yuv[1:], 1), 2).clamp_(0.0, top).to(dtype)
    return luma, uv[0], uv[1]
