"""The CUDA kernels, run on the CPU: checks kernel source *and* launch wrappers without a GPU.

``kernels._cuda.KERNEL_SOURCE`` is plain CUDA C++ with no intrinsics beyond ``fminf``-style maths, so it
compiles as ordinary C++ once ``__global__`` and the thread-index built-ins are shimmed.  The shim runs every
(block, thread) of the grid sequentially.  The tests then swap ``kernels._cuda.launch`` (and the CuPy/device
helpers) for this emulator and drive the real ``*_cuda`` wrappers, so argument order, strides, NV12 views
and the 10-bit paths are all exercised against the CPU reference.  Skipped when no C++ compiler is found;
the real-GPU comparison lives in ``tests/test_kernels.py``.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import kernels
from kernels import _cuda, nv12, yuv420p, yuv420p10

CXX = shutil.which("g++") or shutil.which("clang++")
pytestmark = pytest.mark.skipif(CXX is None, reason="no C++ compiler to emulate the CUDA kernels on the CPU")

SHIM = r"""
#include <math.h>
#include <algorithm>
#include <cstddef>
#include <utility>
struct uint3_ { unsigned x, y, z; };
static uint3_ blockIdx, threadIdx, blockDim;
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
using std::max;
using std::min;
typedef SAMPLE sample_t;
"""
LAUNCHER = r"""
template <typename... A, std::size_t... I>
static void call(void (*k)(A...), void** p, std::index_sequence<I...>) { k(*static_cast<A*>(p[I])...); }
template <typename... A>
static void run(void (*k)(A...), unsigned gx, unsigned gy, unsigned bx, unsigned by, void** p) {
    blockDim = {bx, by, 1};
    for (unsigned b = 0; b < gx * gy; ++b)
        for (unsigned t = 0; t < bx * by; ++t) {
            blockIdx = {b % gx, b / gx, 0};
            threadIdx = {t % bx, t / bx, 0};
            call(k, p, std::index_sequence_for<A...>{});
        }
}
extern "C" void launch_yuv420_to_rgb(unsigned gx, unsigned gy, unsigned bx, unsigned by, void** p) {
    run(yuv420_to_rgb, gx, gy, bx, by, p);
}
extern "C" void launch_rgb_to_yuv420(unsigned gx, unsigned gy, unsigned bx, unsigned by, void** p) {
    run(rgb_to_yuv420, gx, gy, bx, by, p);
}
"""


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ctypes.CDLL]:
    libs = {}
    for sample in ("unsigned char", "unsigned short"):
        src = Path(tmp_path_factory.mktemp("cuda_emu")) / "kernels.cpp"
        src.write_text(SHIM + _cuda.KERNEL_SOURCE.replace('extern "C" __global__', "") + LAUNCHER)
        lib = src.with_suffix(".so")
        cmd = [CXX, "-std=c++17", "-O1", "-shared", "-fPIC", "-ffp-contract=off", f"-DSAMPLE={sample}", str(src)]
        subprocess.run([*cmd, "-o", str(lib)], check=True, capture_output=True, text=True)
        libs[sample] = ctypes.CDLL(str(lib))
    return libs


def _ctype(arg: object) -> ctypes._SimpleCData:
    if isinstance(arg, np.ndarray):
        return ctypes.c_void_p(arg.__array_interface__["data"][0])  # address of the first element of the view
    if isinstance(arg, np.int64):
        return ctypes.c_longlong(int(arg))
    if isinstance(arg, np.int32):
        return ctypes.c_int(int(arg))
    if isinstance(arg, np.float32):
        return ctypes.c_float(float(arg))
    raise TypeError(f"unexpected kernel argument type {type(arg).__name__}")


@pytest.fixture
def emulated_cuda(monkeypatch: pytest.MonkeyPatch, emulator: dict[str, ctypes.CDLL]) -> None:
    """Route the ``*_cuda`` wrappers to the CPU emulator, with CPU tensors standing in for device memory."""

    def device_array(a: object, name: str) -> tuple[np.ndarray, tuple[int, ...]]:
        if not isinstance(a, torch.Tensor):
            raise TypeError(f"{name}: emulation takes torch tensors, got {type(a).__name__}")
        arr = a.view(torch.int16).numpy() if a.dtype == torch.uint16 else a.numpy()
        return arr, tuple(a.stride())

    def launch(name: str, sample_type: str, grid_w: int, grid_h: int, device: torch.device, args: tuple) -> None:
        values = [_ctype(a) for a in args]
        pointers = (ctypes.c_void_p * len(values))(*(ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in values))
        bx, by, _ = _cuda._BLOCK
        gx, gy = (grid_w + bx - 1) // bx, (grid_h + by - 1) // by
        getattr(emulator[sample_type], f"launch_{name}")(gx, gy, bx, by, pointers)

    monkeypatch.setattr(_cuda, "require_cupy", lambda: None)
    monkeypatch.setattr(_cuda, "device_array", device_array)
    monkeypatch.setattr(_cuda, "device_of", lambda a: torch.device("cpu"))
    monkeypatch.setattr(_cuda, "launch", launch)


def _frame(fmt: str, width: int, height: int, seed: int, colorspace: int = 1, color_range: int = 1) -> av.VideoFrame:
    rng = np.random.default_rng(seed)
    frame = av.VideoFrame(width, height, fmt)
    frame.colorspace, frame.color_range = colorspace, color_range
    dtype = np.uint16 if fmt == "yuv420p10le" else np.uint8
    top = 1023 if fmt == "yuv420p10le" else 255
    for plane in frame.planes:
        buf = np.frombuffer(plane, dtype=dtype)
        buf[:] = rng.integers(0, top + 1, buf.shape)  # padding too, so reading it would show
    return frame


@pytest.mark.parametrize("fmt", ["yuv420p", "nv12", "yuv420p10le"])
@pytest.mark.parametrize(("width", "height"), [(38, 22), (37, 21)])
@pytest.mark.parametrize(("colorspace", "color_range", "siting"), [(1, 1, "center"), (6, 2, "left")])
def test_yuv_to_rgb_kernel_matches_reference(
    emulated_cuda: None, fmt: str, width: int, height: int, colorspace: int, color_range: int, siting: str
) -> None:
    frame = _frame(fmt, width, height, seed=width * height, colorspace=colorspace, color_range=color_range)
    module = kernels._MODULES[fmt]
    matrix, rng = kernels.frame_colour(frame)
    planes = kernels._upload_planes(frame, module, torch.device("cpu"))  # padded copies + strided views
    got = kernels._CONVERSIONS[module].to_rgb_cuda(*planes, matrix=matrix, color_range=rng, chroma_location=siting)
    want = kernels.frame_to_tensor(frame, method="reference", chroma_location=siting)
    assert got.shape == want.shape == (3, height, width)
    assert (got - want).abs().max().item() * 127.5 < 0.01  # same arithmetic, float32 rounding only


def test_yuv_to_rgb_kernel_writes_into_out(emulated_cuda: None) -> None:
    frame = _frame("yuv420p", 38, 22, seed=3)
    batch = torch.full((2, 3, 22, 38), 7.0)
    y, u, v = (torch.from_numpy(p) for p in yuv420p.frame_planes(frame))
    result = yuv420p.yuv420p_to_rgb_cuda(y, u, v, matrix="bt709", out=batch[1])
    assert result.data_ptr() == batch[1].data_ptr()
    assert torch.equal(batch[0], torch.full((3, 22, 38), 7.0))
    torch.testing.assert_close(batch[1], yuv420p.yuv420p_to_rgb_cpu(y, u, v, matrix="bt709"), atol=1e-4, rtol=0)


@pytest.mark.parametrize("fmt", ["yuv420p", "nv12", "yuv420p10le"])
@pytest.mark.parametrize(("width", "height"), [(38, 22), (37, 21), (64, 9)])
@pytest.mark.parametrize(("matrix", "color_range"), [("bt709", "limited"), ("bt2020", "full")])
def test_rgb_to_yuv_kernel_matches_reference(
    emulated_cuda: None, fmt: str, width: int, height: int, matrix: str, color_range: str
) -> None:
    g = torch.Generator().manual_seed(width + height)
    rgb = torch.rand((3, height, width), generator=g) * 2.2 - 1.1  # a little out of range: both must clamp
    got = kernels.tensor_to_frame(rgb, format=fmt, colorspace=matrix, color_range=color_range, method="cuda")
    want = kernels.tensor_to_frame(rgb, format=fmt, colorspace=matrix, color_range=color_range, method="reference")
    assert (got.colorspace, got.color_range) == (want.colorspace, want.color_range)
    module = kernels._MODULES[fmt]
    for a, b in zip(module.frame_planes(got), module.frame_planes(want)):
        diff = np.abs(a.astype(np.int32) - b.astype(np.int32))
        assert diff.max() <= 1  # float32 summation order differs; a code may flip at an exact .5
        assert (diff > 0).mean() < 0.01


def test_rgb_to_yuv_kernel_reads_strided_rgb(emulated_cuda: None) -> None:
    g = torch.Generator().manual_seed(5)
    hwc = torch.rand((22, 38, 3), generator=g) * 2 - 1
    chw_view = hwc.permute(2, 0, 1)  # channel stride 1: the kernel must honour all three strides
    got = nv12.rgb_to_nv12_cuda(chw_view, matrix="bt601")
    want = nv12.rgb_to_nv12_cpu(chw_view.contiguous(), matrix="bt601")
    for a, b in zip(got, want):
        assert np.abs(a.numpy().astype(np.int32) - b.astype(np.int32)).max() <= 1


def test_ten_bit_kernel_keeps_codes_above_255(emulated_cuda: None) -> None:
    rgb = torch.ones((3, 10, 12))  # white
    y, u, v = yuv420p10.rgb_to_yuv420p10_cuda(rgb, matrix="bt709", color_range="limited")
    assert y.dtype == torch.int16
    assert torch.all(y == 940) and torch.all(u == 512) and torch.all(v == 512)
