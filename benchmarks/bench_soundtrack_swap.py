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
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import add_clip_arguments, best_and_median, clip_to_time, print_clip

from verl_avconfuse.bench.schemas import sha256_file
from verl_avconfuse.bench.sound_bank import prepare_soundtrack
from verl_avconfuse.io import atomic_write_json
from verl_avconfuse.media import (
    noise,
    probe,
    reencode_with_audio,
    replace_audio,
    video_packets_digest,
    write_wav,
)

SAMPLE_RATE = 44100
TARGET_RATIO = 10.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_clip_arguments(parser)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_swap_") as tmp_dir:
        tmp = Path(tmp_dir)
        video = clip_to_time(args.video, tmp)
        info = print_clip(video)
        rain = write_wav(tmp / "rain.wav", noise(5.0, SAMPLE_RATE, 0.05, seed=0), SAMPLE_RATE)
        start = time.perf_counter()
        track, stats = prepare_soundtrack(rain, round(info.duration_s * SAMPLE_RATE), SAMPLE_RATE)
        prepare_s = time.perf_counter() - start
        audio = np.repeat(track[:, None], 2, axis=1)
        print(
            f"soundtrack: {stats.loops:.1f} loops of a 5 s clip, {stats.rms_dbfs:.2f} dBFS RMS, prepared in {prepare_s:.3f} s"
        )

        copy_path, reencode_path = tmp / "copy.mp4", tmp / "reencode.mp4"
        copy = best_and_median(lambda: replace_audio(video, audio, copy_path, sr=SAMPLE_RATE), args.repeats)
        first_copy = sha256_file(copy_path)
        replace_audio(video, audio, tmp / "copy_again.mp4", sr=SAMPLE_RATE)
        reencode = best_and_median(
            lambda: reencode_with_audio(video, audio, reencode_path, sr=SAMPLE_RATE), args.repeats
        )
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
            "copy_file_reproducible": first_copy == sha256_file(tmp / "copy_again.mp4"),
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
        atomic_write_json(args.json, figures, indent=2)
    return 0 if figures["speedup_best"] >= TARGET_RATIO and figures["copy_video_identical"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
