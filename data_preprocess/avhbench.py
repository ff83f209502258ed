"""AVHBench (Sung-Bin et al., ICLR 2025) -> verl RL parquet.

Release format (``AVHBench_v0/json/{video_id}.json``, one file per clip, each a list)::

    [{"video_id": "00191", "task": "Video-driven Audio Hallucination",
      "text": "Is the couch making sound in the audio?", "label": "No"}, ...]

Tasks: ``Audio-driven Video Hallucination`` and ``Video-driven Audio Hallucination`` (yes/no: is
the object visible / audible?), ``AV Matching`` (yes/no: do the audio and visual contexts match?)
and ``AV Captioning`` (free text). ``--input`` is the ``json`` folder, or one JSON file holding a
list of such items (e.g. the per-video files concatenated).

Which clip: ``{video_dir}/{video_id}.mp4``, where ``video_id`` is the item's own. The release ships
``{id}.mp4`` (real) and ``{id}_swap.mp4`` (soundtrack swapped for another clip's); an item is
evaluated on the clip its ``video_id`` names, so a swapped clip's items carry the ``_swap`` id and
nothing here guesses a swap (the published example labels AV Matching on the real clip ``Yes``).

Yes/no labels become ``yes``/``no``; captioning items are left out unless ``--include-captioning``
(RL rewards only yes/no answers; captions need METEOR/CIDEr, not an answer check).

Usage::

    python data_preprocess/avhbench.py --input AVHBench_v0/json --video-dir AVHBench_v0/video \\
        --out data/avhbench/test.parquet
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from verl_avconfuse.data_preprocess.common import (
    ConversionError,
    Sample,
    add_common_arguments,
    load_json_list,
    require_field,
    run_converter,
)

DATA_SOURCE = "avhbench"
ABILITY = "audio_visual_hallucination"
AUDIO_DRIVEN_VIDEO = "Audio-driven Video Hallucination"
VIDEO_DRIVEN_AUDIO = "Video-driven Audio Hallucination"
AV_MATCHING = "AV Matching"
AV_CAPTIONING = "AV Captioning"
YES_NO_TASKS = (AUDIO_DRIVEN_VIDEO, VIDEO_DRIVEN_AUDIO, AV_MATCHING)
TASKS = (*YES_NO_TASKS, AV_CAPTIONING)
YES_NO_INSTRUCTION = "Answer yes or no."


def _items(path: Path) -> list[tuple[str, int, dict]]:
    """``(file name, position in file, item)`` for every item, files in sorted order."""
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise ConversionError(f"{path}: no *.json files (expected AVHBench's per-video json folder)")
    elif path.is_file():
        files = [path]
    else:
        raise ConversionError(f"{path}: not found")
    items = []
    for file in files:
        items += [(file.name, k, item) for k, item in enumerate(load_json_list(file, "items"))]
    return items


def load_samples(
    path: str | Path, video_dir: str | Path, *, split: str = "test", include_captioning: bool = False
) -> list[Sample]:
    """Read AVHBench items into samples; ``Sample.index`` counts items across the sorted files."""
    path, video_dir = Path(path), Path(video_dir)
    samples = []
    for position, (file_name, k, item) in enumerate(_items(path)):
        where = f"{file_name}[{k}]"
        video_id = str(require_field(item, "video_id", where))
        task = require_field(item, "task", where, str)
        text = require_field(item, "text", where, str)
        label = str(require_field(item, "label", where, (str, int))).strip()
        if task not in TASKS:
            raise ConversionError(f"{where}: unknown task {task!r}; expected one of {list(TASKS)}")
        if task == AV_CAPTIONING:
            if not include_captioning:
                continue
            prompt, truth = text.strip(), label
        else:
            truth = label.lower()
            if truth not in ("yes", "no"):
                raise ConversionError(f"{where}: task {task!r} needs a Yes/No label, got {label!r}")
            prompt = f"{text.strip()} {YES_NO_INSTRUCTION}"
        samples.append(
            Sample(
                data_source=DATA_SOURCE,
                index=position,
                split=split,
                question=text.strip(),
                prompt_text=prompt,
                ground_truth=truth,
                video=video_dir / f"{video_id}.mp4",
                video_id=video_id,
                question_type=task,
                ability=ABILITY,
                extra={"item_id": f"{video_id}#{k}", "task": task},
            )
        )
    if not samples:
        raise ConversionError(f"{path}: no items to convert")
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, type=Path, help="AVHBench json folder, or one JSON list file")
    parser.add_argument("--include-captioning", action="store_true", help="keep AV Captioning items (free text)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    return run_converter(
        args,
        lambda: load_samples(
            args.input, args.video_dir, split=args.split or "test", include_captioning=args.include_captioning
        ),
        args.input,
    )


if __name__ == "__main__":
    sys.exit(main())
