"""Official-layout checkpoints load through ``realtime.load_generator`` and reproduce the official forward.

Fixtures were made by running the official CUT / Scenimefy / animegan2-pytorch code (see fixtures/README.md).
"""

from pathlib import Path

import pytest
import torch

import realtime
from _reference import official_state_dict

FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("*.pt"))


def _load_fixture(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_official_checkpoint_reproduces_official_output(path, tmp_path):
    fx = _load_fixture(path)
    ckpt = tmp_path / "official.pth"
    torch.save(official_state_dict(fx), ckpt)
    overrides = {}
    if fx["family"] == "animeganv2":
        overrides["align_corners"] = fx["forward_kwargs"].get("align_corners", True)
    g = realtime.load_generator(ckpt, **overrides)
    assert g.family == fx["family"]
    if fx["family"] == "cut-resnet":
        c = fx["ctor"]
        assert (g.config.ngf, g.config.n_blocks) == (c["ngf"], c["n_blocks"])
        assert (g.config.antialias, g.config.antialias_up) == (not c["no_antialias"], not c["no_antialias_up"])
    with torch.no_grad():
        y = g(fx["input"])
    assert (y - fx["output"]).abs().max().item() <= 1e-4


def test_scenimefy_nce_features_match():
    fx = _load_fixture(Path(__file__).parent / "fixtures" / "scenimefy_shinkai.pt")
    g = realtime.create_generator("cut-resnet")
    g.load_state_dict({k: v for k, v in official_state_dict(fx).items() if not k.endswith("filt")})
    with torch.no_grad():
        out = g.forward_features(fx["input"], fx["feature_kwargs"]["layers"], encode_only=True)
    for feat, ref, step, means in zip(out.features, fx["features"], fx["feature_channel_step"],
                                      fx["feature_channel_means"]):
        assert (feat[:, ::step] - ref).abs().max() <= 1e-4
        assert (feat.mean(dim=(2, 3)) - means).abs().max() <= 1e-4


def test_module_prefix_and_container_are_unwrapped(tmp_path):
    fx = _load_fixture(Path(__file__).parent / "fixtures" / "cut_ngf8_b2_noaa_up.pt")
    sd = {f"module.{k}": v for k, v in official_state_dict(fx).items()}
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "wrapped.pth")
    g = realtime.load_generator(tmp_path / "wrapped.pth")
    with torch.no_grad():
        assert (g(fx["input"]) - fx["output"]).abs().max() <= 1e-4
