"""Ray: connecting, sizing the actor pool, and the actor that runs chunks.

Ray is optional (the ``cluster`` extra) and imported only here, lazily. Each :class:`ChunkWorker` actor builds the
generator once, from weights the driver put in the object store once (:class:`~.config.ModelPayload`), and then
runs chunk after chunk; per-chunk state (the ``--temporal blend`` history) is created fresh for every chunk.

Sizing: on CPUs, ``threads`` torch threads per actor (default 1, so ``N`` single-threaded actors fill ``N`` cores
with no oversubscription: torch, OpenCV and the encoder all get the same count) and as many actors as the
cluster's CPUs allow, or ``--workers``. Where the cluster has GPUs (and ``--device`` is not ``cpu``), one actor
per GPU by default, or ``--workers`` sharing them with fractional ``num_gpus``.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from ..errors import RtAnimeError, require
from .chunk import ChunkResult, ChunkTask, run_chunk
from .config import BatchConfig, ModelPayload, TranslateSpec

__all__ = ["ChunkWorker", "PoolPlan", "connect", "plan_pool", "import_ray"]

logger = logging.getLogger(__name__)


def import_ray() -> Any:
    """The ``ray`` module, or a clear error naming the extra that installs it."""
    return require("ray", extra="cluster", feature="rt-anime batch (scaling out on Ray)")


def connect(address: str) -> bool:
    """Connect to Ray (see :class:`~.config.BatchConfig` ``ray``); ``True`` if this call started it.

    An already initialised Ray (a test fixture, a notebook) is used as it is.

    Raises:
        RtAnimeError: no cluster answers at ``address``.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    if address not in ("local", "auto"):
        _check_reachable(address)
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    try:
        if address == "local":
            # address=None would join a cluster this machine already belongs to; "local" means embedded.
            ray.init(address="local", **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RtAnimeError(f"--ray {address}: cannot connect to a Ray cluster ({first}); start one with "
                           "'ray start --head' on the head node, or use --ray local") from None
    return True


def _check_reachable(address: str) -> None:
    """Fail in seconds on a wrong HOST:PORT: ``ray.init`` itself retries an unreachable GCS for minutes."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return  # not HOST:PORT; let Ray parse it
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except OSError as error:
        raise RtAnimeError(f"--ray {address}: nothing answers at {host}:{port} ({error.strerror or error}); start "
                           "Ray there with 'ray start --head', or use --ray local") from None


@dataclass(frozen=True, slots=True)
class PoolPlan:
    """How many actors, and what each reserves and uses."""

    workers: int
    threads: int
    num_cpus: float
    num_gpus: float
    device: str
    cluster_cpus: float
    cluster_gpus: float


def plan_pool(batch: BatchConfig, *, device: str, chunks: int) -> PoolPlan:
    """Size the pool from the cluster's resources, ``--workers``/``--threads`` and the number of chunks to run."""
    ray = import_ray()
    resources = ray.cluster_resources()
    cpus = float(resources.get("CPU", 0.0)) or float(os.cpu_count() or 1)
    gpus = float(resources.get("GPU", 0.0))
    # An actor must fit on one node: never reserve more CPUs than the largest node has.
    node_cpus = max((float(n.get("Resources", {}).get("CPU", 0.0)) for n in ray.nodes() if n.get("Alive")),
                    default=cpus) or cpus
    use_gpu = gpus > 0 and (device == "auto" or device.startswith("cuda"))
    if device.startswith("cuda") and gpus == 0:
        raise RtAnimeError(f"--device {device}: the Ray cluster has no GPU; use --device cpu or auto")
    if use_gpu:
        workers = batch.workers or max(int(gpus), 1)
        num_gpus = min(1.0, gpus / workers)
        threads = batch.threads or max(1, min(4, int(cpus // workers)))
        actor_device = "cuda"
    else:
        threads = batch.threads or (max(1, int(cpus // batch.workers)) if batch.workers else 1)
        workers = batch.workers or max(1, int(cpus // threads))
        num_gpus = 0.0
        actor_device = "cpu"
    workers = max(1, min(workers, chunks))
    # Fractional reservations when --workers asks for more actors than CPUs: they still all start (and share).
    num_cpus = min(float(threads), cpus / workers, node_cpus)
    return PoolPlan(workers=workers, threads=threads, num_cpus=num_cpus, num_gpus=num_gpus, device=actor_device,
                    cluster_cpus=cpus, cluster_gpus=gpus)


def actor_class(pool: PoolPlan) -> Any:
    """The Ray actor class for ``pool`` (failures are handled by the scheduler, so Ray retries nothing)."""
    ray = import_ray()
    return ray.remote(ChunkWorker).options(num_cpus=pool.num_cpus, num_gpus=pool.num_gpus, max_restarts=0,
                                           max_task_retries=0, scheduling_strategy="SPREAD")


class ChunkWorker:
    """Runs chunks with one generator instance (a Ray actor; also usable in-process).

    Args:
        payload: The generator's config and weights (resolved from the object store by Ray).
        spec: Backend, tiling and temporal settings.
        device: ``cpu`` or ``cuda`` (Ray assigns the GPU through ``CUDA_VISIBLE_DEVICES``).
        threads: CPU threads for torch, OpenCV and the encoder.
    """

    def __init__(self, payload: ModelPayload, spec: TranslateSpec, *, device: str, threads: int) -> None:
        started = time.perf_counter()
        import cv2
        import torch

        from ..backends import BackendConfig, make_backend

        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
        model = payload.build()
        self._spec = spec
        self._multiple = model.size_multiple
        self._backend = make_backend(model, BackendConfig(name=spec.backend, device=device, threads=threads))
        self._planner = None
        if spec.tile == "auto" and self._backend.device.type == "cpu":
            from ..memory import TilePlanner

            # The actors of a node split its memory as they split its CPUs (one per `threads` cores).
            share = min(1.0, threads / max(os.cpu_count() or 1, 1))
            self._planner = TilePlanner(model, multiple=model.size_multiple, share=share)
        self._threads = threads
        self._device = device
        self.init_seconds = time.perf_counter() - started

    def describe(self) -> dict[str, Any]:
        """Who this worker is and how long it took to start (the first call also waits for construction)."""
        return {"worker": f"{socket.gethostname()}:{os.getpid()}", "init_seconds": self.init_seconds,
                "threads": self._threads, "device": self._device}

    def _translate(self) -> Any:
        translate: Any = self._backend
        if self._spec.ensemble > 1:
            from ..ensemble import EnsembleTranslate

            # Inside the tiling, as `rt-anime INPUT OUTPUT --ensemble N` stacks it.
            translate = EnsembleTranslate(translate, self._spec.ensemble)
        if isinstance(self._spec.tile, int):
            from ..tiling import TiledTranslate

            translate = TiledTranslate(translate, tile=self._spec.tile, overlap=self._spec.tile_overlap,
                                       multiple=self._multiple)
        elif self._planner is not None:
            from ..tiling import AutoTiles

            translate = AutoTiles(translate, self._planner, overlap=self._spec.tile_overlap, multiple=self._multiple)
        if self._spec.temporal == "blend":
            from ..temporal.blend import TemporalBlend

            # A fresh history per chunk: chunks of one video may run on any actor in any order.
            translate = TemporalBlend(translate, strength=self._spec.temporal_strength)
        return translate

    def run(self, task: ChunkTask) -> ChunkResult:
        return run_chunk(task, self._translate(), workdir=tempfile.gettempdir())
