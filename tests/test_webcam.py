"""``rt-anime webcam`` with a generated clip as the camera: recording, statistics, drops, memory, keys, errors."""

import faulthandler
import glob
import os
import re
import statistics
import threading
import time

import av
import numpy as np
import pytest
import torch

from media import ClipSpec, make_clip, video_frames_rgb
from realtime.cli import main
from realtime.live.camera import CameraConfig, MediaGrabber
from realtime.live.webcam import WebcamConfig, run_webcam

MODEL = ["--model", "nijigan-lite", "--random-weights"]


@pytest.fixture(autouse=True)
def _no_hang():
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 1.2 s camera stand-in: 30 frames of a moving gradient at 25 fps, 160x120."""
    return make_clip(tmp_path_factory.mktemp("cam") / "cam.mp4",
                     ClipSpec(width=160, height=120, frames=30, audio_codec=None))


def one_line_error(capsys, pattern):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("rt-anime: error:")]
    assert len(errors) == 1 and not any("Traceback" in line for line in err), err
    assert re.search(pattern, errors[0]), errors[0]


def slow(seconds: float):
    def translate(x: torch.Tensor) -> torch.Tensor:
        time.sleep(seconds)
        return -x

    return translate


def test_cli_records_a_stylized_video_and_prints_fps_latency_and_drops(clip, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert main(["webcam", "--device", str(clip), "--no-window", "--record", str(out), "--seconds", "10",
                 "--size", "160x120", *MODEL]) == 0
    text = capsys.readouterr().out
    shown = int(re.search(r"webcam: (\d+) frames in [\d.]+ s = [\d.]+ fps", text).group(1))
    assert re.search(r"latency capture→shown: p50 \d+ ms, p95 \d+ ms", text), text
    assert re.search(r"dropped: \d+ stale frames", text), text
    recorded = video_frames_rgb(out)
    assert 0 < len(recorded) == shown
    with av.open(str(out)) as c:
        stream = c.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (160, 120)
        times = [f.time for f in c.decode(stream)]
    assert times == sorted(set(times)) and times[0] == 0.0
    camera = video_frames_rgb(clip)
    # Stylized: far from every camera frame (a pass-through would be within codec noise of one of them).
    for picture in recorded:
        assert min(np.abs(picture.astype(int) - f.astype(int)).mean() for f in camera) > 10
    assert not glob.glob(str(tmp_path / ".*partial*"))


def test_slow_model_drops_frames_latest_wins_and_memory_stays_flat(tmp_path):
    # 960x540 frames (1.5 MB as uint8, 6 MB as float). Measured from the 12-20th frame (allocator warmed up) to
    # the end of an 8 s run: 3-27 MB without a leak (allocator noise, under heavy load), ~290 MB when one uint8
    # copy per shown frame is kept alive.
    cam = make_clip(tmp_path / "big.mp4", ClipSpec(width=960, height=540, frames=25, audio_codec=None))
    rss: list[int] = []
    page = os.sysconf("SC_PAGE_SIZE")

    def sample(rgb, frame):
        with open("/proc/self/statm") as f:
            rss.append(int(f.read().split()[1]) * page)

    config = WebcamConfig(camera=CameraConfig(device=str(cam), size=(960, 540), loop=True), window=False,
                          seconds=8.0)
    report = run_webcam(config, slow(0.05), on_frame=sample)
    assert report.dropped_pipeline > 0  # the model was busy while the camera delivered
    assert report.frames_shown + report.dropped <= report.frames_captured
    assert report.frames_shown == len(rss) >= 35
    assert report.latency_p50 is not None and report.latency_p95 >= report.latency_p50
    baseline = statistics.median(rss[12:20])
    assert max(rss[-8:]) - baseline < 100 * 2**20, [r // 2**20 for r in rss]


@pytest.mark.parametrize("name, codec", [("rec.mp4", "h264"), ("rec.webm", "vp9"), ("rec.gif", "gif")])
def test_recording_is_timestamped_on_the_capture_clock(clip, tmp_path, name, codec):
    out = tmp_path / name
    config = WebcamConfig(camera=CameraConfig(device=str(clip), size=(160, 120), loop=True), window=False,
                          seconds=3.0, record=out)
    report = run_webcam(config, slow(0.1))
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == codec  # the container's own encoder, as rt-anime's
        times = [float(f.time) for f in c.decode(video=0)]
    assert len(times) == report.frames_recorded == report.frames_shown >= 5
    # Frames of the slow model (>= 0.1 s each) lie 0.08 s or more apart on the 25 fps capture grid, where stamping
    # at the clip's nominal rate would space them 0.04 s.
    assert statistics.median(np.diff(times)) >= 0.07, np.diff(times)


def test_a_video_file_as_camera_is_released_at_its_own_frame_times(tmp_path):
    # AVI with B-frames: the decoder's pts come out shuffled; the release times must still step 1/25 s, also
    # across the loop.
    src = make_clip(tmp_path / "bframes.avi", ClipSpec(frames=20, audio_codec=None, video_options={"bf": "3"}))
    paced = []

    class Recording(MediaGrabber):
        def _pace(self, media_seconds: float) -> None:
            paced.append(media_seconds)

    grabber = Recording(str(src), kind="file", loop=True, stop=threading.Event())
    pictures = [grabber.read() for _ in range(30)]
    grabber.close()
    assert all(p is not None for p in pictures) and grabber.loops == 1
    np.testing.assert_allclose(np.diff(paced), 0.04, atol=1e-9)


class FakeGui:
    """HighGUI stand-in: presses m after 5 shown frames, s after 12, q after 20."""

    WINDOW_NORMAL = 0
    WND_PROP_VISIBLE = 4

    def __init__(self):
        self.shown: list[np.ndarray] = []
        self.destroyed = False
        self._keys = {5: "m", 12: "s", 20: "q"}
        self._pressed: set[int] = set()

    def namedWindow(self, *args):
        pass

    def imshow(self, title, bgr):
        self.shown.append(bgr.copy())

    def waitKey(self, ms):
        n = len(self.shown)
        for at, key in self._keys.items():
            if n >= at and at not in self._pressed:
                self._pressed.add(at)
                return ord(key)
        return -1

    def getWindowProperty(self, *args):
        return 1.0

    def destroyWindow(self, title):
        self.destroyed = True


def _phase(bgr: np.ndarray) -> str:
    """Which of normal/mirrored × stylized(negated)/original a picture is, from its gradients below the HUD."""
    rgb = bgr[bgr.shape[0] // 2:, :, ::-1].astype(int)  # the HUD is drawn in the top rows
    red_x = np.median(np.diff(rgb[..., 0], axis=1))  # the clip's red rises left → right
    green_y = np.median(np.diff(rgb[..., 1], axis=0))  # its green rises top → bottom
    mirrored = (red_x > 0) != (green_y > 0)  # negation flips both slopes, mirroring only the horizontal one
    original = green_y > 0
    return {(False, False): "A", (True, False): "B", (True, True): "C"}.get((mirrored, original), "?")


def test_window_keys_toggle_mirror_and_stylization_and_quit(tmp_path):
    gui = FakeGui()
    cam = make_clip(tmp_path / "c.mp4", ClipSpec(width=128, height=96, frames=50, audio_codec=None))
    config = WebcamConfig(camera=CameraConfig(device=str(cam), size=(128, 96), loop=True), window=True, seconds=60)
    report = run_webcam(config, slow(0.02), gui=gui)
    assert gui.destroyed and not report.interrupted
    phases = [_phase(img) for img in gui.shown]
    assert "?" not in phases, phases
    assert phases == sorted(phases) and {"A", "B", "C"} <= set(phases), phases  # in order: m, then s
    assert report.frames_shown == len(gui.shown) >= 20


def test_recording_is_removed_when_the_model_fails(clip, tmp_path):
    calls = []

    def failing(x):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("model exploded")
        return -x

    out = tmp_path / "rec.mp4"
    config = WebcamConfig(camera=CameraConfig(device=str(clip), size=(160, 120), loop=True), window=False,
                          seconds=30, record=out)
    with pytest.raises(RuntimeError, match="exploded"):
        run_webcam(config, failing)
    assert not out.exists() and os.listdir(tmp_path) == []


def test_ensemble_wraps_the_model_the_webcam_runs(clip, capsys, monkeypatch):
    import realtime.commands.webcam as command
    from realtime.ensemble import self_ensemble

    seen = {}

    def capture(config, translate):
        seen.update(config=config, translate=translate)
        raise SystemExit(0)

    monkeypatch.setattr(command, "run_webcam", capture)
    with pytest.raises(SystemExit):
        main(["webcam", "--no-window", "--device", str(clip), "--ensemble", "4", *MODEL])
    translate = seen["translate"]
    x = torch.rand(1, 3, 16, 24) * 2 - 1
    assert translate.name.endswith("+ensemble4") and "ensemble 4" in seen["config"].label
    plain = translate.translate(x)
    torch.testing.assert_close(translate(x), self_ensemble(translate.translate, x, 4), rtol=0, atol=1e-6)
    assert not torch.allclose(translate(x), plain, atol=1e-3)
    with pytest.raises(SystemExit) as refused:
        main(["webcam", "--no-window", "--device", str(clip), "--ensemble", "3", *MODEL])
    assert refused.value.code == 2 and "--ensemble: invalid choice: 3" in capsys.readouterr().err


@pytest.mark.parametrize("args, pattern", [
    (["--device", "missing.mp4"], r"--device 'missing.mp4'"),
    (["--device", "63"], r"--device 63: cannot open the camera"),
    (["--size", "321x240"], r"--size 321x240: .*even"),
    (["--record", "out.txt"], r"--record .*out.txt.*allowed: .mp4"),
    (["--record", "out.y4m"], r"--record .*out.y4m.*allowed: .mp4"),
    (["--seconds", "0"], r"--seconds must be > 0"),
    (["--max-side", "big"], r"--max-side 'big'"),
    (["--loop", "--device", "0"], r"--loop applies to a video file"),
])
def test_bad_arguments_are_one_line(clip, tmp_path, capsys, args, pattern):
    argv = ["webcam", "--no-window", "--device", str(clip), *MODEL, *args]
    if "--record" in args:
        argv[argv.index(args[1])] = str(tmp_path / args[1])
    assert main(argv) == 2
    one_line_error(capsys, pattern)


def test_recording_over_the_input_and_a_missing_window_are_refused(clip, tmp_path, capsys, monkeypatch):
    assert main(["webcam", "--no-window", "--device", str(clip), "--record", str(clip), *MODEL]) == 2
    one_line_error(capsys, r"is the --device input file")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["webcam", "--device", str(clip), *MODEL]) == 2  # window wanted, none possible here
    one_line_error(capsys, r"--no-window")


@pytest.mark.skipif(bool(glob.glob("/dev/video*")), reason="a video device exists; a virtual camera might open")
def test_virtual_cam_without_a_backend_names_what_to_install(clip, capsys):
    assert main(["webcam", "--no-window", "--device", str(clip), "--virtual-cam", "--seconds", "1", *MODEL]) == 2
    one_line_error(capsys, r"v4l2loopback|pip install 'rt-anime\[virtualcam\]'")
