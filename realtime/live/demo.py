"""The Gradio live demo (``rt-anime demo``): webcam streaming, video files and images, in the browser.

Tabs:

* **Webcam**: the browser streams camera frames (``stream_every`` seconds apart); gradio keeps only the newest
  pending frame per session, so a slow model lowers the frame rate instead of building a backlog. Each session has
  its own temporal-blend state. A stream ends after ``time_limit`` seconds and at most ``concurrency_limit`` streams
  run at once (more would only split the same CPU), so one visitor cannot hold the model forever.
* **Video**: the file pipeline (every frame, timestamps and audio kept) with a progress bar.
* **Image**: one picture.

Safety: binds 127.0.0.1 unless ``--host``/``--share`` say otherwise; uploads are capped (``max_upload_mb``) and
videos are limited in duration; only the models given on the command line can be chosen (a client cannot make the
server open an arbitrary path); errors reach the user as one sentence, never a stack trace (details go to the log).

Needs the ``demo`` extra (``pip install 'rt-anime[demo]'``).
"""

import functools
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from .._registry import create_generator
from ..backends import BackendConfig, make_backend
from ..checkpoint import load_generator
from ..ensemble import ENSEMBLE_SIZES, EnsembleTranslate, check_ensemble_size
from ..errors import RtAnimeError, require
from ..images import image_to_tensor, tensor_to_image
from ..memory import TilePlanner
from ..pipeline import PipelineConfig, run_file
from ..models._base import Generator
from ..pipeline.decode import main_video_stream
from ..pipeline.translate import Geometry
from ..temporal.blend import TemporalBlend
from ..tiling import AutoTiles

__all__ = ["DemoConfig", "ModelCache", "build_demo", "launch"]

logger = logging.getLogger(__name__)

DEFAULT_SOLVER = "model default"
SOLVERS = ("euler:1", "midpoint:1", "rk4:1", "euler:2")


@dataclass(frozen=True, kw_only=True, slots=True)
class DemoConfig:
    """Settings of the demo server.

    Attributes:
        models: Names or checkpoint paths offered in the model selector (the first is preselected).
        random_weights: Build ``models`` (generator names) with random weights (tests, speed trials).
        backend: Inference backend settings shared by all sessions.
        stream_every: Seconds between webcam frames sent by the browser (0.1 = up to 10 fps offered).
        time_limit: Seconds a webcam stream may run before the user has to start it again.
        concurrency_limit: Webcam streams served at once; further visitors wait in the queue.
        live_max_side: Longer side of the model input for webcam frames (``None``: full size).
        max_side_default: Initial model resolution for videos and images (longer side, px).
        max_upload_mb: Largest upload accepted.
        max_video_seconds: Longest video accepted.
        temporal_strength: Weight of the previous output when temporal blending is on.
    """

    models: tuple[str, ...]
    random_weights: bool = False
    backend: BackendConfig = BackendConfig()
    stream_every: float = 0.1
    time_limit: int = 120
    concurrency_limit: int = 1
    live_max_side: int | None = 160
    max_side_default: int = 512
    max_upload_mb: int = 50
    max_video_seconds: float = 60.0
    temporal_strength: float = 0.5

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("the demo needs at least one --model")
        if not 0.02 <= self.stream_every <= 5:
            raise ValueError(f"--stream-every {self.stream_every}: allowed 0.02 .. 5 seconds")
        if self.time_limit < 5:
            raise ValueError(f"--time-limit {self.time_limit}: allowed >= 5 seconds")
        if self.concurrency_limit < 1:
            raise ValueError(f"--concurrency {self.concurrency_limit}: allowed >= 1")
        if self.live_max_side is not None and self.live_max_side < 16:
            raise ValueError(f"--live-max-side {self.live_max_side}: allowed >= 16 or none")
        if self.max_upload_mb < 1:
            raise ValueError(f"--max-upload-mb {self.max_upload_mb}: allowed >= 1")
        if not self.max_video_seconds > 0:
            raise ValueError(f"--max-video-seconds {self.max_video_seconds}: allowed > 0")


class _Loaded(NamedTuple):
    backend: Any
    planner: TilePlanner | None
    multiple: int
    composed: dict[int, Callable[[torch.Tensor], torch.Tensor]]  # by ensemble size


class ModelCache:
    """Backends by (model, solver), built on first use, a few kept (LRU); shared by every session."""

    def __init__(self, config: DemoConfig, *, loader: Callable[[str, str | None], Generator] | None = None,
                 max_entries: int = 4) -> None:
        self._config = config
        self._loader = loader or self._load
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], _Loaded] = OrderedDict()
        self._max = max_entries

    def get(self, model: str, solver: str, *, ensemble: int = 1) -> tuple[Callable[[torch.Tensor], torch.Tensor], int]:
        """``(translate, size_multiple)``; only the configured models and the listed solvers are accepted.

        ``ensemble`` > 1 averages that many orientations *inside* the tiling, as ``rt-anime`` does, so a tile's
        orientations fit the memory the tile was chosen for and a tiled upload matches the CLI's output.
        """
        if model not in self._config.models:
            raise RtAnimeError(f"model {model!r} is not offered by this demo; choose one of "
                               f"{', '.join(self._config.models)}")
        if solver != DEFAULT_SOLVER and solver not in SOLVERS:
            raise RtAnimeError(f"solver {solver!r} is not offered; choose one of {DEFAULT_SOLVER}, "
                               f"{', '.join(SOLVERS)}")
        ensemble = check_ensemble_size(ensemble, param="ensemble")
        key = (model, solver)
        with self._lock:  # one load at a time; concurrent requests for the same model wait for it
            loaded = self._entries.get(key)
            if loaded is None:
                generator = self._loader(model, None if solver == DEFAULT_SOLVER else solver)
                backend: Any = make_backend(generator, self._config.backend)
                # An upload at full size ("0 = full") must not get the server OOM-killed: tile what would not fit
                # a third of the memory (two image requests and a video job may run at once).
                planner = (TilePlanner(generator, multiple=generator.size_multiple, share=1 / 3)
                           if backend.device.type == "cpu" else None)
                loaded = self._entries[key] = _Loaded(backend, planner, generator.size_multiple, {})
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
            translate = loaded.composed.get(ensemble)
            if translate is None:
                translate = loaded.backend if ensemble == 1 else EnsembleTranslate(loaded.backend, ensemble)
                if loaded.planner is not None:  # one planner per model: its probe runs once, whatever the ensemble
                    translate = AutoTiles(translate, loaded.planner, multiple=loaded.multiple)
                loaded.composed[ensemble] = translate
            return translate, loaded.multiple

    def _load(self, model: str, solver: str | None) -> Generator:
        overrides = {} if solver is None else {"solver": solver}
        if self._config.random_weights:
            return create_generator(model, **overrides).eval()
        return load_generator(model, **overrides)


class Sessions:
    """Per-browser-session temporal state for the webcam stream (bounded; the oldest session is forgotten)."""

    def __init__(self, max_sessions: int = 64) -> None:
        self._lock = threading.Lock()
        self._states: OrderedDict[str, tuple[tuple, TemporalBlend]] = OrderedDict()
        self._max = max_sessions

    def blend_for(self, session: str, key: tuple, make: Callable[[], TemporalBlend]) -> TemporalBlend:
        with self._lock:
            state = self._states.get(session)
            if state is None or state[0] != key:  # new session, or the model/solver/strength changed
                state = (key, make())
                self._states[session] = state
            self._states.move_to_end(session)
            while len(self._states) > self._max:
                self._states.popitem(last=False)
            return state[1]

    def drop(self, session: str) -> None:
        with self._lock:
            self._states.pop(session, None)

    def __len__(self) -> int:
        return len(self._states)


def _user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn every failure into a one-sentence ``gr.Error``; stack traces go to the server log only."""
    import gradio as gr

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (RtAnimeError, ValueError, FileNotFoundError) as error:
            raise gr.Error(str(error), title="rt-anime", print_exception=False) from None
        except Exception as error:  # noqa: BLE001 - the user gets a sentence, the log gets the traceback
            logger.exception("demo request failed")
            raise gr.Error(f"stylizing failed ({type(error).__name__}); the server log has the details",
                           title="rt-anime", print_exception=False) from None

    return wrapper


def stylize_array(rgb: np.ndarray, translate: Callable[[torch.Tensor], torch.Tensor], *, size_multiple: int,
                  max_side: int | None) -> np.ndarray:
    """RGB uint8 (H, W, 3) → stylized RGB uint8 of the same size (model input capped at ``max_side``)."""
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    rgb = rgb[..., :3]  # drop alpha
    h, w = rgb.shape[:2]
    geometry = Geometry.plan((h, w), output_hw=(h, w), max_side=max_side, size_multiple=size_multiple)
    with torch.inference_mode():
        y = geometry.from_model(translate(geometry.to_model(image_to_tensor(rgb))).float().cpu())
    return tensor_to_image(y)


def _video_seconds(path: str) -> float | None:
    import av

    try:
        with av.open(path) as container:
            try:
                stream = main_video_stream(container)
            except IndexError:
                raise RtAnimeError("the uploaded file has no video stream") from None
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            return container.duration / 1_000_000 if container.duration else None
    except av.error.FFmpegError as error:
        raise RtAnimeError(f"the uploaded file is not a readable video ({error})") from None


def stylize_video(path: str, translate: Callable[[torch.Tensor], torch.Tensor], *, size_multiple: int,
                  max_side: int | None, progress: Callable[[int, int | None], None] | None = None,
                  poll: Callable[[], None] | None = None) -> Path:
    """Run the file pipeline on an uploaded video into ``<name>-anime.mp4`` beside it (audio kept)."""
    src = Path(path)
    out = src.with_name(f"{src.stem}-anime.mp4")
    config = PipelineConfig(size_multiple=size_multiple, max_side=max_side)
    result: dict[str, BaseException] = {}

    def work() -> None:
        try:
            run_file(src, out, translate, config=config, progress=progress)
        except BaseException as error:  # noqa: BLE001 - re-raised on the request thread below
            result["error"] = error

    # The pipeline calls progress on its encode thread; gradio's progress bar must be updated from the request
    # thread, so the job runs on its own thread and the request thread relays.
    worker = threading.Thread(target=work, name="rt-anime-demo-video", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.25)
        if poll is not None:
            poll()
    if "error" in result:
        raise result["error"]
    return out


def build_demo(config: DemoConfig, *, cache: ModelCache | None = None) -> Any:
    """The ``gr.Blocks`` app (not launched); ``cache`` may come preloaded."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    gr = require("gradio", extra="demo", feature="rt-anime demo")
    cache = cache if cache is not None else ModelCache(config)
    sessions = Sessions()
    solvers = [DEFAULT_SOLVER, *SOLVERS]

    @_user_errors
    def live(frame: np.ndarray | None, model: str, solver: str, use_blend: bool, request: gr.Request) -> Any:
        if frame is None:
            return gr.skip()
        translate, multiple = cache.get(model, solver)
        if use_blend:
            model_translate = translate
            translate = sessions.blend_for(request.session_hash or "", (model, solver), lambda: TemporalBlend(
                model_translate, strength=config.temporal_strength))
        return stylize_array(frame, translate, size_multiple=multiple, max_side=config.live_max_side)

    def ensemble_size(n: int | str) -> int | str:
        # Gradio may hand the choice back as text; ModelCache.get names a value it was never offered.
        return int(n) if str(n).isdigit() else n

    @_user_errors
    def image(picture: np.ndarray | None, model: str, solver: str, max_side: float, ensemble: int = 1) -> np.ndarray:
        if picture is None:
            raise RtAnimeError("upload an image first")
        translate, multiple = cache.get(model, solver, ensemble=ensemble_size(ensemble))
        return stylize_array(picture, translate, size_multiple=multiple, max_side=int(max_side) or None)

    @_user_errors
    def video(path: str | None, model: str, solver: str, use_blend: bool, max_side: float, ensemble: int = 1,
              progress: gr.Progress = gr.Progress()) -> str:
        if not path:
            raise RtAnimeError("upload a video first")
        seconds = _video_seconds(path)
        if seconds is not None and seconds > config.max_video_seconds:
            raise RtAnimeError(f"the video is {seconds:.0f} s long; this demo accepts up to "
                               f"{config.max_video_seconds:g} s (rt-anime INPUT OUTPUT has no limit)")
        translate, multiple = cache.get(model, solver, ensemble=ensemble_size(ensemble))
        if use_blend:
            translate = TemporalBlend(translate, strength=config.temporal_strength)  # a fresh state per video
        latest: list[tuple[int, int | None]] = [(0, None)]  # (frames written, frames expected)
        out = stylize_video(path, translate, size_multiple=multiple, max_side=int(max_side) or None,
                            progress=lambda n, total: latest.__setitem__(0, (n, total)),
                            poll=lambda: progress(latest[0], desc="stylizing", unit="frames"))
        return str(out)

    with gr.Blocks(title="rt-anime live demo", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# rt-anime: real-time anime stylization\nWebcam, video or image. The model runs on this "
                    "server; on a CPU expect a few frames per second.")
        with gr.Row():
            model = gr.Dropdown(list(config.models), value=config.models[0], label="Model")
            solver = gr.Dropdown(solvers, value=DEFAULT_SOLVER, label="ODE solver (NijiGAN models)")
            use_blend = gr.Checkbox(value=False, label="Temporal blend (less flicker)")
            max_side = gr.Slider(0, 1280, value=config.max_side_default, step=16,
                                 label="Model resolution for video/image (longer side px, 0 = full)")
            ensemble = gr.Dropdown(list(ENSEMBLE_SIZES), value=1, elem_id="ensemble",
                                   label="Self-ensemble for video/image (flips and turns averaged; N× the work)")
        with gr.Tab("Webcam"):
            with gr.Row():
                cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Camera",
                               elem_id="live-input")
                cam_out = gr.Image(type="numpy", format="jpeg", label="Anime", elem_id="live-output")
            cam.stream(live, inputs=[cam, model, solver, use_blend], outputs=cam_out,
                       stream_every=config.stream_every, time_limit=config.time_limit,
                       concurrency_limit=config.concurrency_limit, concurrency_id="live", show_progress="hidden")
        with gr.Tab("Video"):
            with gr.Row():
                video_in = gr.Video(sources=["upload"], format=None, label="Video", elem_id="video-input")
                video_out = gr.Video(format=None, label="Anime video", elem_id="video-output")
            gr.Button("Stylize video", variant="primary", elem_id="video-run").click(
                video, inputs=[video_in, model, solver, use_blend, max_side, ensemble], outputs=video_out,
                concurrency_limit=1, concurrency_id="video")
        with gr.Tab("Image"):
            with gr.Row():
                image_in = gr.Image(sources=["upload", "clipboard"], type="numpy", label="Image",
                                    elem_id="image-input")
                image_out = gr.Image(type="numpy", label="Anime image", elem_id="image-output")
            gr.Button("Stylize image", variant="primary").click(
                image, inputs=[image_in, model, solver, max_side, ensemble], outputs=image_out, concurrency_limit=2,
                concurrency_id="image")

        def forget(request: gr.Request) -> None:
            sessions.drop(request.session_hash or "")

        demo.unload(forget)
    return demo


def launch(config: DemoConfig, *, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           block: bool = True, cache: ModelCache | None = None) -> Any:
    """Build and serve the demo; with ``block=False`` return the running app (tests)."""
    demo = build_demo(config, cache=cache)
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=host, server_port=port, share=share, max_file_size=f"{config.max_upload_mb}mb",
                show_error=False, prevent_thread_lock=not block, quiet=False, ssr_mode=False)
    return demo
