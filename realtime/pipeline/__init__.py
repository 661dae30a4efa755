"""Streaming pipeline: decode → translate → encode, for video files (``run_file``) and live sources (``run_live``).

Typical use::

    from realtime.pipeline import EncodeConfig, PipelineConfig, run_file

    result = run_file("in.mp4", "out.mp4", generator_fn, config=PipelineConfig(size_multiple=4, batch_size=2),
                      encode=EncodeConfig(crf=18, preset="medium"))
    print(result.frames_out, result.fps, result.model_fps)
"""

from .config import DeinterlaceMode, EncodeConfig, OddSizePolicy, PipelineConfig, PipelineMode
from .decode import InputVideo, SourceInfo
from .errors import (
    EncoderError,
    InputError,
    NoVideoError,
    OutputError,
    OutputIsInputError,
    PipelineError,
    TranslateOutputError,
    TruncatedInputError,
)
from .result import PipelineResult
from .run import LivePipeline, run_file, run_live
from .stage import Channel, PipelineStopped, Stage
from .translate import Geometry, TranslateFn

__all__ = [
    "run_file",
    "run_live",
    "LivePipeline",
    "PipelineConfig",
    "EncodeConfig",
    "PipelineMode",
    "OddSizePolicy",
    "DeinterlaceMode",
    "PipelineResult",
    "TranslateFn",
    "PipelineError",
    "InputError",
    "NoVideoError",
    "TruncatedInputError",
    "OutputError",
    "OutputIsInputError",
    "EncoderError",
    "TranslateOutputError",
    "InputVideo",
    "SourceInfo",
    "Geometry",
    "Stage",
    "Channel",
    "PipelineStopped",
]
