"""Entry points: :func:`run_file` (video file → stylized video file) and :class:`LivePipeline` / :func:`run_live`.

File mode wiring (one thread per stage, bounded channels between them)::

    decode ──frames──▶ translate ──┐
       └──────copied packets───────┴──mux──▶ encode ──▶ temp file ──os.replace──▶ output

The encode stage only ever consumes, so neither producer can wait on it forever; the decode stage's two outputs
both drain into consumers that never wait on the decode stage. Output goes to a temporary file beside the target
and is renamed over it only after the trailer is written and every check passed: after an error,
KeyboardInterrupt or truncation no file exists at the output path, and the input is only ever read.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

from ..frames import Frame
from .config import EncodeConfig, PipelineConfig
from .decode import InputVideo, SourceStage
from .encode import EncodeStage, OutputVideo, SinkStage
from .errors import InputError, OutputError, OutputIsInputError, TruncatedInputError
from .result import PipelineResult
from .stage import Channel, Stage, first_error, run_stages, stop_stages, wait_stages
from .translate import TranslateFn, TranslateStage

__all__ = ["run_file", "LivePipeline", "run_live"]

logger = logging.getLogger(__name__)


def run_file(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    translate: TranslateFn,
    *,
    config: PipelineConfig | None = None,
    encode: EncodeConfig | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    input_format: str | None = None,
    input_options: dict[str, str] | None = None,
) -> PipelineResult:
    """Stylize a video file: decode → ``translate`` → encode, keeping timestamps, audio and subtitles.

    Args:
        input_path: Video to read (never modified): a file, or a URL FFmpeg opens (``https://``, ``rtsp://``).
        output_path: File to write; its extension picks the container unless ``encode.container_format`` is set.
        translate: ``(N, 3, H, W)`` float32 RGB in ``[-1, 1]`` → same shape; called under ``torch.inference_mode``
            on the translate thread.
        config: Pipeline configuration; defaults to file mode.
        encode: Encoder configuration; defaults to libx264 ``yuv420p`` CRF 18.
        progress: ``progress(frames_written, frames_expected_or_None)``, called on the encode thread after
            each frame. An exception it raises stops the run and propagates.
        input_format: FFmpeg demuxer to force, e.g. ``image2`` for an image sequence pattern.
        input_options: Demuxer options, e.g. ``{"framerate": "25"}``.

    Returns:
        Counts and timings of the run.

    Raises:
        InputError: the input is missing or not a media file.
        NoVideoError: the input has no decodable video (audio-only, empty).
        TruncatedInputError: the input ends before its declared frames (unless ``config.allow_partial``).
        OutputIsInputError: ``output_path`` is the input file.
        OutputError: the output directory is missing or not writable, or the output exists and
            ``encode.overwrite`` is off.
        EncoderError: the encoder rejects the configuration.
        TranslateOutputError: ``translate`` returned a wrong shape or type.
        Exception: whatever ``translate`` or ``progress`` raised, unchanged.
    """
    config = config if config is not None else PipelineConfig()
    encode = encode if encode is not None else EncodeConfig()
    started = time.perf_counter()
    # A URL names no file here (Path would also fold its "//"): FFmpeg opens it as given.
    url = "://" in os.fspath(input_path)
    in_path, out_path = _check_paths(Path(input_path), Path(output_path), overwrite=encode.overwrite,
                                     pattern=input_format is not None or url)
    with InputVideo(os.fspath(input_path) if url else in_path, copy_audio=config.copy_audio, copy_subtitles=config.copy_subtitles,
                    format=input_format, options=input_options, device=config.device,
                    deinterlace=config.deinterlace) as source:
        info = source.info
        if info.frames_unreadable and not config.allow_partial:
            assert info.frames_declared is not None  # an index check needs a declared count
            raise TruncatedInputError(
                path=in_path,
                frames_decoded=info.frames_declared - info.frames_unreadable,
                frames_expected=info.frames_declared,
                detail="its sample index points past the end of the file",
            )
        output_hw = (config.size[1], config.size[0]) if config.size else (info.height, info.width)
        tmp = _create_temp(out_path)
        output: OutputVideo | None = None
        try:
            output = OutputVideo(tmp, encode=encode, source=source, output_hw=output_hw, display_name=out_path)
            stop = threading.Event()
            frames = _frames_channel(config, stop)
            mux: Channel = Channel(name="mux", capacity=config.queue_size, stop=stop, producers=2)
            decode_stage = SourceStage(items=source.items(), frames=frames, packets=mux, stop=stop)
            translate_stage = TranslateStage(
                translate=translate, config=config, output_hw=output_hw, inputs=frames, outputs=mux, stop=stop
            )
            encode_stage = EncodeStage(
                output=output, items=mux, stop=stop, progress=progress, total=info.frames_declared
            )
            run_stages([decode_stage, translate_stage, encode_stage], [frames, mux], stop_timeout=config.stop_timeout)

            declared = info.frames_declared
            truncated = bool(
                source.demux_error or info.frames_unreadable or (declared and source.video_packets < declared)
            )
            if truncated and not config.allow_partial:
                detail = f"demuxing stopped: {source.demux_error}" if source.demux_error else ""
                raise TruncatedInputError(
                    path=in_path, frames_decoded=source.frames_decoded, frames_expected=declared, detail=detail
                )
            if source.decode_errors:
                logger.warning(
                    "%d video packet(s) of %s did not decode; their frames are missing from the output",
                    source.decode_errors,
                    in_path,
                )
            if truncated:
                logger.warning(
                    "input %s is truncated: kept %d of %s frames",
                    in_path,
                    source.frames_decoded,
                    declared if declared is not None else "?",
                )
            os.replace(tmp, out_path)
        except BaseException:
            if output is not None:
                output.abort()
            _unlink(tmp)
            raise
    copier = output.copier
    return PipelineResult(
        mode=config.mode,
        output_path=os.fspath(out_path),
        frames_in=source.frames_decoded,
        frames_out=encode_stage.frames_out,
        frames_dropped=frames.dropped,
        frames_expected=declared,
        frames_lost=max(declared - source.frames_decoded, 0) if declared else None,
        truncated=truncated,
        decode_errors=source.decode_errors,
        packets_copied=copier.packets_copied,
        packets_transcoded=copier.packets_transcoded,
        packets_dropped_dts=copier.dts_dropped,
        pts_adjusted=output.pts_adjusted,
        splices_joined=source.splices.count,
        deinterlaced=source.deinterlaced,
        streams_transcoded=tuple(copier.transcoded),
        streams_dropped=tuple(copier.dropped_streams),
        wall_seconds=time.perf_counter() - started,
        model_seconds=translate_stage.model_seconds,
        stage_seconds=_stage_seconds([decode_stage, translate_stage, encode_stage]),
        max_pending=frames.high_water,
    )


def _frames_channel(
    config: PipelineConfig, stop: threading.Event, on_drop: Callable[[Frame], None] | None = None
) -> Channel[Frame]:
    if config.mode == "live":
        # Room for one batch only: anything older than the newest batch_size frames is stale by definition.
        return Channel(name="frames", capacity=config.batch_size, stop=stop, policy="drop_oldest", on_drop=on_drop)
    return Channel(name="frames", capacity=max(config.queue_size, config.batch_size), stop=stop)


def _stage_seconds(stages: list[Stage]) -> dict[str, float]:
    return {stage.name: stage.busy_seconds for stage in stages}


def _check_paths(input_path: Path, output_path: Path, *, overwrite: bool, pattern: bool = False) -> tuple[Path, Path]:
    # A demuxer pattern (image2 glob or printf) names no single file; the caller checked its members exist.
    if not pattern and not input_path.exists():
        raise InputError("input file not found", path=input_path)
    if output_path.exists():
        if not pattern and os.path.samefile(input_path, output_path):
            raise OutputIsInputError("output path is the input file; choose another output path", path=output_path)
        if output_path.is_dir():
            raise OutputError("output path is a directory; give a file name", path=output_path)
        if not overwrite:
            raise OutputError("output file exists and overwrite=False", path=output_path)
    elif output_path.resolve() == input_path.resolve():
        raise OutputIsInputError("output path is the input file; choose another output path", path=output_path)
    parent = output_path.resolve().parent
    if not parent.is_dir():
        raise OutputError("output directory does not exist", path=parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError("output directory is not writable", path=parent)
    return input_path, output_path


def _create_temp(output_path: Path) -> Path:
    """Create an empty temporary file beside the output (same filesystem, so the final rename is atomic)."""
    for _ in range(100):
        tmp = output_path.with_name(f".{output_path.stem}.{secrets.token_hex(4)}.partial{output_path.suffix}")
        try:
            # 0o666 & umask gives the final file ordinary permissions (mkstemp would make it 0600).
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as error:
            raise OutputError(
                f"cannot create a file in the output directory ({error.strerror})", path=output_path.parent
            ) from error
        os.close(fd)
        return tmp
    raise OutputError("cannot find a free temporary file name", path=output_path.parent)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as error:
        logger.error("cannot remove temporary file %s: %s", path, error)


class LivePipeline:
    """Source → translate → sink on three threads; the building block of the webcam mode.

    Args:
        source: Any iterable of Frames, e.g. a camera reader; iterated on the source thread. A source that blocks
            should return within ``config.stop_timeout`` so :meth:`close` can join it.
        sink: Called with each stylized Frame on the sink thread (preview, virtual camera, recorder). Its
            ``data`` lives on ``config.device`` and was made under ``torch.inference_mode()``: read it freely,
            but ``clone()`` it before any in-place change.
        translate: As for :func:`run_file`.
        config: Pipeline configuration; ``mode="live"`` (the default here) drops stale frames, ``"file"`` keeps
            every frame with back-pressure on the source.

    Use as a context manager (``with LivePipeline(...) as live: live.wait()``) or call :meth:`start`,
    :meth:`wait` and :meth:`close`; :meth:`close` stops everything, re-raises the first stage error and returns
    the :class:`PipelineResult`.
    """

    def __init__(
        self,
        source: Iterable[Frame],
        sink: Callable[[Frame], object],
        translate: TranslateFn,
        *,
        config: PipelineConfig | None = None,
    ) -> None:
        self.config = config if config is not None else PipelineConfig(mode="live")
        self._stop = threading.Event()
        self._entered: dict[int, float] = {}
        self._latencies: deque[float] = deque(maxlen=100_000)
        self._frames = _frames_channel(self.config, self._stop, on_drop=self._forget)
        self._out: Channel[Frame] = Channel(name="out", capacity=self.config.queue_size, stop=self._stop)
        output_hw = (self.config.size[1], self.config.size[0]) if self.config.size else None
        self._source = SourceStage(
            items=source, frames=self._frames, packets=None, stop=self._stop, name="source", on_frame=self._enter
        )
        self._translate = TranslateStage(
            translate=translate,
            config=self.config,
            output_hw=output_hw,
            inputs=self._frames,
            outputs=self._out,
            stop=self._stop,
        )
        self._sink = SinkStage(sink=sink, items=self._out, stop=self._stop, on_frame=self._leave)
        self._stages: list[Stage] = [self._source, self._translate, self._sink]
        self._started: float | None = None
        self._closed = False

    def _enter(self, frame: Frame) -> None:
        self._entered[frame.index] = time.perf_counter()

    def _forget(self, frame: Frame) -> None:
        self._entered.pop(frame.index, None)

    def _leave(self, frame: Frame) -> None:
        t0 = self._entered.pop(frame.index, None)
        if t0 is not None:
            self._latencies.append(time.perf_counter() - t0)

    def start(self) -> LivePipeline:
        if self._started is not None:
            raise RuntimeError("LivePipeline.start() was already called")
        self._started = time.perf_counter()
        for stage in self._stages:
            stage.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the source is exhausted and everything drained, or a stage failed; ``False`` on timeout."""
        return wait_stages(self._stages, timeout)

    @property
    def frames_dropped(self) -> int:
        return self._frames.dropped

    @property
    def frames_out(self) -> int:
        return self._sink.frames_out

    def close(self) -> PipelineResult:
        """Stop all stages, join them, re-raise the first stage error, and return the statistics."""
        if not self._closed:
            self._closed = True
            stop_stages(self._stages, [self._frames, self._out], timeout=self.config.stop_timeout)
        error = first_error(self._stages)
        if error is not None:
            raise error
        return self.result()

    def result(self) -> PipelineResult:
        """Statistics so far (final after :meth:`close`)."""
        lat = sorted(self._latencies)
        return PipelineResult(
            mode=self.config.mode,
            output_path=None,
            frames_in=self._source.frames_out,
            frames_out=self._sink.frames_out,
            frames_dropped=self._frames.dropped,
            wall_seconds=0.0 if self._started is None else time.perf_counter() - self._started,
            model_seconds=self._translate.model_seconds,
            stage_seconds=_stage_seconds(self._stages),
            max_pending=self._frames.high_water,
            latency_p50=lat[len(lat) // 2] if lat else None,
            latency_p95=lat[min(int(len(lat) * 0.95), len(lat) - 1)] if lat else None,
        )

    def __enter__(self) -> LivePipeline:
        return self.start()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            # The body's exception wins; still stop and join everything, and keep a stage error in the log.
            self._closed = True
            stop_stages(self._stages, [self._frames, self._out], timeout=self.config.stop_timeout)
            error = first_error(self._stages)
            if error is not None:
                logger.error("live pipeline stage failed: %r", error)
            return
        self.close()


def run_live(
    source: Iterable[Frame],
    sink: Callable[[Frame], object],
    translate: TranslateFn,
    *,
    config: PipelineConfig | None = None,
) -> PipelineResult:
    """Run a :class:`LivePipeline` until ``source`` is exhausted (or a stage fails) and return its statistics.

    Raises:
        Exception: the first error raised by the source, ``translate`` or ``sink``, unchanged.
    """
    pipeline = LivePipeline(source, sink, translate, config=config)
    pipeline.start()
    try:
        pipeline.wait()
    except BaseException:
        pipeline.__exit__(BaseException)
        raise
    return pipeline.close()
