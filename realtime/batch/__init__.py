"""Scale-out batch mode (``rt-anime batch``): many videos, and long videos in keyframe chunks, on Ray.

Typical use::

    from realtime.batch import BatchConfig, run_batch

    summary = run_batch(["a.mkv", "b.mkv"], "out/", model, batch=BatchConfig(ray="local", chunk_seconds=10))
    print(summary.to_dict())

Layout: :mod:`.plan` (inputs, outputs, keyframe cut points), :mod:`.chunk` (one chunk through file mode's
stages), :mod:`.join` (remux of the chunks with the source's pts, audio and subtitles), :mod:`.manifest`
(finished chunks for ``--resume``), :mod:`.cluster` (Ray, the actor pool), :mod:`.runner` (the driver loop).
Ray is needed by :func:`run_batch` only, and imported lazily.
"""

from .chunk import ChunkResult, ChunkTask, run_chunk
from .config import BatchConfig, FaultSpec, ModelPayload, TranslateSpec
from .join import ChunkFile, JoinResult, join_chunks
from .manifest import WORK_DIR, ChunkStore
from .plan import Chunk, InputPlan, expand_inputs, output_paths, plan_input
from .runner import BatchSummary, InputSummary, run_batch

__all__ = [
    "run_batch",
    "BatchConfig",
    "TranslateSpec",
    "FaultSpec",
    "ModelPayload",
    "BatchSummary",
    "InputSummary",
    "Chunk",
    "InputPlan",
    "expand_inputs",
    "output_paths",
    "plan_input",
    "ChunkTask",
    "ChunkResult",
    "run_chunk",
    "ChunkFile",
    "JoinResult",
    "join_chunks",
    "ChunkStore",
    "WORK_DIR",
]
