"""Benchmark frame <-> tensor conversions on the CPU and print a table (median of N runs).

Usage::

    .venv/bin/python bench/bench_kernels.py [--runs 30] [--threads 2] [--sizes 640x360,1280x720]

Each candidate does the complete job the pipeline needs -- ``av.VideoFrame`` (yuv420p or nv12, untagged,
i.e. BT.601 limited) in, float32 (3, H, W) tensor in [-1, 1] out, and back to a yuv420p frame -- so the
timings are comparable.
Accuracy columns are measured on the same synthetic frame (gradients + noise + hard edges):

* ``max`` -- largest difference, in 8-bit steps, from PyAV's reference conversion
  (``interpolation=kernels.REFERENCE_SWS_FLAGS``, rgb24 <-> yuv420p); the acceptance bar is <= 1.
* ``bias`` -- mean signed difference from the float specification (``kernels._cpu``), in 8-bit steps
  (input side only: it shows systematic darkening/brightening that a max hides).

Candidates run round-robin (so drifting load affects all of them alike); other processes on the machine
still distort the numbers, so the load average is printed and a few runs should be compared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kernels  # noqa: E402
from kernels import _frames, yuv420p  # noqa: E402

FLAGS = kernels.REFERENCE_SWS_FLAGS


def test_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients, mild noise and saturated hard-edged blocks, (H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=-1)
    img += rng.normal(0, 8, img.shape)
    img[height // 4 : height // 2, width // 4 : width // 2] = (255, 0, 0)
    img[height // 2 :, width // 2 : width // 2 + 7] = (0, 0, 255)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def median_ms_interleaved(calls: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Median wall time per call; candidates run round-robin so that drifting machine load hits all alike."""
    for fn in calls.values():
        fn()  # warm-up: allocations, SwsContext set-up, kernel caches
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) * 1e3 for name, ts in times.items()}


def normalise_hwc(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1).to(torch.float32).mul_(1 / 127.5).sub_(1.0)


def input_candidates(threads: int) -> dict[str, Callable[[av.VideoFrame], torch.Tensor]]:
    sws = VideoReformatter()

    def pyav_default(f: av.VideoFrame) -> torch.Tensor:
        return normalise_hwc(f.to_ndarray(format="rgb24", threads=threads))

    def pyav_ref_rgb24(f: av.VideoFrame) -> torch.Tensor:
        return normalise_hwc(sws.reformat(f, format="rgb24", interpolation=FLAGS, threads=threads).to_ndarray())

    def pyav_ref_gbrp(f: av.VideoFrame) -> torch.Tensor:
        g = sws.reformat(f, format="gbrp", interpolation=FLAGS, threads=threads)
        out = torch.empty((3, f.height, f.width))
        for c, p in zip((1, 2, 0), g.planes):
            out[c].copy_(torch.from_numpy(_frames.plane_view(p, np.uint8)))
        return out.mul_(1 / 127.5).sub_(1.0)

    def pyav_ref_gbrpf32(f: av.VideoFrame) -> torch.Tensor:
        g = sws.reformat(f, format="gbrpf32le", interpolation=FLAGS, threads=threads)
        out = torch.empty((3, f.height, f.width))
        for c, p in zip((1, 2, 0), g.planes):
            torch.mul(torch.from_numpy(_frames.plane_view(p, np.float32)), 2.0, out=out[c])
        return out.sub_(1.0).clamp_(-1.0, 1.0)

    def torch_reference(f: av.VideoFrame) -> torch.Tensor:
        return kernels.frame_to_tensor(f, method="reference")

    def cv2_convert(f: av.VideoFrame) -> torch.Tensor:
        planes = kernels._MODULES[f.format.name].frame_planes(f)
        # OpenCV wants one contiguous buffer; PyAV's planes are padded, so this copy is part of the cost.
        buf = np.concatenate([p.reshape(-1) for p in planes]).reshape(-1, f.width)
        code = cv2.COLOR_YUV2RGB_NV12 if f.format.name == "nv12" else cv2.COLOR_YUV2RGB_I420
        return normalise_hwc(cv2.cvtColor(buf, code))

    return {
        "pyav default flags, rgb24": pyav_default,
        "pyav ref flags, rgb24": pyav_ref_rgb24,
        "pyav ref flags, gbrp": pyav_ref_gbrp,
        "pyav ref flags, gbrpf32le": pyav_ref_gbrpf32,
        "torch reference (planes)": torch_reference,
        "cv2 cvtColor (I420 / NV12)": cv2_convert,
        "public frame_to_tensor": lambda f: kernels.frame_to_tensor(f),
    }


def quantise_hwc(t: torch.Tensor) -> np.ndarray:
    return t.add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def output_candidates(threads: int) -> dict[str, Callable[[torch.Tensor], av.VideoFrame]]:
    sws = VideoReformatter()
    tags = {"dst_colorspace": "ITU601", "dst_color_range": "MPEG"}

    def pyav_default(t: torch.Tensor) -> av.VideoFrame:
        return av.VideoFrame.from_ndarray(quantise_hwc(t), format="rgb24").reformat(
            format="yuv420p", threads=threads, **tags
        )

    def pyav_ref_rgb24(t: torch.Tensor) -> av.VideoFrame:
        src = av.VideoFrame.from_ndarray(quantise_hwc(t), format="rgb24")
        return sws.reformat(src, format="yuv420p", interpolation=FLAGS, threads=threads, **tags)

    def pyav_ref_gbrp(t: torch.Tensor) -> av.VideoFrame:
        src = av.VideoFrame(t.shape[2], t.shape[1], "gbrp")
        q = t.mul(127.5).add_(128.0).clamp_(0, 255)  # +0.5 so that the truncating copy rounds
        for c, p in zip((1, 2, 0), src.planes):
            torch.from_numpy(_frames.plane_view(p, np.uint8)).copy_(q[c])
        return sws.reformat(src, format="yuv420p", interpolation=FLAGS, threads=threads, **tags)

    def pyav_ref_gbrpf32(t: torch.Tensor) -> av.VideoFrame:
        src = av.VideoFrame(t.shape[2], t.shape[1], "gbrpf32le")
        for c, p in zip((1, 2, 0), src.planes):
            dst = torch.from_numpy(_frames.plane_view(p, np.float32))
            torch.mul(t[c], 0.5, out=dst)
            dst.add_(0.5).clamp_(0.0, 1.0)
        return sws.reformat(src, format="yuv420p", interpolation=FLAGS, threads=threads, **tags)

    def torch_reference(t: torch.Tensor) -> av.VideoFrame:
        return yuv420p.frame_from_planes(*yuv420p.rgb_to_yuv420p_cpu(t))

    def cv2_i420(t: torch.Tensor) -> av.VideoFrame:
        height, width = t.shape[1:]
        i420 = cv2.cvtColor(quantise_hwc(t), cv2.COLOR_RGB2YUV_I420)
        cw, ch = width // 2, height // 2
        y = i420[:height]
        u = i420[height:].reshape(-1)[: cw * ch].reshape(ch, cw)
        v = i420[height:].reshape(-1)[cw * ch :].reshape(ch, cw)
        return yuv420p.frame_from_planes(y, u, v)

    return {
        "pyav default flags, rgb24": pyav_default,
        "pyav ref flags, rgb24": pyav_ref_rgb24,
        "pyav ref flags, gbrp": pyav_ref_gbrp,
        "pyav ref flags, gbrpf32le": pyav_ref_gbrpf32,
        "torch reference (planes)": torch_reference,
        "cv2 RGB2YUV_I420": cv2_i420,
        "public tensor_to_frame": lambda t: kernels.tensor_to_frame(t),
    }


def planes_int(frame: av.VideoFrame) -> list[np.ndarray]:
    return [p.astype(np.int32) for p in kernels._MODULES[frame.format.name].frame_planes(frame)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30, help="timed runs per cell (median is reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch / OpenCV / libswscale threads")
    parser.add_argument("--sizes", default="640x360,1280x720", help="comma-separated WxH list")
    parser.add_argument("--formats", default="yuv420p,nv12", help="input formats for the frame -> tensor tables")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    print(
        f"torch {torch.__version__}, PyAV {av.__version__}, OpenCV {cv2.__version__}, threads={args.threads}, "
        f"median of {args.runs} runs, load average {os.getloadavg()[0]:.2f}"
    )
    sections = [
        (f"{fmt} frame -> tensor", fmt, True, input_candidates(args.threads)) for fmt in args.formats.split(",")
    ]
    sections.append(("tensor -> yuv420p frame", "yuv420p", False, output_candidates(args.threads)))
    for title, fmt, to_tensor, candidates in sections:
        print(f"\n{title}")
        header = f"{'method':30s}" + "".join(f"{f'{w}x{h} ms':>14s}" for w, h in sizes) + f"{'max LSB':>9s}{'bias':>8s}"
        print(header)
        print("-" * len(header))
        rows: dict[str, list[str]] = {name: [] for name in candidates}
        accuracy: dict[str, tuple[float, float]] = {}
        for width, height in sizes:
            rgb = test_image(width, height)
            t = torch.from_numpy(rgb).permute(2, 0, 1).float().div(127.5).sub(1.0)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format=fmt, interpolation=FLAGS, dst_colorspace="ITU601", dst_color_range="MPEG"
            )
            frame.colorspace, frame.color_range = 2, 0  # untagged, as many decoders deliver it
            ref_rgb = frame.reformat(format="rgb24", interpolation=FLAGS).to_ndarray().astype(np.int32)
            spec = kernels.frame_to_tensor(frame, method="reference")
            arg = frame if to_tensor else t
            timings = median_ms_interleaved(
                {n: (lambda fn=fn, a=arg: fn(a)) for n, fn in candidates.items()}, args.runs
            )
            for name, fn in candidates.items():
                rows[name].append(f"{timings[name]:14.2f}")
                if (width, height) != sizes[-1]:
                    continue
                result = fn(arg)
                if to_tensor:
                    q = quantise_hwc(result).astype(np.int32)
                    accuracy[name] = (np.abs(q - ref_rgb).max(), float((result - spec).mean()) * 127.5)
                else:
                    err = max(np.abs(a - b).max() for a, b in zip(planes_int(result), planes_int(frame)))
                    accuracy[name] = (err, float("nan"))
        for name, cells in rows.items():
            err, bias = accuracy[name]
            bias_txt = "" if np.isnan(bias) else f"{bias:+8.2f}"
            print(f"{name:30s}{''.join(cells)}{err:9d}{bias_txt}")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
