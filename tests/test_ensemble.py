"""Self-ensembles (realtime/ensemble.py): the dihedral group, the averaged map's symmetry, and the CLI flags."""

import json

import cv2
import numpy as np
import pytest
import torch

from realtime import create_generator
from realtime.checkpoint import save_generator
from realtime.cli import main
from realtime.ensemble import (ENSEMBLE_ELEMENTS, EnsembleTranslate, SelfEnsemble, check_ensemble_size, dihedral,
                               self_ensemble, undo_dihedral)


def _lopsided(x):
    """A map equivariant to no flip or turn, and chiral: a difference along a knight's move (its four turns are
    not mirror images of each other) plus a vertical ramp."""
    ramp = torch.linspace(0, 1, x.shape[-2]).view(-1, 1)
    return x - torch.roll(x, (1, 2), (-2, -1)) + ramp


def test_the_eight_elements_are_distinct_and_undo_inverts_each():
    x = torch.rand(2, 3, 6, 10)
    seen = []
    for k in range(8):
        y = dihedral(x, k)
        assert y.shape[-2:] == ((6, 10) if k % 2 == 0 else (10, 6))
        torch.testing.assert_close(undo_dihedral(y, k), x, rtol=0, atol=0)
        assert not any(y.shape == s.shape and torch.equal(y, s) for s in seen)
        seen.append(y)
    # k = 4 is the plain left-right flip, k = 2 the half turn.
    torch.testing.assert_close(dihedral(x, 4), x.flip(-1), rtol=0, atol=0)
    torch.testing.assert_close(dihedral(x, 2), x.flip(-1).flip(-2), rtol=0, atol=0)


@pytest.mark.parametrize("n, symmetries", [(8, range(8)), (4, (1, 2, 3)), (2, (2,))])
def test_ensemble_commutes_with_its_own_elements(n, symmetries):
    x = torch.rand(1, 3, 8, 12)
    out = self_ensemble(_lopsided, x, n)
    for k in symmetries:
        torch.testing.assert_close(self_ensemble(_lopsided, dihedral(x, k), n), dihedral(out, k), rtol=0, atol=1e-6)
    if n < 8:  # a subset does not symmetrise what it leaves out: the flip, for the rotations
        assert not torch.allclose(self_ensemble(_lopsided, dihedral(x, 4), n), dihedral(out, 4), atol=1e-3)


def test_ensemble_is_the_mean_of_the_undone_outputs_and_leaves_equivariant_maps_alone():
    x = torch.rand(1, 3, 8, 12)
    expected = sum(undo_dihedral(_lopsided(dihedral(x, k)), k) for k in ENSEMBLE_ELEMENTS[4]) / 4
    torch.testing.assert_close(self_ensemble(_lopsided, x, 4), expected, rtol=0, atol=1e-6)
    assert not torch.allclose(self_ensemble(_lopsided, x, 4), _lopsided(x), atol=1e-3)
    torch.testing.assert_close(self_ensemble(torch.tanh, x, 8), torch.tanh(x), rtol=0, atol=1e-6)
    calls = []
    assert self_ensemble(lambda t: calls.append(t) or t, x, 1) is x and len(calls) == 1


@pytest.mark.parametrize("bad", [0, 3, 16, True, "8", 2.0])
def test_bad_sizes_are_refused_by_name(bad):
    with pytest.raises(ValueError, match=r"ensemble must be one of 1, 2, 4, 8 .*got"):
        check_ensemble_size(bad)


def test_wrappers_keep_the_models_contract_on_non_square_frames():
    g = create_generator("nijigan-lite", ngf=4).eval()
    wrapped = SelfEnsemble(g, 8)
    assert wrapped.size_multiple == g.size_multiple and "n=8" in repr(wrapped)
    x = torch.rand(1, 3, 16, 24) * 2 - 1
    with torch.no_grad():
        y = wrapped(x)
        turned = [undo_dihedral(g(dihedral(x, k)), k) for k in range(8)]
    assert y.shape == x.shape
    torch.testing.assert_close(y, torch.stack(turned).mean(0), rtol=0, atol=1e-5)
    translate = EnsembleTranslate(lambda t: g(t).detach(), 2)
    assert translate.name == "model+ensemble2" and translate.device == torch.device("cpu")
    # A backend returns inference-mode tensors; the ensemble of one must work when called outside that mode.
    from realtime.backends import make_backend

    backend = EnsembleTranslate(make_backend(g), 4)
    assert backend.name == "torch+ensemble4"
    torch.testing.assert_close(backend(x), SelfEnsemble(g, 4)(x).detach(), rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ens")
    torch.manual_seed(0)
    checkpoint = save_generator(create_generator("nijigan-lite", ngf=4), folder / "tiny.safetensors")
    rng = np.random.default_rng(0)
    photos = folder / "photos"
    photos.mkdir()
    for i in range(2):
        img = cv2.GaussianBlur(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8), (5, 5), 0)
        cv2.imwrite(str(photos / f"p{i}.png"), img)
    return checkpoint, photos


def test_cli_image_with_ensemble_is_the_wrapped_models_output(tiny, tmp_path):
    from realtime import load_generator
    from realtime.images import image_to_tensor, read_image, tensor_to_image

    checkpoint, photos = tiny
    photo = photos / "p0.png"
    one, eight = tmp_path / "one.png", tmp_path / "eight.png"
    assert main([str(photo), str(one), "--model", str(checkpoint)]) == 0
    assert main([str(photo), str(eight), "--model", str(checkpoint), "--ensemble", "8"]) == 0
    with torch.no_grad():
        expected = tensor_to_image(SelfEnsemble(load_generator(str(checkpoint)), 8)(image_to_tensor(read_image(photo))))
    got = read_image(eight)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert np.abs(got.astype(int) - read_image(one).astype(int)).max() > 1


def test_cli_evaluate_records_the_ensemble_and_scores_it(tiny, tmp_path, capsys):
    checkpoint, photos = tiny
    scores = {}
    for n in (1, 4):
        path = tmp_path / f"e{n}.json"
        assert main(["evaluate", "--model", str(checkpoint), str(photos), "--no-fid", "--ensemble", str(n),
                     "--json", str(path)]) == 0
        record = json.loads(path.read_text())
        assert record["ensemble"] == n
        scores[n] = record["mean"]["psnr"]
    assert "(self-ensemble of 4)" in capsys.readouterr().out
    assert scores[1] != scores[4]


def test_cli_refuses_an_ensemble_size_it_does_not_offer(tiny, tmp_path, capsys):
    checkpoint, photos = tiny
    with pytest.raises(SystemExit) as exc:
        main([str(photos / "p0.png"), str(tmp_path / "x.png"), "--model", str(checkpoint), "--ensemble", "3"])
    assert exc.value.code == 2 and "--ensemble" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("backend", ["torch", "torchscript"])
def test_cli_video_with_ensemble_keeps_every_frame_and_timestamp(backend, tmp_path, capsys):
    from fractions import Fraction

    from media import ClipSpec, make_clip, video_times

    # Non-square, so a graph backend meets the quarter-turned shape too.
    clip = make_clip(tmp_path / "in.mp4", ClipSpec(width=64, height=48, frames=6, pts=[0, 1, 3, 4, 7, 9],
                                                   time_base=Fraction(1, 25)))
    out = tmp_path / "out.mp4"
    assert main([str(clip), str(out), "--model", "nijigan-lite", "--random-weights", "--preset", "ultrafast",
                 "--backend", backend, "--ensemble", "4"]) == 0
    assert video_times(out) == video_times(clip)
    assert f"on {backend}+ensemble4/cpu" in capsys.readouterr().out
