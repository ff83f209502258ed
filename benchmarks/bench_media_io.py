"""Time the media I/O a data-building job repeats per clip.

    python benchmarks/bench_media_io.py [--video PATH] [--repeats N]

Prints (best and median of N runs, seconds):
  * soundtrack decode to 16 kHz mono: ``load_audio`` (FFmpeg decode + soxr) and, for comparison, the
    same through PyAV's ``AudioResampler`` (libswresample);
  * frame sampling at 2 fps: ``load_video_frames`` (skip + seek) and ``strategy="sequential"``;
  * a new soundtrack: ``replace_audio`` (video stream copy) vs ``reencode_with_audio`` (libx264), and
    their ratio (target: copy >= 10x faster).

Defaults to the 60 s drill clip in /work/shared; without it, a synthetic 20 s 320x240 clip is written.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from verl_avconfuse.media import (  # noqa: E402
    load_audio,
    load_video_frames,
    noise,
    probe,
    reencode_with_audio,
    replace_audio,
    tone,
    write_synthetic_video,
)

DEFAULT_VIDEO = REPO.parent / "shared" / "data" / "media" / "combined_00000810_drill.mp4"
TARGET_SR = 16000
SAMPLING_FPS = 2.0


def _time(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return min(timings), statistics.median(timings)


def _report(label: str, timing: tuple[float, float], note: str = "") -> None:
    best, median = timing
    print(f"{label:<46} best {best:7.3f}  median {median:7.3f}  {note}")


def _audio_via_swresample(path: Path) -> np.ndarray:
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=TARGET_SR)
    chunks = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            chunks += [f.to_ndarray()[0] for f in resampler.resample(frame)]
    chunks += [f.to_ndarray()[0] for f in resampler.resample(None)]
    return np.concatenate(chunks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=None, help=f"clip to time (default: {DEFAULT_VIDEO})")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (default 3)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_media_") as tmp_dir:
        tmp = Path(tmp_dir)
        video = args.video
        if video is None and DEFAULT_VIDEO.is_file():
            video = DEFAULT_VIDEO
        elif video is None:
            print(f"{DEFAULT_VIDEO} not found: timing a synthetic 20 s 320x240 30 fps clip instead")
            video = write_synthetic_video(
                tmp / "synthetic.mp4", duration_s=20.0, fps=30, size=(320, 240), audio=noise(20.0, 44100), sr=44100
            )
        info = probe(video)
        print(f"clip: {video}")
        print(
            f"  {info.duration_s:.2f} s, video {info.video_codec} {info.video_width}x{info.video_height} "
            f"@ {info.video_fps} fps ({info.video_frames} frames), audio "
            + (f"{info.audio_codec} {info.audio_sample_rate} Hz x{info.audio_channels}" if info.has_audio else "none")
        )
        print(f"{'':<46} (seconds, {args.repeats} runs)")

        if info.has_audio:
            samples = load_audio(video, sr=TARGET_SR)
            _report(
                "audio -> 16 kHz mono: load_audio (soxr)",
                _time(lambda: load_audio(video, sr=TARGET_SR), args.repeats),
                f"{len(samples)} samples",
            )
            _report(
                "audio -> 16 kHz mono: PyAV AudioResampler", _time(lambda: _audio_via_swresample(video), args.repeats)
            )
        else:
            print("audio decode: skipped (the clip has no audio stream)")

        frames, frame_info = load_video_frames(video, fps=SAMPLING_FPS)
        note = f"{frames.shape[0]} frames {frames.shape[2]}x{frames.shape[1]}"
        _report(
            f"frames @ {SAMPLING_FPS:g} fps: load_video_frames",
            _time(lambda: load_video_frames(video, fps=SAMPLING_FPS), args.repeats),
            note,
        )
        _report(
            f"frames @ {SAMPLING_FPS:g} fps: sequential decode",
            _time(lambda: load_video_frames(video, fps=SAMPLING_FPS, strategy="sequential"), args.repeats),
        )

        soundtrack = tone(440.0, info.duration_s, TARGET_SR) + noise(info.duration_s, TARGET_SR, 0.05, seed=0)
        copy = _time(lambda: replace_audio(video, soundtrack, tmp / "copy.mp4", sr=TARGET_SR), args.repeats)
        _report("new soundtrack: replace_audio (stream copy)", copy)
        reencode = _time(
            lambda: reencode_with_audio(video, soundtrack, tmp / "reencode.mp4", sr=TARGET_SR), args.repeats
        )
        _report("new soundtrack: reencode_with_audio", reencode, f"({probe(tmp / 'reencode.mp4').video_codec})")
        ratio = reencode[0] / copy[0]
        print(f"stream copy is {ratio:.1f}x faster than re-encoding (best vs best; target >= 10x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
