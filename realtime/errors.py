"""Exceptions for user-facing failures. The CLI prints their message on one line and exits non-zero."""

from __future__ import annotations


class RtAnimeError(Exception):
    """Base of errors caused by input, files or settings rather than by a bug in rt-anime."""


class CheckpointError(RtAnimeError, ValueError):
    """A checkpoint cannot be found, read, verified or matched to a generator layout."""


class MissingDependencyError(RtAnimeError, ImportError):
    """An optional dependency is needed for this feature; the message names the extra to install."""


def require(module: str, *, extra: str | None, feature: str):
    """Import a dependency lazily, or fail with the pip command that provides it.

    ``extra`` names the rt-anime extra that brings the module; ``None`` for core dependencies (a broken install).
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        command = f"pip install 'rt-anime[{extra}]'" if extra else f"pip install {module}"
        raise MissingDependencyError(f"{feature} needs the Python package {module!r} ({exc}); install it with: "
                                     f"{command}") from None
