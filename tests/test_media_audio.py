"""load_audio / save_wav: real clips (AAC in mp4, PCM wav), resampling accuracy, ranges, errors."""

from __future__ import annotations

import shutil

import av
import numpy as np
import pytest
import soundfile as sf

from verl_avconfuse.media import (
    MediaError,
    MissingStreamError,
    UnreadableMediaError,
    load_audio,
    save_wav,
    tone,
    write_synthetic_video,
    write_wav,
)

from conftest import MEDIA

# Real files: these two ship in tests/fixtures/media/; the 60 s drill clip is conftest's drill_clip (shared/).
SILENT_VIDEO = "video_only_no_audio.mp4"
WAV = "clip_16k_mono.wav"
# The drill clip's AAC stream declares 2,647,323 samples at 44.1 kHz; its 2,586 decoded frames hold
# 2,586 x 1024 = 2,648,064, i.e. 741 samples of encoder padding at the end.
DRILL_SAMPLES_44K = 2_647_323
DRILL_DECODED_44K = 2_586 * 1024


@pytest.fixture(scope="module")
def drill_native(drill_clip) -> np.ndarray:
    return load_audio(drill_clip, sr=None, mono=False)


def test_drill_mp4_decodes_to_16k_mono(drill_clip):
    samples = load_audio(drill_clip)
    assert samples.dtype == np.float32 and samples.ndim == 1
    expected = round(DRILL_SAMPLES_44K * 16000 / 44100)  # 960,480: the stream's declared 60.030 s
    assert abs(len(samples) - expected) <= 1
    assert abs(len(samples) - 60 * 16000) < 500
    assert np.abs(samples).max() <= 1.0
    assert np.sqrt(np.mean(samples**2)) > 0.01  # a real soundtrack, not silence


def test_aac_end_padding_is_trimmed_to_the_declared_duration(drill_clip, drill_native):
    with av.open(str(drill_clip)) as container:
        decoded = sum(frame.samples for frame in container.decode(audio=0))
    assert decoded == DRILL_DECODED_44K  # what FFmpeg hands back, padding included
    assert drill_native.shape == (DRILL_SAMPLES_44K, 2)


def test_mono_is_the_mean_of_the_channels(drill_clip, drill_native):
    mono = load_audio(drill_clip, sr=None, mono=True)
    np.testing.assert_allclose(mono, drill_native.mean(axis=1), atol=1e-7)


def test_range_after_a_seek_equals_the_same_range_of_a_full_decode(drill_clip, drill_native):
    # start_s >= 1 s seeks; the 0.2 s pre-roll must make the result sample-exact.
    segment = load_audio(drill_clip, sr=None, mono=False, start_s=20.0, end_s=21.5)
    np.testing.assert_array_equal(segment, drill_native[20 * 44100 : round(21.5 * 44100)])
    assert len(load_audio(drill_clip, start_s=20.0, end_s=21.5)) == 24000


def test_end_past_the_end_is_clipped(drill_clip):
    tail = load_audio(drill_clip, sr=None, start_s=59.0, end_s=120.0)
    assert len(tail) == DRILL_SAMPLES_44K - 59 * 44100


def test_video_without_audio_raises_missing_stream_naming_the_file():
    with pytest.raises(MissingStreamError) as caught:
        load_audio(MEDIA / SILENT_VIDEO)
    assert SILENT_VIDEO in str(caught.value)
    assert "no audio stream" in caught.value.reason


def test_wav_fast_path_matches_libsndfile():
    samples = load_audio(MEDIA / WAV)
    reference, sr = sf.read(MEDIA / WAV, dtype="float32")
    assert sr == 16000 and samples.shape == (46421,)
    np.testing.assert_array_equal(samples, reference)
    np.testing.assert_array_equal(load_audio(MEDIA / WAV, start_s=1.0, end_s=2.0), reference[16000:32000])


def test_wav_read_by_ffmpeg_equals_the_fast_path(tmp_path):
    # An unknown extension routes the same bytes through PyAV; 16-bit PCM must decode identically.
    disguised = tmp_path / "clip.bin"
    shutil.copyfile(MEDIA / WAV, disguised)
    np.testing.assert_array_equal(load_audio(disguised), load_audio(MEDIA / WAV))
    np.testing.assert_array_equal(
        load_audio(disguised, start_s=1.25, end_s=2.5), load_audio(MEDIA / WAV, start_s=1.25, end_s=2.5)
    )


def _peak_hz(samples: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / sr)[np.argmax(spectrum)])


@pytest.mark.parametrize("source_sr", [44100, 48000, 22050, 8000])
def test_resampling_keeps_tone_frequency_and_amplitude(tmp_path, source_sr):
    path = write_wav(tmp_path / "tone.wav", tone(1000.0, 2.0, sr=source_sr, amplitude=0.5), sr=source_sr)
    samples = load_audio(path, sr=16000)
    assert len(samples) == 32000
    assert _peak_hz(samples, 16000) == pytest.approx(1000.0, abs=0.5)  # 0.5 Hz = one FFT bin of 2 s
    interior = samples[800:-800]  # away from the filter's edge transients
    amplitude = np.sqrt(2 * np.mean(interior**2))
    assert amplitude == pytest.approx(0.5, abs=0.005)
    # Phase too: the resampled signal lines up with an ideal 16 kHz tone (no filter delay).
    ideal = tone(1000.0, 2.0, sr=16000, amplitude=0.5)[800:-800]
    assert np.abs(interior - ideal).max() < 2e-3


def test_stereo_downmix_averages_channels(tmp_path):
    left, right = tone(440, 1.0, amplitude=0.4), tone(440, 1.0, amplitude=0.2)
    path = write_wav(tmp_path / "stereo.wav", np.stack([left, right], axis=1), sr=16000)
    np.testing.assert_allclose(load_audio(path), tone(440, 1.0, amplitude=0.3), atol=2 / 32768)
    assert load_audio(path, mono=False).shape == (16000, 2)


def test_save_wav_round_trip_and_clipping(tmp_path):
    samples = np.array([0.0, 0.5, -0.5, 1.5, -2.0, 0.25], dtype=np.float32)
    path = save_wav(tmp_path / "x.wav", samples, 16000)
    np.testing.assert_allclose(load_audio(path), [0.0, 0.5, -0.5, 1.0, -1.0, 0.25], atol=1 / 32768)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.wav"]  # no temp file left behind


def test_save_wav_rejects_bad_input_without_writing(tmp_path):
    with pytest.raises(MediaError, match="NaN"):
        save_wav(tmp_path / "nan.wav", np.array([0.0, np.nan], dtype=np.float32), 16000)
    with pytest.raises(MediaError, match="floating point"):
        save_wav(tmp_path / "int.wav", np.array([1, 2, 3], dtype=np.int16), 16000)
    with pytest.raises(MediaError, match="does not exist"):
        save_wav(tmp_path / "missing" / "x.wav", np.zeros(10, np.float32), 16000)
    assert list(tmp_path.iterdir()) == []


def test_invalid_ranges_name_the_file(tmp_path):
    aac_in_mp4 = write_synthetic_video(tmp_path / "clip.mp4", duration_s=2.0, audio=tone(440, 2.0))
    with pytest.raises(MediaError, match=rf"{WAV}: end_s=1.0 must be greater than start_s=2.0"):
        load_audio(MEDIA / WAV, start_s=2.0, end_s=1.0)
    with pytest.raises(MediaError, match="past the end"):
        load_audio(MEDIA / WAV, start_s=10.0)
    with pytest.raises(MediaError, match="past the end"):
        load_audio(aac_in_mp4, start_s=3.0)
    with pytest.raises(MediaError, match="start_s"):
        load_audio(MEDIA / WAV, start_s=-1.0)


def test_missing_file_is_unreadable(tmp_path):
    with pytest.raises(UnreadableMediaError, match="gone.wav: file not found"):
        load_audio(tmp_path / "gone.wav")
