"""Pixel conversions in ``kernels/`` against PyAV/libswscale and against their own specification.

The reference is PyAV's conversion with ``interpolation=kernels.REFERENCE_SWS_FLAGS`` (bilinear, accurate
rounding, full chroma interpolation/input, bit-exact) -- PyAV's default flags use a nearest-neighbour chroma
fast path and are not what the kernels implement.  "LSB" is one 8-bit step unless a test says otherwise.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import kernels
from kernels import _colour, nv12, yuv420p, yuv420p10

FLAGS = kernels.REFERENCE_SWS_FLAGS
AVCOL_SPC = {"bt601": 6, "bt709": 1, "bt2020": 9, "fcc": 4, "smpte240m": 7}
SWS_CS = {"bt601": "ITU601", "bt709": "ITU709", "bt2020": "BT2020", "fcc": "FCC", "smpte240m": "SMPTE240M"}
SWS_RANGE = {"limited": "MPEG", "full": "JPEG"}
FORMATS = ["yuv420p", "nv12", "yuv420p10le"]
SIZES = [(38, 22), (64, 48), (37, 21)]  # the odd one has ceil(w/2) x ceil(h/2) chroma, as in ffmpeg
CUDA = pytest.mark.skipif(not kernels.cuda_available(), reason="CuPy with a CUDA device is not available")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]
H264 = pytest.mark.skipif("libx264" not in av.codecs_available, reason="PyAV's FFmpeg has no libx264 encoder")


def image(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients + noise + saturated hard edges + a one-pixel checkerboard strip, (H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.stack([x / width * 255, y / height * 255, 255 - (x + y) / (width + height) * 255], axis=-1)
    img += rng.normal(0, 10, img.shape)
    img[height // 4 : height // 2, width // 5 : width // 2] = (255, 20, 0)
    img[height // 2 :, width // 2 : width // 2 + 5] = (0, 0, 255)
    img[-3:, :] = np.where((np.arange(width) % 2)[:, None], 255, 0)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1).to(torch.float32) / 127.5 - 1.0


def to_u8(t: torch.Tensor) -> np.ndarray:
    """Quantise a [-1, 1] tensor to (H, W, 3) 8-bit codes as int32."""
    return ((t.cpu() + 1.0) * 127.5).round().clamp(0, 255).permute(1, 2, 0).numpy().astype(np.int32)


def pyav_frame(rgb: np.ndarray, fmt: str, matrix: str, color_range: str) -> av.VideoFrame:
    """The reference RGB -> YUV conversion, tagged the way a decoder would tag it."""
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format=fmt, interpolation=FLAGS, dst_colorspace=SWS_CS[matrix], dst_color_range=SWS_RANGE[color_range]
    )
    frame.colorspace, frame.color_range = AVCOL_SPC[matrix], _colour.RANGE_TO_AVCOL_RANGE[color_range]
    return frame


def pyav_rgb(frame: av.VideoFrame) -> np.ndarray:
    """The reference YUV -> RGB conversion, (H, W, 3) int32."""
    return frame.reformat(format="rgb24", interpolation=FLAGS).to_ndarray().astype(np.int32)


def h264_frame(width: int, height: int, seed: int) -> av.VideoFrame:
    """A decoded H.264 frame; FFmpeg tags it AVCHROMA_LOC_LEFT, which PyAV hides but libswscale honours."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        src = av.VideoFrame.from_ndarray(image(width, height, seed), format="rgb24").reformat(format="yuv420p")
        for packet in [*stream.encode(src), *stream.encode()]:
            container.mux(packet)
    buf.seek(0)
    with av.open(buf) as container:
        return next(container.decode(video=0))


def planes(frame: av.VideoFrame) -> list[np.ndarray]:
    return [p.astype(np.int32) for p in kernels._MODULES[frame.format.name].frame_planes(frame)]


@pytest.mark.parametrize("method", ["pyav", "reference"])
@pytest.mark.parametrize(("width", "height"), SIZES)
@pytest.mark.parametrize("color_range", ["limited", "full"])
@pytest.mark.parametrize("matrix", ["bt601", "bt709", "bt2020"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_frame_to_tensor_within_one_lsb_of_pyav(
    fmt: str, matrix: str, color_range: str, width: int, height: int, method: str
) -> None:
    frame = pyav_frame(image(width, height), fmt, matrix, color_range)
    t = kernels.frame_to_tensor(frame, method=method)
    assert t.shape == (3, height, width) and t.dtype == torch.float32
    assert t.min() >= -1.0 and t.max() <= 1.0
    assert np.abs(to_u8(t) - pyav_rgb(frame)).max() <= 1


@pytest.mark.parametrize("method", ["pyav", "reference"])
@pytest.mark.parametrize(("width", "height"), SIZES)
@pytest.mark.parametrize("color_range", ["limited", "full"])
@pytest.mark.parametrize("matrix", ["bt601", "bt709", "bt2020"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_tensor_to_frame_within_one_lsb_of_pyav(
    fmt: str, matrix: str, color_range: str, width: int, height: int, method: str
) -> None:
    rgb = image(width, height, seed=1)
    frame = kernels.tensor_to_frame(
        to_tensor(rgb), format=fmt, colorspace=matrix, color_range=color_range, method=method
    )
    want = pyav_frame(rgb, fmt, matrix, color_range)
    assert frame.format.name == fmt and (frame.width, frame.height) == (width, height)
    assert (frame.colorspace, frame.color_range) == (want.colorspace, want.color_range)
    for got, ref in zip(planes(frame), planes(want)):
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 1  # for yuv420p10le this is one 10-bit code


@pytest.mark.parametrize("fmt", FORMATS)
def test_smallest_size_that_matches_libswscale(fmt: str) -> None:
    # Below 7 pixels libswscale shortens its chroma filters (to the plane length - 2 taps); the
    # specification does not, so 7x7 is the smallest size where they must agree.
    rgb = image(7, 7, seed=13)
    frame = pyav_frame(rgb, fmt, "bt709", "limited")
    assert np.abs(to_u8(kernels.frame_to_tensor(frame, method="reference")) - pyav_rgb(frame)).max() <= 1
    out = kernels.tensor_to_frame(to_tensor(rgb), format=fmt, colorspace="bt709", method="reference")
    assert max(np.abs(a - b).max() for a, b in zip(planes(out), planes(frame))) <= 1


@pytest.mark.parametrize("matrix", ["fcc", "smpte240m"])
def test_legacy_matrices_match_pyav(matrix: str) -> None:
    rgb = image(38, 22, seed=2)
    frame = pyav_frame(rgb, "yuv420p", matrix, "limited")
    assert np.abs(to_u8(kernels.frame_to_tensor(frame, method="reference")) - pyav_rgb(frame)).max() <= 1
    out = kernels.tensor_to_frame(to_tensor(rgb), colorspace=matrix, method="reference")
    assert max(np.abs(a - b).max() for a, b in zip(planes(out), planes(frame))) <= 1


@pytest.mark.parametrize("fmt", ["yuv420p", "nv12"])
def test_random_legal_codes_match_pyav(fmt: str) -> None:
    rng = np.random.default_rng(7)
    frame = av.VideoFrame(40, 30, fmt)
    frame.colorspace, frame.color_range = 1, 1
    y, *chroma = kernels._MODULES[fmt].frame_planes(frame)
    y[...] = rng.integers(16, 236, y.shape)
    for c in chroma:
        c[...] = rng.integers(16, 241, c.shape)
    assert np.abs(to_u8(kernels.frame_to_tensor(frame, method="reference")) - pyav_rgb(frame)).max() <= 1


def test_illegal_codes_clamp_instead_of_wrapping() -> None:
    # Limited range with Y and Cb above their legal maxima: libswscale's full-chroma path overflows here and
    # wraps blue to 0; the specification clamps.
    frame = av.VideoFrame(16, 16, "yuv420p")
    frame.colorspace, frame.color_range = 1, 1
    y, u, v = yuv420p.frame_planes(frame)
    y[...], u[...], v[...] = 255, 255, 128
    t = kernels.frame_to_tensor(frame, method="reference")
    assert torch.all(t[2] == 1.0)  # blue = Y + 1.86 Cb is far above white
    assert torch.all(t[0] == 1.0)  # red = Y (> 235) with neutral Cr


def test_untagged_frame_is_bt601_limited_like_libswscale() -> None:
    rgb = image(38, 22, seed=3)
    frame = pyav_frame(rgb, "yuv420p", "bt601", "limited")
    frame.colorspace, frame.color_range = 2, 0  # AVCOL_SPC_UNSPECIFIED, AVCOL_RANGE_UNSPECIFIED
    assert kernels.frame_colour(frame) == ("bt601", "limited")
    default = frame.to_ndarray(format="rgb24", interpolation=FLAGS).astype(np.int32)
    assert np.abs(to_u8(kernels.frame_to_tensor(frame, method="reference")) - default).max() <= 1


def test_bt709_tag_changes_the_conversion() -> None:
    frame = pyav_frame(image(38, 22, seed=4), "yuv420p", "bt709", "limited")
    t709 = kernels.frame_to_tensor(frame, method="reference")
    frame.colorspace = 2
    t601 = kernels.frame_to_tensor(frame, method="reference")
    assert (t709 - t601).abs().max() * 127.5 > 10
    frame.colorspace = 1
    assert np.abs(to_u8(t709) - pyav_rgb(frame)).max() <= 1


@H264
def test_left_siting_matches_libswscale_on_decoded_h264() -> None:
    frame = h264_frame(64, 48, seed=14)
    assert kernels.frame_colour(frame) == ("bt601", "limited")  # x264 writes no colour tags
    direct = pyav_rgb(frame)  # libswscale on the decoded frame itself: LEFT siting
    left = kernels.frame_to_tensor(frame, chroma_location="left")  # auto -> reference on the CPU
    torch.testing.assert_close(left, kernels.frame_to_tensor(frame, method="reference", chroma_location=1))
    assert np.abs(to_u8(left) - direct).max() <= 1
    # The default (centred) siting is the same for every method, even though libswscale would use the
    # frame's hidden LEFT tag: the pyav path converts an untagged copy.
    centre = {m: kernels.frame_to_tensor(frame, method=m) for m in ("pyav", "reference")}
    assert np.abs(to_u8(centre["pyav"]) - to_u8(centre["reference"])).max() <= 1
    assert np.abs(to_u8(centre["reference"]) - direct).max() > 4  # a quarter chroma sample at hard edges


def test_pyav_method_refuses_left_siting() -> None:
    frame = pyav_frame(image(16, 8), "yuv420p", "bt601", "limited")
    with pytest.raises(ValueError, match="method='pyav' cannot convert chroma_location='left'"):
        kernels.frame_to_tensor(frame, method="pyav", chroma_location="left")
    with pytest.raises(ValueError, match="chroma_location='top' is not supported; expected one of: center, left"):
        kernels.frame_to_tensor(frame, chroma_location="top")


def test_yuvj420p_is_full_range_whatever_the_tag() -> None:
    rgb = image(38, 22, seed=5)
    full = pyav_frame(rgb, "yuv420p", "bt601", "full")
    j = av.VideoFrame(38, 22, "yuvj420p")
    for dst, src in zip(yuv420p.frame_planes(j), yuv420p.frame_planes(full)):
        dst[...] = src
    j.color_range = 0
    assert kernels.frame_colour(j) == ("bt601", "full")
    for method in ("pyav", "reference"):
        torch.testing.assert_close(
            kernels.frame_to_tensor(j, method=method), kernels.frame_to_tensor(full, method=method)
        )
    assert np.abs(to_u8(kernels.frame_to_tensor(j)) - pyav_rgb(full)).max() <= 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_padding_and_strides_are_honoured(fmt: str) -> None:
    frame = pyav_frame(image(37, 21, seed=6), fmt, "bt709", "limited")
    module = kernels._MODULES[fmt]
    before = {m: kernels.frame_to_tensor(frame, method=m) for m in ("pyav", "reference")}
    itemsize = 2 if fmt == "yuv420p10le" else 1
    for i, plane in enumerate(frame.planes):  # scribble over the row padding only
        used = plane.width * itemsize * (2 if fmt == "nv12" and i == 1 else 1)
        assert plane.line_size > used
        np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, used:] = 0xA5
    for method, want in before.items():
        torch.testing.assert_close(kernels.frame_to_tensor(frame, method=method), want, atol=0, rtol=0)
    # Planes embedded at an offset in larger arrays (arbitrary row strides) give the same result.
    views = []
    for p in module.frame_planes(frame):
        big = np.zeros((p.shape[0] + 3, p.shape[1] * 2 + 5) + p.shape[2:], dtype=p.dtype)
        big[2 : 2 + p.shape[0], 5 : 5 + p.shape[1]] = p
        views.append(big[2 : 2 + p.shape[0], 5 : 5 + p.shape[1]])
    convert = {
        yuv420p: yuv420p.yuv420p_to_rgb_cpu,
        nv12: nv12.nv12_to_rgb_cpu,
        yuv420p10: yuv420p10.yuv420p10_to_rgb_cpu,
    }
    torch.testing.assert_close(convert[module](*views, matrix="bt709"), before["reference"], atol=0, rtol=0)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("color_range", ["limited", "full"])
@pytest.mark.parametrize("method", ["pyav", "reference"])
def test_round_trip_error_bounds(fmt: str, color_range: str, method: str) -> None:
    height, width = 48, 64
    y, x = np.mgrid[0:height, 0:width]
    smooth = np.rint(
        np.stack([x * 255 / (width - 1), y * 255 / (height - 1), (x + y) * 255 / (width + height - 2)], -1)
    )
    grey = np.repeat(((x * 3 + y * 2) % 256)[..., None], 3, -1)
    bits = 10 if fmt == "yuv420p10le" else 8
    luma_codes = 219 * 2 ** (bits - 8) if color_range == "limited" else 2**bits - 1
    # Grey has no chroma, so only luma quantisation remains: half a luma code, in 8-bit RGB steps (the
    # pyav path also rounds its RGB to 8 bits).  Colour gradients add the chroma filters' blur, largest
    # where the gradient bends at the image corners.
    grey_bound = (1.0 if method == "pyav" else 0.5 * 255 / luma_codes) + 1e-3
    for img, max_bound, mean_bound in ((smooth, 4.5, 0.75), (grey, grey_bound, grey_bound)):
        t = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1) / 127.5 - 1.0
        frame = kernels.tensor_to_frame(t, format=fmt, colorspace="bt709", color_range=color_range, method=method)
        err = (kernels.frame_to_tensor(frame, method=method) - t).abs() * 127.5
        assert err.max() <= max_bound
        assert err.mean() <= mean_bound


def test_ten_bit_keeps_more_precision_than_eight_bit() -> None:
    g = torch.Generator().manual_seed(8)
    t = torch.rand((3, 22, 38), generator=g) * 1.6 - 0.8  # in gamut, no clamping
    grey = t.mean(dim=0, keepdim=True).expand(3, -1, -1)  # chroma-free: subsampling loses nothing
    errs = {}
    for fmt in ("yuv420p", "yuv420p10le"):
        frame = kernels.tensor_to_frame(grey, format=fmt, color_range="full", method="reference")
        errs[fmt] = (kernels.frame_to_tensor(frame, method="reference") - grey).abs().max().item() * 127.5
    assert errs["yuv420p"] <= 0.51
    assert errs["yuv420p10le"] <= 0.51 / 4 + 1e-3


@pytest.mark.parametrize(("width", "height"), [(37, 21), (1, 1), (3, 2)])
def test_odd_sizes_use_ceil_chroma(width: int, height: int) -> None:
    t = to_tensor(image(width, height, seed=9))
    for fmt in FORMATS:
        frame = kernels.tensor_to_frame(t, format=fmt, method="reference")
        shapes = [p.shape[:2] for p in kernels._MODULES[fmt].frame_planes(frame)]
        assert shapes[0] == (height, width)
        assert all(s == ((height + 1) // 2, (width + 1) // 2) for s in shapes[1:])
        assert kernels.frame_to_tensor(frame, method="reference").shape == (3, height, width)


def test_batched_variants() -> None:
    rgb = image(38, 22, seed=10)
    frames = [pyav_frame(rgb, "yuv420p", "bt709", "limited"), pyav_frame(rgb, "nv12", "bt601", "full")]
    batch = kernels.frames_to_tensor(frames)
    assert batch.shape == (2, 3, 22, 38)
    for i, frame in enumerate(frames):
        torch.testing.assert_close(batch[i], kernels.frame_to_tensor(frame))
    out = kernels.tensor_to_frames(batch, format="nv12", colorspace="bt709", method="reference")
    assert [f.format.name for f in out] == ["nv12", "nv12"]
    with pytest.raises(ValueError, match="frames\\[1\\] is 40x22; expected 38x22"):
        kernels.frames_to_tensor([frames[0], av.VideoFrame(40, 22, "yuv420p")])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_device_matches_cpu_reference(device: str, fmt: str) -> None:
    rgb = image(37, 21, seed=11)
    frame = pyav_frame(rgb, fmt, "bt709", "limited")
    t = kernels.frame_to_tensor(frame, device=device)
    assert t.device.type == device
    assert np.abs(to_u8(t) - to_u8(kernels.frame_to_tensor(frame, method="reference"))).max() <= 1
    out = kernels.tensor_to_frame(to_tensor(rgb).to(device), format=fmt, colorspace="bt709")
    ref = kernels.tensor_to_frame(to_tensor(rgb), format=fmt, colorspace="bt709", method="reference")
    assert max(np.abs(a - b).max() for a, b in zip(planes(out), planes(ref))) <= 1


@CUDA
@pytest.mark.parametrize("fmt", FORMATS)
def test_cuda_module_functions_match_cpu_reference(fmt: str) -> None:
    frame = pyav_frame(image(38, 22, seed=12), fmt, "bt2020", "full")
    host = kernels._MODULES[fmt].frame_planes(frame)
    dev = [torch.from_numpy(p.view(np.int16) if p.dtype == np.uint16 else np.ascontiguousarray(p)).cuda() for p in host]
    to_rgb = {
        "yuv420p": yuv420p.yuv420p_to_rgb_cuda,
        "nv12": nv12.nv12_to_rgb_cuda,
        "yuv420p10le": yuv420p10.yuv420p10_to_rgb_cuda,
    }
    cpu = {
        "yuv420p": yuv420p.yuv420p_to_rgb_cpu,
        "nv12": nv12.nv12_to_rgb_cpu,
        "yuv420p10le": yuv420p10.yuv420p10_to_rgb_cpu,
    }
    got = to_rgb[fmt](*dev, matrix="bt2020", color_range="full")
    assert got.is_cuda
    assert np.abs(to_u8(got) - to_u8(cpu[fmt](*host, matrix="bt2020", color_range="full"))).max() <= 1


@pytest.mark.skipif(kernels.cuda_available(), reason="checks the error raised when CUDA is absent")
def test_cuda_functions_explain_how_to_get_cuda() -> None:
    frame = pyav_frame(image(16, 8), "yuv420p", "bt601", "limited")
    y, u, v = (torch.from_numpy(np.ascontiguousarray(p)) for p in yuv420p.frame_planes(frame))
    for call in (
        lambda: yuv420p.yuv420p_to_rgb_cuda(y, u, v),
        lambda: nv12.rgb_to_nv12_cuda(torch.zeros(3, 8, 16)),
        lambda: yuv420p10.rgb_to_yuv420p10_cuda(torch.zeros(3, 8, 16)),
        lambda: kernels.frame_to_tensor(frame, device="cuda", method="cuda"),  # "auto" would convert on the CPU
        lambda: kernels.tensor_to_frame(torch.zeros(3, 8, 16), method="cuda"),
    ):
        with pytest.raises(RuntimeError, match=r"pip install 'rt-anime\[gpu\]'"):
            call()


def test_import_does_not_import_cupy() -> None:
    code = "import sys, kernels; sys.exit('cupy' in sys.modules)"
    repo = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=repo, check=False).returncode == 0


def test_errors_name_parameter_value_and_choices() -> None:
    with pytest.raises(
        ValueError, match="format='yuv444p' is not supported; expected one of: yuv420p, nv12, yuv420p10le"
    ):
        kernels.tensor_to_frame(torch.zeros(3, 4, 4), format="yuv444p")
    with pytest.raises(ValueError, match="frame.format='rgb24' is not supported; expected one of: yuv420p"):
        kernels.frame_to_tensor(av.VideoFrame(4, 4, "rgb24"))
    with pytest.raises(ValueError, match="method='gpu' is not supported"):
        kernels.frame_to_tensor(av.VideoFrame(4, 4, "yuv420p"), method="gpu")
    with pytest.raises(ValueError, match=r"t must have shape \(3, H, W\), got \(4, 4\)"):
        kernels.tensor_to_frame(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="colorspace='bt2100' is not supported; expected one of: bt601, bt709"):
        kernels.tensor_to_frame(torch.zeros(3, 4, 4), colorspace="bt2100")
    with pytest.raises(ValueError, match="color_range='studio' is not supported"):
        kernels.tensor_to_frame(torch.zeros(3, 4, 4), color_range="studio")
    frame = av.VideoFrame(4, 4, "yuv420p")
    frame.colorspace = 8  # YCgCo: libswscale refuses it too
    with pytest.raises(ValueError, match=r"colorspace=8 \(AVColorSpace\) is not supported"):
        kernels.frame_to_tensor(frame)
    y = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match=r"u plane has shape \(4, 4\); a 4x4 4:2:0 frame needs \(2, 2\)"):
        yuv420p.yuv420p_to_rgb_cpu(y, y, y)
    with pytest.raises(TypeError, match="y has dtype float32; 8-bit planes need uint8"):
        yuv420p.yuv420p_to_rgb_cpu(y.astype(np.float32), y[:2, :2], y[:2, :2])
    with pytest.raises(ValueError, match=r"uv must have shape \(rows, cols, 2\)"):
        nv12.nv12_to_rgb_cpu(y, y[:2])
    with pytest.raises(ValueError, match=r"v has shape \(2, 3\); this frame needs \(2, 2\)"):
        yuv420p.frame_from_planes(y, y[:2, :2], y[:2, :3])
