"""``--tile auto``: the per-pixel memory a model needs is measured, and frames that would not fit are tiled."""

from __future__ import annotations

import logging
import re

import cv2
import numpy as np
import pytest
import torch

import realtime
import realtime.memory as memory
from realtime.cli import main
from realtime.memory import MIN_TILE, RSS_FACTOR, TilePlan, TilePlanner, bytes_per_pixel

MODEL = ["--model", "nijigan-lite", "--random-weights"]


class _TwoTemporaries(torch.nn.Module):
    def forward(self, x):
        y = x * 2  # a new tensor of x's size
        z = y.view(-1).view(x.shape)  # views share y's storage: counted once
        return z + 1  # a second one while y is alive


def test_live_bytes_counts_each_storage_once_while_it_is_alive():
    x = torch.zeros(1, 3, 10, 12)
    with torch.inference_mode(), memory._LiveBytes() as tracker:
        out = _TwoTemporaries()(x)
    assert tracker.peak == 2 * x.numel() * 4
    del out


def test_bytes_per_pixel_grows_with_the_width_and_includes_the_rss_factor():
    torch.manual_seed(0)
    narrow = bytes_per_pixel(realtime.create_generator("nijigan-lite", ngf=8), multiple=4)
    wide = bytes_per_pixel(realtime.create_generator("nijigan-lite", ngf=16), multiple=4)
    # At least one fp32 ngf-channel activation at full resolution, times the RSS factor.
    assert narrow >= 8 * 4 * RSS_FACTOR
    assert 1.6 < wide / narrow < 2.4


def test_plan_takes_three_quarters_of_what_is_available_and_keeps_a_floor():
    model = realtime.create_generator("nijigan-lite", ngf=8)
    per_px = bytes_per_pixel(model, multiple=4)

    def plan(available, batch=1):  # a frame far too large to run whole on any of these budgets
        return TilePlanner(model, multiple=4, available=available).plan_for(20_000, 20_000, batch)

    full = plan(4 * int(per_px * 1000 * 1000))
    assert full.tile % 4 == 0 and abs(full.tile - int((3 * 1000 * 1000) ** 0.5)) <= 4
    assert plan(4 * int(per_px * 1000 * 1000), batch=4).tile < full.tile
    assert plan(1).tile == MIN_TILE
    assert full.needs_tiles(full.tile, full.tile + 1) and not full.needs_tiles(full.tile, full.tile)
    text = TilePlan(tile=512, bytes_per_pixel=1024.0, budget=2**30).describe(4000, 6000)
    assert "6000x4000" in text and "22.9 GiB" in text and "512-px tiles" in text and "--tile none" in text


def test_plan_is_none_where_the_available_memory_is_unknown_or_the_probe_fails(monkeypatch):
    model = realtime.create_generator("nijigan-lite", ngf=4)
    assert TilePlanner(model, multiple=4, available=2**30).plan_for(20_000, 20_000) is not None
    monkeypatch.setattr(memory, "available_memory", lambda: None)
    assert TilePlanner(model, multiple=4).plan_for(20_000, 20_000) is None
    monkeypatch.setattr(model, "forward", lambda x: (_ for _ in ()).throw(RuntimeError("broken model")))
    assert TilePlanner(model, multiple=4, available=2**30).plan_for(20_000, 20_000) is None


def test_planner_probes_only_for_frames_that_might_not_fit_and_only_once(monkeypatch):
    model = realtime.create_generator("nijigan-lite", ngf=4)
    probes = []
    real = memory.bytes_per_pixel

    def counted(*args, **kwargs):
        probes.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(memory, "bytes_per_pixel", counted)
    planner = memory.TilePlanner(model, multiple=4, share=0.5, available=2**30)
    fits = int((2**30 * 0.5 * 0.75 / memory.SURE_BYTES_PER_PIXEL) ** 0.5)
    assert planner.plan_for(fits, fits) is None and not probes
    big = planner.plan_for(4 * fits, 4 * fits)
    assert probes == [1] and big.budget == int(2**30 * 0.5 * 0.75)
    assert planner.plan_for(4 * fits, 4 * fits, 4).tile < big.tile and probes == [1]
    with pytest.raises(ValueError, match="share must be in \\(0, 1\\], got 0"):
        memory.TilePlanner(model, multiple=4, share=0)


@pytest.fixture
def photo(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), cv2.GaussianBlur((rng.random((280, 300, 3)) * 255).astype(np.uint8), (9, 9), 0))
    return path


def test_cli_tiles_a_frame_that_would_not_fit_and_says_so(photo, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(memory, "available_memory", lambda: 1)  # nothing fits: the smallest tile, 256
    outs = {}
    for tile in ("auto", "256", "none"):
        out = tmp_path / f"{tile}.png"
        with caplog.at_level(logging.WARNING):
            caplog.clear()
            torch.manual_seed(0)  # the same random weights each run
            assert main([str(photo), str(out), *MODEL, "--tile", tile]) == 0
        outs[tile] = cv2.imread(str(out))
        warned = [r.getMessage() for r in caplog.records if "tiles" in r.getMessage()]
        assert len(warned) == (1 if tile == "auto" else 0)
        if tile == "auto":
            assert "a 300x280 frame needs" in warned[0] and "256-px tiles" in warned[0]
    assert np.array_equal(outs["auto"], outs["256"])
    assert not np.array_equal(outs["auto"], outs["none"])


def test_cli_leaves_frames_that_fit_whole(photo, tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda: 2**40)
    outs = []
    for tile in ("auto", "none"):
        torch.manual_seed(0)
        assert main([str(photo), str(tmp_path / f"{tile}.png"), *MODEL, "--tile", tile]) == 0
        outs.append(cv2.imread(str(tmp_path / f"{tile}.png")))
    assert np.array_equal(*outs)


@pytest.mark.parametrize("tile, overlap", [("32", 8), ("64", 16), ("8", 0), ("256", 32), ("auto", 32)])
def test_a_small_tile_gets_an_overlap_that_fits_it(tile, overlap):
    # Before: `--tile 32` alone was refused ("--tile-overlap 32: must be ... less than --tile 32").
    from realtime.commands.run import check_tile_overlap, parse_tile

    assert check_tile_overlap(None, parse_tile(tile), 4) == overlap
    assert check_tile_overlap(12, parse_tile(tile) if tile != "8" else 16, 4) == 12  # a given one is kept


@pytest.mark.parametrize("args, pattern", [
    (["--tile", "big"], "--tile 'big': expected auto, none"),
    (["--tile", "4"], "--tile '4': expected auto, none"),
    (["--tile", "-1"], "--tile '-1': expected auto, none"),
    (["--tile-overlap", "256"], "--tile-overlap 256: .*less than the smallest tile --tile auto uses, 256"),
    (["--tile", "64", "--tile-overlap", "64"], "--tile-overlap 64: .*less than --tile 64"),
    (["--tile-overlap", "30"], r"--tile-overlap 30: must be a multiple of the model's size multiple \(4\)"),
])
def test_bad_tile_is_one_line(photo, tmp_path, capsys, args, pattern):
    assert main([str(photo), str(tmp_path / "o.png"), *MODEL, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(pattern, err[0]), err
    assert not (tmp_path / "o.png").exists()
