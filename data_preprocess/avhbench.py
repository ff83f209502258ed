"""AVHBench (Sung-Bin et al., ICLR 2025) -> verl RL parquet.

Release format: the public QA file (``QA.json``, downloaded next to the videos) is **one** JSON list
of items, every clip's questions together; its clips are ``{video_id}.mp4``::

    [{"video_id": "00191", "task": "Video-driven Audio Hallucination",
      "text": "Is the couch making sound in the audio?", "label": "No"}, ...]

``--input`` is that file. A folder of ``*.json`` lists is read too (files in sorted order): the
earlier ``AVHBench_v0`` download had one ``{video_id}.json`` per clip, with ``{id}_swap.mp4``
clips whose items carry the ``_swap`` id; the current QA has no ``_swap`` ids. Either way an item
is asked about ``{video_dir}/{video_id}.mp4``, the clip its own ``video_id`` names; nothing here
guesses a swap.

Tasks: ``Audio-driven Video Hallucination`` and ``Video-driven Audio Hallucination`` (yes/no: is
the object visible / audible?), ``AV Matching`` (yes/no: do the audio and visual contexts match?)
and ``AV Captioning`` (free text). AVHBench-Align-FT's training file
(``qa_final_single_filtered.json``) names them differently; those names are accepted and mapped
(:data:`ALIGN_FT_TASKS`): ``AV Hallucination (Audio)`` is video-driven audio hallucination,
``AV Hallucination (Video)`` audio-driven video hallucination, and the ``(Audio_only)`` /
``(Video_only)`` variants (asked with one modality in Align-FT) are kept as their own tasks; the
clip is still given with both streams here.

Item ids: ``{video_id}#{k}``, ``k`` counting that clip's items in reading order, so they are the same
for the single file and the per-video folder and stable across re-runs.

Yes/no labels become ``yes``/``no``; captioning items are left out unless ``--include-captioning``
(RL rewards only yes/no answers; captions need METEOR/CIDEr, not an answer check).

Usage::

    python data_preprocess/avhbench.py --input AVHBench/QA.json --video-dir AVHBench/videos \\
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
AUDIO_ONLY_HALLUCINATION = "Audio-only Hallucination"
VIDEO_ONLY_HALLUCINATION = "Video-only Hallucination"
#: AVHBench-Align-FT's task names -> the benchmark's (or, for the one-modality variants, their own).
ALIGN_FT_TASKS = {
    "AV Hallucination (Audio)": VIDEO_DRIVEN_AUDIO,
    "AV Hallucination (Video)": AUDIO_DRIVEN_VIDEO,
    "AV Hallucination (Audio_only)": AUDIO_ONLY_HALLUCINATION,
    "AV Hallucination (Video_only)": VIDEO_ONLY_HALLUCINATION,
}
ALL_YES_NO_TASKS = (*YES_NO_TASKS, AUDIO_ONLY_HALLUCINATION, VIDEO_ONLY_HALLUCINATION)
TASKS = (*ALL_YES_NO_TASKS, AV_CAPTIONING)
YES_NO_INSTRUCTION = "Answer yes or no."


def _items(path: Path) -> list[tuple[str, int, dict]]:
    """``(file name, position in file, item)`` for every item, files in sorted order."""
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise ConversionError(f"{path}: no *.json files (expected AVHBench's QA.json or a folder of json lists)")
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
    seen: dict[str, int] = {}
    for position, (file_name, k, item) in enumerate(_items(path)):
        where = f"{file_name}[{k}]"
        video_id = str(require_field(item, "video_id", where))
        occurrence = seen.get(video_id, 0)
        seen[video_id] = occurrence + 1
        task = require_field(item, "task", where, str)
        text = require_field(item, "text", where, str)
        label = str(require_field(item, "label", where, (str, int))).strip()
        task = ALIGN_FT_TASKS.get(task, task)
        if task not in TASKS:
            raise ConversionError(
                f"{where}: unknown task {task!r}; expected one of {list(TASKS)} "
                f"or an AVHBench-Align-FT name {list(ALIGN_FT_TASKS)}"
            )
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
                extra={"item_id": f"{video_id}#{occurrence}", "task": task, "release_task": item["task"]},
            )
        )
    if not samples:
        raise ConversionError(f"{path}: no items to convert")
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, type=Path, help="AVHBench QA.json (or a folder of json lists)")
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
