"""End to end in a real browser: ``rt-anime demo`` served locally, driven by headless Chromium through Playwright.

Chromium gets a fake camera fed from a generated Y4M clip, so the webcam tab streams real frames through gradio to
the model and back. Skips (with the reason) when Playwright, gradio or a Chromium binary is missing; CI installs
them (Debian's ``chromium`` package, no browser download).
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from media import ClipSpec, _picture, make_clip

pytest.importorskip("gradio", reason="the demo needs gradio: pip install 'rt-anime[demo]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright: pip install playwright")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("browser tests need a Chromium binary (apt-get install chromium)", allow_module_level=True)

CAMERA_SIZE = (320, 240)
CAMERA_FRAMES = 50
STARTUP_SECONDS = 240  # importing gradio and torch on a busy 2-core machine


def write_y4m(path: Path) -> list[np.ndarray]:
    """The fake camera: a moving gradient, 25 fps; returns its RGB frames."""
    frames = [_picture(3 * i, *CAMERA_SIZE) for i in range(CAMERA_FRAMES)]
    with av.open(str(path), "w", format="yuv4mpegpipe") as out:
        stream = out.add_stream("rawvideo", rate=25)
        stream.width, stream.height, stream.pix_fmt = *CAMERA_SIZE, "yuv420p"
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return frames


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("demo") / "server.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "2"}
    with open(log, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "realtime", "demo", "--model", "nijigan-lite",
                                 "--random-weights", "--port", str(port), "--stream-every", "0.2"],
                                stdout=sink, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if proc.poll() is not None:
                pytest.fail(f"rt-anime demo exited with {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"rt-anime demo did not serve within {STARTUP_SECONDS} s:\n{log.read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def camera(tmp_path_factory):
    path = tmp_path_factory.mktemp("cam") / "camera.y4m"
    return path, write_y4m(path)


@pytest.fixture(scope="module")
def browser(camera):
    args = ["--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={camera[0]}", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(permissions=["camera"])
    page = context.new_page()
    # "networkidle" never comes: gradio keeps an event stream open.
    page.goto(server, wait_until="load")
    yield page
    context.close()


def fetch_image(page, src: str) -> np.ndarray:
    body = page.request.get(src).body()
    bgr = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert bgr is not None, f"{src} is not an image"
    return bgr[..., ::-1]


def test_webcam_stream_returns_stylized_frames_that_change(page, camera):
    page.get_by_text("Click to Access Webcam").click(timeout=60_000)
    page.locator('button[aria-label="capture photo"]').click(timeout=60_000)  # starts streaming
    output = page.locator("#live-output img")
    sources: list[str] = []
    deadline = time.monotonic() + 120
    while len(sources) < 3 and time.monotonic() < deadline:
        if output.count() and (src := output.first.get_attribute("src")) and src not in sources:
            sources.append(src)
        time.sleep(0.2)
    assert len(sources) >= 3, f"only {len(sources)} stylized frame(s) came back"
    pictures = [fetch_image(page, src) for src in sources]
    h, w = pictures[0].shape[:2]
    inputs = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA).astype(int) for f in camera[1]]
    inputs += [f[:, ::-1] for f in inputs]  # the browser may mirror the camera
    for picture in pictures:
        # Stylized: far from every camera frame (an echo of the input would be within JPEG noise of one).
        assert min(np.abs(picture.astype(int) - f).mean() for f in inputs) > 10
    assert np.abs(pictures[0].astype(int) - pictures[-1].astype(int)).mean() > 1  # the stream moves


def test_video_upload_returns_a_video_with_every_frame_and_errors_are_sentences(page, tmp_path):
    clip = make_clip(tmp_path / "short.mp4", ClipSpec(width=64, height=48, frames=12))
    page.get_by_role("tab", name="Video").click()
    page.locator("#video-run").click()  # nothing uploaded yet: a one-sentence error, no stack trace
    page.get_by_text("upload a video first").first.wait_for(timeout=30_000)
    assert "Traceback" not in page.content()
    page.locator("#video-input input[type=file]").set_input_files(str(clip))
    page.locator("#video-input video").wait_for(timeout=60_000)
    page.locator("#video-run").click()
    result = page.locator("#video-output video")
    result.wait_for(timeout=180_000)
    out = tmp_path / "anime.mp4"
    out.write_bytes(page.request.get(result.get_attribute("src")).body())
    with av.open(str(out)) as c:
        assert c.streams.audio, "the audio track was lost"
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(clip)) as c:
        source = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == len(source) == 12
    assert np.abs(frames[0].astype(int) - source[0].astype(int)).mean() > 10
