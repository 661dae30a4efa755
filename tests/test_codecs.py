"""``codec="auto"``: the encoder each container gets (H.264, VP9 for WebM, GIF with per-frame palettes), and GIFs
as inputs (animated → video, one frame → picture)."""

from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
import torch

from media import ClipSpec, make_clip, video_frames_rgb, video_times
from realtime.cli import main
from realtime.pipeline import EncodeConfig, run_file
from realtime.pipeline.codecs import PaletteQuantizer, resolve_encode

MODEL = ["--model", "nijigan-lite", "--random-weights", "--preset", "ultrafast"]


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


@pytest.mark.parametrize("suffix, codec, pix_fmt, crf, preset", [
    (".mp4", "libx264", "yuv420p", 18, "medium"),
    (".mkv", "libx264", "yuv420p", 18, "medium"),
    (".ts", "libx264", "yuv420p", 18, "medium"),  # MPEG-TS does not *declare* H.264 but carries it
    (".mpg", "libx264", "yuv420p", 18, "medium"),  # not MPEG-1, which refuses most frame rates
    (".y4m", "wrapped_avframe", "yuv420p", None, None),  # raw frames only: H.264 in y4m fails at the trailer
    (".webm", "libvpx-vp9", "yuv420p", 18, None),  # libvpx has crf but no preset
    (".gif", "gif", "pal8", None, None),  # GIF has neither
])
def test_auto_picks_the_containers_encoder_and_drops_settings_it_lacks(tmp_path, suffix, codec, pix_fmt, crf, preset):
    with av.open(str(tmp_path / f"x{suffix}"), "w") as container:
        resolved = resolve_encode(EncodeConfig(), container)
    assert (resolved.codec, resolved.pix_fmt, resolved.crf, resolved.preset) == (codec, pix_fmt, crf, preset)
    if codec == "libvpx-vp9":
        assert resolved.options["b"] == "0"  # constant quality: libvpx's crf alone is capped by a bitrate target


def test_a_named_encoder_is_kept_with_every_setting(tmp_path):
    named = EncodeConfig(codec="libx264", crf=23, preset="fast", options={"tune": "animation"})
    with av.open(str(tmp_path / "x.webm"), "w") as container:
        assert resolve_encode(named, container) is named  # the user's choice; the muxer will say if it cannot


@pytest.mark.parametrize("suffix, codec, pix_fmt, decoder", [
    (".mkv", "ffv1", "yuv420p", "ffv1"),
    (".mov", "prores_ks", "yuv422p10le", "prores"),  # ProRes has no 4:2:0
    (".avi", "mjpeg", "yuvj420p", "mjpeg"),  # MJPEG refuses limited-range yuv420p (avcodec_open2 EINVAL)
])
def test_a_named_encoder_without_x264s_settings_runs_with_the_defaults(tmp_path, suffix, codec, pix_fmt, decoder,
                                                                       caplog):
    with av.open(str(tmp_path / f"x{suffix}"), "w") as container:
        resolved = resolve_encode(EncodeConfig(codec=codec), container)
    assert (resolved.crf, resolved.preset, resolved.pix_fmt) == (None, None, pix_fmt)
    src, out = make_clip(tmp_path / "in.mp4", ClipSpec(frames=3)), tmp_path / f"out{suffix}"
    assert main([str(src), str(out), *MODEL[:3], "--quiet", "--codec", codec]) == 0
    with av.open(str(out)) as c:
        assert (c.streams.video[0].codec_context.name, len(list(c.decode(video=0)))) == (decoder, 3)
    assert "ignored options" not in caplog.text  # crf 18 / preset medium were never the user's request


def test_a_setting_the_user_changed_is_kept_for_a_named_encoder(tmp_path):
    with av.open(str(tmp_path / "x.mkv"), "w") as container:
        assert resolve_encode(EncodeConfig(codec="ffv1", crf=10), container).crf == 10  # warned about, not dropped


@pytest.mark.parametrize("suffix, args, message", [
    (".mp4", ["--crf", "60"], "crf 60 (--crf): libx264 takes 0..51"),
    (".mp4", ["--crf", "-1"], "crf -1 (--crf): libx264 takes 0..51"),
    (".webm", ["--crf", "64"], "crf 64 (--crf): libvpx-vp9 takes 0..63"),
    (".mkv", ["--codec", "libx265", "--crf", "52"], "crf 52 (--crf): libx265 takes 0..51"),
    (".mp4", ["--preset", "turbo"], "preset 'turbo' (--preset): libx264 takes ultrafast, superfast"),
])
def test_crf_or_preset_outside_the_encoders_scale_is_refused(tmp_path, suffix, args, message, capsys):
    src, out = make_clip(tmp_path / "in.mp4", ClipSpec(frames=2)), tmp_path / f"out{suffix}"
    assert main([str(src), str(out), *MODEL[:3], "--quiet", *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def _packets(times):
    packets = []
    for pts, dts in times:
        packet = av.Packet(b"\0")
        packet.pts, packet.dts = pts, dts
        packets.append(packet)
    return packets


def test_dts_repair_mends_what_libx265_leaves_uninitialised_and_keeps_valid_streams():
    from realtime.pipeline.codecs import DtsRepair

    # Seen in ~1 of 10 runs of a 2-frame clip: the flushed packets' dts were 4.8e18, and the muxer's EINVAL lost the
    # whole output ("finishing the output failed: Invalid argument").
    repair = DtsRepair()
    fixed = repair(_packets([(0, 4839361896611501274), (512, 4839361896611501786)]))
    assert [(p.pts, p.dts) for p in fixed] == [(0, 0), (512, 512)] and repair.repaired == 2
    fixed = DtsRepair()(_packets([(0, -4601204130338216264), (512, -4601204130338215752)]))  # and far below
    assert [(p.pts, p.dts) for p in fixed] == [(0, 0), (512, 512)]
    reordered = [(0, -1024), (1536, -512), (512, 0), (1024, 512), (2048, 1024)]  # B-frames: dts < pts, increasing
    repair = DtsRepair()
    assert [(p.pts, p.dts) for p in repair(_packets(reordered))] == reordered and repair.repaired == 0
    repair = DtsRepair()
    assert [(p.pts, p.dts) for p in repair(_packets([(0, None), (40, None)]))] == [(0, None), (40, None)]


def test_x265_keeps_its_banner_to_itself(tmp_path, capfd):
    if "libx265" not in av.codecs_available:
        pytest.skip("this FFmpeg build has no libx265")
    src, out = make_clip(tmp_path / "in.mp4", ClipSpec(frames=2)), tmp_path / "out.mkv"
    assert main([str(src), str(out), *MODEL, "--quiet", "--codec", "libx265"]) == 0
    assert "x265 [info]" not in capfd.readouterr().err


@pytest.mark.parametrize("suffix, codec", [(".webm", "vp9"), (".gif", "gif")])
def test_webm_and_gif_outputs_keep_every_frame_and_its_time(tmp_path, suffix, codec):
    # Used to fail: "container 'webm' cannot hold codec 'libx264'".
    src = make_clip(tmp_path / "in.mp4", ClipSpec(width=64, height=48, frames=6, rate=10, audio_codec=None,
                                                  pts=[0, 1, 2, 4, 5, 7]))
    out = tmp_path / f"out{suffix}"
    result = run_file(src, out, identity)
    assert result.frames_out == 6
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == codec
    assert video_times(out) == video_times(src)  # 0.1 s steps are whole centiseconds, so GIF keeps them exactly
    if codec == "gif":  # RGB out: compare with the pipeline's own RGB frames, written losslessly
        reference = tmp_path / "lossless.mkv"
        run_file(src, reference, identity, encode=EncodeConfig(codec="libx264rgb", crf=0, pix_fmt="rgb24"))
    else:
        reference = src
    frames, originals = video_frames_rgb(out), video_frames_rgb(reference)
    # 256 colours for a frame of ~3,000 distinct ones (the clip's wrapping gradients) costs ~2 dB more than VP9
    assert len(frames) == 6 and all(psnr(a, b) > 29 for a, b in zip(frames, originals))


def test_each_gif_frame_gets_its_own_palette():
    # Two frames with no colour in common: a palette made for the first could not draw the second.
    h, w = 32, 48
    y, x = np.mgrid[0:h, 0:w]
    reds = np.stack([128 + x * 2, y * 2, np.zeros_like(x)], -1).astype(np.uint8)
    blues = np.stack([np.zeros_like(x), y * 2, 128 + x * 2], -1).astype(np.uint8)
    quantize = PaletteQuantizer(w, h)
    for picture in (reds, blues):
        frame = quantize(av.VideoFrame.from_ndarray(picture, format="rgb24"))
        assert frame.format.name == "pal8"
        assert psnr(frame.to_ndarray(format="rgb24"), picture) > 35


def test_gif_in_gif_out_and_a_still_gif_is_a_picture(tmp_path, capsys):
    animated = make_clip(tmp_path / "anim.gif", ClipSpec(width=40, height=32, frames=4, codec="gif", pix_fmt="rgb8",
                                                         audio_codec=None, time_base=Fraction(1, 100),
                                                         pts=[0, 10, 30, 40]))
    assert main([str(animated), str(tmp_path / "out.gif"), *MODEL]) == 0
    assert video_times(tmp_path / "out.gif") == video_times(animated) and len(video_times(animated)) == 4
    # An animated GIF is a video: a single picture cannot hold it.
    assert main([str(animated), str(tmp_path / "out.png"), *MODEL]) == 2
    assert "is a video" in capsys.readouterr().err and not (tmp_path / "out.png").exists()

    still = make_clip(tmp_path / "still.gif", ClipSpec(width=40, height=32, frames=1, codec="gif", pix_fmt="rgb8",
                                                       audio_codec=None, time_base=Fraction(1, 100)))
    png = tmp_path / "still.png"
    assert cv2.imwrite(str(png), cv2.imread(str(still)))  # the same picture, as a PNG
    torch.manual_seed(0)  # --random-weights: the same random model for both runs
    assert main([str(still), str(tmp_path / "a.png"), *MODEL]) == 0
    torch.manual_seed(0)
    assert main([str(png), str(tmp_path / "b.png"), *MODEL]) == 0
    a, b = cv2.imread(str(tmp_path / "a.png")), cv2.imread(str(tmp_path / "b.png"))
    assert a.shape == (32, 40, 3) and np.array_equal(a, b)
    torch.manual_seed(0)
    assert main([str(still), str(tmp_path / "folder") + "/", *MODEL]) == 0
    assert np.array_equal(cv2.imread(str(tmp_path / "folder" / "still.png")), a)  # named .png: GIF is not an image out


def test_a_picture_to_gif_is_a_still_gif(tmp_path, capsys):
    src = tmp_path / "photo.png"
    assert cv2.imwrite(str(src), (np.random.default_rng(3).random((30, 44, 3)) * 255).astype(np.uint8))
    torch.manual_seed(0)
    assert main([str(src), str(tmp_path / "out.gif"), *MODEL]) == 0
    torch.manual_seed(0)
    assert main([str(src), str(tmp_path / "out.png"), *MODEL]) == 0
    with av.open(str(tmp_path / "out.gif")) as container:
        assert container.format.name == "gif"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    reference = cv2.cvtColor(cv2.imread(str(tmp_path / "out.png")), cv2.COLOR_BGR2RGB)
    assert len(frames) == 1 and frames[0].shape == (30, 44, 3)
    assert psnr(frames[0], reference) > 30  # the same stylized picture, in 256 colours
    assert not list(tmp_path.glob(".*partial*"))
