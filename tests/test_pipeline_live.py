"""Live mode: latest frame wins, drops are counted, queues never grow, errors stop everything promptly."""

from __future__ import annotations

import faulthandler
import threading
import time
from collections.abc import Iterator
from fractions import Fraction

import pytest
import torch

from realtime.frames import Frame
from realtime.pipeline import LivePipeline, PipelineConfig, run_live


@pytest.fixture(autouse=True)
def _no_hang():
    faulthandler.dump_traceback_later(60, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def camera(n: int, *, interval: float = 0.0, size: tuple[int, int] = (24, 32)) -> Iterator[Frame]:
    """A fake camera: frames stamped from a 1/1000 s capture clock."""
    t0 = time.perf_counter()
    for i in range(n):
        if interval:
            time.sleep(interval)
        pts = round((time.perf_counter() - t0) * 1000) + i  # + i keeps pts strictly increasing
        yield Frame(data=torch.zeros(3, *size), pts=pts, time_base=Fraction(1, 1000), index=i)


def slow(seconds: float):
    def translate(x: torch.Tensor) -> torch.Tensor:
        time.sleep(seconds)
        return -x

    return translate


class Boom(RuntimeError):
    pass


def test_live_drops_stale_frames_and_never_grows_a_queue() -> None:
    received: list[Frame] = []
    config = PipelineConfig(mode="live")
    result = run_live(camera(60, interval=0.002), received.append, slow(0.03), config=config)
    assert result.frames_in == 60
    assert result.frames_dropped > 0
    assert result.frames_out == len(received) == 60 - result.frames_dropped
    assert result.max_pending <= config.batch_size  # latest frame wins: at most one batch waiting
    indices = [f.index for f in received]
    assert indices == sorted(indices) and indices[-1] == 59  # in order, and the newest frame made it out
    assert result.latency_p50 is not None and result.latency_p95 >= result.latency_p50


def test_live_batches_take_what_is_pending() -> None:
    shapes: list[int] = []

    def translate(x: torch.Tensor) -> torch.Tensor:
        shapes.append(x.shape[0])
        time.sleep(0.02)
        return x

    config = PipelineConfig(mode="live", batch_size=4)
    result = run_live(camera(80), lambda f: None, translate, config=config)
    assert result.max_pending <= 4
    assert max(shapes) <= 4
    assert result.frames_out + result.frames_dropped == 80


def test_file_mode_through_run_live_keeps_every_frame() -> None:
    received: list[Frame] = []
    result = run_live(camera(30), received.append, slow(0.002), config=PipelineConfig(mode="file", queue_size=2))
    assert result.frames_dropped == 0
    assert [f.index for f in received] == list(range(30))
    assert [f.pts for f in received] == sorted(f.pts for f in received)


def test_output_keeps_capture_timestamps_and_size() -> None:
    frames = list(camera(5, size=(7, 9)))
    received: list[Frame] = []
    run_live(iter(frames), received.append, lambda x: x * 0.5, config=PipelineConfig(mode="file", size_multiple=4))
    assert [(f.pts, f.time_base, f.index) for f in received] == [(f.pts, f.time_base, f.index) for f in frames]
    assert all(f.data.shape == (3, 7, 9) for f in received)


@pytest.mark.parametrize("where", ["source", "translate", "sink"])
def test_an_error_anywhere_stops_everything(where: str) -> None:
    def source() -> Iterator[Frame]:
        for frame in camera(1000):
            if where == "source" and frame.index == 10:
                raise Boom(where)
            yield frame

    def translate(x: torch.Tensor) -> torch.Tensor:
        if where == "translate":
            raise Boom(where)
        return x

    def sink(frame: Frame) -> None:
        if where == "sink":
            raise Boom(where)
        time.sleep(0.001)

    t0 = time.perf_counter()
    # file mode: every queue is blocking, the worst case for a deadlock
    with pytest.raises(Boom, match=where):
        run_live(source(), sink, translate, config=PipelineConfig(mode="file", queue_size=1))
    assert time.perf_counter() - t0 < 5.0


def test_context_manager_stops_an_endless_camera() -> None:
    stop_camera = threading.Event()

    def endless() -> Iterator[Frame]:
        i = 0
        while not stop_camera.is_set():
            time.sleep(0.005)
            yield Frame(data=torch.zeros(3, 8, 8), pts=i, time_base=Fraction(1, 200), index=i)
            i += 1

    with LivePipeline(endless(), lambda f: None, slow(0.01), config=PipelineConfig(mode="live")) as live:
        assert not live.wait(timeout=0.3)  # still running: the camera never ends
    result = live.close()
    stop_camera.set()
    assert result.frames_out > 0 and result.frames_in >= result.frames_out


def test_source_must_yield_frames() -> None:
    with pytest.raises(TypeError, match="Frame"):
        run_live(iter([{"data": torch.zeros(3, 4, 4)}]), lambda f: None, lambda x: x)
