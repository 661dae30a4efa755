"""The chunk store in ``OUTDIR/.rt-anime-batch/<output name>/``: finished chunk files and their manifest.

``manifest.jsonl`` is append-only JSON lines: a header (input identity, settings digest, chunk boundaries), then one
line per finished chunk, appended (and fsynced) only after the chunk's file was written and renamed into place.
A crash or Ctrl-C therefore loses at most the chunks that were running; ``--resume`` reads the manifest back and
keeps every chunk whose line and file agree, and starts over when the input or any setting that shapes the output
changed. A torn last line (a crash mid-append) is ignored.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._fileio import write_atomic
from .chunk import CHUNK_SUFFIX, ChunkResult
from .join import ChunkFile
from .plan import InputPlan

__all__ = ["WORK_DIR", "ChunkStore", "ChunkRecord", "manifest_header"]

logger = logging.getLogger(__name__)

WORK_DIR = ".rt-anime-batch"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkRecord:
    """A finished chunk as the manifest records it."""

    index: int
    file: str
    size: int
    pts: tuple[int, ...]
    reorder: int
    decode_errors: int = 0
    warmup_frames: int = 0
    seconds: float = 0.0
    worker: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"chunk": self.index, "file": self.file, "size": self.size, "pts": list(self.pts),
                "reorder": self.reorder, "decode_errors": self.decode_errors, "warmup_frames": self.warmup_frames,
                "seconds": round(self.seconds, 4), "worker": self.worker}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChunkRecord:
        return cls(index=int(data["chunk"]), file=str(data["file"]), size=int(data["size"]),
                   pts=tuple(int(p) for p in data["pts"]), reorder=int(data["reorder"]),
                   decode_errors=int(data.get("decode_errors", 0)), warmup_frames=int(data.get("warmup_frames", 0)),
                   seconds=float(data.get("seconds", 0.0)), worker=str(data.get("worker", "")))


def manifest_header(plan: InputPlan, settings: str) -> dict[str, Any]:
    """What must not change for finished chunks to be reused: the input file, the settings, the cut points."""
    stat = plan.input_path.stat()
    return {"format": "rt-anime-batch", "version": FORMAT_VERSION, "input": str(plan.input_path.resolve()),
            "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "settings": settings,
            "chunks": [[c.start_pts, c.end_pts, c.warmup_pts] for c in plan.chunks]}


class ChunkStore:
    """Finished chunks of one input.

    Args:
        outdir: The batch's output directory.
        name: The input's output file name (one store per output).
        header: :func:`manifest_header` of this run.
        resume: Keep the chunks a previous run with the same header finished; otherwise start empty.
    """

    def __init__(self, outdir: Path, name: str, *, header: dict[str, Any], resume: bool) -> None:
        self.root = outdir / WORK_DIR
        self.dir = self.root / name
        self.manifest = self.dir / "manifest.jsonl"
        self.header = header
        self.records: dict[int, ChunkRecord] = {}
        if resume and self.manifest.is_file():
            self._load()
        if not self.records:
            self._reset()

    def _load(self) -> None:
        lines = self.manifest.read_text(errors="replace").splitlines()
        try:
            header = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError:
            header = None
        if header != self.header:
            logger.warning("%s: the input or the settings changed since the interrupted run; its chunks are not "
                           "reused", self.dir.name)
            return
        for line in lines[1:]:
            try:
                record = ChunkRecord.from_json(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a line torn by a crash mid-append
            path = self.dir / record.file
            if path.is_file() and path.stat().st_size == record.size:
                self.records[record.index] = record

    def _reset(self) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        write_atomic(self.manifest, lambda tmp: Path(tmp).write_text(json.dumps(self.header) + "\n"))

    def add(self, result: ChunkResult) -> ChunkRecord:
        """Store a finished chunk: its file first (atomically), then its manifest line."""
        name = f"chunk-{result.index:05d}{CHUNK_SUFFIX}"
        write_atomic(self.dir / name, lambda tmp: Path(tmp).write_bytes(result.data))
        record = ChunkRecord(index=result.index, file=name, size=len(result.data), pts=result.pts,
                             reorder=result.reorder, decode_errors=result.decode_errors,
                             warmup_frames=result.warmup_frames, seconds=result.seconds, worker=result.worker)
        with open(self.manifest, "a", encoding="utf-8") as f:
            f.write(json.dumps(record.to_json()) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records[record.index] = record
        return record

    def files(self) -> list[ChunkFile]:
        return [ChunkFile(index=r.index, path=self.dir / r.file, pts=r.pts, reorder=r.reorder)
                for _, r in sorted(self.records.items())]

    def remove(self) -> None:
        """Delete this input's chunks (its output is complete), and the work directory once it is empty."""
        shutil.rmtree(self.dir, ignore_errors=True)
        try:
            self.root.rmdir()
        except OSError:
            pass  # other inputs still have chunks there
