"""Unit tests of the pipeline's parts: typed frames, configs, channels, geometry, timestamps, odd-size policy."""

from __future__ import annotations

import threading
import time
from fractions import Fraction

import pytest
import torch

import realtime

from conftest import needs_cuda
from realtime.frames import Frame, FrameBatch
from realtime.pipeline import Channel, EncodeConfig, EncoderError, Geometry, PipelineConfig, PipelineStopped
from realtime.pipeline.convert import _frame_to_tensor, _tensor_to_frame
from realtime.pipeline.timestamps import _FrameTimes
from realtime.pipeline.encode import choose_pix_fmt
from realtime.pipeline.streams import DtsGuard, filter_metadata, rescale


def frame(index: int = 0, *, h: int = 4, w: int = 6, pts: int | None = 0, tb: Fraction = Fraction(1, 25)) -> Frame:
    return Frame(data=torch.zeros(3, h, w), pts=pts, time_base=tb, index=index)


# --- Frame / FrameBatch -----------------------------------------------------------------------------------------


def test_frame_properties() -> None:
    f = Frame(data=torch.zeros(3, 4, 6), pts=3003, time_base=Fraction(1, 30000), index=2, duration=1001)
    assert (f.height, f.width) == (4, 6)
    assert f.pts_seconds == pytest.approx(0.1001)
    assert f.duration_seconds == pytest.approx(1001 / 30000)
    assert frame(pts=None).pts_seconds is None
    g = f.with_data(torch.ones(3, 8, 8))
    assert (g.pts, g.time_base, g.index, g.duration) == (3003, Fraction(1, 30000), 2, 1001)
    with pytest.raises(AttributeError):
        f.pts = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"data": torch.zeros(4, 4)}, ValueError, "shape"),
        ({"data": torch.zeros(1, 4, 4)}, ValueError, r"\(3, H, W\)"),
        ({"data": torch.zeros(3, 4, 4, dtype=torch.uint8)}, TypeError, "floating"),
        ({"data": [[0.0]]}, TypeError, "torch.Tensor"),
        ({"pts": 1.5}, TypeError, "pts"),
        ({"pts": True}, TypeError, "pts"),
        ({"time_base": 0.04}, TypeError, "Fraction"),
        ({"time_base": Fraction(0)}, ValueError, "> 0"),
        ({"index": -1}, ValueError, "index"),
    ],
)
def test_frame_validation(kwargs: dict, error: type[Exception], match: str) -> None:
    base = {"data": torch.zeros(3, 4, 4), "pts": 0, "time_base": Fraction(1, 25), "index": 0}
    with pytest.raises(error, match=match):
        Frame(**{**base, **kwargs})


def test_frame_batch_round_trip() -> None:
    frames = [frame(i, pts=i * 2) for i in range(3)]
    batch = FrameBatch.from_frames(frames)
    assert batch.data.shape == (3, 3, 4, 6) and len(batch) == 3
    assert batch.pts == (0, 2, 4) and batch.indices == (0, 1, 2)
    back = batch.to_frames(-batch.data)
    assert [f.pts for f in back] == [0, 2, 4] and float(back[0].data.sum()) == 0.0
    with pytest.raises(ValueError, match="one size"):
        FrameBatch.from_frames([frame(0), frame(1, h=5)])
    with pytest.raises(ValueError, match="time base"):
        FrameBatch.from_frames([frame(0), frame(1, tb=Fraction(1, 30))])
    with pytest.raises(ValueError, match="at least one"):
        FrameBatch.from_frames([])


# --- configs ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "realtime"}, "mode must be one of 'file', 'live'"),
        ({"batch_size": 0}, "batch_size"),
        ({"queue_size": 0}, "queue_size"),
        ({"size_multiple": 0}, "size_multiple"),
        ({"max_side": 1}, "max_side"),
        ({"size": (10,)}, "size"),
        ({"size": (10, 0)}, "size"),
        ({"device": "gpu7"}, "device"),
        ({"stop_timeout": 0}, "stop_timeout"),
    ],
)
def test_pipeline_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PipelineConfig(**kwargs)


def test_encode_config() -> None:
    config = EncodeConfig(crf=20, preset="fast", options={"tune": "animation", "crf": "22"})
    assert config.encoder_options() == {"crf": "22", "preset": "fast", "tune": "animation"}
    assert EncodeConfig(crf=None, preset=None).encoder_options() == {}
    with pytest.raises(TypeError):
        config.options["x"] = "y"  # type: ignore[index]
    with pytest.raises(ValueError, match="odd_size"):
        EncodeConfig(odd_size="crop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="options"):
        EncodeConfig(options={"crf": 18})  # type: ignore[dict-item]


def test_choose_pix_fmt() -> None:
    assert choose_pix_fmt(EncodeConfig(), 64, 48) == ("yuv420p", 64, 48)
    assert choose_pix_fmt(EncodeConfig(), 101, 77) == ("yuv444p", 101, 77)
    assert choose_pix_fmt(EncodeConfig(pix_fmt="yuv420p10le"), 101, 78) == ("yuv444p10le", 101, 78)
    assert choose_pix_fmt(EncodeConfig(pix_fmt="yuv422p"), 64, 77) == ("yuv422p", 64, 77)  # 4:2:2: odd height ok
    assert choose_pix_fmt(EncodeConfig(odd_size="pad"), 101, 77) == ("yuv420p", 102, 78)
    with pytest.raises(EncoderError, match="odd_size"):
        choose_pix_fmt(EncodeConfig(odd_size="error"), 101, 77)


# --- channels ---------------------------------------------------------------------------------------------------


def test_channel_drop_oldest_keeps_the_newest() -> None:
    stop = threading.Event()
    dropped: list[int] = []
    ch: Channel[int] = Channel(name="t", capacity=2, stop=stop, policy="drop_oldest", on_drop=dropped.append)
    for i in range(5):
        ch.put(i)
    assert len(ch) == 2 and ch.high_water == 2 and ch.dropped == 3 and dropped == [0, 1, 2]
    ch.close()
    assert list(ch) == [3, 4]


def test_channel_blocking_put_wakes_on_stop() -> None:
    stop = threading.Event()
    ch: Channel[int] = Channel(name="t", capacity=1, stop=stop)
    ch.put(0)
    errors: list[BaseException] = []

    def producer() -> None:
        try:
            ch.put(1)  # full: blocks until stop
        except PipelineStopped as error:
            errors.append(error)

    thread = threading.Thread(target=producer)
    thread.start()
    time.sleep(0.05)
    assert thread.is_alive()
    stop.set()
    ch.abort()
    thread.join(1.0)
    assert not thread.is_alive() and len(errors) == 1


def test_channel_waits_for_every_producer() -> None:
    ch: Channel[int] = Channel(name="t", capacity=4, stop=threading.Event(), producers=2)
    ch.put(1)
    ch.close()
    assert ch.get() == 1
    assert ch.get(block=False) is None and not ch.finished
    ch.close()
    assert ch.get() is None and ch.finished


# --- geometry, timestamps, metadata -----------------------------------------------------------------------------


def test_geometry_pad_and_crop() -> None:
    g = Geometry.plan((77, 101), output_hw=(77, 101), max_side=None, size_multiple=8)
    assert g.model == (77, 101) and g.padded == (80, 104)
    x = torch.rand(2, 3, 77, 101) * 2 - 1
    padded = g.to_model(x)
    assert padded.shape == (2, 3, 80, 104)
    assert torch.equal(padded[..., :77, :101], x)  # padding never touches the picture
    assert torch.equal(padded[..., 77, :101], x[..., 75, :])  # reflect, not replicate
    assert torch.equal(g.from_model(padded), x)


def test_geometry_max_side_and_tiny_frames() -> None:
    g = Geometry.plan((1080, 1920), output_hw=(1080, 1920), max_side=1280, size_multiple=8)
    assert g.model == (720, 1280) and g.padded == (720, 1280)
    assert g.from_model(g.to_model(torch.zeros(1, 3, 1080, 1920))).shape == (1, 3, 1080, 1920)
    tiny = Geometry.plan((2, 3), output_hw=(2, 3), max_side=None, size_multiple=8)
    assert tiny.to_model(torch.zeros(1, 3, 2, 3)).shape == (1, 3, 8, 8)  # falls back to replicate


@pytest.mark.parametrize("name", realtime.list_generators())
def test_every_generator_takes_the_smallest_padded_picture(name: str) -> None:
    # A 2x3 picture (a thumbnail, a tiny test video) used to reach the blocks as 1x1 and fail in their reflect pad.
    model = realtime.create_generator(name, **({} if name == "animeganv2" else {"ngf": 4})).eval()
    g = Geometry.plan((2, 3), output_hw=(2, 3), max_side=None, size_multiple=model.size_multiple)
    with torch.no_grad():
        y = g.from_model(model(g.to_model(torch.rand(1, 3, 2, 3) * 2 - 1)))
    assert y.shape == (1, 3, 2, 3) and torch.isfinite(y).all()


def test_rescale_rounds_like_ffmpeg() -> None:
    assert rescale(1001, Fraction(1, 30000), Fraction(1, 90000)) == 3003
    assert rescale(1, Fraction(1, 3), Fraction(1, 2)) == 1  # 0.667 -> 1
    assert rescale(1, Fraction(1, 4), Fraction(1, 2)) == 1  # 0.5 -> 1 (half away from zero)
    assert rescale(-1, Fraction(1, 4), Fraction(1, 2)) == -1


def frame_times(pairs: list[tuple[int | None, int | None]], step: int = 1) -> list[int]:
    times = _FrameTimes(step)
    for pts, dts in pairs:  # seen first, as the decoder's look-ahead sees them, then chosen in the same order
        times.see(pts, dts)
    return [times.choose(pts, dts) for pts, dts in pairs]


def test_frame_times_trust_pts_unless_dts_has_fewer_faults() -> None:
    vfr = [0, 40, 70, 150, 160]
    assert frame_times([(p, None) for p in vfr]) == vfr  # irregular pts without dts are kept
    assert frame_times([(p, p - 80) for p in vfr]) == vfr  # pts, not dts, when both increase
    # A timestamp reset in pts and dts alike (concatenated streams): pts as they are, for the encoder to patch.
    assert frame_times([(10, 10), (11, 11), (0, 0), (1, 1)]) == [10, 11, 0, 1]
    # AVI with B-frames: the demuxer's made-up pts come out shuffled while dts increase (the decoder's delayed
    # frames at the end carry none): the same pts, given out in order.
    avi = [(1, 2), (4, 3), (3, 4), (5, 5), (2, 6), (8, 7), (9, None), (7, None)]
    assert frame_times(avi) == [1, 2, 3, 4, 5, 7, 8, 9]
    assert frame_times([(None, None)] * 3, step=3) == [0, 3, 6]  # raw streams: nominal frame durations
    # Trust that moves back to pts (dts faults catch up) may find its pts already given out: no error (the
    # encoder moves a repeated time up one tick, as for any source).
    times = _FrameTimes(1)
    for pts, dts in [(1, 1), (3, 2), (2, 3)]:
        times.see(pts, dts)
    assert [times.choose(1, 1), times.choose(3, 2)] == [1, 2]
    times.see(4, 0)
    times.see(5, 0)  # two dts faults: pts trusted again
    assert [times.choose(2, 3), times.choose(4, 0), times.choose(5, 0)] == [2, 4, 5]


def test_dts_guard() -> None:
    guard = DtsGuard(strict=True)
    assert [guard.admit(d) for d in (0, 1024, 1024, 512, 2048, None)] == [True, True, False, False, True, True]
    assert guard.dropped == 2
    lenient = DtsGuard(strict=False)
    assert [lenient.admit(d) for d in (0, 0, -1)] == [True, True, False]


def test_filter_metadata() -> None:
    kept = filter_metadata(
        {"title": "t", "encoder": "Lavf", "major_brand": "isom", "DURATION": "1", "BPS-eng": "9", "language": "jpn"}
    )
    assert kept == {"title": "t", "language": "jpn"}


def test_conversion_round_trip_is_exact_in_rgb() -> None:
    import av
    import numpy as np

    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    t = _frame_to_tensor(av.VideoFrame.from_ndarray(rgb, format="rgb24"))
    assert t.shape == (3, 5, 7) and t.dtype == torch.float32 and float(t.min()) >= -1 and float(t.max()) <= 1
    back = _tensor_to_frame(t, format="rgb24").to_ndarray()
    assert np.array_equal(back, rgb)
    deep = (rgb.astype(np.uint16) * 257).astype(np.uint16)
    t16 = _frame_to_tensor(av.VideoFrame.from_ndarray(deep, format="rgb48le"))
    assert np.array_equal(_tensor_to_frame(t16, format="rgb48le").to_ndarray(), deep)


def _yuv_frame(width: int = 32, height: int = 16):
    import av
    import numpy as np

    rgb = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")


def test_frames_for_a_cuda_model_convert_on_the_cpu_without_cupy(monkeypatch) -> None:
    import kernels

    monkeypatch.setattr(kernels, "cuda_available", lambda: False)
    vf = _yuv_frame()
    t = _frame_to_tensor(vf, torch.device("cuda"))
    assert t.device.type == "cpu"  # the translate stage moves it; no CUDA call was needed to get here
    assert torch.equal(t, _frame_to_tensor(vf))


@needs_cuda
def test_cuda_frames_convert_on_the_gpu_within_one_step_of_the_cpu() -> None:
    import kernels

    if not kernels.cuda_available():
        pytest.skip("CuPy with a CUDA device is not available")
    vf = _yuv_frame(64, 48)
    t = _frame_to_tensor(vf, torch.device("cuda"))
    assert t.is_cuda and t.shape == (3, 48, 64)
    # PyAV is within 0.51 LSB of the specification and the CuPy kernel exact, so they are within one 8-bit step.
    assert float((t.cpu() - _frame_to_tensor(vf)).abs().max()) <= 2 / 255 + 1e-6


@needs_cuda
def test_cuda_tensors_encode_without_cupy(monkeypatch) -> None:
    import numpy as np

    import kernels

    monkeypatch.setattr(kernels, "cuda_available", lambda: False)
    t = torch.rand(3, 16, 32) * 2 - 1
    on_gpu = _tensor_to_frame(t.cuda(), format="yuv420p").to_ndarray()
    assert np.array_equal(on_gpu, _tensor_to_frame(t, format="yuv420p").to_ndarray())


def test_frame_clock_holds_frames_back_only_when_asked(tmp_path) -> None:
    import av

    from media import ClipSpec, make_clip
    from realtime.pipeline.timestamps import LOOKAHEAD, FrameClock

    clip = make_clip(tmp_path / "c.mkv", ClipSpec(frames=8, audio_codec=None))
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        file_clock, live_clock = FrameClock(stream), FrameClock(stream, lookahead=0)
        held = [len(list(file_clock.push([f]))) for f in frames]
        assert held == [0] * LOOKAHEAD + [1] * (8 - LOOKAHEAD)  # a file: judged over the next frames
        assert len(list(file_clock.push([], flush=True))) == LOOKAHEAD
        # A live stream (webcam --device URL): every frame out at once, no added latency.
        assert [len(list(live_clock.push([f]))) for f in frames] == [1] * 8
