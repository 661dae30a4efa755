"""``TemporalBlend`` (``--temporal blend``): identity at strength 0, less flicker, no ghosting, reset on cuts, CLI."""

import cv2
import numpy as np
import pytest
import torch

from media import ClipSpec, make_clip, video_times
from realtime.cli import main
from realtime.temporal.blend import BlendConfig, TemporalBlend

H, W = 64, 96


def to_tensor(rgb01: np.ndarray) -> torch.Tensor:
    """(H, W, 3) [0, 1] → (1, 3, H, W) [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb01, dtype=np.float32) * 2 - 1).permute(2, 0, 1)[None]


def texture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = cv2.GaussianBlur(rng.random((H, W, 3)).astype(np.float32), (0, 0), 1.5)
    return (t - t.min()) / (t.max() - t.min()) * 0.6 + 0.1


def pointwise(x: torch.Tensor) -> torch.Tensor:
    """A nonlinear per-pixel 'model': any ghost of the previous frame would show as a difference from it."""
    return torch.tanh(1.5 * x) * 0.9


class NoisyModel:
    """Identity plus fresh per-frame noise: the flicker a per-frame generator adds to a still scene."""

    def __init__(self, amplitude: float = 0.1) -> None:
        self.rng = torch.Generator().manual_seed(0)
        self.amplitude = amplitude

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.amplitude * torch.randn(x.shape, generator=self.rng)).clamp(-1, 1)


def test_strength_zero_is_the_model_output():
    model = NoisyModel()
    blend = TemporalBlend(model, strength=0.0)
    reference = NoisyModel()
    for _ in range(3):
        x = to_tensor(texture(1))
        assert torch.equal(blend(x), reference(x))


def test_first_frame_is_raw_and_config_is_validated():
    x = to_tensor(texture(1))
    assert torch.equal(TemporalBlend(pointwise)(x), pointwise(x))
    for kwargs, text in [({"strength": 1.5}, "strength"), ({"sigma": 0.0}, "sigma"), ({"cut_ssim": 2.0}, "cut_ssim"),
                         ({"thumbnail_size": 4}, "thumbnail_size")]:
        with pytest.raises(ValueError, match=text):
            BlendConfig(**kwargs)
    with pytest.raises(ValueError, match="either config"):
        TemporalBlend(pointwise, strength=0.3, config=BlendConfig())


def frame_to_frame(frames: list[torch.Tensor]) -> float:
    return float(np.mean([(a - b).abs().mean().item() for a, b in zip(frames, frames[1:])]))


def test_static_scene_flicker_is_reduced():
    x = to_tensor(texture(2))
    raw_model, blend_model = NoisyModel(), NoisyModel()
    blend = TemporalBlend(blend_model, strength=0.5)
    raw = [raw_model(x) for _ in range(10)]
    blended = [blend(x) for _ in range(10)]
    # Same noise sequence in both, so the first frame matches exactly.
    assert torch.equal(raw[0], blended[0])
    assert blend.blended_frames == 9 and blend.cuts == 0
    # An EMA with weight 0.5 on i.i.d. noise leaves variance 1/3: frame differences shrink by about √3.
    assert frame_to_frame(blended[3:]) < 0.7 * frame_to_frame(raw[3:])


def test_batches_equal_single_frames():
    frames = [to_tensor(texture(2)) for _ in range(4)]
    one, batched = TemporalBlend(NoisyModel()), TemporalBlend(NoisyModel())
    singles = torch.cat([one(f) for f in frames])
    # NoisyModel draws the same numbers for one (4, …) call as for four (1, …) calls.
    together = batched(torch.cat(frames))
    assert torch.allclose(singles, together, atol=1e-6)


def moving_square(t: int, background: np.ndarray) -> tuple[np.ndarray, int]:
    frame = background.copy()
    x0 = 10 + 4 * t
    frame[24:40, x0:x0 + 16] = 1.0
    return frame, x0


@pytest.mark.parametrize("strength", [0.5, 0.9])
def test_no_ghosting_on_a_moving_object(strength):
    background = texture(3)
    blend = TemporalBlend(pointwise, strength=strength)
    for t in range(14):
        frame, x0 = moving_square(t, background)
        x = to_tensor(frame)
        error = (blend(x) - pointwise(x)).abs()[0].amax(0).numpy()
        inside = error[24:40, x0:x0 + 16]
        trail = error[20:44, max(x0 - 12, 0):x0]  # where the square was in the last three frames
        # Output range is 2 wide; 0.12 is ~15/255 on the bright square and its edges, not a trail (a ghost would
        # be a blend of the square's ~0.8 and the background's ~-0.5 output).
        assert inside.max() < 0.12 and trail.max() < 0.12, (t, inside.max(), trail.max())
        # Elsewhere DIS drags some flow onto the still background next to the square; the input term bounds what
        # that adds per frame, but a high strength lets it accumulate a little.
        assert error.max() < (0.15 if strength <= 0.5 else 0.25), (t, error.max())
    assert blend.blended_frames == 13


def test_without_the_input_term_there_would_be_a_ghost():
    """Guard that the scene above can show a ghost at all: flow alone (no input check, no occlusion) leaves one."""
    background = texture(3)
    blend = TemporalBlend(pointwise, strength=0.9, sigma=1e3, occlusion=False)
    worst = 0.0
    for t in range(14):
        frame, x0 = moving_square(t, background)
        x = to_tensor(frame)
        worst = max(worst, float((blend(x) - pointwise(x)).abs().max()))
    assert worst > 0.3


def test_scene_cut_resets_to_the_raw_output():
    model = NoisyModel()
    blend = TemporalBlend(model, strength=0.9)
    # A different scene: large bright/dark bars instead of fine texture (thumbnail SSIM far below 0.2).
    bars = np.repeat(((np.arange(W) // 12) % 2 * 0.7 + 0.15)[None, :, None], H, axis=0) * np.ones((1, 1, 3))
    first, second = to_tensor(texture(4)), to_tensor(bars + 0.1 * texture(5))
    for _ in range(4):
        blend(first)
    reference = NoisyModel()
    for _ in range(4):
        reference(first)
    after_cut = blend(second)
    assert torch.equal(after_cut, reference(second)) and blend.cuts == 1
    # The stream goes on from the new scene: the next frame is blended again.
    assert not torch.equal(blend(second), reference(second)) and blend.blended_frames == 4


def test_reset_and_size_change_pass_the_raw_output():
    model = NoisyModel()
    blend = TemporalBlend(model)
    reference = NoisyModel()
    x = to_tensor(texture(6))
    blend(x), reference(x)
    blend.reset()
    assert torch.equal(blend(x), reference(x))
    small = x[:, :, :32, :48].contiguous()
    assert torch.equal(blend(small), reference(small))


def test_cli_blend_keeps_every_frame(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", ClipSpec(width=64, height=48, frames=10, audio_codec=None))
    out = tmp_path / "out.mp4"
    model = ["--model", "nijigan-lite", "--random-weights", "--preset", "ultrafast", "--quiet"]
    assert main([str(clip), str(out), *model, "--temporal", "blend", "--temporal-strength", "0.7"]) == 0
    assert len(video_times(out)) == 10 and video_times(out) == video_times(clip)


def test_cli_rejects_blend_on_a_single_image_and_bad_strength(tmp_path, capsys):
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), (texture(7) * 255).astype(np.uint8))
    model = ["--model", "nijigan-lite", "--random-weights", "--preset", "ultrafast", "--quiet"]
    assert main([str(image), str(tmp_path / "b.png"), *model, "--temporal", "blend"]) != 0
    assert "single image" in capsys.readouterr().err
    assert main([str(image), str(tmp_path / "b.png"), *model, "--temporal-strength", "2"]) != 0
    assert "--temporal-strength" in capsys.readouterr().err


def test_live_mode_blends_the_frames_it_keeps():
    from fractions import Fraction

    from realtime.frames import Frame
    from realtime.pipeline import PipelineConfig, run_live

    background = texture(8)

    def camera():
        for i in range(12):
            frame, _ = moving_square(i % 10, background)
            yield Frame(data=to_tensor(frame)[0], pts=i, time_base=Fraction(1, 25), index=i)

    received: list[Frame] = []
    blend = TemporalBlend(pointwise)
    result = run_live(camera(), received.append, blend, config=PipelineConfig(mode="live"))
    assert received and len(received) == result.frames_in - result.frames_dropped
    assert all(f.data.shape == (3, H, W) for f in received)
    assert blend.blended_frames + blend.cuts + 1 == len(received)
