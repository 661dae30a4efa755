"""``rt-anime batch`` on a local Ray (2 CPUs): exact chunked output, a killed worker, a failing input, --resume.

Ray starts once for the module and the main scenario runs once (actor start-up dominates on 2 cores): three
inputs — a good clip whose worker is killed mid-chunk (retried), a clip whose chunk always raises (fails after
its retries), and a file that is not media — then a ``--resume`` run that finishes the failed clip.
"""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")

import realtime  # noqa: E402
from media import packet_payloads, video_frames_rgb, video_times  # noqa: E402
from realtime.backends import BackendConfig, make_backend  # noqa: E402
from realtime.batch import WORK_DIR, BatchConfig, FaultSpec, run_batch  # noqa: E402
from realtime.pipeline import EncodeConfig, PipelineConfig, run_file  # noqa: E402
from test_batch import short_gop_clip  # noqa: E402

# Lossless x264: decoded frames must equal the single-process output bit for bit.
ENCODE = EncodeConfig(crf=0, preset="ultrafast")


def test_batch_that_starts_ray_gives_back_the_callers_signal_handlers(tmp_path):
    # Runs before the module's shared Ray exists, so run_batch starts (and stops) its own. ray.init installs its
    # SIGINT/SIGTERM handlers and ray.shutdown leaves them: a program embedding run_batch would lose its Ctrl-C.
    assert not ray.is_initialized()
    clip = short_gop_clip(tmp_path / "clip.mkv", frames=12, seed=3)
    model = realtime.create_generator("nijigan-lite", ngf=4).eval()

    def mine(signum, frame):  # pragma: no cover - never delivered
        raise AssertionError("not expected to run")

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for sig in before:
            signal.signal(sig, mine)
        summary = run_batch([clip], tmp_path / "out", model, pipeline=PipelineConfig(size_multiple=model.size_multiple),
                            encode=ENCODE, batch=BatchConfig(chunk_seconds=10, workers=1))
        after = {sig: signal.getsignal(sig) for sig in before}
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    assert not ray.is_initialized()
    assert summary.inputs[0].status == "done" and summary.inputs[0].frames == 12
    assert after == {signal.SIGINT: mine, signal.SIGTERM: mine}


@pytest.fixture(scope="module")
def local_ray():
    # ray.init installs its own SIGTERM/SIGINT handlers and shutdown leaves them: restore ours for later tests.
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


@pytest.fixture(scope="module")
def scenario(local_ray, tmp_path_factory):
    root = tmp_path_factory.mktemp("batch-ray")
    src = root / "src"
    src.mkdir()
    good = short_gop_clip(src / "good.mkv", frames=36, seed=1)
    flaky = short_gop_clip(src / "flaky.mkv", frames=30, seed=2)
    junk = src / "junk.mkv"
    junk.write_bytes(b"this is not a video file" * 100)
    torch.manual_seed(0)
    model = realtime.create_generator("nijigan-lite", ngf=4).eval()
    pipeline = PipelineConfig(size_multiple=model.size_multiple)
    faults = (
        # The worker process exits after writing 2 frames of chunk 1 (once: the marker file records it).
        FaultSpec(input_name="good.mkv", chunk=1, after_frames=2, action="exit", marker=str(root / "killed")),
        # Chunk 2 of flaky.mkv raises on every attempt: that input must fail, alone.
        FaultSpec(input_name="flaky.mkv", chunk=2, after_frames=1, action="raise"),
    )
    out = root / "out"
    calls = []
    first = run_batch([good, flaky, junk], out, model, pipeline=pipeline, encode=ENCODE,
                      batch=BatchConfig(chunk_seconds=0.3, workers=2, max_retries=1, faults=faults),
                      progress=lambda done, total, workers: calls.append((done, total, workers)))
    listing = sorted(p.name for p in out.iterdir())
    work = sorted(p.name for p in (out / WORK_DIR).iterdir()) if (out / WORK_DIR).exists() else []
    manifest = out / WORK_DIR / "flaky.mkv" / "manifest.jsonl"
    finished_before = len(manifest.read_text().splitlines()) - 1 if manifest.exists() else 0
    second = run_batch([good, flaky, junk], out, model, pipeline=pipeline, encode=ENCODE,
                       batch=BatchConfig(chunk_seconds=0.3, workers=2, resume=True))
    backend = make_backend(model, BackendConfig(device="cpu"))
    for clip in (good, flaky):
        run_file(clip, root / f"ref-{clip.name}", backend, config=pipeline, encode=ENCODE)
    return dict(root=root, out=out, good=good, flaky=flaky, first=first, second=second, calls=calls,
                finished_before=finished_before, killed=root / "killed", listing=listing, work=work)


def by_name(summary):
    return {item.input.rsplit("/", 1)[-1]: item for item in summary.inputs}


def assert_exact(clip, output, reference):
    assert video_times(output) == video_times(clip)
    assert packet_payloads(output) == packet_payloads(clip)
    ref, out = video_frames_rgb(reference), video_frames_rgb(output)
    assert len(out) == len(ref) == len(video_times(clip))
    assert all(np.array_equal(a, b) for a, b in zip(ref, out))


def test_killed_worker_is_retried_and_output_is_exact(scenario):
    good = by_name(scenario["first"])["good.mkv"]
    assert scenario["killed"].exists(), "the fault never fired"
    assert good.status == "done" and good.retries >= 1 and good.chunks >= 3 and good.frames == 36
    assert_exact(scenario["good"], scenario["out"] / "good.mkv", scenario["root"] / "ref-good.mkv")


def test_failing_and_corrupt_inputs_fail_alone_without_partial_files(scenario):
    first = by_name(scenario["first"])
    flaky, junk = first["flaky.mkv"], first["junk.mkv"]
    assert flaky.status == "failed" and "injected fault" in flaky.error and flaky.retries == 1
    assert junk.status == "failed" and "junk.mkv" in junk.error and "media" in junk.error
    assert not scenario["first"].ok
    summary = scenario["first"].to_dict()
    assert json.loads(json.dumps(summary))["failed"] == 2
    # Beside good.mkv, only the work directory may be left (finished chunks of flaky.mkv, for --resume).
    assert [name for name in scenario["listing"] if name != WORK_DIR] == ["good.mkv"]
    assert scenario["work"] in ([], ["flaky.mkv"])  # finished chunks of the failed input only, for --resume
    assert scenario["calls"] and scenario["calls"][-1][0] >= 36
    assert all(total == 66 for _, total, _ in scenario["calls"])


def test_resume_redoes_only_missing_chunks(scenario):
    second = by_name(scenario["second"])
    good, flaky, junk = second["good.mkv"], second["flaky.mkv"], second["junk.mkv"]
    assert good.status == "skipped"
    assert flaky.status == "done"
    assert flaky.chunks_reused == scenario["finished_before"]
    assert flaky.chunks_run == flaky.chunks - scenario["finished_before"] >= 1
    assert junk.status == "failed"
    assert_exact(scenario["flaky"], scenario["out"] / "flaky.mkv", scenario["root"] / "ref-flaky.mkv")
    assert not (scenario["out"] / WORK_DIR).exists()  # every finished input cleans its chunks up
