"""The batch driver: plan every input, run its chunks on a pool of Ray actors, retry what fails, join, report.

One loop on the driver owns all state; actors only ever run one chunk at a time and return its bytes, so the
driver is the only writer of OUTDIR (no shared filesystem is needed for outputs, only for inputs). A chunk whose
actor died is retried on a fresh actor, one whose task raised on the same actor, up to ``max_retries`` times; then
its input fails with that error and the other inputs go on. Finished chunks are recorded in the input's manifest
(:mod:`.manifest`) as they arrive; an input whose chunks are all there is joined on a driver thread while the
actors go on with other inputs.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import RtAnimeError
from ..models._base import Generator
from ..pipeline.codecs import resolve_encode_for
from ..pipeline.config import EncodeConfig, PipelineConfig
from .chunk import ChunkResult, ChunkTask
from .._signals import restore_signal_handlers, saved_signal_handlers
from .cluster import PoolPlan, actor_class, connect, import_ray, plan_pool
from .config import BatchConfig, ModelPayload, TranslateSpec, settings_digest
from .join import join_chunks
from .manifest import ChunkStore, manifest_header
from .plan import Chunk, InputPlan, expand_inputs, output_paths, plan_input

__all__ = ["run_batch", "BatchSummary", "InputSummary", "ProgressFn"]

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, int], None]
"""``progress(frames_done, frames_total, workers_alive)``, called on the driver after every event."""

Status = Literal["pending", "running", "done", "failed", "skipped"]


@dataclass
class InputSummary:
    """What happened to one input (the JSON summary's ``inputs`` entries)."""

    input: str
    output: str
    status: Status = "pending"
    frames: int = 0
    chunks: int = 0
    chunks_run: int = 0
    """Chunk tasks that completed in this run (retries of a chunk count once, when it completes)."""
    chunks_reused: int = 0
    """Chunks taken from the manifest of an earlier run (``--resume``)."""
    retries: int = 0
    seconds: float = 0.0
    decode_errors: int = 0
    error: str | None = None


@dataclass
class BatchSummary:
    """The whole run; :meth:`to_dict` is what ``rt-anime batch`` prints."""

    inputs: list[InputSummary]
    seconds: float = 0.0
    workers: int = 0
    threads: int = 0
    device: str = "cpu"
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(s.status in ("done", "skipped") for s in self.inputs)

    def to_dict(self) -> dict[str, Any]:
        frames = sum(s.frames for s in self.inputs if s.status == "done")
        return {"ok": self.ok, "frames": frames, "seconds": round(self.seconds, 3),
                "fps": round(frames / self.seconds, 3) if self.seconds > 0 else 0.0,
                "done": sum(s.status == "done" for s in self.inputs),
                "failed": sum(s.status == "failed" for s in self.inputs),
                "skipped": sum(s.status == "skipped" for s in self.inputs),
                "workers": self.workers, "threads": self.threads, "device": self.device,
                "timings": {k: round(v, 3) for k, v in self.timings.items()},
                "inputs": [{**dataclasses.asdict(s), "seconds": round(s.seconds, 3)} for s in self.inputs]}


@dataclass(eq=False)
class _Input:
    summary: InputSummary
    encode: EncodeConfig
    """``encode`` with ``codec="auto"`` resolved for this input's output container (its chunks are Matroska)."""
    plan: InputPlan | None = None
    store: ChunkStore | None = None
    todo: set[int] = field(default_factory=set)
    started: float | None = None


def _encode_for(encode: EncodeConfig, target: Path) -> EncodeConfig:
    resolved = resolve_encode_for(encode, target)
    if resolved.codec == "gif":
        # Chunks are Matroska, which cannot hold GIF, and a GIF's palettes could not be remuxed across chunks.
        raise RtAnimeError(f"output {target}: rt-anime batch does not write GIF; use --ext mp4 (or webm), or "
                           "rt-anime INPUT OUTPUT.gif for one file")
    return resolved


def run_batch(inputs: Sequence[str | Path], outdir: str | Path, model: Generator, *,
              batch: BatchConfig | None = None, pipeline: PipelineConfig | None = None,
              encode: EncodeConfig | None = None, translate: TranslateSpec | None = None,
              progress: ProgressFn | None = None) -> BatchSummary:
    """Stylize every input into ``outdir`` on Ray; see ``rt-anime batch --help``.

    Per-input failures (a corrupt file, a chunk that failed ``max_retries + 1`` times) are reported in the
    summary and leave no file at that input's output path; the other inputs complete.

    Raises:
        RtAnimeError: bad arguments (missing inputs, clashing names, outputs that exist without ``resume``),
            Ray missing (``MissingDependencyError``) or no cluster at the address.
    """
    batch = batch or BatchConfig()
    pipeline = pipeline or PipelineConfig()
    encode = encode or EncodeConfig()
    translate = translate or TranslateSpec()
    if pipeline.mode != "file":
        raise ValueError("rt-anime batch runs file mode only (every frame, in order)")
    if pipeline.size_multiple == 1:
        pipeline = dataclasses.replace(pipeline, size_multiple=model.size_multiple)
    started = time.perf_counter()
    outdir = Path(outdir).expanduser()
    paths = expand_inputs([str(p) for p in inputs])
    targets = output_paths(paths, outdir, ext=batch.ext)
    encodes = [_encode_for(encode, t) for t in targets]
    existing = [t for t in targets if t.exists()]
    if existing and not batch.resume:
        names = ", ".join(str(t) for t in existing[:3]) + (" …" if len(existing) > 3 else "")
        raise RtAnimeError(f"output exists: {names}; pass --resume to skip finished outputs, or choose another -o")
    if outdir.exists() and not outdir.is_dir():
        raise RtAnimeError(f"-o {outdir} exists and is not a directory")
    created = not outdir.exists()
    outdir.mkdir(parents=True, exist_ok=True)
    # Temporal warm-up only matters with a temporal filter; without one, chunks decode from their own keyframe.
    warmup = batch.overlap_frames if translate.temporal != "none" else 0
    payload = ModelPayload.from_model(model)
    settings = settings_digest(payload.fingerprint(), pipeline, encode, translate, warmup)
    states = [_Input(InputSummary(input=str(p), output=str(t)), encode=e) for p, t, e in zip(paths, targets, encodes)]
    for state, path, target in zip(states, paths, targets):
        if target.exists():
            state.summary.status = "skipped"
            continue
        try:
            plan = plan_input(path, target, chunk_seconds=batch.chunk_seconds, warmup_frames=warmup,
                              allow_partial=pipeline.allow_partial)
        except Exception as error:  # noqa: BLE001 - a bad input fails alone; the others go on
            _fail(state, _describe(error))
            continue
        state.plan = plan
        state.store = ChunkStore(outdir, target.name, header=manifest_header(plan, settings), resume=batch.resume)
        state.todo = {c.index for c in plan.chunks} - set(state.store.records)
        state.summary.chunks = len(plan.chunks)
        state.summary.chunks_reused = len(plan.chunks) - len(state.todo)
        state.summary.status = "running"
    summary = BatchSummary(inputs=[s.summary for s in states])
    summary.timings["plan"] = time.perf_counter() - started
    scheduler = _Scheduler(states, batch=batch, pipeline=pipeline, translate=translate,
                           payload=payload, progress=progress, summary=summary)
    try:
        scheduler.run()
    finally:
        scheduler.close()
        _tidy(states, outdir, created)
    summary.seconds = time.perf_counter() - started
    return summary


def _tidy(states: list[_Input], outdir: Path, created: bool) -> None:
    """Drop chunk stores with nothing to resume, and OUTDIR itself if this run created it and left it empty."""
    for state in states:
        if state.store is not None and not state.store.records and state.store.dir.exists():
            state.store.remove()
    if created:
        try:
            outdir.rmdir()  # only succeeds when empty
        except OSError:
            pass


def _fail(state: _Input, message: str) -> None:
    state.summary.status = "failed"
    state.summary.error = message
    logger.error("%s: %s", state.summary.input, message)


def _describe(error: BaseException) -> str:
    """One line for a failure, whatever layer raised it (a task's own exception rather than Ray's wrapper)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        error = cause
    text = str(error).strip()
    if isinstance(error, RtAnimeError) and text:
        return text.splitlines()[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


class _Scheduler:
    """Actors, the queue of chunk tasks, the in-flight tasks and the driver-side joins."""

    def __init__(self, states: list[_Input], *, batch: BatchConfig, pipeline: PipelineConfig,
                 translate: TranslateSpec, payload: ModelPayload, progress: ProgressFn | None,
                 summary: BatchSummary) -> None:
        self.states = states
        self.batch = batch
        self.pipeline = pipeline
        self.translate = translate
        self.payload = payload
        self.progress = progress
        self.summary = summary
        self.queue: deque[tuple[_Input, Chunk, int]] = deque()
        self.inflight: dict[Any, tuple[str, Any, _Input | None, Chunk | None, int]] = {}
        self.actors: list[Any] = []
        self.idle: deque[Any] = deque()
        self.created: dict[Any, float] = {}
        self.joins: dict[concurrent.futures.Future[None], _Input] = {}
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="rt-anime-join")
        self.ray: Any = None
        self.started_ray = False
        self.signal_handlers: dict = {}
        self.pool: PoolPlan | None = None
        self.total = sum(s.plan.frames for s in states if s.plan is not None)

    # --- set-up and tear-down ----------------------------------------------------------------------------------

    def run(self) -> None:
        for state in self.states:
            if state.summary.status != "running":
                continue
            assert state.plan is not None
            state.started = time.perf_counter()
            if state.todo:
                self.queue.extend((state, c, 1) for c in state.plan.chunks if c.index in state.todo)
            else:
                self._start_join(state)
        if self.queue:
            self._start_pool()
        self._report()
        # Pending "describe" calls (actor start-up timing) do not keep the loop alive.
        while self.queue or self._chunks_in_flight() or self.joins:
            self._top_up()
            self._dispatch()
            self._wait()
            self._reap_joins()
            self._report()

    def _start_pool(self) -> None:
        t0 = time.perf_counter()
        self.ray = import_ray()
        # ray.init replaces the process's SIGINT/SIGTERM handlers and ray.shutdown leaves its own in place: keep
        # the caller's (a notebook, a service embedding run_batch) to put back when the Ray we start goes.
        self.signal_handlers = saved_signal_handlers()
        self.started_ray = connect(self.batch.ray)
        self.summary.timings["ray_start"] = time.perf_counter() - t0
        self.pool = plan_pool(self.batch, device=self.translate.device, chunks=len(self.queue))
        self.summary.workers, self.summary.threads = self.pool.workers, self.pool.threads
        self.summary.device = self.pool.device
        # Threads go to the encoder too (unless set): x264's default is 1.5 threads per core *per actor*.
        for state in self.states:
            if "threads" not in state.encode.options:
                options = {**state.encode.options, "threads": str(self.pool.threads)}
                state.encode = dataclasses.replace(state.encode, options=options)
        self.payload_ref = self.ray.put(self.payload)  # once: every actor maps the same weights
        self.actor_cls = actor_class(self.pool)
        logger.info("batch: %d worker(s) × %d thread(s) on %s (cluster: %g CPUs, %g GPUs)", self.pool.workers,
                    self.pool.threads, self.pool.device, self.pool.cluster_cpus, self.pool.cluster_gpus)
        for _ in range(self.pool.workers):
            self._new_actor()

    def _new_actor(self) -> None:
        assert self.pool is not None
        actor = self.actor_cls.remote(self.payload_ref, self.translate, device=self.pool.device,
                                      threads=self.pool.threads)
        self.actors.append(actor)
        self.created[actor] = time.perf_counter()
        self.inflight[actor.describe.remote()] = ("describe", actor, None, None, 0)
        self.idle.append(actor)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        if self.ray is not None:
            for actor in self.actors:
                try:
                    self.ray.kill(actor, no_restart=True)
                except Exception as error:  # noqa: BLE001 - best effort on the way out
                    logger.debug("killing actor failed: %r", error)
            self.actors.clear()
            if self.started_ray:
                self.ray.shutdown()
                restore_signal_handlers(self.signal_handlers)

    # --- the loop ----------------------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        if any(state.summary.status != "running" for state, _, _ in self.queue):
            self.queue = deque(item for item in self.queue if item[0].summary.status == "running")
        while self.idle and self.queue:
            state, chunk, attempt = self.queue.popleft()
            if state.summary.status != "running":
                continue  # its input already failed
            assert state.plan is not None
            actor = self.idle.popleft()
            fault = next((f for f in self.batch.faults
                          if f.input_name == state.plan.name and f.chunk == chunk.index), None)
            task = ChunkTask(input_path=str(state.plan.input_path), name=state.plan.name, chunk=chunk,
                             pipeline=self.pipeline, encode=state.encode, attempt=attempt, fault=fault)
            self.inflight[actor.run.remote(task)] = ("chunk", actor, state, chunk, attempt)

    def _chunks_in_flight(self) -> int:
        return sum(1 for kind, *_ in self.inflight.values() if kind == "chunk")

    def _wait(self) -> None:
        if not self._chunks_in_flight():
            concurrent.futures.wait(list(self.joins), timeout=0.5,
                                    return_when=concurrent.futures.FIRST_COMPLETED)
            return
        refs = list(self.inflight)
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=0.5)
        if ready:  # take everything else that is ready too, without waiting
            ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in ready:
            self._collect(ref)

    def _collect(self, ref: Any) -> None:
        kind, actor, state, chunk, attempt = self.inflight.pop(ref)
        try:
            value = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as error:
            self._drop(actor, error)
            if kind == "chunk":
                self._retry(state, chunk, attempt, f"worker died ({_describe(error)})")
            return
        except Exception as error:  # noqa: BLE001 - the task raised (RayTaskError) or its result was lost
            if kind == "chunk":
                self.idle.append(actor)
                self._retry(state, chunk, attempt, _describe(error))
            return
        if kind == "describe":
            ready = time.perf_counter() - self.created.pop(actor, time.perf_counter())
            self.summary.timings["actor_start"] = max(self.summary.timings.get("actor_start", 0.0), ready)
            logger.debug("worker %s ready after %.2f s", value.get("worker"), ready)
            return
        self.idle.append(actor)
        assert state is not None and state.store is not None
        result: ChunkResult = value
        state.store.add(result)
        state.todo.discard(result.index)
        state.summary.chunks_run += 1
        state.summary.decode_errors += result.decode_errors
        if state.summary.status == "running" and not state.todo:
            self._start_join(state)

    def _drop(self, actor: Any, error: BaseException) -> None:
        """Forget a dead actor (its in-flight calls fail on their own); :meth:`_top_up` starts replacements."""
        if actor not in self.actors:
            return
        logger.warning("a worker died (%s)", _describe(error))
        self.actors.remove(actor)
        if actor in self.idle:
            self.idle.remove(actor)
        self.created.pop(actor, None)
        try:
            self.ray.kill(actor, no_restart=True)
        except Exception:  # noqa: BLE001 - it is dead already
            pass

    def _top_up(self) -> None:
        """Keep as many live actors as there is work for, up to the pool size (replaces dead ones)."""
        if self.pool is None:
            return
        running = self._chunks_in_flight()
        pending = sum(1 for state, _, _ in self.queue if state.summary.status == "running")
        while len(self.actors) < min(self.pool.workers, running + pending):
            self._new_actor()

    def _retry(self, state: _Input | None, chunk: Chunk | None, attempt: int, message: str) -> None:
        assert state is not None and chunk is not None
        if state.summary.status != "running":
            return
        if attempt <= self.batch.max_retries:
            state.summary.retries += 1
            logger.warning("%s chunk %d attempt %d failed: %s; retrying", state.summary.output, chunk.index,
                           attempt, message)
            self.queue.appendleft((state, chunk, attempt + 1))
        else:
            _fail(state, f"chunk {chunk.index} failed {attempt} time(s): {message}; finished chunks are kept in "
                         f"{state.store.dir if state.store else 'OUTDIR'} for --resume")

    # --- joins -------------------------------------------------------------------------------------------------

    def _start_join(self, state: _Input) -> None:
        future = self.executor.submit(self._join, state)
        self.joins[future] = state

    def _join(self, state: _Input) -> None:
        assert state.plan is not None and state.store is not None
        t0 = time.perf_counter()
        result = join_chunks(state.plan, state.store.files(), pipeline=self.pipeline, encode=state.encode)
        self.summary.timings["join"] = self.summary.timings.get("join", 0.0) + time.perf_counter() - t0
        state.summary.frames = result.frames
        state.store.remove()

    def _reap_joins(self) -> None:
        for future in [f for f in self.joins if f.done()]:
            state = self.joins.pop(future)
            error = future.exception()
            if error is not None:
                _fail(state, _describe(error))
            else:
                state.summary.status = "done"
            state.summary.seconds = time.perf_counter() - (state.started or time.perf_counter())

    def _report(self) -> None:
        if self.progress is None:
            return
        done = 0
        for state in self.states:
            if state.plan is None or state.store is None:
                continue
            done += sum(len(r.pts) for r in state.store.records.values())
        self.progress(done, self.total, len(self.actors))
