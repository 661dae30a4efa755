"""Exceptions for user-facing failures. The CLI prints their message on one line and exits non-zero."""

from __future__ import annotations


class RtAnimeError(Exception):
    """Base of errors caused by input, files or settings rather than by a bug in rt-anime."""


class CheckpointError(RtAnimeError, ValueError):
    """A checkpoint cannot be found, read, verified or matched to a generator layout."""


class MissingDependencyError(RtAnimeError, ImportError):
    """An optional dependency is needed for this feature; the message names the extra to install."""


def require(module: str, *, extra: str, feature: str):
    """Import an optional dependency lazily, or fail with the pip command that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs the Python package {module!r} ({exc}); install it with: pip install 'rt-anime[{extra}]'"
        ) from None
