"""Stage threads and the bounded channels that join them.

Every stage has the same lifecycle: ``start()`` launches its thread, the thread iterates its input channel(s)
and writes its output channel(s), ``close()`` asks it to stop and joins it; stages are context managers.
One :class:`threading.Event` is shared by all stages of a pipeline: any stage that fails records its error and
sets it, and every blocking ``put``/``get`` waits with a timeout and re-checks it, so no stage can stay blocked on
a full or empty channel once another one has failed (no deadlock on error, whichever stage raises).
"""

from __future__ import annotations

import abc
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Generic, Literal, TypeVar

__all__ = ["Channel", "Stage", "PipelineStopped", "run_stages", "wait_stages", "stop_stages", "first_error"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Upper bound on how long a blocked put/get sleeps before re-checking the stop event; abort() wakes waiters at
# once, this only bounds the damage if a notify is ever missed.
_POLL_SECONDS = 0.1


class PipelineStopped(Exception):
    """Raised inside a stage when the pipeline is stopping; a clean exit, not an error."""


class Channel(Generic[T]):
    """Bounded FIFO between stages, with back-pressure or latest-wins dropping.

    Args:
        name: Used in logs.
        capacity: Most items held at once.
        stop: The pipeline's shared stop event.
        policy: ``"block"``: ``put`` waits while full (lossless). ``"drop_oldest"``: ``put`` never waits; when
            full, the oldest pending item is discarded and counted (latest frame wins).
        producers: Number of producers; iteration ends once each has called :meth:`close`.
        on_drop: Called with each dropped item (``drop_oldest`` only), under the channel lock.
    """

    def __init__(
        self,
        *,
        name: str,
        capacity: int,
        stop: threading.Event,
        policy: Literal["block", "drop_oldest"] = "block",
        producers: int = 1,
        on_drop: Callable[[T], None] | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if policy not in ("block", "drop_oldest"):
            raise ValueError(f"policy must be 'block' or 'drop_oldest', got {policy!r}")
        self.name = name
        self.capacity = capacity
        self.policy = policy
        self._stop = stop
        self._items: deque[T] = deque()
        self._open_producers = producers
        self._cond = threading.Condition()
        self._on_drop = on_drop
        self.dropped = 0
        """Items discarded by ``drop_oldest``."""
        self.high_water = 0
        """Largest number of items ever pending; never exceeds ``capacity``."""

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, item: T) -> None:
        """Append ``item``; see ``policy``.

        Raises:
            PipelineStopped: if the pipeline stops while waiting for room.
        """
        with self._cond:
            if self.policy == "block":
                while len(self._items) >= self.capacity:
                    if self._stop.is_set():
                        raise PipelineStopped
                    self._cond.wait(_POLL_SECONDS)
            else:
                while len(self._items) >= self.capacity:
                    old = self._items.popleft()
                    self.dropped += 1
                    if self._on_drop is not None:
                        self._on_drop(old)
            if self._stop.is_set():
                raise PipelineStopped
            self._items.append(item)
            self.high_water = max(self.high_water, len(self._items))
            self._cond.notify_all()

    def get(self, *, block: bool = True) -> T | None:
        """Pop the oldest item; ``None`` once every producer has closed and nothing is left.

        Args:
            block: When ``False``, also return ``None`` at once if nothing is pending right now
                (check :attr:`finished` to tell the two apart).

        Raises:
            PipelineStopped: if the pipeline stops while waiting.
        """
        with self._cond:
            while not self._items:
                if self._stop.is_set():
                    raise PipelineStopped
                if self._open_producers <= 0 or not block:
                    return None
                self._cond.wait(_POLL_SECONDS)
            if self._stop.is_set():
                raise PipelineStopped
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    @property
    def finished(self) -> bool:
        """Every producer has closed and every item has been taken."""
        with self._cond:
            return self._open_producers <= 0 and not self._items

    def close(self) -> None:
        """One producer is done (normal end of stream)."""
        with self._cond:
            self._open_producers -= 1
            self._cond.notify_all()

    def abort(self) -> None:
        """Wake every waiter so it notices the stop event; pending items are discarded."""
        with self._cond:
            self._items.clear()
            self._cond.notify_all()

    def __iter__(self) -> Iterator[T]:
        while (item := self.get()) is not None:
            yield item


class Stage(abc.ABC):
    """A pipeline stage running :meth:`run` on its own thread.

    Subclasses implement :meth:`run` (the loop) and may override :meth:`finish` (called on the stage's thread
    after a normal end, e.g. to close output channels). ``busy_seconds`` accumulates time spent working, as
    timed by the subclass with :meth:`timed`.

    Args:
        name: Thread and log name.
        stop: The pipeline's shared stop event.
    """

    def __init__(self, *, name: str, stop: threading.Event) -> None:
        self.name = name
        self.stop_event = stop
        self.error: BaseException | None = None
        self.error_time: float | None = None
        self.busy_seconds = 0.0
        self._thread: threading.Thread | None = None
        self._done = threading.Event()

    @abc.abstractmethod
    def run(self) -> None:
        """The stage loop; raise :class:`PipelineStopped` (or return) to exit."""

    def finish(self) -> None:  # noqa: B027 - an optional hook, not an abstract method
        """Called on the stage thread after :meth:`run` returned normally."""

    def timed(self) -> _Timer:
        """Context manager adding the enclosed wall time to ``busy_seconds``."""
        return _Timer(self)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"stage {self.name!r} was already started")
        # Daemon: a stage stuck inside native code (a model call, a blocking camera read) must not keep the
        # interpreter alive after close() gave up on it.
        self._thread = threading.Thread(target=self._main, name=f"rt-anime-{self.name}", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self.run()
            self.finish()
        except PipelineStopped:
            pass
        except BaseException as error:  # noqa: BLE001 - KeyboardInterrupt in a worker must stop the pipeline too
            self.error = error
            self.error_time = time.monotonic()
            logger.debug("stage %s failed: %r", self.name, error)
            self.stop_event.set()
        finally:
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; ``True`` if it has."""
        return self._done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Ask the stage to stop and join its thread (gives up after ``timeout`` seconds, logging it)."""
        self.stop_event.set()
        if self._thread is None:
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("stage %s did not stop within %.1f s; abandoning its thread", self.name, timeout)

    def __enter__(self) -> Stage:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Timer:
    __slots__ = ("_stage", "_t0")

    def __init__(self, stage: Stage) -> None:
        self._stage = stage
        self._t0 = 0.0

    def __enter__(self) -> None:
        self._t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self._stage.busy_seconds += time.perf_counter() - self._t0


def wait_stages(stages: list[Stage], timeout: float | None = None) -> bool:
    """Wait until every stage has ended or one has failed; ``True`` unless ``timeout`` ran out first.

    Polls, so a KeyboardInterrupt in the calling thread is handled within a fraction of a second.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        pending = [stage for stage in stages if not stage.done]
        if not pending or any(stage.error is not None for stage in stages):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        pending[0].wait(_POLL_SECONDS)


def stop_stages(stages: list[Stage], channels: list[Channel], *, timeout: float) -> None:
    """Stop every stage that is still running, wake every channel, join every thread (bounded by ``timeout``)."""
    if not all(stage.done for stage in stages):
        stages[0].stop_event.set()
        for channel in channels:
            channel.abort()
    deadline = time.monotonic() + timeout
    for stage in stages:
        stage.close(max(deadline - time.monotonic(), 0.05))


def first_error(stages: list[Stage]) -> BaseException | None:
    """The earliest error any stage raised (later ones are usually consequences of it), or ``None``."""
    failed = [stage for stage in stages if stage.error is not None]
    if not failed:
        return None
    first = min(failed, key=lambda s: s.error_time or 0.0)
    for other in failed:
        if other is not first:
            logger.debug("stage %s also failed after the first error: %r", other.name, other.error)
    return first.error


def run_stages(stages: list[Stage], channels: list[Channel], *, stop_timeout: float) -> None:
    """Start ``stages``, wait for all to finish, then stop and join everything and re-raise the first error.

    On any exit path, including a KeyboardInterrupt in the calling thread, the ``finally`` stops every stage,
    wakes every channel and joins every thread before the exception propagates.

    Raises:
        BaseException: the earliest error raised by any stage, unchanged.
    """
    try:
        for stage in stages:
            stage.start()
        wait_stages(stages)
    finally:
        stop_stages(stages, channels, timeout=stop_timeout)
    error = first_error(stages)
    if error is not None:
        raise error
