"""Pixel conversion between PyAV frames and model tensors.

The two private functions below are the only place the pipeline converts pixels. The common formats (yuv420p,
yuvj420p, nv12, yuv420p10le in; yuv420p, nv12, yuv420p10le out) go through ``kernels``, whose conversion is within
1 LSB of libswscale's accurate path (bilinear chroma) and measured fastest among the conversions that are
(``bench/bench_kernels.py``). Every other format (yuv444p for odd sizes, rgb, 4:2:2 …) uses the generic path
below, through PyAV's ``to_ndarray``.

8-bit sources go through ``rgb24``; sources with more bits per component go through ``rgb48le`` so a 10-bit input
keeps its precision up to the model. The YUV→RGB matrix and range come from the frame's own tags (PyAV applies
them by default); RGB→YUV uses the colour tags given by the encoder so the round trip is consistent.
"""

from __future__ import annotations

import av
import numpy as np
import torch

import kernels

__all__: list[str] = []  # private to realtime.pipeline

# AVColorSpace (frame/stream tag) → swscale colorspace constant expected by VideoFrame.reformat().
# Tags swscale has no matrix for (unspecified, reserved, YCgCo, ...) fall back to its BT.601 default.
_SWS_COLORSPACE: dict[int, int] = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}


def _rgb_format_for(pix_fmt: str) -> str:
    """``rgb48le`` when ``pix_fmt`` has more than 8 bits per component, else ``rgb24``."""
    fmt = av.VideoFormat(pix_fmt)
    return "rgb48le" if any(c.bits > 8 for c in fmt.components) else "rgb24"


def _frame_to_tensor(frame: av.VideoFrame, device: torch.device | None = None) -> torch.Tensor:
    """Decoded frame → ``(3, H, W)`` float32 RGB in ``[-1, 1]``, on ``device`` where that is cheaper.

    On the CPU the result is a channels-first *view* of an HWC buffer: converting in memory order and letting the
    batch ``torch.stack`` do the one layout copy saves a full pass per frame. For a CUDA ``device`` (with CuPy) the
    common formats upload their 8- or 10-bit planes (1.5 bytes a pixel, not float32 RGB's 12) and convert on the
    GPU (BENCHMARKS.md, GPU: 16-25 % more frames per second end to end at 1080p on an H200); other formats, and
    CUDA without CuPy, convert on the CPU and are left there for the translate stage to move.
    """
    if frame.format.name in kernels.INPUT_FORMATS:
        try:
            on_gpu = device is not None and device.type == "cuda" and kernels.cuda_available()
            return kernels.frame_to_tensor(frame, device=device if on_gpu else "cpu")
        except ValueError:  # colour tags libswscale has no matrix for: the generic path applies its default
            pass
    rgb_format = _rgb_format_for(frame.format.name)
    array = frame.to_ndarray(format=rgb_format)  # (H, W, 3) uint8 or uint16
    if rgb_format == "rgb24":
        t = torch.from_numpy(array).to(torch.float32)
        return t.mul_(1 / 127.5).sub_(1.0).permute(2, 0, 1)
    # torch has no uint16 arithmetic on every version: widen first.
    t = torch.from_numpy(array.astype(np.int32)).to(torch.float32)
    return t.mul_(1 / 32767.5).sub_(1.0).permute(2, 0, 1)


def _tensor_to_frame(
    t: torch.Tensor,
    *,
    format: str,
    colorspace: int | None = None,
    color_range: int | None = None,
) -> av.VideoFrame:
    """``(3, H, W)`` RGB tensor in ``[-1, 1]`` (any device) → frame in pixel format ``format``.

    Values outside ``[-1, 1]`` are clipped. ``colorspace`` (an AVColorSpace tag) and ``color_range`` (an
    AVColorRange tag) select the RGB→YUV matrix and range and are written on the frame.
    """
    if format in kernels.OUTPUT_FORMATS:
        try:
            return kernels.tensor_to_frame(t, format=format, colorspace=colorspace, color_range=color_range)
        except ValueError:  # colour tags libswscale has no matrix for
            pass
    rgb_format = _rgb_format_for(format)
    scale = 127.5 if rgb_format == "rgb24" else 32767.5
    # One new buffer, in-place passes, then a single strided copy into HWC that also narrows the dtype.
    codes = t.detach().to(device="cpu", dtype=torch.float32).mul(scale).add_(scale).clamp_(0.0, 2 * scale).round_()
    if rgb_format == "rgb24":
        hwc = torch.empty((t.shape[1], t.shape[2], 3), dtype=torch.uint8)
        hwc.copy_(codes.permute(1, 2, 0))
        array = hwc.numpy()
    else:
        hwc = torch.empty((t.shape[1], t.shape[2], 3), dtype=torch.int32)
        hwc.copy_(codes.permute(1, 2, 0))
        array = hwc.numpy().astype(np.uint16)
    rgb = av.VideoFrame.from_ndarray(array, format=rgb_format)
    if format == rgb_format:
        return rgb
    return rgb.reformat(
        format=format,
        dst_colorspace=_SWS_COLORSPACE.get(colorspace) if colorspace is not None else None,
        dst_color_range=color_range or None,
    )
