"""Saving, replacing and restoring the SIGINT/SIGTERM handlers around a long job.

Both the trainer (which turns Ctrl-C into "finish the iteration and checkpoint") and ``rt-anime batch`` (whose
``ray.init`` installs handlers of its own) must leave the process's handlers as they found them. Handlers can only
be changed from the main thread; elsewhere (a notebook worker, a test thread) these functions do nothing.
"""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable

HANDLED = (signal.SIGINT, signal.SIGTERM)


def saved_signal_handlers() -> dict[int, Any]:
    """The SIGINT/SIGTERM handlers now installed (empty off the main thread, where they cannot be changed)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.getsignal(sig) for sig in HANDLED}


def install_signal_handler(handler: Callable[[int, Any], None]) -> dict[int, Any]:
    """Route SIGINT and SIGTERM to ``handler``; returns the previous handlers for :func:`restore_signal_handlers`."""
    old = saved_signal_handlers()
    for sig in old:
        signal.signal(sig, handler)
    return old


def restore_signal_handlers(handlers: dict[int, Any]) -> None:
    """Put back handlers from :func:`saved_signal_handlers` (handlers not set from Python stay as they are:
    ``signal.signal`` cannot reinstall one, ``getsignal`` reports them as ``None``)."""
    for sig, handler in handlers.items():
        if handler is not None:
            signal.signal(sig, handler)


__all__ = ["install_signal_handler", "restore_signal_handlers", "saved_signal_handlers"]
