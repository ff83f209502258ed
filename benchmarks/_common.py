"""What the benchmarks share: the checkout on ``sys.path``, the machine line, the clip to time, the timer.

Imported as ``from _common import ...``: a benchmark runs as ``python benchmarks/NAME.py``, which puts
this folder on ``sys.path``. Importing it also puts the repository root there, so the benchmarks time
the checkout's code even where the package is not installed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from verl_avconfuse.media import MediaInfo

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: The real clip the media benchmarks default to: 60 s, 480x360 at 60 fps, 44.1 kHz stereo AAC.
DEFAULT_VIDEO = REPO.parent / "shared" / "data" / "media" / "combined_00000810_drill.mp4"
#: The stand-in written when DEFAULT_VIDEO is absent: seconds, frames per second, (width, height).
SYNTHETIC_DURATION_S = 20.0
SYNTHETIC_FPS = 30
SYNTHETIC_SIZE = (320, 240)
_SYNTHETIC_SR = 44100


def machine_line() -> str:
    """Where and when a figure was measured: UTC time, CPU model and count, load averages, torch/device.

    Printed first by every benchmark: on a shared machine the load says how far absolute figures are
    from the machine's own; the ratios each benchmark prints beside them are measured in the same run.
    """
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    device = "no torch"
    try:
        import torch

        device = f"torch {torch.__version__}, " + (
            torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
        )
    except ImportError:
        pass
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"machine: {now}, {os.cpu_count()} x {cpu}, load {load}, {device}"


def add_clip_arguments(parser: argparse.ArgumentParser) -> None:
    """``--video PATH`` (default: :data:`DEFAULT_VIDEO`) and ``--repeats N`` (default 3)."""
    parser.add_argument("--video", type=Path, default=None, help=f"clip to time (default: {DEFAULT_VIDEO})")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (default 3)")


def clip_to_time(video: Path | None, tmp: Path) -> Path:
    """``video`` if given, else :data:`DEFAULT_VIDEO`, else a synthetic clip written into ``tmp`` (said so)."""
    if video is not None:
        return video
    if DEFAULT_VIDEO.is_file():
        return DEFAULT_VIDEO
    from verl_avconfuse.media import noise, write_synthetic_video

    width, height = SYNTHETIC_SIZE
    print(
        f"{DEFAULT_VIDEO} not found: timing a synthetic {SYNTHETIC_DURATION_S:g} s {width}x{height} "
        f"{SYNTHETIC_FPS} fps clip instead"
    )
    return write_synthetic_video(
        tmp / "synthetic.mp4",
        duration_s=SYNTHETIC_DURATION_S,
        fps=SYNTHETIC_FPS,
        size=SYNTHETIC_SIZE,
        audio=noise(SYNTHETIC_DURATION_S, _SYNTHETIC_SR),
        sr=_SYNTHETIC_SR,
    )


def print_clip(video: Path) -> MediaInfo:
    """Probe ``video`` and print what is being timed (streams, size, rate, frames); return the MediaInfo."""
    from verl_avconfuse.media import probe

    info = probe(video)
    audio = f"{info.audio_codec} {info.audio_sample_rate} Hz x{info.audio_channels}" if info.has_audio else "none"
    print(f"clip: {video}")
    print(
        f"  {info.duration_s:.2f} s, video {info.video_codec} {info.video_width}x{info.video_height} "
        f"@ {info.video_fps} fps ({info.video_frames} frames), audio {audio}"
    )
    return info


def best_and_median(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn``: ``(best, median)``."""
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return min(timings), statistics.median(timings)
