"""AVQA (Yang et al., ACM MM 2022) -> verl RL parquet.

Release format (``train_qa.json`` / ``val_qa.json``, a list of objects)::

    {"id": 183, "video_name": "-HG3Omg_89c_000030", "video_id": 341,
     "question_text": "What happened in the video?",
     "multi_choice": ["motorboat", "Yacht consignment", "Sailing", "Rowing"],
     "answer": 1,                                   # index into multi_choice
     "question_relation": "View", "question_type": "Happening"}

The clip is ``{video_dir}/{video_name}.mp4``. The prompt lists the options as ``A. ...`` lines and
asks for the letter or the text; the ground truth is the right option's *text* and the options go to
``extra_info.options``, so the answer check accepts ``B``, ``motorboat`` or ``B. motorboat``
(:func:`verl_avconfuse.rewards.answers_match`).

Usage::

    python data_preprocess/avqa.py --input val_qa.json --video-dir AVQA/videos --out data/avqa/val.parquet
"""

from __future__ import annotations

import argparse
import string
import sys
from pathlib import Path

from verl_avconfuse.data_preprocess.common import (
    ConversionError,
    Sample,
    add_common_arguments,
    load_json_list,
    require_field,
    run_converter,
    split_from_filename,
)

DATA_SOURCE = "avqa"
ABILITY = "audio_visual_qa"
CHOICE_INSTRUCTION = "Answer with the option's letter or text."


def format_options(question: str, options: list[str]) -> str:
    """The question followed by one ``A. option`` line per option and the choice instruction."""
    if len(options) > len(string.ascii_uppercase):
        raise ConversionError(f"{len(options)} options: more than letters A-Z")
    lines = [question.strip()]
    lines += [f"{letter}. {option.strip()}" for letter, option in zip(string.ascii_uppercase, options, strict=False)]
    lines.append(CHOICE_INSTRUCTION)
    return "\n".join(lines)


def load_samples(path: str | Path, video_dir: str | Path, *, split: str | None = None) -> list[Sample]:
    """Read an AVQA release file into samples (file order; ``Sample.index`` = position in the file)."""
    path, video_dir = Path(path), Path(video_dir)
    records = load_json_list(path, "questions")
    split = split or split_from_filename(path)
    samples = []
    for position, record in enumerate(records):
        where = f"{path.name}[{position}]"
        question_id = require_field(record, "id", where)
        video_name = str(require_field(record, "video_name", where))
        question = require_field(record, "question_text", where, str)
        options = require_field(record, "multi_choice", where, list)
        if len(options) < 2 or not all(isinstance(o, str) and o.strip() for o in options):
            raise ConversionError(f"{where}: field 'multi_choice' must list at least two non-empty option texts")
        answer = require_field(record, "answer", where, int)
        if not 0 <= answer < len(options):
            raise ConversionError(f"{where}: field 'answer' {answer} is not an index into {len(options)} options")
        relation = str(record.get("question_relation", ""))
        kind = str(record.get("question_type", ""))
        samples.append(
            Sample(
                data_source=DATA_SOURCE,
                index=position,
                split=split,
                question=question.strip(),
                prompt_text=format_options(question, options),
                ground_truth=options[answer].strip(),
                video=video_dir / f"{video_name}.mp4",
                video_id=video_name,
                question_type=f"{relation}/{kind}",
                ability=ABILITY,
                options=[o.strip() for o in options],
                extra={
                    "question_id": question_id,
                    "answer_index": answer,
                    "question_relation": relation,
                    "avqa_video_id": record.get("video_id"),
                },
            )
        )
    if not samples:
        raise ConversionError(f"{path}: no questions to convert")
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, type=Path, help="AVQA train_qa.json / val_qa.json")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    return run_converter(args, lambda: load_samples(args.input, args.video_dir, split=args.split), args.input)


if __name__ == "__main__":
    sys.exit(main())
