"""``rt-anime INPUT OUTPUT`` as a user runs it: videos, images, folders, and every bad input of the issue."""

import re
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import needs_cuda
from media import ClipSpec, corrupt_video_packet, make_audio_only, make_clip, packet_payloads, truncate, video_times
from realtime.cli import main

MODEL = ["--model", "nijigan-lite", "--random-weights", "--preset", "ultrafast"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """VFR, AAC audio, 12 frames."""
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    return make_clip(path, ClipSpec(width=64, height=48, frames=12, pts=[0, 1, 3, 4, 6, 9, 10, 12, 15, 16, 18, 20]))


def one_line_error(capsys, pattern):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("rt-anime: error:")]
    assert len(errors) == 1 and not any("Traceback" in line for line in err), err
    assert re.search(pattern, errors[0]), errors[0]


def test_video_keeps_frames_pts_audio_and_size(clip, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert main([str(clip), str(out), *MODEL, "--benchmark"]) == 0
    assert video_times(out) == video_times(clip) and len(video_times(out)) == 12
    assert packet_payloads(out) == packet_payloads(clip) and packet_payloads(clip)
    import av

    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert (s.codec_context.width, s.codec_context.height) == (64, 48)
    text = capsys.readouterr().out
    assert "model-only:" in text and "end-to-end:" in text and "stage busy time" in text


def test_max_side_and_size(clip, tmp_path):
    import av

    out = tmp_path / "s.mkv"
    assert main([str(clip), str(out), *MODEL, "--size", "40x32"]) == 0
    with av.open(str(out)) as c:
        assert (c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height) == (40, 32)
    assert main([str(clip), str(tmp_path / "m.mkv"), *MODEL, "--max-side", "32"]) == 0
    with av.open(str(tmp_path / "m.mkv")) as c:
        assert c.streams.video[0].codec_context.width == 64


def _images(folder, sizes):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(sizes):
        cv2.imwrite(str(folder / f"f{i:03d}.png"), (rng.random((h, w, 3)) * 255).astype(np.uint8))
    return folder


def test_image_folder_to_folder_keeps_names_and_sizes(tmp_path):
    src = _images(tmp_path / "in", [(30, 22), (41, 17)])
    assert main([str(src), str(tmp_path / "out"), *MODEL]) == 0
    outs = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in outs] == ["f000.png", "f001.png"]
    assert cv2.imread(str(outs[1])).shape == (17, 41, 3)


def test_single_image(tmp_path):
    src = _images(tmp_path / "in", [(33, 21)]) / "f000.png"
    out = tmp_path / "o.jpg"
    assert main([str(src), str(out), *MODEL]) == 0
    img = cv2.imread(str(out))
    assert img.shape == (21, 33, 3) and img.std() > 0


def test_tiff_ppm_and_greyscale_inputs_are_images(tmp_path, capsys):
    # These used to be taken for videos: "input a.tif is a video, so the output must be a video file".
    rng = np.random.default_rng(1)
    src = tmp_path / "in"
    src.mkdir()
    rgb16 = (rng.random((20, 28, 3)) * 65535).astype(np.uint16)  # a 16-bit scan: read as 8-bit
    cv2.imwrite(str(src / "a.tif"), rgb16)
    cv2.imwrite(str(src / "b.ppm"), (rng.random((20, 28, 3)) * 255).astype(np.uint8))
    cv2.imwrite(str(src / "c.pgm"), (rng.random((20, 28)) * 255).astype(np.uint8))
    out = tmp_path / "a-anime.tiff"
    assert main([str(src / "a.tif"), str(out), *MODEL]) == 0
    single = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert single.shape == (20, 28, 3) and single.dtype == np.uint8 and single.std() > 0
    assert main([str(src), str(tmp_path / "out"), *MODEL]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.tif", "b.ppm", "c.png"]
    assert cv2.imread(str(tmp_path / "out" / "c.png"), cv2.IMREAD_UNCHANGED).shape == (20, 28, 3)
    assert main([str(src / "c.pgm"), str(tmp_path / "c.pgm"), *MODEL]) == 2
    one_line_error(capsys, r"unknown extension '.pgm'.*\.tiff")
    assert not (tmp_path / "c.pgm").exists()


@pytest.mark.parametrize("out_name, size, channels", [
    ("o.png", None, 4), ("o.webp", None, 4), ("o.png", (24, 16), 4), ("o.jpg", None, 3), ("o.tif", None, 3)])
def test_a_transparent_picture_keeps_its_alpha_where_the_format_has_one(tmp_path, out_name, size, channels):
    rng = np.random.default_rng(3)
    rgba = (rng.random((32, 48, 4)) * 255).astype(np.uint8)
    rgba[..., 3] = np.linspace(0, 255, 48).astype(np.uint8)[None, :]  # transparent left, opaque right
    cv2.imwrite(str(tmp_path / "sticker.png"), rgba)
    extra = ["--size", f"{size[0]}x{size[1]}"] if size else []
    assert main([str(tmp_path / "sticker.png"), str(tmp_path / out_name), *MODEL[:3], *extra]) == 0
    out = cv2.imread(str(tmp_path / out_name), cv2.IMREAD_UNCHANGED)
    assert out.shape == ((size[1], size[0]) if size else (32, 48)) + (channels,)
    if channels == 4:  # before: the alpha was dropped and the sticker came out on an opaque box
        expected = cv2.resize(rgba[..., 3], size, interpolation=cv2.INTER_AREA) if size else rgba[..., 3]
        assert np.abs(out[..., 3].astype(int) - expected).max() <= 1


@pytest.mark.parametrize("name", ["anim.webp", "pages.tiff"])
def test_a_picture_file_with_more_frames_says_only_the_first_is_read(tmp_path, caplog, name):
    from PIL import Image

    rng = np.random.default_rng(2)
    frames = [Image.fromarray((rng.random((20, 28, 3)) * 255).astype(np.uint8)) for _ in range(3)]
    frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:], duration=100)
    frames[0].save(tmp_path / f"still{Path(name).suffix}")
    assert main([str(tmp_path / f"still{Path(name).suffix}"), str(tmp_path / "a.png"), *MODEL]) == 0
    assert "frames" not in caplog.text
    assert main([str(tmp_path / name), str(tmp_path / "b.png"), *MODEL]) == 0
    assert re.search(rf"{name} is an? .* with 3 frames; only the first is read", caplog.text)


def test_pattern_to_video_uses_exact_fps(tmp_path):
    _images(tmp_path / "in", [(32, 24)] * 5)
    out = tmp_path / "v.mp4"
    assert main([str(tmp_path / "in" / "f%03d.png"), str(out), *MODEL, "--fps", "29.97"]) == 0
    times = video_times(out)
    assert len(times) == 5 and times[1] - times[0] == Fraction(1001, 30000)


@pytest.mark.parametrize("output", ["v.mp4", "frames"])
def test_a_numbered_sequence_with_a_hole_is_refused_not_cut_short(tmp_path, capsys, output):
    # Before: f003 missing made the video "truncated (3 of ? frames)" and a folder output silently stopped at f002.
    _images(tmp_path / "in", [(32, 24)] * 6)
    (tmp_path / "in" / "f003.png").unlink()
    args = [str(tmp_path / "in" / "f%03d.png"), str(tmp_path / output), *MODEL] + (["--fps", "5"] if "." in output
                                                                                   else [])
    assert main(args) == 2
    one_line_error(capsys, r"f003\.png is missing, so the sequence would stop after f002\.png although 2 more file\(s\) "
                           r"match \(f004\.png")
    assert not (tmp_path / output).exists()
    assert main([str(tmp_path / "in"), str(tmp_path / "all"), *MODEL]) == 0  # the folder takes them all
    assert len(list((tmp_path / "all").iterdir())) == 5


def test_sigterm_unwinds_like_ctrl_c_and_leaves_no_temporary_file(tmp_path):
    # Before: `kill`/`timeout`/`docker stop` ended the process at once, leaving .out.*.partial.mp4 beside the output.
    import os
    import signal
    import subprocess
    import sys
    import time

    clip = make_clip(tmp_path / "long.mp4", ClipSpec(frames=400, width=128, height=96, audio_codec=None))
    out = tmp_path / "out.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "realtime", str(clip), str(out), *MODEL, "--quiet"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.*partial*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be stopped"
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "rt-anime: terminated" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_folder_to_video_needs_fps(tmp_path, capsys):
    _images(tmp_path / "in", [(32, 24)] * 3)
    assert main([str(tmp_path / "in"), str(tmp_path / "v.mp4"), *MODEL]) == 2
    one_line_error(capsys, "needs a frame rate: add --fps")
    assert not (tmp_path / "v.mp4").exists()


def test_fp16_on_the_cpu_is_refused_and_auto_picks_fp16_on_cuda_only(clip, tmp_path, capsys):
    import torch

    from realtime.backends import resolve_precision

    out = tmp_path / "h.mp4"
    assert main([str(clip), str(out), *MODEL, "--device", "cpu", "--precision", "fp16"]) == 2
    one_line_error(capsys, r"--precision fp16 needs a CUDA device.*allowed here: auto, fp32")
    assert not out.exists()
    assert resolve_precision("auto", torch.device("cuda", 0)) == "fp16"
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"
    with pytest.raises(ValueError, match="--precision 'bf16'.*auto, fp32, fp16"):
        resolve_precision("bf16", torch.device("cpu"))


def test_mixed_sizes_to_video_is_refused(tmp_path, capsys):
    _images(tmp_path / "in", [(32, 24), (40, 24)])
    assert main([str(tmp_path / "in"), str(tmp_path / "v.mp4"), *MODEL, "--fps", "25"]) == 2
    one_line_error(capsys, r"mixes sizes: f000.png is 32x24, f001.png is 40x24")
    assert not (tmp_path / "v.mp4").exists()


@pytest.fixture(scope="module")
def bad_media(tmp_path_factory, clip):
    d = tmp_path_factory.mktemp("bad")
    (d / "notmedia.mp4").write_bytes(b"this is not a video at all" * 100)
    # faststart puts the index first, as streaming-ready files have it, so the cut loses frames and not the index
    whole = make_clip(d / "whole.mp4", ClipSpec(width=64, height=48, frames=24, container_options={"movflags": "faststart"}))
    truncate(whole, d / "truncated.mp4", keep=0.6)
    make_audio_only(d / "audio.m4a")
    (d / "empty_dir").mkdir()
    (d / "model.pth").write_bytes(b"garbage")
    return d


@pytest.mark.parametrize("make_args, pattern", [
    (lambda d, c: ["missing.mp4", "o.mp4"], "input missing.mp4 does not exist"),
    (lambda d, c: [str(d / "empty_dir"), "o.mp4", "--fps", "5"], "contains no images"),
    (lambda d, c: [str(d / "notmedia.mp4"), "o.mp4"], "cannot open input as a media file"),
    (lambda d, c: [str(d / "truncated.mp4"), "o.mp4"], r"input is truncated \(\d+ of 24 frames readable.*--allow-partial"),
    (lambda d, c: [str(d / "audio.m4a"), "o.mp4"], "no video stream"),
    (lambda d, c: [str(c), str(c)], "output path is the input file"),
    (lambda d, c: [str(c), "o.xyz"], "unknown extension '.xyz'"),
    (lambda d, c: [str(c), "nodir/o.mp4"], "output directory does not exist"),
    (lambda d, c: [str(c), "o.png"], "output must be a video file"),
    (lambda d, c: [str(c), "o.mp4", "--size", "0x10"], "--size '0x10'"),
    (lambda d, c: [str(c), "o.mp4", "--size", "big"], "--size 'big'"),
    (lambda d, c: [str(c), "o.mp4", "--size", "100000x100000"], "--size '100000x100000': at most 16384 pixels"),
    (lambda d, c: [str(c), "o.mp4", "--tile", "32", "--tile-overlap", "32"], "--tile-overlap 32: .*less than --tile 32"),
    (lambda d, c: [str(c), "o.mp4", "--max-side", "-3"], "--max-side must be at least 8"),
    (lambda d, c: [str(c), "o.mp4", "--fps", "0"], "--fps '0'"),
    (lambda d, c: [str(c), "o.mp4", "--batch", "0"], "--batch must be >= 1"),
])
def test_bad_input_is_one_line_exit_2_and_no_output(bad_media, clip, tmp_path, capsys, monkeypatch, make_args,
                                                    pattern):
    monkeypatch.chdir(tmp_path)
    assert main([*make_args(bad_media, clip), *MODEL]) == 2
    one_line_error(capsys, pattern)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()], "nothing may be written at the output path"


def test_model_file_that_fails_to_load(bad_media, clip, tmp_path, capsys):
    assert main([str(clip), str(tmp_path / "o.mp4"), "--model", str(bad_media / "model.pth")]) == 2
    one_line_error(capsys, "is not a readable PyTorch checkpoint")
    assert not (tmp_path / "o.mp4").exists()


def test_without_model_the_bundled_default_is_used(clip, tmp_path):
    import av

    from realtime.commands import DEFAULT_MODEL

    def frames(path):
        with av.open(str(path)) as c:
            return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]

    # Lossless, so the comparison is of the model's frames: two libx264 encodes of the same frames in one process
    # were seen to differ in P-frames after another test's run (same options; not reproduced outside pytest).
    assert main([str(clip), str(tmp_path / "o.mkv"), "--quiet", "--codec", "ffv1"]) == 0
    assert main([str(clip), str(tmp_path / "p.mkv"), "--quiet", "--codec", "ffv1", "--model", DEFAULT_MODEL]) == 0
    a, b = frames(tmp_path / "o.mkv"), frames(tmp_path / "p.mkv")
    assert len(a) == len(frames(clip)) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_missing_default_model_is_explained(clip, tmp_path, capsys, monkeypatch):
    import realtime.checkpoint as ckpt

    monkeypatch.setattr(ckpt, "_PRETRAINED", {})
    monkeypatch.setattr(ckpt, "_DEFAULT_TAG", {})
    assert main([str(clip), str(tmp_path / "o.mp4")]) == 2
    one_line_error(capsys, "no bundled default model")
    assert not (tmp_path / "o.mp4").exists()


def test_truncated_with_allow_partial_keeps_what_decodes(bad_media, tmp_path, capsys):
    out = tmp_path / "p.mp4"
    assert main([str(bad_media / "truncated.mp4"), str(out), *MODEL, "--allow-partial"]) == 0
    assert 0 < len(video_times(out)) < 24
    assert re.search(r"truncated: \d+ frame\(s\) lost; kept \d+", capsys.readouterr().err)


def test_corrupt_packet_is_reported_and_the_rest_kept(clip, tmp_path, capsys):
    bad = corrupt_video_packet(clip, tmp_path / "corrupt.mp4", index=6)
    out = tmp_path / "c.mp4"
    code = main([str(bad), str(out), *MODEL])
    err = capsys.readouterr().err
    assert code == 0 and "corrupt packet" in err
    assert len(video_times(out)) >= 10


def test_tiles_cover_the_frame_and_blend_exactly_for_a_pointwise_model():
    import torch

    from realtime.tiling import TiledTranslate

    calls = []

    def pointwise(x):
        calls.append(tuple(x.shape))
        return torch.tanh(2 * x)

    x = torch.rand(1, 3, 100, 72) * 2 - 1
    y = TiledTranslate(pointwise, tile=32, overlap=8, multiple=4)(x)
    assert all(s[-2] <= 32 and s[-1] <= 32 for s in calls) and len(calls) > 4
    torch.testing.assert_close(y, torch.tanh(2 * x), atol=1e-6, rtol=0)


def test_tiled_video_run(clip, tmp_path):
    out = tmp_path / "t.mp4"
    assert main([str(clip), str(out), *MODEL, "--tile", "32"]) == 0  # the overlap shrinks to fit: 8
    assert len(video_times(out)) == 12


def test_channels_last_backend_leaves_the_model_untouched():
    import torch

    import realtime
    from realtime.backends import BackendConfig, make_backend

    g = realtime.create_generator("nijigan-lite", ngf=4).eval()
    make_backend(g, BackendConfig(name="torch", channels_last=True))
    assert all(p.is_contiguous() for p in g.parameters()), "building a backend must not convert the model"
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(make_backend(g, BackendConfig(name="torch", device="cpu", channels_last=True))(x),
                                   g(x), atol=1e-5, rtol=0)


@needs_cuda
def test_cuda_fp16_backend_matches_the_cpu_model_and_leaves_it_on_the_cpu():
    import torch

    import realtime
    from realtime.backends import BackendConfig, make_backend

    g = realtime.create_generator("nijigan-lite", ngf=8).eval()
    backend = make_backend(g, BackendConfig(name="torch", device="cuda", precision="fp16", channels_last=True))
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in g.parameters())
    x = torch.rand(2, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        y, ref = backend(x), g(x)
    assert y.is_cuda and y.dtype == torch.float32
    mse = (y.cpu() - ref).pow(2).mean().item()
    assert 10 * torch.log10(torch.tensor(4.0 / max(mse, 1e-12))).item() > 40  # fp16 looks the same


@needs_cuda
@pytest.mark.parametrize("cupy", [True, False], ids=["cupy", "no-cupy"])
def test_cuda_run_writes_what_the_cpu_run_writes(clip, tmp_path, monkeypatch, cupy):
    import torch

    import kernels
    from media import video_frames_rgb

    if cupy and not kernels.cuda_available():
        pytest.skip("CuPy with a CUDA device is not available")
    if not cupy:  # frames then convert on the CPU on both sides of the GPU model
        monkeypatch.setattr(kernels, "cuda_available", lambda: False)
    outs = {}
    for device in ("cpu", "cuda"):
        outs[device] = tmp_path / f"{device}.mp4"
        torch.manual_seed(0)  # the same random weights for both runs
        assert main([str(clip), str(outs[device]), *MODEL, "--device", device, "--precision", "fp32"]) == 0
    assert video_times(outs["cuda"]) == video_times(outs["cpu"])
    cpu, gpu = (np.stack(video_frames_rgb(outs[d])).astype(np.float64) for d in ("cpu", "cuda"))
    # Frame by frame, so one wrong frame (read before its conversion finished, or mixed up) cannot hide in a mean.
    psnr = 10 * np.log10(255.0**2 / np.maximum(((cpu - gpu) ** 2).mean(axis=(1, 2, 3)), 1e-12))
    assert psnr.min() > 35, psnr  # TF32 convolutions and 1-LSB conversion differences, then x264 on both


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server for ``tmp_path`` (FFmpeg's http protocol, no network beyond this machine)."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_url_input_is_read_as_given(clip, tmp_path, http_server, capsys):
    (tmp_path / "clip.mp4").write_bytes(clip.read_bytes())
    out = tmp_path / "out.mp4"
    # Path() would fold the URL's "//" and the input was reported missing.
    assert main([f"{http_server}/clip.mp4", str(out), *MODEL]) == 0
    assert video_times(out) == video_times(clip) and packet_payloads(out) == packet_payloads(clip)
    assert main([f"{http_server}/missing.mp4", str(tmp_path / "none.mp4"), *MODEL]) == 2
    one_line_error(capsys, r"404 Not Found\): http://127\.0\.0\.1:\d+/missing\.mp4$")
    assert not (tmp_path / "none.mp4").exists()


def test_a_url_that_never_answers_times_out(tmp_path, capsys, monkeypatch):
    import socket

    import realtime.pipeline.decode

    monkeypatch.setattr(realtime.pipeline.decode, "URL_TIMEOUTS", (1.0, 1.0))
    with socket.socket() as silent:  # accepts the connection, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/clip.mp4"
        assert main([url, str(tmp_path / "out.mp4"), *MODEL]) == 2
    one_line_error(capsys, r"no answer within 1 s")
    assert not (tmp_path / "out.mp4").exists()
