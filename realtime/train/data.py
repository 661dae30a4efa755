"""Training data: photo folders, the held-out split, cached teacher pseudo-pairs and deterministic batches.

* Photos are found recursively (png, jpg, jpeg, webp, bmp) and resized once so their short side is
  ``data.work_side``; the resized copies are cached as PNG under ``<cache>/work-<side>/``.
* The teacher (algorithmic, or a generator checkpoint such as an imported Scenimefy) runs **once per photo** at that
  working resolution (and at each of ``data.pair_sides``, as further pairs); its output is cached under
  ``<cache>/pairs/<teacher hash>-<side>/``. Cache keys are the
  photo's content digest, so a moved folder reuses its pairs and an edited photo gets new ones; a small index maps
  (path, size, mtime) to the digest so unchanged files are not re-read on the next run.
* Photo and target of a pair are cropped at the same position (they are pixel-aligned by construction) and, with
  ``data.pair_augment = "dihedral"``, turned by the same flip / quarter-turn. ``data.flip`` is for unpaired crops.
  With ``data.pair_jitter`` > 0 a pair is sometimes made afresh: the teacher renders a camera-jittered copy of the
  photo (:func:`camera_jitter`), so the model also learns the teacher on webcam- and video-grade input.
* Without an anime folder, the unpaired anime images Y are teacher outputs of *other* photos than the unpaired
  photos drawn in the same batch.
* Every batch is a pure function of (seed, iteration): data order comes from per-epoch permutations seeded with
  (seed, stream, epoch), crops and flips from (seed, iteration). Resuming needs no data-loader state.
* The held-out split is by content digest (:func:`holdout_split`); held-out photos are never trained on, in either
  branch; they are evaluated and shown in sample grids.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np
import torch

from .._fileio import write_atomic
from ..errors import RtAnimeError
from ..images import INPUT_IMAGE_SUFFIXES, image_to_tensor, pad_to_multiple, read_image, tensor_to_image, write_image
from .config import TEACHER_ALGORITHMIC, DataSection

logger = logging.getLogger(__name__)

_STREAM_X, _STREAM_P, _STREAM_Y, _STREAM_WARMUP = 1, 2, 3, 4
_ALT_STREAMS = (5, 6, 7)  # X, Y, P on `data.alt_crop` iterations
_INDEX_NAME = "digests.json"


def list_images(folders: Sequence[str | Path], *, key: str = "data.photos") -> list[Path]:
    """Image files under ``folders`` (recursive), sorted by path, each once.

    Raises:
        RtAnimeError: A folder does not exist or holds no images; the message names the config ``key``.
    """
    found: set[Path] = set()
    for folder in folders:
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise RtAnimeError(f"`{key}`: folder {root} does not exist")
        images = [p for p in root.rglob("*") if p.suffix.lower() in INPUT_IMAGE_SUFFIXES and p.is_file()]
        if not images:
            raise RtAnimeError(f"`{key}`: no images ({', '.join(INPUT_IMAGE_SUFFIXES)}) under {root}")
        found.update(p.resolve() for p in images)
    return sorted(found, key=str)


def content_digest(path: Path) -> str:
    """sha1 of the file's bytes (identity of a photo for the split and the caches)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha1").hexdigest()


def holdout_split(digests: Sequence[str], fraction: float) -> list[bool]:
    """Which items are held out: those whose digest maps below ``fraction`` in [0, 1).

    Deterministic per file content: adding or removing other photos never moves a photo across the split.
    """
    return [int(d[:12], 16) / float(1 << 48) < fraction for d in digests]


def resize_short_side(rgb: np.ndarray, side: int) -> np.ndarray:
    """Resize so the short side is ``side`` (area filter down, cubic up), keeping the aspect ratio."""
    h, w = rgb.shape[:2]
    scale = side / min(h, w)
    size = (max(side, round(w * scale)), max(side, round(h * scale)))
    if size == (w, h):
        return rgb
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(rgb, size, interpolation=interp)


# --- teachers ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Teacher:
    """A photo → pseudo-target function and the hash of what it is (part of the cache key)."""

    name: str
    fingerprint: str
    render: Callable[[np.ndarray], np.ndarray]


def make_teacher(data: DataSection, *, device: torch.device | str = "cpu") -> Teacher:
    """The teacher named by ``data.teacher``: the algorithmic one, or a generator checkpoint / bundled name."""
    if data.teacher == TEACHER_ALGORITHMIC:
        from ..teacher import TeacherConfig, anime_teacher

        config = TeacherConfig(**data.teacher_options)
        desc = json.dumps({f.name: getattr(config, f.name) for f in fields(config)}, sort_keys=True)
        return Teacher(name=TEACHER_ALGORITHMIC, fingerprint=f"algorithmic:{desc}",
                       render=lambda rgb: anime_teacher(rgb, config))
    from ..checkpoint import load_generator, sha256_file

    model = load_generator(data.teacher).to(device)
    path = Path(data.teacher).expanduser()
    identity = sha256_file(path) if path.is_file() else data.teacher
    solver = getattr(model, "solver", None)
    fingerprint = f"model:{identity}:{getattr(solver, 'spec', '')}"

    @torch.no_grad()
    def render(rgb: np.ndarray) -> np.ndarray:
        x, size = pad_to_multiple(image_to_tensor(rgb).to(device), model.size_multiple)
        return tensor_to_image(model(x)[..., :size[0], :size[1]])

    return Teacher(name=data.teacher, fingerprint=fingerprint, render=render)


def camera_jitter(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``rgb`` (uint8 HxWx3) as a different camera might have taken it: exposure, gamma, white balance,
    contrast and saturation, then (each with its own chance) lens blur, sensor noise and JPEG compression, in the
    order a camera applies them. Ranges stay within what webcams and phone video produce, so the structure (and the
    teacher's line art) is kept."""
    x = rgb.astype(np.float32) / 255.0
    x = x ** rng.uniform(0.8, 1.25)
    x = x * (2.0 ** rng.uniform(-0.4, 0.4)) * np.array([rng.uniform(0.92, 1.08), 1.0, rng.uniform(0.92, 1.08)],
                                                      dtype=np.float32)
    mean = float(x.mean())
    x = (x - mean) * rng.uniform(0.8, 1.2) + mean
    luma = (x @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    x = np.clip(luma + (x - luma) * rng.uniform(0.7, 1.3), 0.0, 1.0)
    if rng.random() < 0.3:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.4, 1.0))
    if rng.random() < 0.5:
        x = x + rng.normal(0.0, rng.uniform(1.0, 4.0) / 255.0, x.shape).astype(np.float32)
    out = (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if rng.random() < 0.5:
        ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 91))])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(out)


# --- the on-disk cache ---------------------------------------------------------------------------------------------

class PairCache:
    """Resized photos and teacher outputs on disk, keyed by content digest.

    Args:
        root: Cache folder.
        work_side: Short side of the cached photos.
        teacher: The teacher, or ``None`` when only resized photos are needed.
    """

    def __init__(self, root: Path, work_side: int, teacher: Teacher | None) -> None:
        self.root = root
        self.work_side = work_side
        self.teacher = teacher
        self.photo_dir = root / f"work-{work_side}"
        tag = hashlib.sha1(teacher.fingerprint.encode()).hexdigest()[:16] if teacher else "none"
        self.target_dir = root / "pairs" / f"{tag}-{work_side}"
        self._index_path = root / _INDEX_NAME
        self._index: dict[str, str] = {}
        self._index_dirty = False
        self.made = {"photos": 0, "targets": 0}
        try:
            self._index = json.loads(self._index_path.read_text())
        except (OSError, ValueError):
            self._index = {}

    def digest(self, path: Path) -> str:
        st = path.stat()
        key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
        if key not in self._index:
            self._index[key] = content_digest(path)
            self._index_dirty = True
        return self._index[key]

    def save_index(self) -> None:
        if self._index_dirty:
            self.root.mkdir(parents=True, exist_ok=True)
            text = json.dumps(self._index, sort_keys=True)
            write_atomic(self._index_path, lambda tmp: Path(tmp).write_text(text))
            self._index_dirty = False

    def photo(self, path: Path, digest: str) -> Path:
        """The resized photo's cache file, made if missing."""
        out = self.photo_dir / f"{digest}.png"
        if not out.exists():
            self.photo_dir.mkdir(parents=True, exist_ok=True)
            rgb = resize_short_side(read_image(path), self.work_side)
            write_atomic(out, lambda tmp: write_image(tmp, rgb))
            self.made["photos"] += 1
        return out

    def target(self, photo: Path, digest: str) -> Path:
        """The teacher output for a cached (resized) photo, made if missing."""
        if self.teacher is None:
            raise RuntimeError("PairCache.target needs a teacher")
        out = self.target_dir / f"{digest}.png"
        if not out.exists():
            self.target_dir.mkdir(parents=True, exist_ok=True)
            rgb = read_image(photo)
            target = self.teacher.render(rgb)
            if target.shape != rgb.shape or target.dtype != np.uint8:
                raise RtAnimeError(f"teacher {self.teacher.name} returned {target.dtype} {target.shape} for a "
                                   f"{rgb.shape} photo; it must keep the size (pixel-aligned pairs)")
            write_atomic(out, lambda tmp: write_image(tmp, target))
            self.made["targets"] += 1
        return out


@dataclass(frozen=True)
class Item:
    """One photo: its source path, content digest, cached resized photo and (for pairs) cached target."""

    source: Path
    digest: str
    photo: Path
    target: Path | None = None


_FRAME_NAME = re.compile(r"^(?P<clip>.+)_f\d+$")


def balanced_draws(paths: Sequence[Path]) -> list[int]:
    """Indices of ``paths`` repeated so each clip's frames together are drawn ~√n times as often as one photo.

    Frames are files named ``<clip>_f<digits>`` in one folder; everything else is a photo (a group of one). With
    ``m`` the largest clip, a photo appears ``round(√m)`` times and a frame of an ``n``-frame clip
    ``max(1, round(√m / √n))`` times; an epoch of the draw list still shows every image at least once.
    """
    groups: dict[tuple[Path, str], list[int]] = {}
    for i, p in enumerate(paths):
        match = _FRAME_NAME.match(Path(p).stem)
        key = (Path(p).parent, match["clip"]) if match else (Path(p), "")
        groups.setdefault(key, []).append(i)
    scale = math.sqrt(max((len(g) for g in groups.values()), default=1))
    draws: list[int] = []
    for members in groups.values():
        draws += [i for i in members for _ in range(max(1, round(scale / math.sqrt(len(members)))))]
    return sorted(draws)


@dataclass(frozen=True)
class Batch:
    """One iteration's tensors, RGB NCHW in [-1, 1]: unpaired photos / anime, paired photos / pseudo-targets."""

    real_a: torch.Tensor
    real_b: torch.Tensor
    real_a_p: torch.Tensor
    real_b_p: torch.Tensor


def _progress(what: str, items: Iterable, total: int, work: Callable) -> list:
    out, start, last = [], time.monotonic(), time.monotonic()
    for i, item in enumerate(items, 1):
        out.append(work(item))
        now = time.monotonic()
        if now - last > 10 or (i == total and now - start > 10):
            logger.info("%s: %d of %d ready (%.2f s each)", what, i, total, (now - start) / i)
            last = now
    return out


class TrainData:
    """The data of one run: lists, split, caches and the deterministic batch sampler.

    Args:
        config: The ``[data]`` section.
        seed: Run seed.
        device: Where the teacher model runs (a generator teacher) and batches go.
    """

    def __init__(self, config: DataSection, *, seed: int, device: torch.device | str = "cpu") -> None:
        if not config.photos:
            raise RtAnimeError("`data.photos` is empty: pass --photos DIR (a folder of real photos)")
        self.config = config
        self.seed = seed
        self.device = torch.device(device)
        self.teacher = make_teacher(config, device=self.device)
        self.cache = PairCache(config.pair_cache(), config.work_side, self.teacher)
        # Further scales share the digest index; each caches its own resized photos and teacher renders.
        extra_caches = [PairCache(config.pair_cache(), side, self.teacher) for side in config.pair_sides]
        photos = list_images(config.photos, key="data.photos")
        pair_photos = list_images(config.pairs, key="data.pairs") if config.pairs else photos
        anime = list_images(config.anime, key="data.anime") if config.anime else []

        held_folder = list_images(config.heldout, key="data.heldout") if config.heldout else []
        everything = sorted(set(photos) | set(pair_photos) | set(held_folder), key=str)
        digests = {p: self.cache.digest(p) for p in everything}
        held_digests = {d for d, held in zip(digests.values(), holdout_split(list(digests.values()),
                                                                              config.holdout)) if held}
        held_digests |= {digests[p] for p in held_folder}

        def unique(paths: list[Path], held: bool) -> list[Path]:
            # The same image twice (copies) would be one photo: keep its first path.
            seen, out = set(), []
            for p in paths:
                d = digests[p]
                if (d in held_digests) == held and d not in seen:
                    seen.add(d)
                    out.append(p)
            return out

        x_paths, p_paths = unique(photos, False), unique(pair_photos, False)
        held_paths = unique(held_folder + [p for p in everything if p not in set(held_folder)], True)
        if not x_paths or not p_paths:
            raise RtAnimeError(f"no training photos left after holding out {config.holdout:.0%} by content hash "
                               f"({len(held_paths)} held out of {len(digests)}); lower `data.holdout`")

        def photo_item(p: Path, digest: str | None = None, cache: PairCache | None = None) -> Item | None:
            digest = digest or digests[p]
            try:
                return Item(p, digest, (cache or self.cache).photo(p, digest))
            except RtAnimeError as exc:  # one corrupt file must not stop a run over thousands
                logger.warning("skipping %s: %s", p, exc)
                return None

        def pair_item(p: Path, cache: PairCache | None = None) -> Item | None:
            cache = cache or self.cache
            item = photo_item(p, cache=cache)
            return item and Item(p, item.digest, item.photo, cache.target(item.photo, item.digest))

        base_pairs = [i for i in _progress("pseudo-pairs", p_paths, len(p_paths), pair_item) if i]
        self.pairs = list(base_pairs)
        pair_sides = [config.work_side] * len(base_pairs)  # every cached image's short side is its cache's side
        for extra in extra_caches:
            self.pairs += [i for i in _progress(f"pseudo-pairs at {extra.work_side} px", p_paths, len(p_paths),
                                                lambda p, c=extra: pair_item(p, c)) if i]
            pair_sides += [extra.work_side] * (len(self.pairs) - len(pair_sides))
        self.heldout = [i for i in _progress("held-out pairs", held_paths, len(held_paths), pair_item) if i]
        by_path = {item.source: item for item in base_pairs}
        self.photos = [i for i in (by_path.get(p) or photo_item(p) for p in x_paths) if i]
        self.anime = [i for i in (photo_item(p, self.cache.digest(p)) for p in anime) if i]
        self.cache.save_index()
        if not self.photos or not self.pairs:
            raise RtAnimeError("no readable training photos (see the warnings above)")
        logger.info("data: %d photos, %d pseudo-pairs (%d made now by the %s teacher), %d held out, %d anime "
                    "images; cache %s", len(self.photos), len(self.pairs),
                    sum(c.made["targets"] for c in (self.cache, *extra_caches)),
                    self.teacher.name, len(self.heldout), len(self.anime), self.cache.root)
        if not self.heldout:
            logger.warning("no photo is held out (%d photos, holdout %.2f): evaluation uses training pairs",
                           len(digests), config.holdout)
        if not self.anime and len(self.pairs) < 2:
            logger.warning("only one pseudo-pair: the unpaired anime image Y is the teacher output of the same photo")
        self._perms: dict[tuple[int, int], np.ndarray] = {}
        balance = config.balance == "clips"

        def draws(items: list[Item], among: Sequence[int]) -> list[int]:
            """Indices into ``items`` of one epoch of draws from those at ``among``."""
            return [among[k] for k in balanced_draws([items[i].source for i in among])] if balance else list(among)

        self._photo_draws = draws(self.photos, range(len(self.photos)))
        self._pair_draws = draws(self.pairs, range(len(self.pairs)))
        # alt_crop iterations draw from the pairs large enough for it, as streams of their own: each stream is then
        # a run of consecutive draws, every item seen once per epoch, and runs without alt_crop keep their batches.
        self._alt_pairs = [k for k, side in enumerate(pair_sides) if side >= config.alt_crop] if config.alt_crop else []
        self._alt_pair_draws = draws(self.pairs, self._alt_pairs)

    # --- sampling --------------------------------------------------------------------------------------------------

    def _index(self, stream: int, n: int, k: int) -> int:
        """Item of draw ``k`` of a stream: epoch-wise permutations, so every item is seen once per epoch."""
        epoch, pos = divmod(k, n)
        key = (stream, epoch)
        if key not in self._perms:
            if len(self._perms) > 16:
                self._perms.clear()
            self._perms[key] = np.random.default_rng([self.seed, stream, epoch]).permutation(n)
        return int(self._perms[key][pos])

    def _draw(self, stream: int, draws: list[int], k: int) -> int:
        return draws[self._index(stream, len(draws), k)]

    def _crop(self, images: Sequence[np.ndarray], rng: np.random.Generator, flip: bool, c: int) -> list[np.ndarray]:
        h, w = images[0].shape[:2]
        top, left = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
        mirror = flip and bool(rng.random() < 0.5)
        out = []
        for image in images:
            patch = image[top:top + c, left:left + c]
            out.append(patch[:, ::-1] if mirror else patch)
        return out

    def _pair_crop(self, item: Item, rng: np.random.Generator, c: int) -> list[np.ndarray]:
        assert item.target is not None
        photo, target = read_image(item.photo), read_image(item.target)
        top, left = int(rng.integers(0, photo.shape[0] - c + 1)), int(rng.integers(0, photo.shape[1] - c + 1))
        # Each option draws after the ones older than it, so runs without it keep their batches.
        turns, mirror = divmod(int(rng.integers(0, 8)), 2) if self.config.pair_augment == "dihedral" else (0, 0)
        if self.config.pair_jitter and rng.random() < self.config.pair_jitter:
            # The whole photo is jittered and rendered, not the crop: the teacher's filters see past the crop.
            photo = camera_jitter(photo, rng)
            target = self.teacher.render(photo)
        pair = [image[top:top + c, left:left + c] for image in (photo, target)]
        return [np.rot90(p[:, ::-1] if mirror else p, turns) for p in pair]

    def _tensor(self, images: list[np.ndarray]) -> torch.Tensor:
        return torch.cat([image_to_tensor(np.ascontiguousarray(im)) for im in images]).to(self.device)

    def crop_at(self, iteration: int) -> tuple[int, int]:
        """(crop side, batch size) of 0-based ``iteration``: ``data.alt_crop`` on odd ones when set."""
        c = self.config
        if c.alt_crop and iteration % 2:
            return c.alt_crop, c.alt_batch_size or c.batch_size
        return c.crop, c.batch_size

    def batch(self, iteration: int) -> Batch:
        """The batch of 0-based ``iteration`` (a pure function of seed and iteration)."""
        crop, b = self.crop_at(iteration)
        alt = crop != self.config.crop
        # With alt_crop, each crop size has its own streams, and iteration // 2 of that size have come before.
        first = (iteration // 2 if self.config.alt_crop else iteration) * b
        stream_x, stream_y, stream_p = (_STREAM_X, _STREAM_Y, _STREAM_P) if not alt else _ALT_STREAMS
        ys_from = self._alt_pairs if alt else range(len(self.pairs))
        pair_draws = self._alt_pair_draws if alt else self._pair_draws
        rng = np.random.default_rng([self.seed, 0, iteration])
        flip = self.config.flip
        xs, ys, xps, yps = [], [], [], []
        for j in range(b):
            k = first + j
            x_item = self.photos[self._draw(stream_x, self._photo_draws, k)]
            xs += self._crop([read_image(x_item.photo)], rng, flip, crop)
            if self.anime:
                y_file = self.anime[self._index(stream_y, len(self.anime), k)].photo
            else:
                i = self._index(stream_y, len(ys_from), k)
                if self.pairs[ys_from[i]].digest == x_item.digest and len(ys_from) > 1:
                    i = (i + 1) % len(ys_from)  # Y must be the teacher output of another photo
                y_file = self.pairs[ys_from[i]].target
            ys += self._crop([read_image(y_file)], rng, flip, crop)
            p_item = self.pairs[self._draw(stream_p, pair_draws, k)]
            xp, yp = self._pair_crop(p_item, rng, crop)
            xps.append(xp)
            yps.append(yp)
        return Batch(self._tensor(xs), self._tensor(ys), self._tensor(xps), self._tensor(yps))

    def pair_batch(self, iteration: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``size`` (photo, pseudo-target) crops of warm-up ``iteration`` (a pure function of seed and iteration;
        a stream of its own, so a warm-up leaves the main run's batches as they were)."""
        rng = np.random.default_rng([self.seed, _STREAM_WARMUP, iteration])
        xps, yps = [], []
        for j in range(size):
            item = self.pairs[self._draw(_STREAM_WARMUP, self._pair_draws, iteration * size + j)]
            xp, yp = self._pair_crop(item, rng, self.config.crop)
            xps.append(xp)
            yps.append(yp)
        return self._tensor(xps), self._tensor(yps)

    def showcase(self, count: int, *, heldout_first: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
        """Up to ``count`` whole (photo, target) pairs for sample grids and evaluation: held-out ones, else
        training pairs."""
        items = (self.heldout or self.pairs) if heldout_first else self.pairs
        return [(read_image(it.photo), read_image(it.target)) for it in items[:count]]

    def summary(self) -> dict:
        """JSON-able description of the data (provenance of the trained weights)."""
        c = self.config
        return {"photos": list(c.photos), "heldout": list(c.heldout), "pairs": list(c.pairs) or "same as photos",
                "anime": list(c.anime) or "teacher outputs of other photos", "teacher": self.teacher.name,
                "work_side": c.work_side, "pair_sides": list(c.pair_sides), "pair_augment": c.pair_augment,
                "pair_jitter": c.pair_jitter,
                "crop": c.crop, "batch_size": c.batch_size, "alt_crop": c.alt_crop,
                "alt_batch_size": c.alt_batch_size or (c.batch_size if c.alt_crop else 0), "holdout": c.holdout,
                "n_train_photos": len(self.photos), "n_train_pairs": len(self.pairs), "n_anime": len(self.anime),
                "n_heldout": len(self.heldout), "cache": str(self.cache.root)}


__all__ = ["Batch", "Item", "PairCache", "Teacher", "TrainData", "balanced_draws", "camera_jitter", "content_digest",
           "holdout_split", "list_images", "make_teacher", "resize_short_side"]
