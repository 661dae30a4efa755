"""CuPy plumbing shared by the CUDA conversions: lazy import, kernel source, launches on torch's stream.

CuPy is imported only inside these functions, so ``import kernels`` works (and the CPU paths run) on machines
without the ``gpu`` extra.  The kernels take every plane as (pointer, row stride, column stride) in elements,
so one source serves planar 4:2:0, interleaved NV12 chroma (column stride 2) and padded or sliced views.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from kernels import _colour

GPU_HINT = "install the gpu extra on a machine with an NVIDIA GPU: pip install 'rt-anime[gpu]'"

# ``sample_t`` (uint8 or uint16 codes) is typedef'd in front of this per compilation; everything else is a
# runtime argument.  (A -D macro would leak into NVRTC's builtin headers, so it is not used.)
KERNEL_SOURCE = r"""
extern "C" __global__ void yuv420_to_rgb(
    const sample_t* __restrict__ yp, long long y_rs, long long y_cs,
    const sample_t* __restrict__ up, long long u_rs, long long u_cs,
    const sample_t* __restrict__ vp, long long v_rs, long long v_cs,
    float* __restrict__ out, int width, int height, int cw, int ch, float sx, float sy, float ox,
    float ay, float rv, float gu, float gv, float bu, float br, float bg, float bb)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= width || y >= height) return;
    // Source position of the chroma sample, computed like the CPU reference (torch's bilinear upsampling
    // with align_corners=False for centred siting), i.e. libswscale's bilinear chroma filter; ox is the
    // horizontal siting offset (0.5 centred, 0.25 left).
    const float fx = fmaxf((x + 0.5f) * sx - ox, 0.0f);
    const float fy = fmaxf((y + 0.5f) * sy - 0.5f, 0.0f);
    const int x0 = (int)fx, y0 = (int)fy;
    const int x1 = min(x0 + 1, cw - 1), y1 = min(y0 + 1, ch - 1);
    const float lx = fx - x0, ly = fy - y0;
    const long long u00 = y0 * u_rs, u10 = y1 * u_rs, v00 = y0 * v_rs, v10 = y1 * v_rs;
    const float u = (1.0f - ly) * ((1.0f - lx) * up[u00 + x0 * u_cs] + lx * up[u00 + x1 * u_cs])
                  + ly * ((1.0f - lx) * up[u10 + x0 * u_cs] + lx * up[u10 + x1 * u_cs]);
    const float v = (1.0f - ly) * ((1.0f - lx) * vp[v00 + x0 * v_cs] + lx * vp[v00 + x1 * v_cs])
                  + ly * ((1.0f - lx) * vp[v10 + x0 * v_cs] + lx * vp[v10 + x1 * v_cs]);
    const float l = (float)yp[y * y_rs + x * y_cs] * ay;
    const long long plane = (long long)width * height, o = (long long)y * width + x;
    out[o]             = fminf(fmaxf(l + br + rv * v, -1.0f), 1.0f);
    out[o + plane]     = fminf(fmaxf(l + bg + gu * u + gv * v, -1.0f), 1.0f);
    out[o + 2 * plane] = fminf(fmaxf(l + bb + bu * u, -1.0f), 1.0f);
}

__device__ __forceinline__ float clamp_unit(float x) { return fminf(fmaxf(x, -1.0f), 1.0f); }

// One thread per chroma sample, i.e. per 2x2 luma block: it writes the block's luma and the filtered
// chroma.  Biases already include +0.5 so that truncation rounds half up, exactly like the CPU reference.
extern "C" __global__ void rgb_to_yuv420(
    const float* __restrict__ rgb, long long r_ps, long long r_rs, long long r_cs,
    sample_t* __restrict__ yp, long long y_rs, long long y_cs,
    sample_t* __restrict__ up, long long u_rs, long long u_cs,
    sample_t* __restrict__ vp, long long v_rs, long long v_cs,
    int width, int height, int cw, int ch, float sx, float sy,
    float m00, float m01, float m02, float m10, float m11, float m12, float m20, float m21, float m22,
    float b0, float b1, float b2, float top)
{
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const int i = blockIdx.y * blockDim.y + threadIdx.y;
    if (j >= cw || i >= ch) return;
    for (int yy = 2 * i; yy < min(2 * i + 2, height); ++yy) {
        for (int xx = 2 * j; xx < min(2 * j + 2, width); ++xx) {
            const long long o = yy * r_rs + xx * r_cs;
            const float r = clamp_unit(rgb[o]), g = clamp_unit(rgb[o + r_ps]), b = clamp_unit(rgb[o + 2 * r_ps]);
            yp[yy * y_rs + xx * y_cs] = (sample_t)(int)fminf(fmaxf(m00 * r + m01 * g + m02 * b + b0, 0.0f), top);
        }
    }
    // libswscale's bilinear decimation: a triangle of half-width s = n_in / n_out centred on
    // (k + 0.5) * s - 0.5, taps clamped to the edge.
    const float cx = (j + 0.5f) * sx - 0.5f, cy = (i + 0.5f) * sy - 0.5f;
    const int x_first = (int)floorf(cx - sx) + 1, x_last = (int)ceilf(cx + sx) - 1;
    const int y_first = (int)floorf(cy - sy) + 1, y_last = (int)ceilf(cy + sy) - 1;
    float wx_sum = 0.0f, wy_sum = 0.0f;
    for (int xx = x_first; xx <= x_last; ++xx) wx_sum += fmaxf(1.0f - fabsf(xx - cx) / sx, 0.0f);
    for (int yy = y_first; yy <= y_last; ++yy) wy_sum += fmaxf(1.0f - fabsf(yy - cy) / sy, 0.0f);
    float su = 0.0f, sv = 0.0f;
    for (int yy = y_first; yy <= y_last; ++yy) {
        const float wy = fmaxf(1.0f - fabsf(yy - cy) / sy, 0.0f);
        if (wy == 0.0f) continue;
        const long long row = min(max(yy, 0), height - 1) * r_rs;
        float au = 0.0f, av = 0.0f;
        for (int xx = x_first; xx <= x_last; ++xx) {
            const float wx = fmaxf(1.0f - fabsf(xx - cx) / sx, 0.0f);
            if (wx == 0.0f) continue;
            const long long o = row + min(max(xx, 0), width - 1) * r_cs;
            const float r = clamp_unit(rgb[o]), g = clamp_unit(rgb[o + r_ps]), b = clamp_unit(rgb[o + 2 * r_ps]);
            au += wx * (m10 * r + m11 * g + m12 * b);
            av += wx * (m20 * r + m21 * g + m22 * b);
        }
        su += wy * au;
        sv += wy * av;
    }
    const float norm = 1.0f / (wx_sum * wy_sum);
    up[i * u_rs + j * u_cs] = (sample_t)(int)fminf(fmaxf(su * norm + b1, 0.0f), top);
    vp[i * v_rs + j * v_cs] = (sample_t)(int)fminf(fmaxf(sv * norm + b2, 0.0f), top);
}
"""

_BLOCK = (32, 8, 1)


def cuda_available() -> bool:
    """Whether CuPy is installed and sees a CUDA device (never raises)."""
    try:
        import cupy
    except ImportError:
        return False
    try:
        return bool(cupy.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken driver install must read as "no CUDA", not crash imports
        return False


def require_cupy() -> Any:
    """Import CuPy and check for a device.

    Returns:
        The ``cupy`` module.

    Raises:
        RuntimeError: If CuPy is missing or no CUDA device is usable; the message names the ``gpu`` extra.
    """
    try:
        import cupy
    except ImportError as exc:
        raise RuntimeError(f"CUDA pixel conversion needs CuPy, which is not installed; {GPU_HINT}") from exc
    try:
        available = bool(cupy.cuda.is_available())
    except Exception:  # noqa: BLE001 - report any driver/runtime failure the same way
        available = False
    if not available:
        raise RuntimeError(f"CUDA pixel conversion needs a CUDA device, but CuPy found none; {GPU_HINT}")
    return cupy


@functools.lru_cache(maxsize=8)
def _kernel(name: str, sample_type: str) -> Any:
    cupy = require_cupy()
    return cupy.RawKernel(f"typedef {sample_type} sample_t;\n{KERNEL_SOURCE}", name, options=("--std=c++14",))


def _sample_type(dtype: Any) -> str:
    itemsize = np.dtype(str(dtype).replace("torch.", "")).itemsize
    return "unsigned char" if itemsize == 1 else "unsigned short"


def device_array(a: Any, name: str) -> tuple[Any, tuple[int, ...]]:
    """View a torch CUDA tensor or CuPy array as a CuPy array and its strides in elements.

    Args:
        a: The array; torch tensors are wrapped without copying via ``__cuda_array_interface__``.
        name: Parameter name used in error messages.

    Returns:
        ``(array, strides)``.

    Raises:
        TypeError: If ``a`` does not live on a CUDA device.
    """
    cupy = require_cupy()
    if isinstance(a, torch.Tensor):
        a = a.detach()  # __cuda_array_interface__ refuses tensors that require grad
        if not a.is_cuda:
            raise TypeError(f"{name} must be a CUDA tensor or CuPy array, got a tensor on {a.device}")
        if a.dtype == torch.uint16:
            a = a.view(torch.int16)  # CuPy has no view of torch.uint16; the bits are what matters
        return cupy.asarray(a), tuple(a.stride())
    if isinstance(a, cupy.ndarray):
        return a, tuple(s // a.itemsize for s in a.strides)
    raise TypeError(f"{name} must be a CUDA tensor or CuPy array, got {type(a).__name__}")


def device_of(a: Any) -> torch.device:
    """The torch device of a CUDA tensor or CuPy array (outputs are allocated there)."""
    if isinstance(a, torch.Tensor):
        return a.device
    return torch.device("cuda", a.device.id)


def launch(name: str, sample_type: str, grid_w: int, grid_h: int, device: torch.device, args: tuple) -> None:
    """Launch ``name`` with one thread per element of a ``grid_w`` x ``grid_h`` domain on ``device``."""
    cupy = require_cupy()
    kernel = _kernel(name, sample_type)
    grid = ((grid_w + _BLOCK[0] - 1) // _BLOCK[0], (grid_h + _BLOCK[1] - 1) // _BLOCK[1], 1)
    with cupy.cuda.Device(device.index):
        # Run on torch's current stream so the launch is ordered with the model's own work.
        stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(device).cuda_stream, device.index)
        with stream:
            kernel(grid, _BLOCK, args)


def yuv420_to_rgb(
    y: Any,
    u: Any,
    v: Any,
    *,
    matrix: str,
    color_range: str,
    bits: int,
    chroma_location: str = "center",
    out: Any = None,
) -> Any:
    """Launch ``yuv420_to_rgb`` on device planes.

    Args:
        y: Luma plane (H, W), any strides.
        u: Cb plane (ceil(H/2), ceil(W/2)), any strides.
        v: Cr plane, same shape as ``u``.
        matrix: Canonical matrix name.
        color_range: ``"limited"`` or ``"full"``.
        bits: Bit depth of the codes.
        chroma_location: ``"center"`` or ``"left"``.
        out: Optional contiguous float32 CUDA tensor (3, H, W) to write into.

    Returns:
        Float32 CUDA tensor (3, H, W) in [-1, 1] (``out`` when given).

    Raises:
        ValueError: If plane shapes do not describe one 4:2:0 frame or ``out`` is unsuitable.
    """
    (ya, ys), (ua, us), (va, vs) = device_array(y, "y"), device_array(u, "u"), device_array(v, "v")
    height, width = ya.shape
    _colour.check_size(width, height)
    cw, ch = _colour.chroma_size(width, height)
    for name, a in (("u", ua), ("v", va)):
        if a.shape != (ch, cw):
            raise ValueError(f"{name} plane has shape {a.shape}; a {width}x{height} 4:2:0 frame needs ({ch}, {cw})")
    device = device_of(y)
    if out is None:
        out = torch.empty((3, height, width), dtype=torch.float32, device=device)
    elif out.shape != (3, height, width) or out.dtype != torch.float32 or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous float32 tensor of shape (3, {height}, {width})")
    a, b = _colour.yuv_to_rgb_affine(matrix, color_range, bits)
    f32, i64 = np.float32, np.int64
    args = (
        ya, i64(ys[0]), i64(ys[1]), ua, i64(us[0]), i64(us[1]), va, i64(vs[0]), i64(vs[1]),
        device_array(out, "out")[0], np.int32(width), np.int32(height), np.int32(cw), np.int32(ch),
        f32(np.float32(cw) / np.float32(width)), f32(np.float32(ch) / np.float32(height)),
        f32(_colour.CHROMA_H_OFFSET[chroma_location]),
        f32(a[0, 0]), f32(a[0, 2]), f32(a[1, 1]), f32(a[1, 2]), f32(a[2, 1]), f32(b[0]), f32(b[1]), f32(b[2]),
    )  # fmt: skip
    launch("yuv420_to_rgb", _sample_type(ya.dtype), width, height, device, args)
    return out


def rgb_to_yuv420(rgb: Any, y: Any, u: Any, v: Any, *, matrix: str, color_range: str, bits: int) -> None:
    """Launch ``rgb_to_yuv420`` writing into preallocated device planes.

    Args:
        rgb: Float32 CUDA tensor or CuPy array (3, H, W) in [-1, 1], any strides.
        y: Output luma plane (H, W) of the sample dtype.
        u: Output Cb plane (ceil(H/2), ceil(W/2)).
        v: Output Cr plane.
        matrix: Canonical matrix name.
        color_range: ``"limited"`` or ``"full"``.
        bits: Bit depth of the codes.

    Raises:
        ValueError: If ``rgb`` is not a float32 (3, H, W) array.
    """
    ra, rs = device_array(rgb, "rgb")
    if ra.ndim != 3 or ra.shape[0] != 3 or ra.dtype != np.float32:
        raise ValueError(f"rgb must be a float32 array of shape (3, H, W), got {ra.dtype} {ra.shape}")
    _, height, width = ra.shape
    _colour.check_size(width, height)
    cw, ch = _colour.chroma_size(width, height)
    (ya, ys), (ua, us), (va, vs) = device_array(y, "y"), device_array(u, "u"), device_array(v, "v")
    a, b = _colour.rgb_to_yuv_affine(matrix, color_range, bits)
    b = b + 0.5
    f32, i64 = np.float32, np.int64
    args = (
        ra, i64(rs[0]), i64(rs[1]), i64(rs[2]),
        ya, i64(ys[0]), i64(ys[1]), ua, i64(us[0]), i64(us[1]), va, i64(vs[0]), i64(vs[1]),
        np.int32(width), np.int32(height), np.int32(cw), np.int32(ch),
        f32(np.float32(width) / np.float32(cw)), f32(np.float32(height) / np.float32(ch)),
        *(f32(x) for x in a.reshape(-1)), f32(b[0]), f32(b[1]), f32(b[2]), f32((1 << bits) - 1),
    )  # fmt: skip
    launch("rgb_to_yuv420", _sample_type(ya.dtype), cw, ch, device_of(rgb), args)
