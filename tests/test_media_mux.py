"""replace_audio (video stream copied byte for byte), atomic writes, re-encode, and the synthetic clips."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from verl_avconfuse.media import (
    MediaError,
    MissingStreamError,
    load_audio,
    noise,
    probe,
    reencode_with_audio,
    replace_audio,
    tone,
    video_packets_digest,
    write_synthetic_video,
    write_wav,
)

from conftest import MEDIA

REPO = Path(__file__).resolve().parents[1]
# Real files: these two ship in tests/fixtures/media/; the 60 s drill clip is conftest's drill_clip (shared/).
SILENT_VIDEO = "video_only_no_audio.mp4"
WAV = "clip_16k_mono.wav"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """2 s, 10 fps, 64x48 h264 with a 300 Hz soundtrack (the one replace_audio must drop)."""
    return write_synthetic_video(tmp_path_factory.mktemp("mux") / "clip.mp4", audio=tone(300, 2.0), seed=1)


def _video_packet_bytes(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.video[0]) if p.size]


def _best_lag(a: np.ndarray, b: np.ndarray, max_lag: int = 64) -> int:
    n = min(len(a), len(b)) - 2 * max_lag
    scores = [
        float(np.dot(a[max_lag + lag : max_lag + lag + n], b[max_lag : max_lag + n]))
        for lag in range(-max_lag, max_lag + 1)
    ]
    return int(np.argmax(scores)) - max_lag


def _signal(duration_s: float, sr: int = 16000) -> np.ndarray:
    """A soundtrack that is easy to recognise: two tones plus a little noise."""
    return (
        tone(523.25, duration_s, sr) + tone(1318.5, duration_s, sr, amplitude=0.2) + noise(duration_s, sr, 0.02, seed=3)
    )


def test_replace_audio_copies_the_drill_video_packets_byte_for_byte(drill_clip, tmp_path):
    source = drill_clip
    soundtrack = _signal(60.0334)
    out = tmp_path / "drill_new_audio.mp4"
    info = replace_audio(source, soundtrack, out, sr=16000)

    assert _video_packet_bytes(out) == _video_packet_bytes(source)  # 3602 packets, none re-encoded
    assert video_packets_digest(out) == video_packets_digest(source)
    assert (info.video_codec, info.video_frames, info.video_width, info.video_height) == ("h264", 3602, 480, 360)
    assert (info.audio_codec, info.audio_sample_rate, info.audio_channels) == ("aac", 16000, 1)

    decoded = load_audio(out, sr=16000)
    # The soundtrack is cut to the video's 60.0333 s (960,533 samples); AAC's last-frame rounding adds <= 32.
    assert 0 <= len(decoded) - 960533 <= 32
    n = min(len(decoded), len(soundtrack))
    assert np.corrcoef(decoded[:n], soundtrack[:n])[0, 1] > 0.99
    assert _best_lag(decoded, soundtrack) == 0  # the encoder delay is compensated: no shift


def test_new_soundtrack_replaces_the_old_one(clip, tmp_path):
    new = _signal(2.0)
    out = replace_audio(clip, new, tmp_path / "out.mp4", sr=16000).path
    decoded = load_audio(out)
    old = tone(300, 2.0)
    n = min(len(decoded), len(new))
    assert np.corrcoef(decoded[:n], new[:n])[0, 1] > 0.99
    assert abs(np.corrcoef(decoded[:n], old[:n])[0, 1]) < 0.05
    assert _video_packet_bytes(out) == _video_packet_bytes(clip)


def test_pcm_soundtrack_is_trimmed_to_the_video_duration(clip, tmp_path):
    long = _signal(3.0)
    out = replace_audio(clip, long, tmp_path / "trim.mkv", sr=16000, audio_codec="pcm_s16le").path
    assert probe(out).audio_codec == "pcm_s16le"
    decoded = load_audio(out)
    assert len(decoded) == 32000  # the clip's 2.0 s of video at 16 kHz, exactly
    np.testing.assert_allclose(decoded, np.clip(long[:32000], -1, 1), atol=1 / 32768)


def test_pcm_soundtrack_is_padded_with_silence(clip, tmp_path):
    short = tone(440, 0.5)
    out = replace_audio(clip, short, tmp_path / "pad.mov", sr=16000, audio_codec="pcm_s16le").path
    decoded = load_audio(out)
    assert len(decoded) == 32000
    np.testing.assert_allclose(decoded[:8000], short, atol=1 / 32768)
    assert np.all(decoded[8000:] == 0.0)


def test_soundtrack_from_a_file_keeps_its_rate(tmp_path):
    out = tmp_path / "silent_plus_wav.mp4"
    info = replace_audio(MEDIA / SILENT_VIDEO, MEDIA / WAV, out)
    assert info.has_audio and info.audio_sample_rate == 16000
    assert video_packets_digest(out) == video_packets_digest(MEDIA / SILENT_VIDEO)
    wav = load_audio(MEDIA / WAV)
    decoded = load_audio(out)
    assert len(decoded) == pytest.approx(5 * 16000, abs=32)  # padded to the 5 s video
    assert np.corrcoef(decoded[: len(wav)], wav)[0, 1] > 0.98
    assert np.sqrt(np.mean(decoded[len(wav) + 2048 :] ** 2)) < 1e-3  # silence after the wav ends


def test_stereo_soundtrack_and_resampled_file_input(clip, tmp_path):
    stereo = np.stack([tone(440, 2.0, 22050), tone(660, 2.0, 22050)], axis=1)
    info = replace_audio(clip, stereo, tmp_path / "stereo.mp4", sr=22050)
    assert (info.audio_channels, info.audio_sample_rate) == (2, 22050)
    wav = write_wav(tmp_path / "tone48k.wav", tone(1000, 2.0, 48000), 48000)
    assert replace_audio(clip, wav, tmp_path / "resampled.mp4", sr=16000).audio_sample_rate == 16000


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_failed_writes_leave_no_output_and_no_temp_file(clip, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    audio = tone(440, 2.0)
    with pytest.raises(MediaError, match="no_such_codec"):
        replace_audio(clip, audio, out_dir / "a.mp4", sr=16000, audio_codec="no_such_codec")
    # webm cannot hold h264: fails after the temp file was created, inside the write.
    with pytest.raises(MediaError, match="b.webm: cannot copy the h264 video"):
        replace_audio(clip, audio, out_dir / "b.webm", sr=16000)
    with pytest.raises(MediaError, match="no container format"):
        replace_audio(clip, audio, out_dir / "c.notaformat", sr=16000)
    assert _listing(out_dir) == []


def test_failed_write_keeps_the_previous_file(clip, tmp_path):
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"previous version")
    with pytest.raises(MediaError):
        replace_audio(clip, tone(440, 2.0), out, sr=16000, audio_codec="no_such_codec")
    assert out.read_bytes() == b"previous version"
    assert _listing(tmp_path) == ["keep.mp4"]


def test_interrupted_write_leaves_nothing(drill_clip, tmp_path):
    # Interrupt a re-encode of the 60 s drill clip (Ctrl-C) while it writes into the temp file. On an idle
    # machine the whole write can take less than the parent's 10 ms polling step, so the child hands the
    # muxer its video packets one every 0.2 s: the write is still the real one, only paced.
    out = tmp_path / "interrupted.mp4"
    code = (
        # Ctrl-C's handler, whatever the test inherited: a command started in the background (`nohup ... &`)
        # runs with SIGINT ignored, and Python keeps an ignored SIGINT ignored in the child.
        "import signal, time, numpy as np\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from verl_avconfuse.media import mux\n"
        "real = mux._mux_interleaved\n"
        "def paced(container, video_packets, audio_packets, out_path):\n"
        "    def trickle():\n"
        "        for packet in video_packets:\n"
        "            time.sleep(0.2)\n"
        "            yield packet\n"
        "    return real(container, trickle(), audio_packets, out_path)\n"
        "mux._mux_interleaved = paced\n"
        f"mux.reencode_with_audio({str(drill_clip)!r}, np.zeros(16000, np.float32), {str(out)!r}, sr=16000)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        # the paced write lasts minutes; on a loaded machine the imports and the probe before it take a while
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".interrupted.mp4.*")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, f"the write finished or failed before it could be interrupted: {proc.stderr.read()}"
        assert list(tmp_path.glob(".interrupted.mp4.*")), "no temp file within 120 s"
        time.sleep(0.3)  # let it write into the temp file for a while
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:  # an assertion above failed, or SIGINT did not stop it
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0 and "KeyboardInterrupt" in stderr
    assert _listing(tmp_path) == []


def test_bad_audio_arguments(clip, tmp_path):
    with pytest.raises(MediaError, match="sr .* is required"):
        replace_audio(clip, tone(440, 1.0), tmp_path / "x.mp4")
    with pytest.raises(MediaError, match="1 or 2 channels"):
        replace_audio(clip, np.zeros((100, 3), np.float32), tmp_path / "x.mp4", sr=16000)
    with pytest.raises(MissingStreamError, match="clip.wav: no video stream"):
        replace_audio(
            write_wav(tmp_path / "clip.wav", tone(440, 1.0), 16000), tone(440, 1.0), tmp_path / "x.mp4", sr=16000
        )
    assert _listing(tmp_path) == ["clip.wav"]


def test_reencode_changes_the_video_bytes_but_keeps_the_clip(clip, tmp_path):
    info = reencode_with_audio(clip, _signal(2.0), tmp_path / "re.mp4", sr=16000)
    assert info.video_codec in ("h264", "mpeg4") and info.video_frames == 20
    assert (info.video_width, info.video_height) == (64, 48)
    assert info.duration_s == pytest.approx(2.0, abs=0.05)
    assert video_packets_digest(info.path) != video_packets_digest(clip)


def test_video_packets_digest(clip, tmp_path):
    assert video_packets_digest(clip) == video_packets_digest(clip)
    other = write_synthetic_video(tmp_path / "other.mp4", seed=2)
    assert video_packets_digest(other) != video_packets_digest(clip)
    with pytest.raises(MissingStreamError):
        video_packets_digest(write_wav(tmp_path / "a.wav", tone(440, 0.1), 16000))


# --- synthetic clips (synth.py) --------------------------------------------------------------------


def test_synthetic_video_is_deterministic_and_seeded(tmp_path):
    # Several runs: x264 with mbtree on differed about one run in ten (see synth.py).
    audio = tone(440, 2.0)
    same = {
        hashlib.sha256(write_synthetic_video(tmp_path / f"{k}.mp4", audio=audio, seed=5).read_bytes()).hexdigest()
        for k in range(8)
    }
    other = hashlib.sha256(write_synthetic_video(tmp_path / "other.mp4", audio=audio, seed=6).read_bytes()).hexdigest()
    assert len(same) == 1 and other not in same


def test_synthetic_video_content(tmp_path):
    from verl_avconfuse.media import load_video_frames

    path = write_synthetic_video(tmp_path / "s.mp4", duration_s=1.5, fps=8, size=(80, 60), audio=tone(440, 1.0))
    info = probe(path)
    assert (info.video_width, info.video_height, info.video_frames) == (80, 60, 12)
    frames, _ = load_video_frames(path, fps=8.0)
    assert frames.shape == (12, 60, 80, 3)
    assert all(np.abs(frames[k + 1].astype(int) - frames[k]).mean() > 1.0 for k in range(11))  # it moves
    decoded = load_audio(path)
    assert len(decoded) == pytest.approx(24000, abs=32)  # audio padded to the 1.5 s of video
    assert np.corrcoef(decoded[:16000], tone(440, 1.0))[0, 1] > 0.99


def test_synthetic_video_is_fast(tmp_path):
    audio = tone(440, 2.0)
    timings = []
    for k in range(3):
        start = time.perf_counter()
        write_synthetic_video(tmp_path / f"{k}.mp4", audio=audio)
        timings.append(time.perf_counter() - start)
    assert min(timings) < 0.5


def test_synthetic_video_rejects_odd_sizes(tmp_path):
    with pytest.raises(MediaError, match="odd.mp4: size=\\(63, 48\\)"):
        write_synthetic_video(tmp_path / "odd.mp4", size=(63, 48))
    assert _listing(tmp_path) == []


def test_tone_and_noise_are_exact_and_seeded():
    t = tone(1000, 0.001, sr=8000, amplitude=0.5)  # 8 samples, a quarter period apart every 2
    np.testing.assert_allclose(t, 0.5 * np.sin(2 * np.pi * 1000 * np.arange(8) / 8000), atol=1e-7)
    assert t.dtype == np.float32 and len(tone(440, 1.5)) == 24000
    a, b = noise(1.0, seed=7), noise(1.0, seed=7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, noise(1.0, seed=8))
    assert np.std(a) == pytest.approx(0.1, rel=0.05)
    with pytest.raises(ValueError, match="Nyquist"):
        tone(9000, 1.0, sr=16000)
