"""Exceptions raised by the streaming pipeline.

Every message is one line naming the problem and the path involved, so the CLI can print ``str(error)`` as is.
Exceptions raised by the user's ``translate`` callable, ``progress`` callback or live ``sink`` are not wrapped:
they propagate unchanged (same type, same object) out of :func:`~realtime.pipeline.run_file` and
:func:`~realtime.pipeline.run_live`.
"""

from __future__ import annotations

import os

from ..errors import RtAnimeError

__all__ = [
    "PipelineError",
    "InputError",
    "NoVideoError",
    "TruncatedInputError",
    "OutputError",
    "OutputIsInputError",
    "EncoderError",
    "TranslateOutputError",
]


class PipelineError(RtAnimeError):
    """Base class of every error the pipeline raises itself.

    It is an :class:`~realtime.errors.RtAnimeError`, so the CLI prints it as one ``rt-anime: error: ...`` line.
    """

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None) -> None:
        self.path = None if path is None else os.fspath(path)
        super().__init__(message if self.path is None else f"{message}: {self.path}")


class InputError(PipelineError):
    """The input cannot be opened or read as a video (missing, not a media file, unreadable)."""


class NoVideoError(InputError):
    """The input has no video stream (audio-only) or none of its video packets decode to a frame."""


class TruncatedInputError(InputError):
    """The input ends before the frames its container declares (cut download, interrupted recording).

    Raised unless ``PipelineConfig.allow_partial`` is set; with it, the frames that decode are stylized and the
    loss is reported in :class:`~realtime.pipeline.PipelineResult` instead.
    """

    def __init__(
        self,
        *,
        path: str | os.PathLike[str],
        frames_decoded: int | None,
        frames_expected: int | None,
        detail: str = "",
    ) -> None:
        self.frames_decoded = frames_decoded
        self.frames_expected = frames_expected
        self.frames_lost = (
            None if frames_decoded is None or frames_expected is None else max(frames_expected - frames_decoded, 0)
        )
        counts = (
            f"{frames_decoded if frames_decoded is not None else '?'} of "
            f"{frames_expected if frames_expected is not None else '?'} frames readable"
        )
        extra = f", {detail}" if detail else ""
        super().__init__(f"input is truncated ({counts}{extra}; keep them with --allow-partial, or allow_partial=True in the API)", path=path)


class OutputError(PipelineError):
    """The output cannot be written (directory missing or read-only, container cannot hold the video codec)."""


class OutputIsInputError(OutputError):
    """The output path names the input file; rt-anime never overwrites its input."""


class EncoderError(OutputError):
    """The encoder rejected the configuration (codec, pixel format, size) or failed while encoding."""


class TranslateOutputError(PipelineError):
    """The ``translate`` callable returned something other than a tensor of its input's shape."""
