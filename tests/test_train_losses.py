"""Training losses, projector, critics and schedules of the Scenimefy / NijiGAN recipe (realtime.train)."""

import math

import pytest
import torch
import torch.nn.functional as F

import realtime
from realtime.train.losses import (ContrastiveConfig, GANLoss, HDCELoss, PatchNCELoss, SRCHDCELoss, SRCLoss,
                                   StylePatchNCE, StylePatchNCEConfig, edge_l1_loss, edge_map, gram_matrix,
                                   hdce_weights, js_divergence, l1_loss, tv_loss)
from realtime.train.networks import NLayerDiscriminator, PatchSampleF, init_weights, output_size
from realtime.train.schedules import (ScheduleConfig, hdce_gamma, hdce_gamma_at_iteration, lambda_sup,
                                      lambda_sup_at_iteration, lambda_sup_official, linear_lr_factor,
                                      linear_lr_scheduler)

T = 0.07


def unit(*shape, dtype=torch.float64):
    return F.normalize(torch.randn(*shape, dtype=dtype), dim=-1)


# --- manual references (loops, float64) -----------------------------------------------------------------------------

def manual_nce(q, k, weight=None):
    """Per-row InfoNCE CE of [q_i·k_i, w_ij q_i·k_j (j≠i), -10 (j=i)] / T for one image."""
    n = q.shape[0]
    out = []
    for i in range(n):
        logits = [q[i] @ k[i]]
        for j in range(n):
            s = -10.0 if i == j else (q[i] @ k[j]) * (1.0 if weight is None else weight[i, j])
            logits.append(torch.as_tensor(s, dtype=q.dtype))
        logits = torch.stack(logits) / T
        out.append(torch.logsumexp(logits, 0) - logits[0])
    return torch.stack(out)


def manual_dce_surrogate(q, k, weight=None):
    """mean_i logsumexp_{j≠i}((w_ij q_i·k_j − q_i·k_i)/τ), the decoupled form with the diagonal truly excluded."""
    n = q.shape[0]
    vs = []
    for i in range(n):
        terms = [((q[i] @ k[j]) * (1.0 if weight is None else weight[i, j]) - q[i] @ k[i]) / T
                 for j in range(n) if j != i]
        vs.append(torch.logsumexp(torch.stack(terms), 0))
    return torch.stack(vs).mean()


# --- GAN ------------------------------------------------------------------------------------------------------------

def test_lsgan_values_against_hand_computation():
    gan = GANLoss("lsgan")
    pred = torch.tensor([[[[0.0, 2.0]]]])
    assert gan(pred, True).item() == pytest.approx(1.0)    # mean((0-1)², (2-1)²)
    assert gan(pred, False).item() == pytest.approx(2.0)   # mean(0², 2²)
    fake, real = torch.full((2, 1, 3, 3), 0.5), torch.full((2, 1, 3, 3), 0.75)
    assert gan.discriminator_loss(fake, real).item() == pytest.approx(0.5 * (0.25 + 0.0625))
    with pytest.raises(ValueError, match="`mode`"):
        GANLoss("wgan")


# --- PatchNCE -------------------------------------------------------------------------------------------------------

def test_patchnce_equals_manual_cross_entropy():
    q, k = unit(5, 8), unit(5, 8)
    loss = PatchNCELoss(T)(q, k, reduction="none")
    torch.testing.assert_close(loss[0], manual_nce(q, k))
    assert PatchNCELoss(T)(q, k).item() == pytest.approx(manual_nce(q, k).mean().item())


def test_patchnce_batch_equals_per_sample_and_keys_get_no_gradient():
    q, k = unit(3, 6, 8).requires_grad_(), unit(3, 6, 8).requires_grad_()
    nce = PatchNCELoss(T)
    batched = nce(q, k)
    per_sample = torch.stack([nce(q[b], k[b]) for b in range(3)]).mean()
    torch.testing.assert_close(batched, per_sample)
    batched.backward()
    assert q.grad is not None and k.grad is None


# --- SRC / JSD / weights --------------------------------------------------------------------------------------------

def test_jsd_hand_value_symmetry_and_zero():
    p = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    q = torch.tensor([[0.9, 0.1]], dtype=torch.float64)
    m = (p + q) / 2
    expected = 0.5 * ((p * (p / m).log()).sum() + (q * (q / m).log()).sum())
    torch.testing.assert_close(js_divergence(p, q)[0], expected)
    torch.testing.assert_close(js_divergence(p, q), js_divergence(q, p))
    assert js_divergence(p, p).item() == 0.0
    assert js_divergence(p, q).item() > 0


def test_src_zero_for_equal_features_positive_otherwise_and_symmetric():
    src = SRCLoss()
    a, b = unit(1, 16, 8), unit(1, 16, 8)
    assert src(a, a.clone(), gamma=10.0).loss.abs().item() < 1e-12
    ab, ba = src(a, b, gamma=10.0).loss, src(b, a, gamma=10.0).loss
    assert ab.item() > 0
    torch.testing.assert_close(ab, ba)


def test_src_is_summed_over_the_matrix_as_the_reference():
    q, k = unit(1, 7, 4), unit(1, 7, 4)
    p_q = torch.softmax(q[0] @ q[0].T, dim=0)
    p_k = torch.softmax(k[0] @ k[0].T, dim=0)
    m = (p_q + p_k) / 2
    expected = 0.5 * ((p_q * (p_q / m).log()).sum() + (p_k * (p_k / m).log()).sum())
    torch.testing.assert_close(SRCLoss()(q, k, gamma=1.0).loss, expected)


def test_src_batch_equals_per_sample_mean_and_only_weight_path():
    q, k = unit(2, 9, 8), unit(2, 9, 8)
    src = SRCLoss()
    out = src(q, k, gamma=20.0)
    per = [src(q[b], k[b], gamma=20.0) for b in range(2)]
    torch.testing.assert_close(out.loss, (per[0].loss + per[1].loss) / 2)
    torch.testing.assert_close(out.weight, torch.cat([p.weight for p in per]))
    only = src(q, k, gamma=20.0, only_weight=True)
    assert only.loss.item() == 0.0
    torch.testing.assert_close(only.weight, out.weight)


def test_hdce_weights_shape_rowmax_diagonal_and_reference_formula():
    k = unit(2, 6, 8).requires_grad_()
    gamma = 5.0
    w = hdce_weights(k, gamma)
    assert w.shape == (2, 6, 6) and not w.requires_grad
    s = k.detach() @ k.detach().transpose(1, 2)
    masked = s.masked_fill(torch.eye(6, dtype=torch.bool), -10.0)
    # The reference: softmax over j of masked/γ, divided by its row max.
    soft = torch.softmax(masked / gamma, dim=2)
    torch.testing.assert_close(w, soft / soft.amax(dim=2, keepdim=True))
    torch.testing.assert_close(w.amax(dim=2), torch.ones(2, 6, dtype=w.dtype))
    row_max = masked.amax(dim=2)
    torch.testing.assert_close(w.diagonal(dim1=1, dim2=2), torch.exp((-10.0 - row_max) / gamma))
    with pytest.raises(ValueError, match="`gamma`"):
        hdce_weights(k, 0.0)


# --- hDCE -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("weighted", [False, True])
def test_hdce_value_is_infonce_and_gradient_is_decoupled_logsumexp(weighted):
    torch.manual_seed(1)
    q0, k = unit(6, 8), unit(6, 8)
    weight = hdce_weights(k[None], 2.0)[0] if weighted else None
    q = q0.clone().requires_grad_()
    loss = HDCELoss(T)(q, k, weight)
    # Value: the InfoNCE CE of the (weighted) logits, what the reference logs.
    torch.testing.assert_close(loss.detach(), manual_nce(q0, k, weight).mean())
    if not weighted:
        torch.testing.assert_close(loss.detach(), PatchNCELoss(T)(q0, k))
    loss.backward()
    # Gradient: that of mean_i logsumexp_{j≠i}, which is not the CE's gradient.
    q_ref = q0.clone().requires_grad_()
    manual_dce_surrogate(q_ref, k, weight).backward()
    torch.testing.assert_close(q.grad, q_ref.grad)
    q_ce = q0.clone().requires_grad_()
    manual_nce(q_ce, k, weight).mean().backward()
    assert not torch.allclose(q.grad, q_ce.grad)


def test_hdce_with_all_ones_weights_equals_plain_dce():
    q0, k = unit(2, 5, 8), unit(2, 5, 8)
    grads = []
    for weight in (None, torch.ones(2, 5, 5, dtype=q0.dtype)):
        q = q0.clone().requires_grad_()
        loss = HDCELoss(T)(q, k, weight)
        loss.backward()
        grads.append((loss.detach(), q.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])


def test_hdce_batch_equals_per_sample_value_and_gradient():
    q0, k = unit(3, 5, 8), unit(3, 5, 8)
    w = hdce_weights(k, 3.0)
    q = q0.clone().requires_grad_()
    HDCELoss(T)(q, k, w).backward()
    q_ref = q0.clone().requires_grad_()
    (sum(HDCELoss(T)(q_ref[b], k[b], w[b]) for b in range(3)) / 3).backward()
    torch.testing.assert_close(q.grad, q_ref.grad)
    with pytest.raises(ValueError, match="`weight`"):
        HDCELoss(T)(q0, k, torch.ones(2, 5, 5, dtype=q0.dtype))


def test_src_hdce_over_layers_applies_each_lambda_once_and_averages_layers():
    cfg = ContrastiveConfig(lambda_src=0.05, lambda_hdce=0.1)
    qs, ks = [unit(2, 6, 8), unit(2, 6, 8)], [unit(2, 6, 8), unit(2, 6, 8)]
    terms = SRCHDCELoss(cfg)(qs, ks, gamma=30.0)
    src = [SRCLoss()(q, k, gamma=30.0) for q, k in zip(qs, ks)]
    hdce = [HDCELoss(T)(q, k, s.weight) for q, k, s in zip(qs, ks, src)]
    torch.testing.assert_close(terms.src, 0.05 * (src[0].loss + src[1].loss) / 2)
    torch.testing.assert_close(terms.hdce, 0.1 * (hdce[0] + hdce[1]) / 2)
    idt = SRCHDCELoss(cfg)(qs, ks, gamma=30.0, with_src=False)
    assert idt.src.item() == 0.0
    torch.testing.assert_close(idt.hdce, terms.hdce)
    plain = SRCHDCELoss(ContrastiveConfig(hard_negatives=False))(qs, ks, gamma=30.0)
    torch.testing.assert_close(plain.hdce, 0.1 * (HDCELoss(T)(qs[0], ks[0]) + HDCELoss(T)(qs[1], ks[1])) / 2)


# --- PatchSampleF ---------------------------------------------------------------------------------------------------

def test_patch_sample_f_shared_ids_unit_norm_and_reproducible():
    feats = [torch.randn(2, 3, 8, 8), torch.randn(2, 16, 4, 4)]
    f = PatchSampleF(nc=32, generator=torch.Generator().manual_seed(3))
    out, ids = f(feats, num_patches=10)
    assert [o.shape for o in out] == [(2, 10, 32), (2, 10, 32)]
    assert ids[1].numel() == 10 and len(set(ids[0].tolist())) == 10
    for o in out:
        # ‖x‖/(‖x‖ + 1e-7): the fresh heads (xavier gain 0.02) give norms ~1e-4, so 1 is reached to ~1e-3.
        torch.testing.assert_close(o.norm(dim=-1), torch.ones(o.shape[:2]), atol=2e-3, rtol=0)
    out2, ids2 = f([x.clone() for x in feats], num_patches=10, patch_ids=ids)
    assert all(torch.equal(a, b) for a, b in zip(ids, ids2))
    assert all(torch.equal(a, b) for a, b in zip(out, out2))
    # Same seed, same ids; more patches than positions takes them all.
    g = PatchSampleF(nc=32, generator=torch.Generator().manual_seed(3))
    g.load_state_dict(f.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(g.sample_ids(feats, 10), ids))
    assert g(feats, num_patches=1000)[0][1].shape == (2, 16, 32)


def test_patch_sample_f_without_mlp_gathers_and_normalises():
    feat = torch.randn(1, 4, 3, 3)
    f = PatchSampleF(use_mlp=False)
    ids = [torch.tensor([0, 4, 8])]
    (out,), _ = f([feat], num_patches=3, patch_ids=ids)
    expected = F.normalize(feat.flatten(2)[0, :, [0, 4, 8]].T, dim=-1)
    torch.testing.assert_close(out[0], expected, atol=1e-6, rtol=0)


def test_patch_sample_f_heads_params_init_and_state_dict_round_trip():
    f = PatchSampleF()
    f.build([3, 128, 256, 256, 256])  # CUT's channels at layers 0,4,8,12,16
    assert sum(p.numel() for p in f.parameters()) == 560_384
    assert all(float(m[0].bias.detach().abs().max()) == 0.0 for m in (f.mlp_0, f.mlp_4))
    std = 0.02 * math.sqrt(2.0 / (256 + 256))  # xavier-normal, gain 0.02
    assert float(f.mlp_2[2].weight.detach().std()) == pytest.approx(std, rel=0.05)
    fresh = PatchSampleF()
    fresh.load_state_dict(f.state_dict())  # heads are built from the checkpoint's shapes
    assert fresh.in_channels == f.in_channels
    with pytest.raises(ValueError, match="built for layer channels"):
        f.initialize([torch.zeros(1, 5, 2, 2)])


def test_init_weights_kinds_and_errors():
    lin = torch.nn.Linear(400, 300)
    init_weights(lin, "normal", 0.02)
    assert float(lin.weight.detach().std()) == pytest.approx(0.02, rel=0.03)
    assert float(lin.bias.detach().abs().max()) == 0.0
    with pytest.raises(ValueError, match="`kind`"):
        init_weights(lin, "uniform")


# --- discriminators -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("input_nc, params", [(3, 2_764_737), (6, 2_767_809)])
def test_discriminator_parameter_counts(input_nc, params):
    with torch.device("meta"):
        d = NLayerDiscriminator(input_nc)
        assert d(torch.empty(1, input_nc, 256, 256)).shape == (1, 1, 30, 30)
    assert sum(p.numel() for p in d.parameters()) == params
    assert not any(k.endswith("filt") for k in d.state_dict())


def test_discriminator_output_map_at_256():
    d = NLayerDiscriminator(6, ndf=4)
    assert d(torch.randn(2, 6, 256, 256)).shape == (2, 1, 30, 30)
    assert output_size(256) == 30
    assert NLayerDiscriminator(3, ndf=4, antialias=False)(torch.randn(1, 3, 256, 256)).shape[-1] == \
        output_size(256, antialias=False) == 30
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        NLayerDiscriminator(3, ndf=4)(torch.randn(1, 6, 32, 32))


# --- StylePatchNCE --------------------------------------------------------------------------------------------------

def test_style_patchnce_applies_weight_once_and_trains_only_the_query_path():
    g = realtime.create_generator("cut-resnet", ngf=4, n_blocks=2)
    layers = (0, 4, 8, 12)
    fake = torch.rand(2, 3, 16, 16) * 2 - 1
    target = (torch.rand(2, 3, 16, 16) * 2 - 1).requires_grad_()
    f1 = PatchSampleF(nc=16, generator=torch.Generator().manual_seed(0))
    f2 = PatchSampleF(nc=16, generator=torch.Generator().manual_seed(0))
    loss = StylePatchNCE(StylePatchNCEConfig(layers=layers, num_patches=32, weight=0.05), sampler=f1)(g, fake, target)
    f2.load_state_dict(f1.state_dict())
    unweighted = StylePatchNCE(StylePatchNCEConfig(layers=layers, num_patches=32, weight=1.0), sampler=f2)(
        g, fake, target)
    torch.testing.assert_close(loss, 0.05 * unweighted)
    # Manual: queries = features of the fake, keys = of the target, one sampler, shared ids, mean over layers.
    feats_q = g.forward_features(fake, layers, encode_only=True).features
    feats_k = g.forward_features(target, layers, encode_only=True).features
    f3 = PatchSampleF(nc=16, generator=torch.Generator().manual_seed(0))
    f3.load_state_dict(f1.state_dict())
    pk, ids = f3(feats_k, 32)
    pq, _ = f3(feats_q, 32, ids)
    manual = sum(PatchNCELoss(T)(a, b) for a, b in zip(pq, pk)) / len(layers)
    torch.testing.assert_close(unweighted, manual)
    loss.backward()
    assert target.grad is None
    assert g.model[1].weight.grad is not None and f1.mlp_0[0].weight.grad is not None


# --- TV / L1 / Gram -------------------------------------------------------------------------------------------------

def test_tv_l1_and_gram_hand_values():
    x = torch.tensor([[0.0, 1.0], [3.0, 5.0]])
    assert tv_loss(x).item() == pytest.approx(1.5 + 3.5)          # |dx| = 1, 2; |dy| = 3, 4
    assert tv_loss(x, "isotropic", eps=0.0).item() == pytest.approx(math.sqrt(1 + 9))
    assert tv_loss(torch.ones(1, 3, 5, 5)).item() == 0.0
    assert l1_loss(torch.tensor([1.0, -1.0]), torch.tensor([0.0, 1.0])).item() == pytest.approx(1.5)
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (1, 2, 1, 2)
    torch.testing.assert_close(gram_matrix(f), torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4)
    with pytest.raises(ValueError, match="`kind`"):
        tv_loss(x, "l3")


def test_edge_map_marks_steps_and_thin_lines_and_nothing_on_flat_colour():
    flat = torch.full((1, 3, 8, 8), 0.3)
    assert edge_map(flat).abs().max().item() < 1e-5
    step = torch.full((1, 3, 8, 8), -0.5)
    step[..., 4:] = 0.5                                  # a luma step of 1.0 between columns 3 and 4
    e = edge_map(step)[0, 0]
    assert e.shape == (8, 8)
    # Sobel gives 4·1.0 at columns 3 and 4; the 3×3 max widens that to 2..5; 4 / (4·0.5) saturates at 1.
    assert torch.all(e[:, 2:6] == 1.0) and torch.all(e[:, :2] < 1e-5) and torch.all(e[:, 6:] < 1e-5)
    line = torch.full((1, 3, 9, 9), 0.8)
    line[..., 4] = 0.7                                   # a faint 1-px line: Sobel is 0 at its centre...
    e = edge_map(line, saturate=0.5)[0, 0]
    assert e[4, 4].item() == pytest.approx(4 * 0.1 / 2)  # ...but its neighbours' 0.4 reaches it through the max
    assert e[4, 0].item() < 1e-5
    with pytest.raises(ValueError, match="`y` must be"):
        edge_map(torch.zeros(1, 1, 4, 4))


def test_edge_l1_counts_errors_only_at_the_targets_edges():
    y = torch.full((2, 3, 8, 8), -0.5)
    y[..., 4:] = 0.5
    w = edge_map(y)                                      # columns 2..5 are 1, the rest 0
    assert edge_l1_loss(y + 0.2, y).item() == pytest.approx(0.2 * w.mean().item())
    assert edge_l1_loss(y + 0.2, y).item() == pytest.approx(0.2 * 4 / 8)
    off_edges = y.clone()
    off_edges[..., 0] += 1.0                             # an error away from the target's edges costs nothing
    assert edge_l1_loss(off_edges, y).item() < 1e-5
    x = (y + 0.1).requires_grad_(True)
    target = y.clone().requires_grad_(True)
    edge_l1_loss(x, target).backward()
    assert x.grad[..., 3].abs().sum() > 0 and x.grad[..., 0].abs().sum() == 0
    # The map is a constant weight: the target's gradient is the plain weighted L1's, not through edge_map.
    torch.testing.assert_close(target.grad, -x.grad)


# --- schedules ------------------------------------------------------------------------------------------------------

def test_lambda_sup_is_the_papers_cosine_not_the_official_constant():
    n = 20
    values = [lambda_sup(e, n) for e in range(1, n + 1)]
    assert values[0] == 1.0
    assert all(a > b for a, b in zip(values, values[1:]))
    assert values[-1] == pytest.approx(math.cos(math.pi / 2 * (n - 1) / n))
    assert values[10] == pytest.approx(math.cos(math.pi / 40 * 10))  # the papers' cos(π/40 · (t − 1)) at t = 11
    assert lambda_sup(n + 1, n) == pytest.approx(0.0, abs=1e-12)
    # Bug 1: cos(π/2 · N · (t − 1)) is 1 at every integer epoch.
    assert all(lambda_sup_official(e, n) == pytest.approx(1.0) for e in range(1, n + 1))
    assert len(set(round(v, 9) for v in values)) == n
    with pytest.raises(ValueError, match="`epoch`"):
        lambda_sup(0, n)


def test_iteration_schedules_interpolate_epochs():
    assert lambda_sup_at_iteration(0, 100, 20) == 1.0
    assert lambda_sup_at_iteration(150, 100, 20) == pytest.approx(lambda_sup(2.5, 20))
    assert lambda_sup_at_iteration(150, 100, 20, smooth=False) == pytest.approx(lambda_sup(2, 20))
    assert hdce_gamma_at_iteration(100 * 20, 100, 20) == pytest.approx(hdce_gamma(21, 20))


def test_hdce_gamma_curriculum_endpoints():
    assert hdce_gamma(0, 20) == 50.0
    assert hdce_gamma(1, 20) == pytest.approx(48.0)
    assert hdce_gamma(20, 20) == pytest.approx(10.0)
    assert hdce_gamma(201, 400, step_gamma_epoch=200) == 1.0
    assert ScheduleConfig(use_curriculum=False).gamma(7) == 50.0
    assert ScheduleConfig(decay_supervised=False).lambda_sup(15) == 1.0


def test_linear_lr_decay_per_epoch_and_per_iteration():
    cfg = ScheduleConfig(n_epochs=10, n_epochs_decay=10)
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = linear_lr_scheduler(opt, cfg)
    lrs = []
    for _ in range(cfg.total_epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1.0] * 10 + [1 - k / 11 for k in range(1, 11)])
    assert linear_lr_factor(5, 10, 10) == 1.0
    opt2 = torch.optim.SGD([param], lr=1.0)
    per_iter = linear_lr_scheduler(opt2, cfg, iters_per_epoch=3)
    seen = []
    for _ in range(cfg.total_epochs * 3):
        seen.append(opt2.param_groups[0]["lr"])
        opt2.step()
        per_iter.step()
    assert seen[::3] == pytest.approx(lrs) and seen[31] == seen[30]
    with pytest.raises(ValueError, match="`n_epochs_decay`"):
        ScheduleConfig(n_epochs_decay=-1)
