"""``rt-anime batch`` pieces that need no Ray: keyframe cuts, one chunk, the join, the manifest, input handling.

Chunks are run here in-process, in order, with :func:`realtime.batch.run_chunk`; ``tests/test_batch_ray.py`` runs
the same code on Ray actors with retries and resume.
"""

from __future__ import annotations

import json
import sys
from fractions import Fraction

import numpy as np
import pytest
import torch

import realtime
from media import ClipSpec, make_clip, packet_payloads, subtitle_texts, video_frames_rgb, video_times
from realtime.backends import BackendConfig, make_backend
from realtime.batch import (BatchConfig, ChunkFile, ChunkStore, ChunkTask, ModelPayload, TranslateSpec, expand_inputs,
                            join_chunks, output_paths, plan_input, run_batch, run_chunk)
from realtime.batch.chunk import packet_order
from realtime.batch.manifest import manifest_header
from realtime.cli import main
from realtime.errors import RtAnimeError
from realtime.pipeline import EncodeConfig, PipelineConfig, run_file
from realtime.temporal.blend import TemporalBlend

# Irregular frame durations (ms): VFR, so any frame-rate guess would show up as a pts mismatch.
STEPS = (33, 40, 50, 67)


def vfr_pts(frames: int, seed: int = 1) -> list[int]:
    steps = np.random.default_rng(seed).choice(STEPS, size=frames)
    return [0] + [int(v) for v in np.cumsum(steps)[:-1]]


def short_gop_clip(path, frames: int = 36, seed: int = 1, subtitles: tuple[str, ...] = ()):
    """64×48 H.264 (B-frames, a keyframe every 6 frames), VFR in a 1/1000 time base, 1.5 s of AAC."""
    return make_clip(path, ClipSpec(frames=frames, pts=vfr_pts(frames, seed), time_base=Fraction(1, 1000),
                                    audio_seconds=1.5, video_options={"g": "6"}, subtitles=subtitles))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return short_gop_clip(tmp_path_factory.mktemp("batch") / "clip.mkv", subtitles=("subrip",))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return realtime.create_generator("nijigan-lite", ngf=4).eval()


def keyframe_pts(path) -> list[int]:
    import av

    with av.open(str(path)) as c:
        return sorted(p.pts for p in c.demux(c.streams.video[0]) if p.size and p.is_keyframe)


def run_all_chunks(plan, translate_factory, pipeline, encode, workdir):
    files = []
    for chunk in plan.chunks:
        task = ChunkTask(input_path=str(plan.input_path), name=plan.name, chunk=chunk, pipeline=pipeline,
                         encode=encode)
        result = run_chunk(task, translate_factory(), workdir=workdir)
        path = workdir / f"chunk-{chunk.index}.mkv"
        path.write_bytes(result.data)
        files.append(ChunkFile(index=chunk.index, path=path, pts=result.pts, reorder=result.reorder))
    return files


def test_plan_cuts_at_keyframes_and_covers_every_frame(clip):
    plan = plan_input(clip, clip.with_name("out.mkv"), chunk_seconds=0.3)
    keys = keyframe_pts(clip)
    assert len(plan.chunks) >= 3
    assert [c.start_pts for c in plan.chunks[1:]] == [c.end_pts for c in plan.chunks[:-1]]
    assert all(c.start_pts in keys for c in plan.chunks[1:])
    assert plan.chunks[0].start_pts is None and plan.chunks[-1].end_pts is None
    assert sum(c.frames for c in plan.chunks) == plan.frames == 36
    # Each cut is at least chunk_seconds after the previous one (the last chunk may be shorter).
    starts = [0] + [c.start_pts for c in plan.chunks[1:]]
    assert all(b - a >= 300 for a, b in zip(starts, starts[1:]))

    warm = plan_input(clip, clip.with_name("out.mkv"), chunk_seconds=0.3, warmup_frames=4)
    pts = sorted(vfr_pts(36))
    for chunk in warm.chunks[1:]:
        first = pts.index(chunk.start_pts)
        assert chunk.warmup_pts == pts[first - 4]
        assert chunk.seek_pts in keys and chunk.seek_pts <= chunk.warmup_pts
        assert chunk.packets == chunk.frames + 4


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_chunks_joined_keep_source_frames_pts_and_audio_with_bframes(clip, model, tmp_path, ext):
    backend = make_backend(model, BackendConfig(device="cpu"))
    pipeline = PipelineConfig(size_multiple=model.size_multiple)
    encode = EncodeConfig(crf=30, preset="medium")  # lossy x264 with B-frames: packets reordered
    plan = plan_input(clip, tmp_path / f"out.{ext}", chunk_seconds=0.3)
    files = run_all_chunks(plan, lambda: backend, pipeline, encode, tmp_path)
    assert max(f.reorder for f in files) > 0, "the encoder made no B-frames: the dts rebuild is not exercised"
    join_chunks(plan, files, pipeline=pipeline, encode=encode)
    out = tmp_path / f"out.{ext}"
    assert video_times(out) == video_times(clip)
    assert packet_payloads(out) == packet_payloads(clip)
    assert subtitle_texts(out) == subtitle_texts(clip) == [["Hello", "anime world"]]
    assert not list(tmp_path.glob(".*partial*"))


def test_auto_codec_is_chosen_for_the_final_container_not_the_chunks(clip, model, tmp_path):
    from realtime.batch.runner import _encode_for

    backend = make_backend(model, BackendConfig(device="cpu"))
    pipeline = PipelineConfig(size_multiple=model.size_multiple)
    encode = _encode_for(EncodeConfig(), tmp_path / "out.webm")  # chunks are Matroska, which would take H.264
    assert encode.codec == "libvpx-vp9"
    plan = plan_input(clip, tmp_path / "out.webm", chunk_seconds=0.3)
    join_chunks(plan, run_all_chunks(plan, lambda: backend, pipeline, encode, tmp_path), pipeline=pipeline,
                encode=encode)
    assert video_times(tmp_path / "out.webm") == video_times(clip)
    # GIF cannot be chunked: refused up front, before the output folder exists.
    with pytest.raises(RtAnimeError, match="does not write GIF"):
        run_batch([clip], tmp_path / "gifs", model, batch=BatchConfig(ext="gif"))
    assert not (tmp_path / "gifs").exists()


def test_lossless_chunks_equal_single_pass(clip, model, tmp_path):
    backend = make_backend(model, BackendConfig(device="cpu"))
    pipeline = PipelineConfig(size_multiple=model.size_multiple)
    encode = EncodeConfig(codec="ffv1", crf=None, preset=None)
    run_file(clip, tmp_path / "ref.mkv", backend, config=pipeline, encode=encode)
    plan = plan_input(clip, tmp_path / "out.mkv", chunk_seconds=0.3)
    join_chunks(plan, run_all_chunks(plan, lambda: backend, pipeline, encode, tmp_path), pipeline=pipeline,
                encode=encode)
    ref, out = video_frames_rgb(tmp_path / "ref.mkv"), video_frames_rgb(tmp_path / "out.mkv")
    assert len(ref) == len(out) == 36
    assert all(np.array_equal(a, b) for a, b in zip(ref, out))


def test_avi_with_b_frames_is_cut_and_joined_frame_exact(model, tmp_path):
    # AVI stores no presentation times: B-frames leave the decoder with shuffled pts. Each chunk must still keep
    # exactly its own frames, each at its own 1/25 s slot.
    src = make_clip(tmp_path / "bframes.avi",
                    ClipSpec(frames=36, audio_codec=None, video_options={"g": "6", "bf": "3"}))
    backend = make_backend(model, BackendConfig(device="cpu"))
    pipeline = PipelineConfig(size_multiple=model.size_multiple)
    encode = EncodeConfig(codec="ffv1", crf=None, preset=None)
    run_file(src, tmp_path / "ref.mkv", backend, config=pipeline, encode=encode)
    plan = plan_input(src, tmp_path / "out.mkv", chunk_seconds=0.3)
    assert len(plan.chunks) >= 3
    join_chunks(plan, run_all_chunks(plan, lambda: backend, pipeline, encode, tmp_path), pipeline=pipeline,
                encode=encode)
    ref, out = video_frames_rgb(tmp_path / "ref.mkv"), video_frames_rgb(tmp_path / "out.mkv")
    assert len(ref) == len(out) == 36
    assert all(np.array_equal(a, b) for a, b in zip(ref, out))
    assert set(np.diff(video_times(tmp_path / "out.mkv"))) == {Fraction(1, 25)}


@pytest.mark.parametrize("ext", ["avi", "mpg"])
def test_avi_and_mpeg_ps_outputs_get_h264_as_they_store_it(model, tmp_path, ext):
    # Matroska chunks hold length-prefixed H.264; AVI refuses it and MPEG-PS wrote it into a file no reader found
    # video in. AVI also gets frame ticks and no B-frames (it stores no presentation times), as in file mode.
    from realtime.batch.runner import _encode_for

    # With audio beside it, FFmpeg's AVI demuxer reads frame 1 one slot late (ffmpeg's own AVIs too): no audio here.
    src = make_clip(tmp_path / "cfr.mp4", ClipSpec(frames=36, video_options={"g": "6"},
                                                   audio_codec="aac" if ext == "mpg" else None))
    out = tmp_path / f"out.{ext}"
    backend = make_backend(model, BackendConfig(device="cpu"))
    pipeline = PipelineConfig(size_multiple=model.size_multiple)
    encode = _encode_for(EncodeConfig(crf=30), out)
    plan = plan_input(src, out, chunk_seconds=0.3)
    assert len(plan.chunks) >= 3
    join_chunks(plan, run_all_chunks(plan, lambda: backend, pipeline, encode, tmp_path), pipeline=pipeline,
                encode=encode)
    assert len(video_frames_rgb(out)) == 36
    if ext == "avi":
        import av

        with av.open(str(out)) as c:
            video = c.streams.video[0]
            assert video.time_base == Fraction(1, 25)  # not 1/12800: a 12800 fps stream of gaps
            # AVI stores a slot per frame and no pts (the H.264 parser's pts estimate reads one tick late even
            # for ffmpeg's own AVIs): every frame in its own slot, none empty, is what the file can say.
            assert [p.dts for p in c.demux(video) if p.size] == list(range(36))


def test_a_join_that_does_not_read_back_never_takes_the_output_name(model, tmp_path, monkeypatch):
    from realtime.batch import join
    from realtime.pipeline.errors import EncoderError

    monkeypatch.setattr(join, "_annexb_filter", lambda *args: None)  # the old join: length-prefixed into MPEG-PS
    src = make_clip(tmp_path / "cfr.mp4", ClipSpec(frames=12, audio_codec=None))
    backend = make_backend(model, BackendConfig(device="cpu"))
    pipeline = PipelineConfig(size_multiple=model.size_multiple)
    encode = EncodeConfig(crf=30)
    plan = plan_input(src, tmp_path / "out.mpg", chunk_seconds=0.3)
    with pytest.raises(EncoderError, match="reads back as .* packets, not the 12 h264 frames"):
        join_chunks(plan, run_all_chunks(plan, lambda: backend, pipeline, encode, tmp_path), pipeline=pipeline,
                    encode=encode)
    assert not (tmp_path / "out.mpg").exists() and not list(tmp_path.glob(".*partial*"))


def test_joined_mpeg_ts_segments_are_refused_with_the_command_that_works(tmp_path):
    part = make_clip(tmp_path / "part.ts", ClipSpec(frames=25, audio_codec=None))
    joined = tmp_path / "joined.ts"
    joined.write_bytes(part.read_bytes() * 2)
    with pytest.raises(RtAnimeError, match=r"timestamps jump at 1\.000 s.*`rt-anime INPUT OUTPUT`"):
        plan_input(joined, tmp_path / "out.mkv", chunk_seconds=0.3)
    assert plan_input(part, tmp_path / "out.mkv", chunk_seconds=0.3).frames == 25


def test_worker_ensemble_equals_the_single_pass_ensemble(clip, model, tmp_path):
    from realtime.batch.cluster import ChunkWorker
    from realtime.batch.config import settings_digest
    from realtime.ensemble import EnsembleTranslate

    pipeline = PipelineConfig(size_multiple=model.size_multiple)
    encode = EncodeConfig(codec="ffv1", crf=None, preset=None)
    spec = TranslateSpec(ensemble=4)
    worker = ChunkWorker(ModelPayload.from_model(model), spec, device="cpu", threads=1)
    single = EnsembleTranslate(make_backend(model, BackendConfig(device="cpu")), 4)
    run_file(clip, tmp_path / "ref.mkv", single, config=pipeline, encode=encode)
    run_file(clip, tmp_path / "plain.mkv", make_backend(model, BackendConfig(device="cpu")), config=pipeline,
             encode=encode)
    plan = plan_input(clip, tmp_path / "out.mkv", chunk_seconds=0.3)
    join_chunks(plan, run_all_chunks(plan, worker._translate, pipeline, encode, tmp_path), pipeline=pipeline,
                encode=encode)
    ref, out = video_frames_rgb(tmp_path / "ref.mkv"), video_frames_rgb(tmp_path / "out.mkv")
    plain = video_frames_rgb(tmp_path / "plain.mkv")
    assert len(ref) == len(out) == 36
    assert all(np.array_equal(a, b) for a, b in zip(ref, out))
    assert not all(np.array_equal(a, b) for a, b in zip(plain, out))
    # --resume must not keep chunks rendered with another ensemble size.
    assert settings_digest(spec) != settings_digest(TranslateSpec())
    with pytest.raises(ValueError, match="--ensemble must be one of 1, 2, 4, 8.*got 3"):
        TranslateSpec(ensemble=3)


def test_worker_auto_tiles_within_its_share_of_the_node(model, monkeypatch):
    import os

    import realtime.memory as memory
    from realtime.batch.cluster import ChunkWorker
    from realtime.tiling import AutoTiles, TiledTranslate

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(memory, "available_memory", lambda: 2**32)
    worker = ChunkWorker(ModelPayload.from_model(model), TranslateSpec(), device="cpu", threads=1)
    translate = worker._translate()
    assert isinstance(translate, AutoTiles) and translate.planner.share == 0.25  # one thread of four cores
    assert translate.planner.plan_for(64, 64, 2) is None  # small frames: run whole, no probe
    plan = translate.planner.plan_for(2000, 2000, 2)
    assert plan.budget == int(2**32 // 4 * 0.75)  # a quarter of the node's memory, 3/4 of it for activations
    assert plan.tile ** 2 * 2 * plan.bytes_per_pixel <= plan.budget
    assert plan.bytes_per_pixel == pytest.approx(memory.bytes_per_pixel(model, multiple=4))
    fixed = ChunkWorker(ModelPayload.from_model(model), TranslateSpec(tile=64), device="cpu", threads=1)
    assert isinstance(fixed._translate(), TiledTranslate) and fixed._translate().tile == 64
    plain = ChunkWorker(ModelPayload.from_model(model), TranslateSpec(tile=None), device="cpu", threads=1)
    assert not isinstance(plain._translate(), (AutoTiles, TiledTranslate))
    with pytest.raises(ValueError, match="--tile must be auto, none or at least 8 pixels, got 'big'"):
        TranslateSpec(tile="big")


def test_blend_warmup_makes_seams_match_a_single_pass(clip, model, tmp_path):
    backend = make_backend(model, BackendConfig(device="cpu"))
    pipeline = PipelineConfig(size_multiple=model.size_multiple)
    encode = EncodeConfig(codec="ffv1", crf=None, preset=None)
    run_file(clip, tmp_path / "ref.mkv", TemporalBlend(backend), config=pipeline, encode=encode)
    ref = np.stack(video_frames_rgb(tmp_path / "ref.mkv")).astype(np.int16)
    errors = {}
    for warmup in (0, 8):
        plan = plan_input(clip, tmp_path / f"w{warmup}.mkv", chunk_seconds=0.3, warmup_frames=warmup)
        work = tmp_path / f"work{warmup}"
        work.mkdir()
        join_chunks(plan, run_all_chunks(plan, lambda: TemporalBlend(backend), pipeline, encode, work),
                    pipeline=pipeline, encode=encode)
        out = np.stack(video_frames_rgb(tmp_path / f"w{warmup}.mkv")).astype(np.int16)
        assert out.shape == ref.shape
        pts = sorted(vfr_pts(36))
        seams = [pts.index(c.start_pts) for c in plan.chunks[1:]]
        errors[warmup] = max(np.abs(out[i] - ref[i]).max() for i in seams)
    # Without warm-up a chunk's first frame is the raw model output; with it, the blend history has settled.
    assert errors[8] < errors[0], errors


def test_manifest_keeps_matching_chunks_and_drops_changed_ones(clip, model, tmp_path):
    plan = plan_input(clip, tmp_path / "out.mkv", chunk_seconds=0.3)
    header = manifest_header(plan, "settings-1")
    store = ChunkStore(tmp_path, "out.mkv", header=header, resume=False)
    backend = make_backend(model, BackendConfig(device="cpu"))
    task = ChunkTask(input_path=str(clip), name="out.mkv", chunk=plan.chunks[1],
                     pipeline=PipelineConfig(size_multiple=4), encode=EncodeConfig(preset="ultrafast"))
    record = store.add(run_chunk(task, backend, workdir=tmp_path))
    assert packet_order(store.dir / record.file)[0]  # a real Matroska file
    with open(store.manifest, "a") as f:
        f.write('{"chunk": 2, "file": "chunk-000')  # a line torn by a crash
    again = ChunkStore(tmp_path, "out.mkv", header=header, resume=True)
    assert set(again.records) == {1} and again.records[1].pts == record.pts
    assert ChunkStore(tmp_path, "out.mkv", header=header, resume=False).records == {}
    store = ChunkStore(tmp_path, "out.mkv", header=header, resume=False)
    store.add(run_chunk(task, backend, workdir=tmp_path))
    changed = ChunkStore(tmp_path, "out.mkv", header=manifest_header(plan, "settings-2"), resume=True)
    assert changed.records == {}
    assert json.loads(changed.manifest.read_text().splitlines()[0])["settings"] == "settings-2"


def test_inputs_folders_manifests_and_output_names(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("b.mkv", "a.mp4", "notes.txt"):
        (videos / name).write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_text("# two files\nvideos/a.mp4\n\n" + str(videos / "b.mkv") + "\n")
    assert expand_inputs([str(videos)]) == [videos / "a.mp4", videos / "b.mkv"]
    assert expand_inputs([str(listing)]) == [videos / "a.mp4", videos / "b.mkv"]
    with pytest.raises(RtAnimeError, match="does not exist"):
        expand_inputs([str(tmp_path / "missing.mkv")])
    with pytest.raises(RtAnimeError, match="no video"):
        expand_inputs([str(tmp_path)])
    out = tmp_path / "out"
    assert output_paths([videos / "a.mp4"], out, ext="mkv") == [out / "a.mkv"]
    with pytest.raises(RtAnimeError, match="would both be written"):
        output_paths([videos / "a.mp4", tmp_path / "a.mkv"], out, ext="mkv")
    with pytest.raises(RtAnimeError, match="is the input file"):
        output_paths([videos / "a.mp4"], videos, ext=None)
    with pytest.raises(RtAnimeError, match="not a video container"):
        output_paths([videos / "a.mp4"], out, ext="txt")
    with pytest.raises(ValueError, match="--chunk-seconds"):
        BatchConfig(chunk_seconds=0)


def test_cli_without_ray_names_the_extra(clip, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError, as when it is not installed
    code = main(["batch", str(clip), "-o", str(tmp_path / "out"), "--model", "nijigan-lite", "--random-weights"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "rt-anime[cluster]" in err[0] and "ray" in err[0]
    assert not (tmp_path / "out").exists()


def test_cli_reports_failed_inputs_as_json_and_refuses_existing_outputs(clip, tmp_path, capsys):
    pytest.importorskip("ray")  # the command checks for it first; no Ray starts: nothing here reaches a chunk
    junk = tmp_path / "junk.mkv"
    junk.write_bytes(b"not a video" * 50)
    out = tmp_path / "out"
    args = ["batch", str(junk), "-o", str(out), "--model", "nijigan-lite", "--random-weights", "--quiet"]
    assert main(args) == 1
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["ok"] is False and summary["failed"] == 1
    assert summary["inputs"][0]["status"] == "failed" and "media" in summary["inputs"][0]["error"]
    assert captured.err.strip().splitlines() == [f"rt-anime: error: {junk}: {summary['inputs'][0]['error']}"]
    assert not out.exists()  # created by the run, left empty: removed again
    out.mkdir()
    (out / "clip.mkv").write_bytes(b"done before")
    assert main(["batch", str(clip), "-o", str(out), "--model", "nijigan-lite", "--random-weights"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "output exists" in err[0] and "--resume" in err[0]
    assert (out / "clip.mkv").read_bytes() == b"done before"
