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
import tempfile
from pathlib import Path

import numpy as np
from _common import add_clip_arguments, best_and_median, clip_to_time, print_clip

from verl_avconfuse.media import (
    load_audio,
    load_video_frames,
    noise,
    probe,
    reencode_with_audio,
    replace_audio,
    tone,
)

TARGET_SR = 16000
SAMPLING_FPS = 2.0


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
    add_clip_arguments(parser)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_media_") as tmp_dir:
        tmp = Path(tmp_dir)
        video = clip_to_time(args.video, tmp)
        info = print_clip(video)
        print(f"{'':<46} (seconds, {args.repeats} runs)")

        if info.has_audio:
            samples = load_audio(video, sr=TARGET_SR)
            _report(
                "audio -> 16 kHz mono: load_audio (soxr)",
                best_and_median(lambda: load_audio(video, sr=TARGET_SR), args.repeats),
                f"{len(samples)} samples",
            )
            _report(
                "audio -> 16 kHz mono: PyAV AudioResampler",
                best_and_median(lambda: _audio_via_swresample(video), args.repeats),
            )
        else:
            print("audio decode: skipped (the clip has no audio stream)")

        frames, frame_info = load_video_frames(video, fps=SAMPLING_FPS)
        note = f"{frames.shape[0]} frames {frames.shape[2]}x{frames.shape[1]}"
        _report(
            f"frames @ {SAMPLING_FPS:g} fps: load_video_frames",
            best_and_median(lambda: load_video_frames(video, fps=SAMPLING_FPS), args.repeats),
            note,
        )
        _report(
            f"frames @ {SAMPLING_FPS:g} fps: sequential decode",
            best_and_median(lambda: load_video_frames(video, fps=SAMPLING_FPS, strategy="sequential"), args.repeats),
        )

        soundtrack = tone(440.0, info.duration_s, TARGET_SR) + noise(info.duration_s, TARGET_SR, 0.05, seed=0)
        copy = best_and_median(lambda: replace_audio(video, soundtrack, tmp / "copy.mp4", sr=TARGET_SR), args.repeats)
        _report("new soundtrack: replace_audio (stream copy)", copy)
        reencode = best_and_median(
            lambda: reencode_with_audio(video, soundtrack, tmp / "reencode.mp4", sr=TARGET_SR), args.repeats
        )
        _report("new soundtrack: reencode_with_audio", reencode, f"({probe(tmp / 'reencode.mp4').video_codec})")
        ratio = reencode[0] / copy[0]
        print(f"stream copy is {ratio:.1f}x faster than re-encoding (best vs best; target >= 10x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
