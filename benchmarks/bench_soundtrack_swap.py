"""Time one AV-ConfuseBench "modified" soundtrack swap: stream copy vs full re-encode of the same clip.

    python benchmarks/bench_soundtrack_swap.py [--video PATH] [--repeats N] [--json OUT.json]

On one clip (default: the real 60 s 480x360 60 fps drill clip in /work/shared; without it a synthetic
20 s 320x240 30 fps clip), with the same new soundtrack (a 5 s noise "rain" clip looped to the video's
length and loudness-normalised, as ``avconfuse bench build modified`` does, 44.1 kHz stereo AAC):

* ``replace_audio``: the video stream copied packet by packet (what the builder uses);
* ``reencode_with_audio``: the video decoded and re-encoded with libx264 (CRF 23, veryfast).

Prints best and median of N runs (seconds), the speed-up (best vs best; target >= 10x), whether each output's
video packets are byte-identical to the source's, and whether two copies are byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from verl_avconfuse.bench.sound_bank import prepare_soundtrack  # noqa: E402
from verl_avconfuse.media import (  # noqa: E402
    noise,
    probe,
    reencode_with_audio,
    replace_audio,
    video_packets_digest,
    write_synthetic_video,
    write_wav,
)

DEFAULT_VIDEO = REPO.parent / "shared" / "data" / "media" / "combined_00000810_drill.mp4"
SAMPLE_RATE = 44100
TARGET_RATIO = 10.0


def _time(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return min(timings), statistics.median(timings)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=None, help=f"clip to time (default: {DEFAULT_VIDEO})")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (default 3)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_swap_") as tmp_dir:
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
            f"@ {info.video_fps} fps ({info.video_frames} frames)"
        )
        rain = write_wav(tmp / "rain.wav", noise(5.0, SAMPLE_RATE, 0.05, seed=0), SAMPLE_RATE)
        start = time.perf_counter()
        track, stats = prepare_soundtrack(rain, round(info.duration_s * SAMPLE_RATE), SAMPLE_RATE)
        prepare_s = time.perf_counter() - start
        audio = np.repeat(track[:, None], 2, axis=1)
        print(
            f"soundtrack: {stats.loops:.1f} loops of a 5 s clip, {stats.rms_dbfs:.2f} dBFS RMS, prepared in {prepare_s:.3f} s"
        )

        copy_path, reencode_path = tmp / "copy.mp4", tmp / "reencode.mp4"
        copy = _time(lambda: replace_audio(video, audio, copy_path, sr=SAMPLE_RATE), args.repeats)
        first_copy = _sha256(copy_path)
        replace_audio(video, audio, tmp / "copy_again.mp4", sr=SAMPLE_RATE)
        reencode = _time(lambda: reencode_with_audio(video, audio, reencode_path, sr=SAMPLE_RATE), args.repeats)
        source_digest = video_packets_digest(video)
        figures = {
            "video": str(video),
            "duration_s": info.duration_s,
            "frames": info.video_frames,
            "size": [info.video_width, info.video_height],
            "repeats": args.repeats,
            "prepare_soundtrack_s": prepare_s,
            "stream_copy_s": {"best": copy[0], "median": copy[1]},
            "reencode_s": {"best": reencode[0], "median": reencode[1]},
            "speedup_best": reencode[0] / copy[0],
            "copy_video_identical": video_packets_digest(copy_path) == source_digest,
            "reencode_video_identical": video_packets_digest(reencode_path) == source_digest,
            "copy_file_reproducible": first_copy == _sha256(tmp / "copy_again.mp4"),
            "reencode_codec": probe(reencode_path).video_codec,
        }

    print(f"{'':<40} (seconds, {args.repeats} runs)")
    print(f"{'replace_audio (stream copy)':<40} best {copy[0]:7.3f}  median {copy[1]:7.3f}")
    print(
        f"{'reencode_with_audio (' + figures['reencode_codec'] + ')':<40} best {reencode[0]:7.3f}  median {reencode[1]:7.3f}"
    )
    print(f"stream copy is {figures['speedup_best']:.1f}x faster (best vs best; target >= {TARGET_RATIO:g}x)")
    print(
        f"video packets byte-identical to the source: copy {figures['copy_video_identical']}, "
        f"re-encode {figures['reencode_video_identical']}; two copies identical files: {figures['copy_file_reproducible']}"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["speedup_best"] >= TARGET_RATIO and figures["copy_video_identical"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
