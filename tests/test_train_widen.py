"""Warm starts (``model.init_from``): copying trained weights, and widening niji-lite-like nets without changing
their function (Net2WiderNet)."""

import json

import pytest
import torch

import realtime
from realtime.errors import RtAnimeError
from realtime.train.config import load_config
from realtime.train.trainer import Trainer
from realtime.train.widen import warm_start, widen_tensor

from test_trainer import TINY, _write_photos


def _trained_like(ngf: int, **options) -> torch.nn.Module:
    g = realtime.create_generator("nijigan-lite", ngf=ngf, solver="euler:1", **options)
    with torch.no_grad():  # away from the init, with non-zero biases, as trained weights are
        for p in g.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return g.eval()


@pytest.mark.parametrize("options", [{}, {"input_skip": True}, {"input_skip": True, "unet_skips": True}])
@pytest.mark.parametrize("factor", [2, 3])
def test_widening_keeps_the_function(options, factor):
    torch.manual_seed(0)
    small = _trained_like(4, **options)
    wide = realtime.create_generator("nijigan-lite", ngf=4 * factor, solver="euler:1", **options).eval()
    assert warm_start(wide, small, noise=0.0) == "widened"
    x = torch.rand(2, 3, 24, 20) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(wide(x), small(x), atol=2e-5, rtol=0)
        # the bottleneck holds each narrow channel `factor` times
        a, b = wide.forward_features(x).bottleneck, small.forward_features(x).bottleneck
        torch.testing.assert_close(a, b.repeat(1, factor, 1, 1), atol=2e-5, rtol=0)


def test_noise_breaks_symmetry_but_keeps_the_output_close():
    torch.manual_seed(0)
    small = _trained_like(4)
    wide = realtime.create_generator("nijigan-lite", ngf=8, solver="euler:1").eval()
    warm_start(wide, small, noise=1e-2, seed=3)
    w = wide.model[1].weight  # stem conv: out channels j and j + 4 start as copies of channel j
    assert not torch.equal(w[:4], w[4:])
    x = torch.rand(1, 3, 24, 20) * 2 - 1
    with torch.no_grad():
        diff = (wide(x) - small(x)).abs().mean().item()
    assert 0 < diff < 0.05


def test_same_shapes_are_copied_and_mismatches_are_named():
    small = _trained_like(4)
    same = realtime.create_generator("nijigan-lite", ngf=4, solver="euler:1")
    assert warm_start(same, small) == "copied"
    for k, v in same.state_dict().items():
        torch.testing.assert_close(v, small.state_dict()[k])
    with pytest.raises(RtAnimeError, match="input_skip"):
        warm_start(realtime.create_generator("nijigan-lite", ngf=8, input_skip=True), small)
    with pytest.raises(RtAnimeError, match="cannot start a animeganv2"):
        warm_start(realtime.create_generator("animeganv2"), small)
    with pytest.raises(RtAnimeError, match="not a whole multiple"):
        warm_start(realtime.create_generator("nijigan-lite", ngf=6), small)
    with pytest.raises(RtAnimeError, match="not a conv weight"):
        widen_tensor("x", torch.zeros(2, 2), torch.Size([4, 4]))


def test_a_changed_skip_site_or_norm_loads_with_a_warning_naming_it(caplog):
    small = _trained_like(4, input_skip=True, unet_skips=True)
    same = realtime.create_generator("nijigan-lite", ngf=4, solver="euler:1", input_skip=True, unet_skips=True)
    with caplog.at_level("WARNING", logger="realtime.train.widen"):
        warm_start(same, small)
    assert not caplog.records
    moved = realtime.create_generator("nijigan-lite", ngf=4, solver="euler:1", input_skip=True, unet_skips=True,
                                      unet_skip_at="pre_relu")
    with caplog.at_level("WARNING", logger="realtime.train.widen"):
        assert warm_start(moved, small) == "copied"
    (record,) = caplog.records
    assert "`unet_skip_at` 'post_relu' -> 'pre_relu'" in record.getMessage()
    assert "unet_skips" not in record.getMessage().replace("unet_skip_at", "")


def test_trainer_starts_from_widened_weights(tmp_path):
    photos = _write_photos(tmp_path / "photos", 4)
    small = _trained_like(2, **load_config("default-cpu").model.options)  # the recipe's architecture options
    source = realtime.save_generator(small, tmp_path / "small")
    config = load_config("default-cpu", overrides=[*TINY, f"data.photos={photos}", f"data.cache_dir={tmp_path / 'c'}",
                                                   f"run.out={tmp_path / 'run'}", f"model.init_from={source}",
                                                   "model.init_noise=0"])
    trainer = Trainer(config)
    assert trainer.init_mode == "widened" and trainer.G.config.ngf == 4
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(trainer.G.eval()(x), small(x), atol=2e-5, rtol=0)
    with pytest.raises(ValueError, match="init_noise"):
        load_config("default-cpu", overrides=[*TINY, "model.init_noise=-1"])


def test_checkpoints_from_before_a_new_setting_still_resume(tmp_path):
    photos = _write_photos(tmp_path / "photos", 4)
    base = [*TINY, f"data.photos={photos}", f"data.cache_dir={tmp_path / 'c'}", f"run.out={tmp_path / 'run'}"]
    trainer = Trainer(load_config("default-cpu", overrides=base))
    path = trainer.save_checkpoint()
    state = torch.load(path, weights_only=True)
    config = json.loads(state["config"])
    del config["model"]["init_from"], config["model"]["init_noise"]  # as written before these settings existed
    state["config"] = json.dumps(config)
    torch.save(state, path)
    Trainer(load_config("default-cpu", overrides=base)).load_checkpoint(path)  # defaults: resumes
    changed = Trainer(load_config("default-cpu", overrides=[*base, "model.init_noise=0.5"]))
    with pytest.raises(RtAnimeError, match="init_noise"):
        changed.load_checkpoint(path)


def test_finish_recipe_fine_tunes_trained_weights_with_l1_alone_and_a_decaying_rate(tmp_path):
    finish, default = load_config("finish-cpu"), load_config("default-cpu")
    # The same task as the weights it finishes: a different architecture or teacher could not start from them.
    assert finish.model.options == default.model.options and finish.model.preset == default.model.preset
    assert finish.data.teacher_options == default.data.teacher_options
    niji = load_config("finish-cpu", preset="nijigan")
    assert niji.optim.total_iters > finish.optim.total_iters
    # ngf 64 finishes with LPIPS beside L1 (the lite default stays L1 alone, as asserted below)
    assert (niji.losses.perceptual_kind, niji.losses.lambda_perceptual, niji.losses.lambda_l1) == ("lpips", 1.0, 10.0)
    assert niji.losses.lambda_edge_l1 == 20.0 and finish.losses.lambda_edge_l1 == 0.0  # session 16's A/B: ngf 64 only
    photos = _write_photos(tmp_path / "photos", 4)
    start = _trained_like(4, **default.model.options)
    source = realtime.save_generator(start, tmp_path / "start")
    config = load_config("finish-cpu", overrides=[*TINY, f"data.photos={photos}", f"data.cache_dir={tmp_path / 'c'}",
                                                  f"run.out={tmp_path / 'run'}", f"model.init_from={source}",
                                                  "optim.n_iters=1", "optim.n_iters_decay=3", "run.eval_every=0"])
    trainer = Trainer(config)
    assert trainer.init_mode == "copied" and set(trainer.nets()) == {"G"}  # no critic, NCE head or VGG to pay for
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(trainer.G.eval()(x), start.eval()(x))
    records = []
    result = trainer.train(progress=False, callback=lambda t, r: records.append(r))
    assert result.completed and [r["iter"] for r in records] == [1, 2, 3, 4]
    assert set(records[0]) >= {"L1", "G_total"} and not {"D", "G_GAN", "HDCE", "perceptual"} & set(records[0])
    rates = [r["lr"] for r in records]
    steps = [a - b for a, b in zip(rates, rates[1:])]
    assert rates[0] == pytest.approx(5e-4) and rates[-1] > 0 and min(steps) > 0  # linear decay towards 0
    assert max(steps) == pytest.approx(min(steps))
    with torch.no_grad():
        assert (trainer.G.eval()(x) - start(x)).abs().max() > 1e-4  # it trained


def test_a_running_training_checkpoint_is_a_starting_point(tmp_path):
    # finish-cpu's header offers `model.init_from=PATH/TO/checkpoint.pt`: the file a run writes every few minutes.
    photos = _write_photos(tmp_path / "photos", 4)
    base = [*TINY, f"data.photos={photos}", f"data.cache_dir={tmp_path / 'c'}", "run.eval_every=0"]
    run = Trainer(load_config("default-cpu", overrides=[*base, f"run.out={tmp_path / 'run'}"]))
    run.train(max_iters=2, progress=False)
    path = run.save_checkpoint()
    finish = Trainer(load_config("finish-cpu", overrides=[*base, f"run.out={tmp_path / 'fin'}",
                                                          f"model.init_from={path}", "model.init_noise=0"]))
    assert finish.init_mode == "copied"
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(finish.G.eval()(x), run.G.eval()(x), atol=0, rtol=0)
        assert not torch.equal(run.G(x), x)  # trained away from the identity the zero head starts at
