"""Registry-wide generator behaviour, and the NijiGAN architecture facts."""

import pytest
import torch

import realtime
from conftest import TINY
from realtime.models.nijigan import SKIP_SITES, ODEBlock


def test_registry_lists_every_family():
    assert set(realtime.list_generators()) >= {"nijigan", "nijigan-lite", "cut-resnet", "animeganv2"}
    assert set(TINY) == set(realtime.list_generators()), "add a tiny config for the new generator to conftest.TINY"


@pytest.mark.parametrize("name, expected", [("nijigan", 5_477_379), ("cut-resnet", 11_378_179),
                                            ("animeganv2", 2_143_552)])
def test_parameter_counts(name, expected):
    g = realtime.create_generator(name)
    assert sum(p.numel() for p in g.parameters()) == expected


def test_nijigan_is_cut_with_four_ode_blocks():
    g = realtime.create_generator("nijigan")
    blocks = [i for i, layer in enumerate(g.model) if isinstance(layer, ODEBlock)]
    assert blocks == [12, 13, 14, 15]
    assert g.size_multiple == 4
    keys = set(g.state_dict())
    assert "model.12.odefunc.conv_block.1.weight" in keys and "model.15.odefunc.conv_block.5.bias" in keys
    assert not any(k.endswith("filt") for k in keys), "blur kernels are constants, not checkpoint content"


def test_euler1_nijigan_equals_cut_resnet_with_same_weights():
    niji = realtime.create_generator("nijigan", ngf=4, solver="euler:1").eval()
    cut = realtime.create_generator("cut-resnet", ngf=4, n_blocks=4).eval()
    cut.load_state_dict({k.replace(".odefunc", ""): v for k, v in niji.state_dict().items()})
    x = torch.rand(1, 3, 24, 20) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(niji(x), cut(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", sorted(TINY))
def test_forward_shape_range_and_gradients(name):
    g = realtime.create_generator(name, **TINY[name])
    m = g.size_multiple
    x = torch.rand(2, 3, 6 * m if m > 1 else 21, 5 * m if m > 1 else 19) * 2 - 1
    y = g(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all() and y.abs().max() <= 1
    y.square().mean().backward()
    for n, p in g.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient for {n}"


@pytest.mark.parametrize("name", sorted(TINY))
def test_features_and_image_from_one_pass(name):
    g = realtime.create_generator(name, **TINY[name]).eval()
    x = torch.rand(1, 3, 32, 24) * 2 - 1
    layers = (0, 4, 8, 12, 14) if hasattr(g, "model") else (0, 1, 2, 4)
    with torch.no_grad():
        out = g.forward_features(x, layers)
        plain = g(x)
    torch.testing.assert_close(out.image, plain)
    assert len(out.features) == len(layers)
    assert out.bottleneck is not None and out.bottleneck.shape[-1] < x.shape[-1]
    with torch.no_grad():
        enc = g.forward_features(x, layers[:2], encode_only=True)
    assert enc.image is None and len(enc.features) == 2
    torch.testing.assert_close(enc.features[1], out.features[1])


def test_nijigan_bottleneck_is_the_ode_output():
    g = realtime.create_generator("nijigan", ngf=4, solver="euler:1").eval()
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        out = g.forward_features(x, (15,))
    assert g.bottleneck_index == 15
    torch.testing.assert_close(out.bottleneck, out.features[0])
    assert out.bottleneck.shape == (1, 16, 4, 4)


def test_bad_inputs_are_named():
    g = realtime.create_generator("nijigan", ngf=4, solver="euler:1")
    with pytest.raises(ValueError, match="multiples of 4"):
        g.check_input(torch.zeros(1, 3, 10, 12))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        g.check_input(torch.zeros(1, 12, 12, 3))
    with pytest.raises(ValueError, match="layer ids 0..26"):
        g.forward_features(torch.zeros(1, 3, 8, 8), (27,))
    with pytest.raises(ValueError, match="unknown generator 'nijigun'"):
        realtime.create_generator("nijigun")
    with pytest.raises(ValueError, match="`ngf` must be an integer"):
        realtime.create_generator("nijigan", ngf=0)
    with pytest.raises(ValueError, match="not known to family 'nijigan'"):
        realtime.create_generator("nijigan", n_blocks=3)


def test_solver_swaps_without_touching_weights():
    g = realtime.create_generator("nijigan", ngf=4, solver="euler:1").eval()
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        a = g(x)
        g.solver = "rk4:2"
        b = g(x)
    assert g.nfe == 4 * 8
    assert (a - b).abs().max() > 1e-3, "a different solver must integrate differently"
    g.solver = "dopri5"
    assert g.nfe is None and not g.is_static()


def _affine_colour_shift(x: torch.Tensor) -> torch.Tensor:
    """An exposure gain and a per-channel colour offset: what an InstanceNorm after the stem conv cannot see."""
    return 0.6 * x + torch.tensor([0.25, -0.1, 0.05]).view(1, 3, 1, 1)


def test_paper_nijigan_cannot_see_exposure_or_colour_cast():
    # The fact behind `input_skip`: every conv feeds an InstanceNorm, so the output ignores a * x + c.
    g = realtime.create_generator("nijigan", ngf=4, solver="euler:1").eval()
    x = torch.rand(1, 3, 32, 24) * 1.2 - 0.6
    with torch.no_grad():
        torch.testing.assert_close(g(_affine_colour_shift(x)), g(x), atol=2e-3, rtol=0)


def test_input_skip_passes_colour_through_with_the_same_parameters_and_keys():
    plain = realtime.create_generator("nijigan", solver="euler:1")
    skip = realtime.create_generator("nijigan", solver="euler:1", input_skip=True).eval()
    assert sum(p.numel() for p in skip.parameters()) == 5_477_379
    assert set(skip.state_dict()) == set(plain.state_dict())
    head = [m for m in skip.model if isinstance(m, torch.nn.Conv2d)][-1]
    x = torch.rand(1, 3, 32, 24) * 1.2 - 0.6
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        torch.testing.assert_close(skip(x), x)  # a zero head is the identity
        head.bias.copy_(torch.tensor([0.5, 0.0, -0.5]))
        y = skip(x)
        assert y.max() <= 1 and y.min() >= -1
        torch.testing.assert_close(y, (x + head.bias.view(1, 3, 1, 1)).clamp(-1, 1))
        assert (skip(_affine_colour_shift(x)) - y).abs().mean() > 0.05
        torch.testing.assert_close(skip.forward_features(x, [4]).image, y)


@pytest.mark.parametrize("antialias, site", [(True, "post_relu"), (False, "post_relu"), (True, "pre_relu"),
                                             (False, "pre_relu")])
def test_unet_skips_add_encoder_activations_to_the_decoder(antialias, site):
    plain = realtime.create_generator("nijigan-lite", ngf=4, solver="euler:1", input_skip=True, antialias=antialias,
                                      antialias_up=antialias).eval()
    linked = realtime.create_generator("nijigan-lite", ngf=4, solver="euler:1", input_skip=True, unet_skips=True,
                                       unet_skip_at=site, antialias=antialias, antialias_up=antialias).eval()
    assert set(linked.state_dict()) == set(plain.state_dict())
    assert sum(p.numel() for p in linked.parameters()) == sum(p.numel() for p in plain.parameters())
    linked.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 32, 24) * 2 - 1
    # An independent reference: run the plain network's layers and add, after each decoder ReLU (pre_relu: just
    # before it), the last encoder activation (ReLU, or blur-pool) of the same shape.
    acts, y = [], x
    layers = list(plain.model)
    with torch.no_grad():
        for i, layer in enumerate(layers):
            y = plain._run(layer, y)
            joins = layers[i + 1] if site == "pre_relu" and i + 1 < len(layers) else layer
            if i > plain.bottleneck_index and isinstance(joins, torch.nn.ReLU):
                y = y + [a for j, a in acts if a.shape == y.shape][-1]
            if i < plain.bottleneck_index - plain.config.n_ode_blocks:
                acts.append((i, y))
        expect = (x + y).clamp(-1, 1)
        torch.testing.assert_close(linked(x), expect)
        torch.testing.assert_close(linked.forward_features(x, [3]).image, expect)
        assert (linked(x) - plain(x)).abs().max() > 1e-3
    assert len(linked.skips) == 2


@pytest.mark.parametrize("site", ["post_relu", "pre_relu"])
def test_unet_skips_survive_save_load_and_export(tmp_path, site):
    from export.unroll import unroll

    g = realtime.create_generator("nijigan-lite", ngf=4, solver="euler:1", input_skip=True, unet_skips=True,
                                  unet_skip_at=site).eval()
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    loaded = realtime.load_generator(realtime.save_generator(g, tmp_path / "linked")).eval()
    assert loaded.config.unet_skips is True and loaded.config.unet_skip_at == site and loaded.skips == g.skips
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), g(x))
        traced = torch.jit.trace(unroll(g), x)
        torch.testing.assert_close(traced(x + 0.1), g(x + 0.1))


def test_pre_relu_skips_let_the_decoder_gate_fine_features():
    # Post-ReLU, the full-resolution skip reaches the output through the head's linear conv alone: its effect does
    # not depend on what the decoder computed. Pre-ReLU, a decoder activation that is negative enough switches it off.
    post, pre = (realtime.create_generator("nijigan-lite", ngf=4, solver="euler:1", input_skip=True, norm="none",
                                           unet_skips=True, unet_skip_at=site).eval() for site in SKIP_SITES)
    pre.load_state_dict(post.state_dict())
    last_relu = max(post.skips)  # the full-resolution one
    assert isinstance(post.model[last_relu], torch.nn.ReLU) and pre.skips == {i - 1: j for i, j in post.skips.items()}
    x = torch.rand(1, 3, 16, 16) - 0.5  # away from the output clamp
    with torch.no_grad():
        for g in (pre, post):  # the last upsampling conv, before its norm and ReLU: its output is now very negative
            g.model[last_relu - 2].bias.fill_(-1e4)
        shift = torch.zeros_like(x)
        shift[..., 4:12, 4:12] = 0.3  # changes the encoder's full-resolution activations
        # Gated off: the head sees zeros either way; post-ReLU the encoder's change still passes.
        torch.testing.assert_close(pre(x + shift) - (x + shift), pre(x) - x)
        assert ((post(x + shift) - (x + shift)) - (post(x) - x)).abs().max() > 1e-3


def test_unet_skip_at_is_validated():
    with pytest.raises(ValueError, match=r"`unet_skip_at` must be one of post_relu, pre_relu, got 'middle'"):
        realtime.create_generator("nijigan-lite", ngf=4, unet_skips=True, unet_skip_at="middle")
    with pytest.raises(ValueError, match=r"`unet_skip_at='pre_relu'` .* needs `unet_skips=True`"):
        realtime.create_generator("nijigan-lite", ngf=4, unet_skip_at="pre_relu")


def test_norm_none_keeps_keys_and_lets_the_head_scale_with_contrast(tmp_path):
    # With InstanceNorm the head's output ignores the input's contrast; without it (and without biases) the network
    # is positively homogeneous, so an edit such as "remove this texture" can scale with the texture.
    inorm = realtime.create_generator("nijigan-lite", ngf=4, solver="euler:1", input_skip=True)
    plain = realtime.create_generator("nijigan-lite", ngf=4, solver="euler:1", input_skip=True, norm="none",
                                      unet_skips=True).eval()
    assert set(plain.state_dict()) == set(inorm.state_dict())
    assert not any(isinstance(m, torch.nn.InstanceNorm2d) for m in plain.modules())
    with torch.no_grad():
        for name, p in plain.named_parameters():
            if name.endswith("bias"):
                p.zero_()
        x = (torch.rand(1, 3, 32, 24) * 2 - 1) * 0.2
        head = plain(x) - x
        assert head.abs().max() > 1e-4
        torch.testing.assert_close(plain(0.5 * x) - 0.5 * x, 0.5 * head, atol=1e-5, rtol=1e-4)
    loaded = realtime.load_generator(realtime.save_generator(plain, tmp_path / "plain")).eval()
    assert loaded.config.norm == "none"
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), plain(x))
    with pytest.raises(ValueError, match="`norm` must be one of instance, none, got 'batch'"):
        realtime.create_generator("nijigan-lite", ngf=4, norm="batch")


def test_input_skip_survives_save_load_and_unroll(tmp_path):
    from export.unroll import unroll

    g = realtime.create_generator("nijigan-lite", ngf=4, solver="euler:1", input_skip=True).eval()
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    loaded = realtime.load_generator(realtime.save_generator(g, tmp_path / "skip")).eval()
    assert loaded.config.input_skip is True
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), g(x))
        traced = torch.jit.trace(unroll(g), x)
        torch.testing.assert_close(traced(x + 0.1), g(x + 0.1))
