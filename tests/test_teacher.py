"""The algorithmic anime teacher: determinism, geometry, the look's measurable properties, batch API and CLI."""

import re

import cv2
import numpy as np
import pytest
import torch

from realtime.cli import main
from realtime.teacher import TeacherConfig, anime_teacher, teacher_batch


def _blobs(h: int, w: int, *, noise: float, seed: int = 0, chroma: float = 1.0) -> np.ndarray:
    """Smooth colourful blobs plus Gaussian noise, uint8 RGB: a stand-in for a textured photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c, (cy, cx, col) in enumerate([(0.3, 0.3, (200, 60, 50)), (0.7, 0.6, (50, 160, 70)),
                                       (0.4, 0.8, (60, 90, 200)), (0.8, 0.2, (220, 190, 60))]):
        weight = np.exp(-(((y / h - cy) ** 2 + (x / w - cx) ** 2) / 0.04))
        img += weight[..., None] * np.array(col, np.float32)
    img = 128 + chroma * (img / max(img.max() / 200, 1) - 100)
    img += rng.normal(0, noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _patches(h: int, w: int, *, noise: float, seed: int = 0) -> np.ndarray:
    """Four flat colour quadrants and a disc, plus Gaussian noise: flat regions that texture hides."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.float32)
    img[: h // 2, : w // 2] = (200, 70, 60)
    img[: h // 2, w // 2:] = (70, 150, 80)
    img[h // 2:, : w // 2] = (70, 90, 190)
    img[h // 2:, w // 2:] = (220, 200, 90)
    y, x = np.mgrid[0:h, 0:w]
    img[(y - h / 2) ** 2 + (x - w / 2) ** 2 < (min(h, w) / 6) ** 2] = (240, 240, 235)
    img += rng.normal(0, noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _chroma(rgb: np.ndarray) -> float:
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    return float(np.hypot(lab[..., 1], lab[..., 2]).mean())


def test_deterministic_byte_identical():
    img = _blobs(96, 120, noise=10)
    first = anime_teacher(img)
    assert np.array_equal(first, anime_teacher(img.copy()))
    assert np.array_equal(first, anime_teacher(img, TeacherConfig()))


@pytest.mark.parametrize("hw", [(1, 1), (2, 3), (17, 33), (64, 1), (255, 257)])
def test_same_shape_any_size(hw):
    img = _blobs(*hw, noise=5)
    out = anime_teacher(img)
    assert out.shape == img.shape and out.dtype == np.uint8


def test_working_resolution_keeps_full_size_output():
    img = _blobs(150, 301, noise=6)
    out = anime_teacher(img, TeacherConfig(max_side=96))  # filtered at 96 px, coloured at full size
    assert out.shape == img.shape
    assert np.array_equal(out, anime_teacher(img, TeacherConfig(max_side=96)))


def test_flat_regions_and_reduced_palette():
    img = _patches(128, 128, noise=12)
    out = anime_teacher(img, TeacherConfig(lines=False))

    def colours(a):
        return len(np.unique((a // 8).reshape(-1, 3), axis=0))

    assert colours(out) < 0.25 * colours(img)
    # A flat, noisy patch becomes (nearly) uniform.
    patch = (slice(8, 40), slice(88, 120))
    assert out[patch].astype(float).std(axis=(0, 1)).max() < 0.25 * img[patch].astype(float).std(axis=(0, 1)).max()


def test_without_a_palette_the_output_is_a_local_function_of_the_photo():
    # A per-image palette is a global decision: a new colour in one corner moves the palette and recolours the far
    # side of the image. With palette_size=0 (and no sky, whose mask is also global) the far side stays the same,
    # which is what lets a convolutional student learn the teacher.
    img = _blobs(160, 160, noise=4)
    changed = img.copy()
    changed[:40, :40] = (230, 20, 200)
    far = (slice(100, None), slice(100, None))
    for config, local in ((TeacherConfig(sky=False), False), (TeacherConfig(palette_size=0, sky=False), True)):
        a, b = anime_teacher(img, config)[far].astype(int), anime_teacher(changed, config)[far].astype(int)
        assert (np.abs(a - b).max() <= 1) == local, config
    flat = anime_teacher(img, TeacherConfig(palette_size=0, lines=False))
    assert len(np.unique(flat.reshape(-1, 3), axis=0)) > 4 * 12  # colours stay continuous: more than a palette
    plain = anime_teacher(img, TeacherConfig(palette_size=0, shade_step=0.0, lines=False))
    assert not np.array_equal(flat, plain)  # the shading bands still apply without a palette


def test_lines_on_strong_edges_not_on_noise():
    rng = np.random.default_rng(1)
    edge = np.full((96, 96, 3), 200, np.uint8)
    edge[24:72, 24:72] = (40, 60, 150)
    noise = np.clip(150 + rng.normal(0, 3, (96, 96, 3)), 0, 255).astype(np.uint8)
    for img, expect in ((edge, True), (noise, False)):
        with_lines = anime_teacher(img).astype(float).sum(-1)
        without = anime_teacher(img, TeacherConfig(lines=False)).astype(float).sum(-1)
        darkening = 1 - (with_lines + 1) / (without + 1)
        if expect:
            border = np.zeros((96, 96), bool)
            border[22:74, 22:74] = True
            border[28:68, 28:68] = False
            assert darkening[border].max() > 0.3, "no line along a strong edge"
            assert darkening[~border].max() < 0.05, "line away from the edge"
        else:
            assert darkening.max() < 0.05, "lines drawn on low-amplitude noise"


def test_saturation_increases_on_dull_input():
    dull = _blobs(96, 96, noise=3, chroma=0.35)
    assert _chroma(anime_teacher(dull)) > 1.25 * _chroma(dull)
    assert _chroma(anime_teacher(dull, TeacherConfig(saturation=1.0))) < _chroma(anime_teacher(dull))


def _sky_scene(h: int = 128, w: int = 160) -> np.ndarray:
    rng = np.random.default_rng(2)
    img = np.empty((h, w, 3), np.float32)
    t = np.linspace(0, 1, h // 2, dtype=np.float32)[:, None, None]
    img[: h // 2] = (120, 160, 215) + t * (30, 25, 15)  # photographed sky: pale, slightly lighter at the horizon
    img[h // 2:] = (90, 110, 50)
    img[h // 2:] += rng.normal(0, 25, (h - h // 2, w, 3))  # textured ground
    img[: h // 2] += rng.normal(0, 1.5, (h // 2, w, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def test_sky_becomes_clean_vertical_gradient():
    img = _sky_scene()
    out = anime_teacher(img).astype(float)
    sky = out[4:56]
    # Clean: rows are uniform; gradient: deeper blue at the top, lighter towards the horizon.
    assert sky.std(axis=1).max() < 2.0
    top, low = sky[:8].mean((0, 1)), sky[-8:].mean((0, 1))
    assert top[2] > top[0] + 100, f"top of the sky is not deep blue: {top}"
    assert low.sum() > top.sum() + 100, f"sky does not lighten towards the horizon: {top} → {low}"
    rows = sky.mean(axis=(1, 2))
    assert np.all(np.diff(rows) >= -0.5)
    no_sky = anime_teacher(img, TeacherConfig(sky=False)).astype(float)[4:56]
    assert not np.allclose(no_sky, sky, atol=10)


def test_sky_not_invented():
    # Blue but textured, or at the bottom only: not sky.
    img = _sky_scene()[::-1].copy()
    out = anime_teacher(img).astype(float)
    assert out[72:124].std(axis=1).max() > 2.0 or abs(out[72:124, :, 2].mean() - 214) > 20


def test_teacher_batch_matches_per_image():
    imgs = [_blobs(40, 56, noise=8, seed=s) for s in range(2)]
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    y = teacher_batch(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    for i, img in enumerate(imgs):
        expect = torch.from_numpy(anime_teacher(img)).permute(2, 0, 1).float().div(127.5).sub(1)
        assert torch.equal(y[i], expect)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="rgb must be a uint8 array"):
        anime_teacher(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="rgb must be a uint8 array"):
        anime_teacher(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"palette_size must be 0 \(no palette\) or an int in \[2, 64\], got 1"):
        TeacherConfig(palette_size=1)
    with pytest.raises(ValueError, match="shadow_tint must be an"):
        TeacherConfig(shadow_tint=(0, 0))
    with pytest.raises(ValueError, match=r"x must be a \(N, 3, H, W\)"):
        teacher_batch(torch.zeros(3, 8, 8))
    with pytest.raises(TypeError):
        TeacherConfig(12)  # keyword-only


def _one_error(capsys, pattern):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rt-anime: error:"), err
    assert re.search(pattern, err[0]), err[0]


def test_cli_image_to_image(tmp_path, capsys):
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    img = _blobs(45, 67, noise=8)
    cv2.imwrite(str(src), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    assert main(["teach", str(src), str(dst), "--quiet"]) == 0
    out = cv2.cvtColor(cv2.imread(str(dst)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(out, anime_teacher(img))
    assert main(["teach", str(src), str(tmp_path / "flat.png"), "--palette", "4", "--no-lines", "--no-sky"]) == 0
    assert "1 frame(s)" in capsys.readouterr().out
    assert np.array_equal(cv2.cvtColor(cv2.imread(str(tmp_path / "flat.png")), cv2.COLOR_BGR2RGB),
                          anime_teacher(img, TeacherConfig(palette_size=4, lines=False, sky=False)))


def test_cli_folder_and_video(tmp_path):
    from media import ClipSpec, make_clip, video_times

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"f{i}.png"), _blobs(24, 31, noise=5, seed=i))
    assert main(["teach", str(folder), str(tmp_path / "out"), "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["f0.png", "f1.png"]
    clip = make_clip(tmp_path / "clip.mp4", ClipSpec(width=32, height=24, frames=4))
    assert main(["teach", str(clip), str(tmp_path / "out.mp4"), "--quiet", "--preset", "ultrafast"]) == 0
    assert video_times(tmp_path / "out.mp4") == video_times(clip)


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["teach", str(tmp_path / "missing.png"), str(tmp_path / "o.png")]) == 2
    _one_error(capsys, "missing.png does not exist")
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), _blobs(8, 8, noise=1))
    assert main(["teach", str(src), str(tmp_path / "o.png"), "--palette", "1"]) == 2
    _one_error(capsys, r"--palette must be 0 \(no palette\) or an int in \[2, 64\], got 1")
    assert main(["teach", str(src), str(tmp_path / "o.xyz")]) == 2
    _one_error(capsys, "unknown extension '.xyz'")
    assert main(["teach", str(src), str(tmp_path / "o.mp4")]) == 2
    _one_error(capsys, "single image")
