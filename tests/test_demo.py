"""The Gradio demo without a browser: wiring, model whitelist, per-session state, user-facing errors, video jobs."""

import logging
import re

import numpy as np
import pytest

from media import ClipSpec, make_clip, packet_payloads, video_frames_rgb
from realtime.cli import main
from realtime.errors import RtAnimeError
from realtime.live.demo import (DEFAULT_SOLVER, DemoConfig, ModelCache, Sessions, _user_errors, build_demo,
                                stylize_array, stylize_video)
from realtime.temporal.blend import TemporalBlend

gr = pytest.importorskip("gradio", reason="the demo needs gradio: pip install 'rt-anime[demo]'")

CONFIG = DemoConfig(models=("nijigan-lite",), random_weights=True, stream_every=0.2, time_limit=30,
                    concurrency_limit=2)


def handlers(demo):
    return {f.name: f for f in demo.fns.values()}


def test_webcam_stream_is_tuned_and_every_tab_is_wired():
    fns = handlers(build_demo(CONFIG))
    live = fns["live"]
    assert live.connection == "stream"
    assert (live.stream_every, live.time_limit, live.concurrency_limit) == (0.2, 30, 2)
    assert fns["video"].concurrency_limit == 1  # one file job at a time: it uses every core
    assert {"video", "image", "forget"} <= set(fns)


def test_only_offered_models_and_listed_solvers_can_be_chosen():
    cache = ModelCache(CONFIG)
    translate, multiple = cache.get("nijigan-lite", DEFAULT_SOLVER)
    assert multiple == 4 and callable(translate)
    assert cache.get("nijigan-lite", DEFAULT_SOLVER)[0] is translate  # built once
    with pytest.raises(RtAnimeError, match="not offered"):
        cache.get("/etc/passwd", DEFAULT_SOLVER)  # a client cannot make the server open a path
    with pytest.raises(RtAnimeError, match="solver 'dopri5' is not offered"):
        cache.get("nijigan-lite", "dopri5")


def test_errors_become_one_sentence_and_tracebacks_stay_in_the_log(caplog):
    fns = handlers(build_demo(CONFIG))
    with pytest.raises(gr.Error) as user:
        fns["image"].fn(None, "nijigan-lite", DEFAULT_SOLVER, 256)
    assert user.value.message == "upload an image first"
    with pytest.raises(gr.Error) as bad:
        fns["image"].fn(np.zeros((8, 8, 3), np.uint8), "nijigan-lite", "rk4:7", 256)
    assert "not offered" in bad.value.message and "Traceback" not in bad.value.message
    with pytest.raises(gr.Error) as missing:
        fns["video"].fn("/nonexistent/clip.mp4", "nijigan-lite", DEFAULT_SOLVER, False, 256)
    assert "not a readable video" in missing.value.message

    @_user_errors
    def crashes():
        raise RuntimeError("internal detail")

    with caplog.at_level(logging.ERROR), pytest.raises(gr.Error) as crash:
        crashes()
    assert crash.value.message == "stylizing failed (RuntimeError); the server log has the details"
    assert "internal detail" in caplog.text and "Traceback" in caplog.text  # the log keeps the details


def test_image_keeps_its_size_and_is_stylized():
    translate, multiple = ModelCache(CONFIG).get("nijigan-lite", DEFAULT_SOLVER)
    rgb = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    out = stylize_array(rgb, translate, size_multiple=multiple, max_side=32)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() > 10
    assert stylize_array(rgb[..., 0], translate, size_multiple=multiple, max_side=None).shape == rgb.shape


def test_image_and_video_tabs_offer_the_self_ensemble(tmp_path):
    from realtime.ensemble import EnsembleTranslate

    cache = ModelCache(CONFIG)  # random weights: the demo and the reference must share one model
    fns = handlers(build_demo(CONFIG, cache=cache))
    rgb = (np.random.default_rng(1).random((40, 56, 3)) * 255).astype(np.uint8)
    translate, multiple = cache.get("nijigan-lite", DEFAULT_SOLVER)
    plain = fns["image"].fn(rgb, "nijigan-lite", DEFAULT_SOLVER, 0)
    four = fns["image"].fn(rgb, "nijigan-lite", DEFAULT_SOLVER, 0, "4")  # Gradio may send the choice as text
    expected = stylize_array(rgb, EnsembleTranslate(translate, 4), size_multiple=multiple, max_side=None)
    assert np.array_equal(four, expected) and not np.array_equal(four, plain)
    with pytest.raises(gr.Error, match="ensemble must be one of 1, 2, 4, 8.*got 3"):
        fns["image"].fn(rgb, "nijigan-lite", DEFAULT_SOLVER, 0, 3)
    spec = ClipSpec(width=64, height=48, frames=4, audio_codec=None)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    served = fns["video"].fn(str(make_clip(tmp_path / "a" / "clip.mp4", spec)), "nijigan-lite", DEFAULT_SOLVER,
                             False, 0, 2, progress=lambda *a, **k: None)
    direct = stylize_video(str(make_clip(tmp_path / "b" / "clip.mp4", spec)), EnsembleTranslate(translate, 2),
                           size_multiple=multiple, max_side=None)
    served, direct = video_frames_rgb(served), video_frames_rgb(direct)
    assert len(served) == len(direct) == 4
    assert all(np.array_equal(a, b) for a, b in zip(served, direct))


def test_full_size_uploads_are_tiled_when_they_would_not_fit(monkeypatch):
    import realtime.memory as memory
    from realtime.tiling import AutoTiles, TiledTranslate

    monkeypatch.setattr(memory, "available_memory", lambda: 1)  # nothing fits: the smallest tile, 256
    cache = ModelCache(CONFIG)
    translate, multiple = cache.get("nijigan-lite", DEFAULT_SOLVER)
    assert isinstance(translate, AutoTiles) and translate.planner.plan_for(280, 300).tile == 256
    rgb = (np.random.default_rng(2).random((280, 300, 3)) * 255).astype(np.uint8)
    fns = handlers(build_demo(CONFIG, cache=cache))
    served = fns["image"].fn(rgb, "nijigan-lite", DEFAULT_SOLVER, 0)
    tiled = stylize_array(rgb, TiledTranslate(translate.translate, tile=256, multiple=multiple),
                          size_multiple=multiple, max_side=None)
    whole = stylize_array(rgb, translate.translate, size_multiple=multiple, max_side=None)
    assert np.array_equal(served, tiled) and not np.array_equal(served, whole)
    # The ensemble runs inside the tiles, as rt-anime's does: each tile's orientations averaged, then stitched.
    from realtime.ensemble import EnsembleTranslate

    served2 = fns["image"].fn(rgb, "nijigan-lite", DEFAULT_SOLVER, 0, 2)
    inside = stylize_array(rgb, TiledTranslate(EnsembleTranslate(translate.translate, 2), tile=256,
                                               multiple=multiple), size_multiple=multiple, max_side=None)
    outside = stylize_array(rgb, EnsembleTranslate(TiledTranslate(translate.translate, tile=256, multiple=multiple),
                                                   2), size_multiple=multiple, max_side=None)
    assert np.array_equal(served2, inside) and not np.array_equal(served2, outside)
    ensembled, _ = cache.get("nijigan-lite", DEFAULT_SOLVER, ensemble=2)
    assert ensembled.planner is translate.planner  # one probe per model, whatever the ensemble
    assert cache.get("nijigan-lite", DEFAULT_SOLVER, ensemble=2)[0] is ensembled


def test_each_session_has_its_own_blend_state_and_the_table_is_bounded():
    sessions = Sessions(max_sessions=2)
    made = []

    def make():
        made.append(TemporalBlend(lambda x: x))
        return made[-1]

    a = sessions.blend_for("a", ("m", "s"), make)
    assert sessions.blend_for("a", ("m", "s"), make) is a
    assert sessions.blend_for("b", ("m", "s"), make) is not a
    assert sessions.blend_for("a", ("m", "euler:2"), make) is not a  # settings changed: fresh state
    sessions.blend_for("c", ("m", "s"), make)
    assert len(sessions) == 2
    sessions.drop("c")
    assert len(sessions) == 1


def test_video_job_keeps_every_frame_and_the_audio(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", ClipSpec(width=64, height=48, frames=10))
    translate, multiple = ModelCache(CONFIG).get("nijigan-lite", DEFAULT_SOLVER)
    seen = []
    out = stylize_video(str(clip), translate, size_multiple=multiple, max_side=None,
                        progress=lambda n, total: seen.append((n, total)))
    assert out.name == "clip-anime.mp4"
    assert len(video_frames_rgb(out)) == 10 and seen[-1] == (10, 10)
    assert packet_payloads(out) == packet_payloads(clip)


@pytest.mark.parametrize("args, pattern", [
    (["--port", "70000"], r"--port 70000"),
    (["--stream-every", "0"], r"--stream-every 0.0"),
    (["--live-max-side", "huge"], r"--live-max-side 'huge'"),
    (["--model", "missing.safetensors"], r"missing.safetensors"),
])
def test_bad_demo_arguments_are_one_line(capsys, args, pattern):
    assert main(["demo", "--random-weights", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rt-anime: error:") and re.search(pattern, err[0]), err
