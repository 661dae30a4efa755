"""Bundling trained weights into the package index (realtime.train.bundle)."""

import json

import pytest
import torch

import realtime
from realtime.checkpoint import load_weights_index, save_generator
from realtime.errors import RtAnimeError
from realtime.train.bundle import bundle_weights, main


@pytest.fixture()
def trained(tmp_path):
    torch.manual_seed(0)
    g = realtime.create_generator("nijigan-lite", ngf=8).eval()
    (tmp_path / "run").mkdir()
    save_generator(g, tmp_path / "run" / "final", extra={"training": {"recipe": "unit", "iterations": 7}})
    return g, tmp_path / "run" / "final.safetensors"


def test_bundle_indexes_loads_by_name_and_switches_the_default(trained, tmp_path):
    g, final = trained
    weights = tmp_path / "weights"
    rec = bundle_weights(final, "bundletest.a", license="CC0-1.0", origin="unit test", weights_dir=weights)
    assert (weights / rec["file"]).exists() and rec["default"]
    config = json.loads((weights / "bundletest_a.json").read_text())
    assert config["training"]["iterations"] == 7 and config["bundle"]["license"] == "CC0-1.0"
    assert config["dtype"] == "float16"
    load_weights_index(weights)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        want = g.half().float()(x)  # fp16 storage: the bundled net is the fp16-rounded one
        got = realtime.load_generator("bundletest")(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)

    bundle_weights(final, "bundletest.b", license="CC0-1.0", origin="unit test", weights_dir=weights)
    index = {r["name"]: r for r in json.loads((weights / "index.json").read_text())}
    assert set(index) == {"bundletest.a", "bundletest.b"}
    assert index["bundletest.b"]["default"] and not index["bundletest.a"]["default"]
    # Re-bundling a name replaces its record instead of adding a second one.
    bundle_weights(final, "bundletest.b", license="MIT", origin="again", weights_dir=weights)
    index = json.loads((weights / "index.json").read_text())
    assert [r["name"] for r in index] == ["bundletest.a", "bundletest.b"] and index[1]["license"] == "MIT"


@pytest.mark.parametrize("name", ["", "Niji", "a.b.c", "../x", ".hidden"])
def test_bad_names_are_refused(trained, tmp_path, name):
    with pytest.raises(RtAnimeError, match="bundle name"):
        bundle_weights(trained[1], name, license="x", origin="y", weights_dir=tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_cli_reports_a_missing_source_in_one_line(tmp_path, capsys):
    code = main([str(tmp_path / "nope.safetensors"), "bundletest", "--license", "x", "--origin", "y",
                 "--weights-dir", str(tmp_path / "w")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "nope" in err
    assert not (tmp_path / "w" / "index.json").exists()


def test_default_model_is_bundled_and_random_weights_gives_its_architecture():
    import argparse

    from realtime.checkpoint import pretrained_preset, resolve_pretrained
    from realtime.commands import DEFAULT_MODEL, model_from_args

    assert resolve_pretrained(DEFAULT_MODEL) is not None, "the package must ship its default model"
    trained = model_from_args(argparse.Namespace(model=DEFAULT_MODEL, random_weights=False, solver=None))
    fresh = model_from_args(argparse.Namespace(model=DEFAULT_MODEL, random_weights=True, solver=None))
    assert pretrained_preset(DEFAULT_MODEL) == "nijigan-lite" and type(fresh) is type(trained)
    assert fresh.config == trained.config
    assert any(not torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), trained.state_dict().values()))
    with pytest.raises(Exception, match="not a bundled model"):
        pretrained_preset("nijigan-lite")


@pytest.mark.parametrize("name, preset, params",
                         [("niji", "nijigan", 5_477_379), ("niji-lite", "nijigan-lite", 1_374_723)])
def test_shipped_models_load_by_name_and_stylise(name, preset, params):
    # The shipped weights must load through the public name (sha256 checked on load) as the network their JSON
    # records, and must change a photo: a swapped or truncated file, or an identity-like network, fails here.
    import realtime
    from realtime.checkpoint import pretrained_preset, resolve_pretrained

    assert resolve_pretrained(name) is not None, f"{name} must be bundled"
    assert pretrained_preset(name) == preset
    model = realtime.load_generator(name)
    assert sum(p.numel() for p in model.parameters()) == params
    assert model.config.unet_skip_at == "pre_relu"
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 64, 64, generator=gen) * 2 - 1
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert (y - x).abs().mean() > 0.02


def test_average_with_bundles_the_weighted_mean_and_records_both(trained, tmp_path):
    g, final = trained
    torch.manual_seed(1)
    other = realtime.create_generator("nijigan-lite", ngf=8).eval()
    save_generator(other, tmp_path / "run" / "other", extra={"training": {"recipe": "other", "iterations": 3}})
    weights = tmp_path / "weights"
    bundle_weights(final, "bundletest.avg", license="CC0-1.0", origin="mean", weights_dir=weights,
                   average_with=tmp_path / "run" / "other.safetensors", average_weight=0.25)
    config = json.loads((weights / "bundletest_avg.json").read_text())
    assert config["bundle"]["averaged"]["weight"] == 0.25
    assert config["bundle"]["averaged"]["training"]["recipe"] == "other" and config["training"]["recipe"] == "unit"
    a, b = g.state_dict(), other.state_dict()  # fp32 sources: averaged in fp32, rounded once to fp16
    got = realtime.load_generator(weights / "bundletest_avg.safetensors").state_dict()
    for k in a:
        torch.testing.assert_close(got[k].float(), (0.25 * a[k] + 0.75 * b[k]).half().float(), atol=0, rtol=0)
    assert not torch.equal(got[k].float(), a[k].half().float())


def test_average_with_refuses_another_size_and_a_bad_weight(trained, tmp_path):
    _, final = trained
    wide = realtime.create_generator("nijigan-lite", ngf=16)
    save_generator(wide, tmp_path / "run" / "wide")
    with pytest.raises(RtAnimeError, match="not the same architecture and size"):
        bundle_weights(final, "bundletest", license="x", origin="y", weights_dir=tmp_path / "w",
                       average_with=tmp_path / "run" / "wide.safetensors")
    with pytest.raises(RtAnimeError, match=r"average weight must be in \(0, 1\).*got 1.5"):
        bundle_weights(final, "bundletest", license="x", origin="y", weights_dir=tmp_path / "w",
                       average_with=final, average_weight=1.5)
    assert not (tmp_path / "w").exists()
