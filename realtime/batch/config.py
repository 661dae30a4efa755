"""Frozen settings of a batch run, and the model payload the Ray actors rebuild the generator from.

:class:`BatchConfig` is what ``rt-anime batch`` adds on top of file mode (chunking, workers, retries, resume);
:class:`TranslateSpec` says how each actor turns the generator into the ``translate`` function of file mode
(backend, tiling, ``--temporal blend``); :class:`ModelPayload` carries the weights as plain NumPy arrays, so the
driver puts them in Ray's object store once and every actor maps them from there instead of unpickling a copy
per task. :class:`FaultSpec` injects worker crashes and task errors (tests and failure drills).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

import numpy as np
import torch

from .._registry import get_family
from ..models._base import Generator

__all__ = ["BatchConfig", "TranslateSpec", "ModelPayload", "FaultSpec", "FaultAction"]

FaultAction = Literal["exit", "raise"]


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchConfig:
    """How inputs are cut, scheduled and recovered.

    Attributes:
        ray: ``"local"`` starts an embedded Ray on this machine (or reuses the one this process already started);
            ``"auto"`` joins the cluster this machine belongs to (``ray start``); anything else is a cluster
            address (``HOST:6379`` or ``ray://HOST:10001``).
        chunk_seconds: Target chunk length; chunks start at keyframes, so they are at least one GOP long.
        workers: Actors (each loads the model once); ``None`` sizes the pool from the cluster's CPUs/GPUs.
        threads: CPU threads per actor (torch, encoder); ``None`` splits the cluster's CPUs over the actors.
        max_retries: Extra attempts of a chunk whose worker died or raised, before its input fails.
        resume: Reuse finished chunks recorded in OUTDIR's manifest and skip inputs whose output exists.
        overlap_frames: ``--temporal blend`` warm-up: frames of the previous chunk run (and discarded) before a
            chunk so its first frames blend with a settled state, as in a single pass.
        ext: Output extension (``"mkv"``) instead of the input's.
        faults: Injected faults (tests, failure drills); empty in normal use.
    """

    ray: str = "local"
    chunk_seconds: float = 10.0
    workers: int | None = None
    threads: int | None = None
    max_retries: int = 2
    resume: bool = False
    overlap_frames: int = 8
    ext: str | None = None
    faults: tuple[FaultSpec, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.ray, str) or not self.ray:
            raise ValueError(f"--ray must be local, auto or a cluster ADDRESS, got {self.ray!r}")
        if isinstance(self.chunk_seconds, bool) or not isinstance(self.chunk_seconds, (int, float)) \
                or not 0 < self.chunk_seconds <= 86400:
            raise ValueError(f"--chunk-seconds must be a number of seconds in (0, 86400], got {self.chunk_seconds!r}")
        for name, minimum in (("workers", 1), ("threads", 1)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
                raise ValueError(f"--{name} must be an integer >= {minimum}, got {value!r}")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or not 0 <= self.max_retries <= 100:
            raise ValueError(f"--max-retries must be an integer in 0..100, got {self.max_retries!r}")
        if isinstance(self.overlap_frames, bool) or not isinstance(self.overlap_frames, int) or self.overlap_frames < 0:
            raise ValueError(f"--overlap must be an integer >= 0 frames, got {self.overlap_frames!r}")
        if self.ext is not None:
            ext = self.ext.lstrip(".")
            if not ext or "/" in ext or "\\" in ext:
                raise ValueError(f"--ext must be a file extension such as mkv or mp4, got {self.ext!r}")
            object.__setattr__(self, "ext", ext)
        for fault in self.faults:
            if not isinstance(fault, FaultSpec):
                raise TypeError(f"faults must hold FaultSpec values, got {type(fault).__name__}")


@dataclass(frozen=True, kw_only=True, slots=True)
class TranslateSpec:
    """How an actor builds ``translate`` from the generator (the same stack ``rt-anime INPUT OUTPUT`` builds)."""

    backend: str = "torch"
    device: str = "auto"
    tile: int | Literal["auto"] | None = "auto"
    tile_overlap: int = 32
    ensemble: int = 1
    temporal: Literal["none", "blend"] = "none"
    temporal_strength: float = 0.5

    def __post_init__(self) -> None:
        from ..backends import BACKEND_NAMES
        from ..ensemble import check_ensemble_size
        from ..temporal.blend import TEMPORAL_MODES

        check_ensemble_size(self.ensemble, param="--ensemble")
        if self.backend not in BACKEND_NAMES:
            raise ValueError(f"--backend must be one of {', '.join(BACKEND_NAMES)}, got {self.backend!r}")
        if self.temporal not in TEMPORAL_MODES:
            raise ValueError(f"--temporal must be one of {', '.join(TEMPORAL_MODES)}, got {self.temporal!r}")
        if not 0.0 <= self.temporal_strength <= 1.0:
            raise ValueError(f"--temporal-strength must be in 0..1, got {self.temporal_strength}")
        if self.tile != "auto" and self.tile is not None and (not isinstance(self.tile, int) or self.tile < 8):
            raise ValueError(f"--tile must be auto, none or at least 8 pixels, got {self.tile!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class FaultSpec:
    """A fault a worker injects into itself while running one chunk.

    Attributes:
        input_name: Output file name of the input (``a.mkv``) the fault applies to.
        chunk: Chunk index.
        after_frames: Fire after this many frames of the chunk were encoded (0: before the first).
        action: ``"exit"`` kills the worker process (as an OOM kill or a lost node would); ``"raise"`` raises.
        marker: A path; the fault fires only for the worker that creates this file first (once in all, across
            processes and retries). ``None`` fires on every attempt.
    """

    input_name: str
    chunk: int
    after_frames: int = 1
    action: FaultAction = "exit"
    marker: str | None = None

    def __post_init__(self) -> None:
        if self.action not in get_args(FaultAction):
            raise ValueError(f"fault action must be one of {get_args(FaultAction)}, got {self.action!r}")


@dataclass(frozen=True, kw_only=True)
class ModelPayload:
    """A generator as data: family, preset, config and float32 weights as NumPy arrays.

    NumPy arrays travel through Ray's object store without a copy (actors map them read-only), unlike a pickled
    ``nn.Module``, which every task would unpickle on its own.
    """

    family: str
    preset: str | None
    config: dict[str, Any]
    weights: dict[str, np.ndarray] = field(repr=False)

    @classmethod
    def from_model(cls, model: Generator) -> ModelPayload:
        weights = {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
        return cls(family=model.family, preset=getattr(model, "preset", None), config=model.config_dict(),
                   weights=weights)

    def build(self) -> Generator:
        """The generator, in eval mode, with these weights."""
        family = get_family(self.family)
        model = family.build(family.config_from_dict(self.config))
        # The arrays may be read-only views of the object store: copy once into the module's own parameters.
        state = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in self.weights.items()}
        model.load_state_dict(state, strict=True)
        model.preset = self.preset
        return model.eval()

    def fingerprint(self) -> str:
        """sha256 of the config and weights: chunks made by another model are never reused on resume."""
        h = hashlib.sha256(json.dumps({"family": self.family, "config": self.config}, sort_keys=True,
                                      default=str).encode())
        for key in sorted(self.weights):
            h.update(key.encode())
            h.update(np.ascontiguousarray(self.weights[key]).tobytes())
        return h.hexdigest()


def settings_digest(*parts: object) -> str:
    """A stable digest of frozen configs (dataclasses, mappings, scalars) for the resume manifest."""

    def plain(value: object) -> object:
        if hasattr(value, "__dataclass_fields__"):
            # Not dataclasses.asdict: it deep-copies, and EncodeConfig.options is a (non-copyable) mappingproxy.
            return {f.name: plain(getattr(value, f.name)) for f in fields(value)}  # type: ignore[arg-type]
        if isinstance(value, dict) or hasattr(value, "items"):
            return {str(k): plain(v) for k, v in value.items()}  # type: ignore[union-attr]
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)

    text = json.dumps([plain(p) for p in parts], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()
