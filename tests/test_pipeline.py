"""File mode of the streaming pipeline, end to end on tiny generated clips (no models involved).

Timestamp tolerance: output pts are compared with input pts as exact fractions of a second. The pipeline writes
the input's pts in the input's time base, and the mp4/mkv muxers here keep a time base the input's is a multiple
of, so the comparison is exact (0 ticks); a container whose time base is coarser would allow half an output tick.
"""

from __future__ import annotations

import _thread
import faulthandler
import hashlib
import os
import signal
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from media import (
    ClipSpec,
    add_chapters_and_attachment,
    corrupt_video_packet,
    duplicate_audio_packet,
    first_frame_rotation,
    make_audio_only,
    make_clip,
    packet_payloads,
    subtitle_texts,
    truncate,
    video_frames_rgb,
    video_times,
)

from realtime.pipeline import (
    EncodeConfig,
    EncoderError,
    InputError,
    NoVideoError,
    OutputError,
    OutputIsInputError,
    PipelineConfig,
    PipelineError,
    TranslateOutputError,
    TruncatedInputError,
    run_file,
)

VFR_PTS = (0, 40, 70, 150, 160, 300, 310, 500, 520, 600)  # milliseconds, deliberately irregular


def negate(x: torch.Tensor) -> torch.Tensor:
    return -x


@pytest.fixture(autouse=True)
def _no_hang():
    # A deadlocked pipeline must fail the test run with tracebacks, not hang CI.
    faulthandler.dump_traceback_later(60, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def basic_mp4(media: Path) -> Path:
    return make_clip(media / "basic.mp4", ClipSpec(subtitles=("mov_text",), metadata={"title": "rt-anime test"}))


@pytest.fixture(scope="session")
def subs_mkv(media: Path) -> Path:
    return make_clip(media / "subs.mkv", ClipSpec(subtitles=("subrip", "ass")))


@pytest.fixture(scope="session")
def vfr_mkv(media: Path) -> Path:
    return make_clip(media / "vfr.mkv", ClipSpec(pts=VFR_PTS, time_base=Fraction(1, 1000)))


@pytest.fixture(scope="session")
def vfr_mp4(media: Path) -> Path:
    return make_clip(media / "vfr.mp4", ClipSpec(pts=VFR_PTS, time_base=Fraction(1, 1000)))


@pytest.fixture(scope="session")
def odd_mp4(media: Path) -> Path:
    # A 4:2:0 file cannot have odd dimensions; odd-sized sources are 4:4:4 (or RGB/lossless) in practice.
    return make_clip(media / "odd.mp4", ClipSpec(width=101, height=77, pix_fmt="yuv444p", frames=12))


@pytest.fixture(scope="session")
def rotated_mp4(media: Path) -> Path:
    return make_clip(media / "rotated.mp4", ClipSpec(rotation=90, frames=12))


@pytest.fixture(scope="session")
def tenbit_mkv(media: Path) -> Path:
    return make_clip(media / "tenbit.mkv", ClipSpec(pix_fmt="yuv420p10le", frames=12))


@pytest.fixture(scope="session")
def truncated_mp4(media: Path) -> Path:
    whole = make_clip(media / "whole.mp4", ClipSpec(frames=30, container_options={"movflags": "faststart"}))
    return truncate(whole, media / "truncated.mp4", keep=0.6)


def assert_no_output(path: Path) -> None:
    assert not path.exists(), f"{path} must not exist after a failed run"
    leftovers = [p.name for p in path.parent.iterdir() if ".partial" in p.name]
    assert not leftovers, f"temporary files left behind: {leftovers}"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the happy path ----------------------------------------------------------------------------------------------


def test_frames_timestamps_audio_subtitles_metadata_kept(basic_mp4: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    seen: list[tuple[int, int | None]] = []
    result = run_file(basic_mp4, out, negate, progress=lambda done, total: seen.append((done, total)))

    assert result.frames_in == result.frames_out == 24 == len(video_times(out))
    assert video_times(out) == video_times(basic_mp4)  # exact, as fractions of a second
    assert packet_payloads(out, "audio") == packet_payloads(basic_mp4, "audio")  # byte-identical packet copy
    assert subtitle_texts(out) == subtitle_texts(basic_mp4) == [["Hello", "anime world"]]
    assert result.packets_transcoded == 0 and result.streams_transcoded == ()
    with av.open(str(out)) as container:
        assert container.metadata.get("title") == "rt-anime test"
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.video[0].pix_fmt == "yuv420p"
    assert seen[-1] == (24, 24) and [d for d, _ in seen] == list(range(1, 25))
    assert result.model_seconds > 0 and set(result.stage_seconds) == {"decode", "translate", "encode"}


def test_pixels_survive_the_round_trip(basic_mp4: Path, tmp_path: Path) -> None:
    out = tmp_path / "inverted.mkv"
    run_file(basic_mp4, out, negate, encode=EncodeConfig(crf=0, preset="ultrafast"))
    src = np.stack(video_frames_rgb(basic_mp4)).astype(np.float64)
    dst = np.stack(video_frames_rgb(out)).astype(np.float64)
    # Inversion in RGB, then yuv420p chroma subsampling twice: a few levels of error, not a colour shift.
    assert np.abs((255.0 - src) - dst).mean() < 6.0


@pytest.mark.parametrize("fixture", ["vfr_mkv", "vfr_mp4"])
def test_vfr_timestamps_are_kept(fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    src = request.getfixturevalue(fixture)
    out = tmp_path / f"out{src.suffix}"
    result = run_file(src, out, negate)
    assert result.frames_out == len(VFR_PTS)
    assert video_times(out) == [Fraction(p, 1000) for p in VFR_PTS]


def joined_ts(media: Path) -> Path:
    """Two 1 s MPEG-TS clips joined byte for byte (``cat a.ts b.ts``): the second restarts the clock."""
    joined = media / "joined.ts"
    if not joined.exists():
        part = make_clip(media / "part.ts", ClipSpec(frames=25, audio_codec="mp2", audio_seconds=1.0))
        joined.write_bytes(part.read_bytes() * 2)
    return joined


def test_joined_mpeg_ts_segments_play_one_after_the_other(media: Path, tmp_path: Path) -> None:
    src = joined_ts(media)
    out = tmp_path / "out.mp4"
    result = run_file(src, out, negate)
    times = video_times(out)
    # Before: the second clip's 25 frames were squeezed into 25 ticks of 1/90000 s, its audio dropped.
    assert result.frames_out == len(times) == 50 and result.pts_adjusted == 0 and result.splices_joined == 1
    assert set(np.diff(times)) == {Fraction(1, 25)} and times[-1] - times[0] == Fraction(49, 25)
    assert packet_payloads(out) == packet_payloads(src)  # every audio packet, in order
    with av.open(str(out)) as container:
        audio = [p.pts * p.time_base for p in container.demux(audio=0) if p.pts is not None]
    half = len(audio) // 2
    assert abs(audio[half] - audio[0] - 1) < Fraction(3, 100)  # the second clip's sound starts with its pictures


def test_a_gap_in_mpeg_ts_is_kept_not_joined(media: Path, tmp_path: Path) -> None:
    pts = [0, 1, 2, 3, 128, 129, 130]  # 1/25 s ticks: a 5 s pause, within the 10 s a splice needs
    src = make_clip(media / "gap.ts", ClipSpec(pts=pts, audio_codec=None))
    out = tmp_path / "out.mkv"
    run_file(src, out, negate)
    times = video_times(out)
    assert [t - times[0] for t in times] == [Fraction(p, 25) for p in pts]


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


def interlaced_clip(path: Path, frames: int = 8) -> Path:
    """Vertical bars whose two fields are 2 px apart (motion between the fields), coded interlaced."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"flags": "+ildct+ilme", "x264-params": "tff=1"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            picture = np.zeros((48, 64, 3), np.uint8)
            picture[0::2, 4 * i:4 * i + 8] = 255
            picture[1::2, 4 * i + 2:4 * i + 10] = 255
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def comb(pictures: list[np.ndarray]) -> float:
    """Mean step between neighbouring rows: a woven moving edge makes every other row differ."""
    return float(np.mean([np.abs(np.diff(p.astype(np.float64), axis=0)).mean() for p in pictures]))


def test_interlaced_frames_are_deinterlaced_one_for_one(media: Path, basic_mp4: Path, tmp_path: Path) -> None:
    src = interlaced_clip(media / "interlaced.mkv")
    lossless = EncodeConfig(codec="ffv1", crf=None, preset=None, pix_fmt="yuv444p")
    result = run_file(src, tmp_path / "auto.mkv", identity, encode=lossless)
    off = run_file(src, tmp_path / "off.mkv", identity, encode=lossless, config=PipelineConfig(deinterlace="off"))
    assert result.frames_out == 8 and video_times(tmp_path / "auto.mkv") == video_times(src)
    assert result.deinterlaced and not off.deinterlaced
    woven, auto = video_frames_rgb(tmp_path / "off.mkv"), video_frames_rgb(tmp_path / "auto.mkv")
    assert comb(woven) > 10 and comb(auto) < comb(woven) / 4
    # Progressive input never meets the filter: the same pixels either way.
    assert not run_file(basic_mp4, tmp_path / "p-auto.mkv", identity, encode=lossless).deinterlaced
    run_file(basic_mp4, tmp_path / "p-off.mkv", identity, encode=lossless, config=PipelineConfig(deinterlace="off"))
    pairs = zip(video_frames_rgb(tmp_path / "p-auto.mkv"), video_frames_rgb(tmp_path / "p-off.mkv"))
    assert all(np.array_equal(a, b) for a, b in pairs)


def test_avi_with_b_frames_keeps_its_frame_times(media: Path, tmp_path: Path) -> None:
    # AVI stores no presentation times: with B-frames the decoded frames' pts come out shuffled while their dts
    # increase. Each frame must keep its 1/25 s slot, in order, with no timestamp patched by the encoder.
    src = make_clip(media / "bframes.avi", ClipSpec(frames=30, audio_codec=None, video_options={"bf": "3"}))
    out = tmp_path / "out.mkv"
    result = run_file(src, out, negate)
    times = video_times(out)
    assert result.frames_out == len(times) == 30 and result.pts_adjusted == 0
    assert set(np.diff(times)) == {Fraction(1, 25)}
    src_rgb = np.stack(video_frames_rgb(src)).astype(np.float64)
    dst_rgb = np.stack(video_frames_rgb(out)).astype(np.float64)
    assert np.abs((255.0 - src_rgb) - dst_rgb).mean() < 6.0  # the same pictures in the same order


def test_subtitles_transcoded_when_the_container_needs_it(subs_mkv: Path, basic_mp4: Path, tmp_path: Path) -> None:
    out = tmp_path / "subs.mp4"  # mp4 holds neither subrip nor ass: both become mov_text
    result = run_file(subs_mkv, out, negate)
    assert len(result.streams_transcoded) == 2
    assert subtitle_texts(out) == [["Hello", "anime world"]] * 2
    assert packet_payloads(out, "audio") == packet_payloads(subs_mkv, "audio")

    back = tmp_path / "back.mkv"  # and mov_text cannot go into mkv
    result = run_file(basic_mp4, back, negate)
    assert [s.split(" -> ")[1] for s in result.streams_transcoded] == ["ass"]
    assert subtitle_texts(back) == [["Hello", "anime world"]]


def test_audio_transcoded_to_aac_when_the_container_needs_it(media: Path, tmp_path: Path) -> None:
    src = make_clip(media / "pcm_u8.mkv", ClipSpec(audio_codec="pcm_u8", frames=8))
    out = tmp_path / "out.mp4"
    result = run_file(src, out, negate)
    assert result.streams_transcoded == ("#1 audio (pcm_u8) -> aac",)
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac"
        assert abs(float(audio.duration * audio.time_base) - 1.0) < 0.05


@pytest.mark.parametrize("audio, suffix, target", [
    ("aac", ".mpg", "mp2"),  # MPEG-PS takes MPEG audio, AC-3, DTS and PCM only: it failed in the header
    ("libopus", ".mov", "aac"),  # MOV takes Opus at add-stream time and refused it in the header
    ("flac", ".ts", "aac"),  # MPEG-TS wrote FLAC as private data: an audio track read back as "bin_data"
    ("pcm_s16le", ".flv", "aac"),  # FLV aborted the whole process on PCM
    ("aac", ".webm", "opus"),  # 44.1 kHz: libopus refused the source's rate
])
def test_audio_a_container_cannot_carry_is_transcoded(media: Path, tmp_path: Path, audio: str, suffix: str,
                                                      target: str) -> None:
    rate = 48000 if audio == "libopus" else 44100  # CD rate where the codec has it
    src = make_clip(media / f"{audio}-{rate}.mkv", ClipSpec(audio_codec=audio, frames=8, audio_rate=rate))
    out = tmp_path / f"out{suffix}"
    result = run_file(src, out, negate)
    assert result.frames_out == 8
    assert result.streams_transcoded == (f"#1 audio ({audio.removeprefix('lib')}) -> {target}",)
    with av.open(str(out)) as container:
        audio_out = container.streams.audio[0]
        assert audio_out.codec_context.name == target
        decoded = sum(f.samples for f in container.decode(audio_out)) / audio_out.codec_context.sample_rate
    assert abs(decoded - 1.0) < 0.1  # the second of sound, resampled where the encoder needed it


@pytest.mark.parametrize("suffix, size, sar", [
    (".mp4", None, Fraction(32, 27)),  # anamorphic 16:9 in a 3:2 frame stays 16:9 on screen
    (".mov", None, Fraction(32, 27)),
    (".mkv", None, Fraction(32, 27)),
    (".mp4", (128, 72), Fraction(1)),  # resized to a 16:9 frame: square pixels
])
def test_non_square_pixels_keep_the_picture_shape(media: Path, tmp_path: Path, suffix: str, size, sar) -> None:
    src = make_clip(media / "anamorphic.mp4", ClipSpec(width=96, height=64, frames=4, audio_codec=None,
                                                       sample_aspect_ratio=Fraction(32, 27)))
    out = tmp_path / f"out{suffix}"
    run_file(src, out, negate, config=PipelineConfig(size=size))
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        # Before: every output had square pixels, a 16:9 picture squeezed to the frame's 3:2.
        assert (video.sample_aspect_ratio or Fraction(1), video.display_aspect_ratio) == (sar, Fraction(16, 9))


def _two_video_streams(path: Path) -> Path:
    """A small non-default video stream first, then the default one (larger), as in multi-angle or PiP files."""
    with av.open(str(path), "w") as out:
        small, main = out.add_stream("libx264", rate=25), out.add_stream("libx264", rate=25)
        small.width, small.height, main.width, main.height = 32, 24, 64, 48
        small.disposition, main.disposition = av.stream.Disposition(0), av.stream.Disposition.default
        for i in range(6):
            for stream, shape in ((small, (24, 32, 3)), (main, (48, 64, 3))):
                frame = av.VideoFrame.from_ndarray(np.full(shape, 30 * i, np.uint8), format="rgb24")
                frame.pts = i
                out.mux(stream.encode(frame))
        out.mux(small.encode())
        out.mux(main.encode())
    return path


def test_the_video_a_player_shows_is_the_one_stylized(media: Path, tmp_path: Path) -> None:
    # Before: stream #0 (the 32x24 inset) was stylized, and `rt-anime finetune` / eval-temporal read it too.
    from realtime.commands.eval_temporal import _frames
    from realtime.finetune.clip import scan_clip

    src = _two_video_streams(media / "two-videos.mkv")
    out = tmp_path / "out.mkv"
    run_file(src, out, negate)
    assert video_frames_rgb(out)[0].shape == (48, 64, 3)
    assert scan_clip(src).size == (64, 48)
    with av.open(str(src)) as container:
        assert next(_frames(container, "INPUT", str(src))).shape == (48, 64, 3)


def test_text_subtitles_are_not_copied_into_mpeg_ps_as_dvd_pictures(subs_mkv: Path, tmp_path: Path) -> None:
    result = run_file(subs_mkv, tmp_path / "out.mpg", negate)
    assert len(result.streams_dropped) == 2
    with av.open(str(tmp_path / "out.mpg")) as container:
        assert not container.streams.subtitles


def test_avi_ticks_once_per_frame_and_has_no_b_frames(media: Path, tmp_path: Path) -> None:
    # AVI has one frame rate and no presentation times: in the source's 1/12800 it was a 12800 fps stream of empty
    # slots, and B-frames made every frame play late.
    src = make_clip(media / "for_avi.mp4", ClipSpec(frames=12, audio_codec=None))
    out = tmp_path / "out.avi"
    run_file(src, out, negate)
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert video.time_base == Fraction(1, 25) and video.frames == 12
        assert [p.dts for p in container.demux(video) if p.size] == list(range(12))


def test_chapters_and_attachments(subs_mkv: Path, media: Path, tmp_path: Path) -> None:
    src = add_chapters_and_attachment(subs_mkv, media / "chapters.mkv")
    out = tmp_path / "out.mkv"
    result = run_file(src, out, negate)
    assert result.streams_dropped == ()
    with av.open(str(src)) as a, av.open(str(out)) as b:
        assert [c["metadata"]["title"] for c in b.chapters()] == ["Intro", "Main"]
        assert [c["start"] * c["time_base"] for c in b.chapters()] == [
            c["start"] * c["time_base"] for c in a.chapters()
        ]
        assert [s.metadata.get("filename") for s in b.streams if s.type == "attachment"] == ["font.ttf"]
    assert packet_payloads(out, "subtitle") == packet_payloads(src, "subtitle")

    mp4 = tmp_path / "out.mp4"  # mp4 keeps chapters but has no attachments: dropped with a warning
    result = run_file(src, mp4, negate)
    assert result.streams_dropped == ("#4 attachment (font.ttf)",)
    with av.open(str(mp4)) as b:
        assert [c["metadata"]["title"] for c in b.chapters()] == ["Intro", "Main"]


def test_live_mode_on_a_file_drops_but_keeps_timestamps(basic_mp4: Path, tmp_path: Path) -> None:
    def slow(x: torch.Tensor) -> torch.Tensor:
        import time

        time.sleep(0.02)
        return x

    out = tmp_path / "live.mp4"
    result = run_file(basic_mp4, out, slow, config=PipelineConfig(mode="live"))
    times = video_times(out)
    assert result.frames_dropped > 0 and result.max_pending <= 1
    assert result.frames_out == len(times) == result.frames_in - result.frames_dropped
    assert set(times) <= set(video_times(basic_mp4))  # the frames that survive keep their own timestamps
    assert packet_payloads(out, "audio") == packet_payloads(basic_mp4, "audio")  # audio is never dropped


def test_dts_guard_drops_duplicated_audio_packet(basic_mp4: Path, media: Path, tmp_path: Path) -> None:
    src = duplicate_audio_packet(basic_mp4, media / "dup_dts.mkv", index=5)
    out = tmp_path / "out.mp4"
    result = run_file(src, out, negate)
    assert result.packets_dropped_dts == 1
    assert packet_payloads(out, "audio") == packet_payloads(basic_mp4, "audio")
    assert result.frames_out == 24


def test_odd_size_is_kept(odd_mp4: Path, tmp_path: Path) -> None:
    shapes: list[tuple[int, ...]] = []

    def record(x: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(x.shape))
        return -x

    out = tmp_path / "odd.mp4"
    result = run_file(odd_mp4, out, record, config=PipelineConfig(size_multiple=8, batch_size=3))
    assert result.frames_out == 12 and video_times(out) == video_times(odd_mp4)
    assert set(shapes) == {(3, 3, 80, 104)}  # reflect-padded to multiples of 8
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height, stream.pix_fmt) == (101, 77, "yuv444p")

    padded = tmp_path / "odd_padded.mp4"
    run_file(odd_mp4, padded, negate, encode=EncodeConfig(odd_size="pad"))
    with av.open(str(padded)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height, stream.pix_fmt) == (102, 78, "yuv420p")

    with pytest.raises(EncoderError, match="101x77"):
        run_file(odd_mp4, tmp_path / "odd_error.mp4", negate, encode=EncodeConfig(odd_size="error"))
    assert_no_output(tmp_path / "odd_error.mp4")


def test_max_side_and_forced_size(odd_mp4: Path, tmp_path: Path) -> None:
    shapes: list[tuple[int, ...]] = []

    def record(x: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(x.shape))
        return x

    out = tmp_path / "capped.mp4"
    run_file(odd_mp4, out, record, config=PipelineConfig(max_side=32, size_multiple=8))
    assert set(shapes) == {(1, 3, 24, 32)}  # 101x77 capped to 32x24, already a multiple of 8
    with av.open(str(out)) as container:
        assert (container.streams.video[0].width, container.streams.video[0].height) == (101, 77)

    resized = tmp_path / "resized.mp4"
    result = run_file(odd_mp4, resized, negate, config=PipelineConfig(size=(80, 60)))
    assert result.frames_out == 12
    with av.open(str(resized)) as container:
        assert (container.streams.video[0].width, container.streams.video[0].height) == (80, 60)


def test_rotation_is_kept(rotated_mp4: Path, tmp_path: Path) -> None:
    out = tmp_path / "rotated.mp4"
    run_file(rotated_mp4, out, negate)
    assert first_frame_rotation(out) == first_frame_rotation(rotated_mp4)
    assert first_frame_rotation(out)[0] == 90
    out_mkv = tmp_path / "rotated.mkv"
    run_file(rotated_mp4, out_mkv, negate)
    assert first_frame_rotation(out_mkv)[0] == 90


def test_ten_bit_input(tenbit_mkv: Path, tmp_path: Path) -> None:
    out8 = tmp_path / "eight.mkv"
    assert run_file(tenbit_mkv, out8, negate).frames_out == 12
    out10 = tmp_path / "ten.mkv"
    run_file(tenbit_mkv, out10, lambda x: x, encode=EncodeConfig(pix_fmt="yuv420p10le", crf=0))
    with av.open(str(out10)) as container:
        assert container.streams.video[0].pix_fmt == "yuv420p10le"
    with av.open(str(tenbit_mkv)) as a, av.open(str(out10)) as b:
        fa = next(a.decode(video=0)).to_ndarray(format="rgb48le").astype(np.float64)
        fb = next(b.decode(video=0)).to_ndarray(format="rgb48le").astype(np.float64)
    assert np.abs(fa - fb).mean() < 0.02 * 65535  # identity through the rgb48 path


def test_batches_keep_order(basic_mp4: Path, tmp_path: Path) -> None:
    out = tmp_path / "batched.mp4"
    result = run_file(basic_mp4, out, negate, config=PipelineConfig(batch_size=5, queue_size=2))
    assert result.frames_out == 24
    assert video_times(out) == video_times(basic_mp4)


# --- bad inputs and outputs -------------------------------------------------------------------------------------


def test_truncated_input(truncated_mp4: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with pytest.raises(TruncatedInputError) as info:
        run_file(truncated_mp4, out, negate)
    assert info.value.frames_expected == 30
    assert 0 < info.value.frames_decoded < 30
    assert info.value.frames_lost == 30 - info.value.frames_decoded
    assert str(truncated_mp4) in str(info.value)
    assert_no_output(out)

    result = run_file(truncated_mp4, out, negate, config=PipelineConfig(allow_partial=True))
    assert result.truncated and result.frames_expected == 30
    assert result.frames_out == result.frames_in == len(video_times(out)) == 30 - result.frames_lost


def test_corrupt_packet_costs_its_frame_only(basic_mp4: Path, media: Path, tmp_path: Path) -> None:
    src = corrupt_video_packet(basic_mp4, media / "corrupt.mp4", index=10)
    out = tmp_path / "out.mp4"
    result = run_file(src, out, negate)
    assert result.decode_errors >= 1
    out_times = video_times(out)
    assert result.frames_out == result.frames_in == len(out_times) < 24
    assert set(out_times) <= set(video_times(basic_mp4))  # survivors keep their own timestamps
    assert packet_payloads(out, "audio") == packet_payloads(basic_mp4, "audio")


def test_audio_only_input(media: Path, tmp_path: Path) -> None:
    src = make_audio_only(media / "audio_only.m4a")
    out = tmp_path / "out.mp4"
    with pytest.raises(NoVideoError, match="no video stream"):
        run_file(src, out, negate)
    assert_no_output(out)


def test_video_stream_without_frames(media: Path, tmp_path: Path) -> None:
    src = make_clip(media / "empty_video.mkv", ClipSpec(frames=0))
    with pytest.raises(NoVideoError):
        run_file(src, tmp_path / "out.mp4", negate)
    assert_no_output(tmp_path / "out.mp4")


def test_missing_and_non_media_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        run_file(tmp_path / "nope.mp4", tmp_path / "out.mp4", negate)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(InputError, match="cannot open"):
        run_file(junk, tmp_path / "out.mp4", negate)
    assert_no_output(tmp_path / "out.mp4")


def test_output_is_input_is_refused(basic_mp4: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    src.write_bytes(basic_mp4.read_bytes())
    before = sha256(src)
    with pytest.raises(OutputIsInputError):
        run_file(src, src, negate)
    with pytest.raises(OutputIsInputError):
        run_file(src, tmp_path / "." / "in.mp4", negate)
    link = tmp_path / "link.mp4"
    os.link(src, link)
    with pytest.raises(OutputIsInputError):
        run_file(src, link, negate)
    assert sha256(src) == before


def test_unwritable_output(basic_mp4: Path, tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="does not exist"):
        run_file(basic_mp4, tmp_path / "missing_dir" / "out.mp4", negate)
    a_file = tmp_path / "file"
    a_file.write_bytes(b"")
    with pytest.raises(OutputError):
        run_file(basic_mp4, a_file / "out.mp4", negate)
    existing = tmp_path / "existing.mp4"
    existing.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="overwrite"):
        run_file(basic_mp4, existing, negate, encode=EncodeConfig(overwrite=False))
    assert existing.read_bytes() == b"keep me"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_output_directory(basic_mp4: Path, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not writable"):
            run_file(basic_mp4, ro / "out.mp4", negate)
    finally:
        ro.chmod(0o700)


def test_bad_encoder_settings(basic_mp4: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with pytest.raises(EncoderError, match="not an encoder"):
        run_file(basic_mp4, out, negate, encode=EncodeConfig(codec="no_such_codec"))
    with pytest.raises(EncoderError, match="pix_fmt"):
        run_file(basic_mp4, out, negate, encode=EncodeConfig(pix_fmt="rgb565le"))
    assert_no_output(out)


# --- failures inside the pipeline -------------------------------------------------------------------------------


class Boom(RuntimeError):
    pass


def test_translate_error_propagates_without_output(basic_mp4: Path, tmp_path: Path) -> None:
    calls = 0

    def failing(x: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise Boom("model exploded")
        return x

    out = tmp_path / "out.mp4"
    with pytest.raises(Boom, match="model exploded"):
        run_file(basic_mp4, out, failing, config=PipelineConfig(queue_size=1))
    assert_no_output(out)


def test_translate_wrong_shape(basic_mp4: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with pytest.raises(TranslateOutputError, match="shape"):
        run_file(basic_mp4, out, lambda x: x[:, :, ::2])
    with pytest.raises(TranslateOutputError, match="torch.Tensor"):
        run_file(basic_mp4, out, lambda x: x.numpy())
    assert_no_output(out)


def test_decode_error_while_translate_is_backed_up(basic_mp4: Path, tmp_path: Path, monkeypatch) -> None:
    # The decode thread raises while translate is slow and both queues are full: must not deadlock.
    import realtime.pipeline.decode as decode_module

    real = decode_module._frame_to_tensor
    count = 0

    def flaky(frame: av.VideoFrame, device: torch.device | None = None) -> torch.Tensor:
        nonlocal count
        count += 1
        if count == 8:
            raise Boom("decoder exploded")
        return real(frame, device)

    def slow(x: torch.Tensor) -> torch.Tensor:
        import time

        time.sleep(0.05)
        return x

    monkeypatch.setattr(decode_module, "_frame_to_tensor", flaky)
    out = tmp_path / "out.mp4"
    with pytest.raises(Boom, match="decoder exploded"):
        run_file(basic_mp4, out, slow, config=PipelineConfig(queue_size=1))
    assert_no_output(out)


def test_progress_error_and_keyboard_interrupt_leave_no_output(basic_mp4: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"

    def stop_at_3(done: int, total: int | None) -> None:
        if done == 3:
            raise Boom("progress bar failed")

    with pytest.raises(Boom):
        run_file(basic_mp4, out, negate, progress=stop_at_3)
    assert_no_output(out)

    def interrupt_in_worker(x: torch.Tensor) -> torch.Tensor:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_file(basic_mp4, out, interrupt_in_worker)
    assert_no_output(out)

    def ctrl_c(done: int, total: int | None) -> None:
        if done == 3:
            _thread.interrupt_main()  # what Ctrl-C does: KeyboardInterrupt in the main thread

    def slow_negate(x: torch.Tensor) -> torch.Tensor:
        # The main thread sees the interrupt at its next poll (0.1 s): the rest of the clip must take longer than
        # that, or the run ends first and the interrupt lands after it (a finished output is then correct).
        time.sleep(0.05)
        return negate(x)

    # interrupt_main() calls whatever SIGINT handler is installed; libraries used by earlier tests may replace
    # Python's default one, so install it for the duration of this check.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_file(basic_mp4, out, slow_negate, progress=ctrl_c)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert_no_output(out)


def test_existing_output_survives_a_failed_run(basic_mp4: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous result")
    with pytest.raises(Boom):
        run_file(basic_mp4, out, lambda x: (_ for _ in ()).throw(Boom("no")))
    assert out.read_bytes() == b"previous result"  # replaced only on success


def test_errors_are_one_line_and_name_the_path(media: Path, tmp_path: Path) -> None:
    src = make_audio_only(media / "audio_only_2.m4a")
    with pytest.raises(PipelineError) as info:
        run_file(src, tmp_path / "out.mp4", negate)
    message = str(info.value)
    assert "\n" not in message and message.endswith(str(src))
