"""probe / require_streams on the real clips in /work/shared and on synthetic ones; the MediaError contract."""

from __future__ import annotations

import dataclasses

import pytest

from verl_avconfuse.media import (
    MediaError,
    MissingStreamError,
    UnreadableMediaError,
    probe,
    require_streams,
    tone,
    write_synthetic_video,
)

from conftest import MEDIA

# Real files: these two ship in tests/fixtures/media/; the 60 s drill clip is conftest's drill_clip (shared/).
SILENT_VIDEO = "video_only_no_audio.mp4"
WAV = "clip_16k_mono.wav"


def test_probe_drill_clip_reports_both_streams(drill_clip):
    info = probe(drill_clip)
    assert info.has_audio and info.has_video
    # 60 s of 60 fps h264 (3602 frames x 256 ticks at 1/15360 s) and 44.1 kHz stereo AAC.
    assert info.duration_s == pytest.approx(60.0333, abs=1e-3)
    assert (info.video_width, info.video_height, info.video_codec) == (480, 360, "h264")
    assert info.video_fps == pytest.approx(60.0)
    assert info.video_frames == 3602
    assert (info.audio_sample_rate, info.audio_channels, info.audio_codec) == (44100, 2, "aac")


def test_probe_video_without_audio():
    info = probe(MEDIA / SILENT_VIDEO)
    assert info.has_video and not info.has_audio
    assert info.audio_sample_rate is None and info.audio_channels is None and info.audio_codec is None
    assert (info.video_width, info.video_height) == (224, 224)
    assert info.duration_s == pytest.approx(5.0)
    assert info.video_frames == 150 and info.video_fps == pytest.approx(30.0)


def test_probe_wav_is_audio_only():
    info = probe(MEDIA / WAV)
    assert info.has_audio and not info.has_video
    assert (info.audio_sample_rate, info.audio_channels, info.audio_codec) == (16000, 1, "pcm_s16le")
    assert info.duration_s == pytest.approx(46421 / 16000, abs=1e-5)  # 46421 samples in the file
    assert info.video_width is None and info.video_frames is None


def test_require_streams_names_the_missing_soundtrack():
    with pytest.raises(MissingStreamError) as caught:
        require_streams(MEDIA / SILENT_VIDEO, audio=True, video=True)
    err = caught.value
    assert isinstance(err, MediaError) and isinstance(err, ValueError)
    assert err.path.name == SILENT_VIDEO
    assert str(err).startswith(f"{SILENT_VIDEO}: no audio stream")
    assert "soundtrack" in err.reason


def test_require_streams_names_the_missing_picture():
    with pytest.raises(MissingStreamError, match=rf"{WAV}: no video stream \(this sample needs the picture\)"):
        require_streams(MEDIA / WAV, video=True)


def test_require_streams_returns_info_when_present(drill_clip):
    info = require_streams(drill_clip, audio=True, video=True)
    assert info == probe(drill_clip)
    assert require_streams(MEDIA / WAV, audio=True).audio_sample_rate == 16000


def test_missing_file_is_unreadable(tmp_path):
    with pytest.raises(UnreadableMediaError, match="nope.mp4: file not found"):
        probe(tmp_path / "nope.mp4")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.mp4", b"hello, this is not a video\n"),
        ("empty.wav", b""),
        # FFmpeg opens this as an .lrc lyrics file: readable, but no audio and no video in it.
        ("lyrics.txt", b"[00:01.00]la la la\n[00:02.00]la la\n"),
    ],
)
def test_non_media_file_is_unreadable(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnreadableMediaError) as caught:
        probe(path)
    assert str(caught.value).startswith(f"{name}: ")


def test_directory_is_unreadable(tmp_path):
    with pytest.raises(UnreadableMediaError, match="is a directory"):
        probe(tmp_path)


def test_probe_synthetic_clip(tmp_path):
    path = write_synthetic_video(tmp_path / "clip.mp4", duration_s=2.0, fps=10, size=(64, 48), audio=tone(440, 2.0))
    info = probe(path)
    assert (info.video_width, info.video_height, info.video_frames) == (64, 48, 20)
    assert info.video_fps == pytest.approx(10.0)
    assert (info.audio_sample_rate, info.audio_channels, info.audio_codec) == (16000, 1, "aac")
    assert info.duration_s == pytest.approx(2.0, abs=0.01)


def test_media_info_is_frozen():
    info = probe(MEDIA / WAV)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.duration_s = 1.0  # type: ignore[misc]
