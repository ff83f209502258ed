"""AVQA (Yang et al., ACM MM 2022) -> verl RL parquet.

Release format (``train_qa.json`` / ``val_qa.json``, a list of objects)::

    {"id": 183, "video_name": "-HG3Omg_89c_000030", "video_id": 341,
     "question_text": "What happened in the video?",
     "multi_choice": ["motorboat", "Yacht consignment", "Sailing", "Rowing"],
     "answer": 1,                                   # index into multi_choice
     "question_relation": "View", "question_type": "Happening"}

The clip is ``{video_dir}/{video_name}.mp4``. The prompt lists the options as ``A. ...`` lines and
asks for the letter or the text; the ground truth is the right option's *text*, the options go to
``extra_info.options`` and the index to ``extra_info.answer_index``, so the answer check accepts ``B``,
``motorboat`` or ``B. motorboat`` (:func:`verl_avconfuse.method.answers_match`; the evaluation
harness grades by the index, so two options that normalise alike cannot move the truth).

``question_type`` is one of the eight types the official ``validate.py`` reports (:data:`QUESTION_TYPES`).

Options that are ``None`` or fewer than four (a handful of release records): with ``options="pad"``
(default) they are handled as the official question preprocessing does: a ``None`` option becomes
``"null"`` and missing ones ``"NULL"``, up to four, and the record is kept; ``options="skip"`` leaves such
records out and lists them (``load_samples_with_report``).

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
#: The eight question types of the official validate.py, in its order.
QUESTION_TYPES = ("Which", "Come From", "Happening", "Where", "Why", "Before Next", "When", "Used For")
#: The official preprocessing scores every question over this many candidates.
N_OPTIONS = 4
#: How the official preprocessing fills a ``None`` option and a missing one.
NONE_OPTION, MISSING_OPTION = "null", "NULL"
OPTION_MODES = ("pad", "skip")


def format_options(question: str, options: list[str]) -> str:
    """The question followed by one ``A. option`` line per option and the choice instruction."""
    if len(options) > len(string.ascii_uppercase):
        raise ConversionError(f"{len(options)} options: more than letters A-Z")
    lines = [question.strip()]
    lines += [f"{letter}. {option.strip()}" for letter, option in zip(string.ascii_uppercase, options, strict=False)]
    lines.append(CHOICE_INSTRUCTION)
    return "\n".join(lines)


def _options(record: dict, where: str, mode: str) -> tuple[list[str] | None, str | None]:
    """The option texts (padded as the official preprocessing does), or ``None`` and why (``skip`` mode)."""
    raw = record.get("multi_choice") if isinstance(record, dict) else None
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise ConversionError(f"{where}: field 'multi_choice' must be a list of option texts, got {type(raw).__name__}")
    bad = [o for o in raw if o is not None and not isinstance(o, str)]
    if bad:
        raise ConversionError(f"{where}: field 'multi_choice' holds a {type(bad[0]).__name__}, expected option texts")
    complete = len(raw) >= N_OPTIONS and all(isinstance(o, str) and o.strip() for o in raw)
    if complete:
        return [o.strip() for o in raw], None
    empty = sum(o is None or not o.strip() for o in raw)
    reason = f"multi_choice has {len(raw)} option(s)" + (f", {empty} of them None or empty" if empty else "")
    if mode == "skip":
        return None, reason
    options = [NONE_OPTION if o is None or not o.strip() else o.strip() for o in raw]
    options += [MISSING_OPTION] * (N_OPTIONS - len(options))
    return options, reason


def load_samples_with_report(
    path: str | Path, video_dir: str | Path, *, split: str | None = None, options: str = "pad"
) -> tuple[list[Sample], list[dict]]:
    """:func:`load_samples` and the records whose options were padded (``pad``) or left out (``skip``)."""
    if options not in OPTION_MODES:
        raise ConversionError(f"options: expected one of {OPTION_MODES}, got {options!r}")
    path, video_dir = Path(path), Path(video_dir)
    records = load_json_list(path, "questions")
    split = split or split_from_filename(path)
    samples = []
    notes: list[dict] = []
    for position, record in enumerate(records):
        where = f"{path.name}[{position}]"
        question_id = require_field(record, "id", where)
        video_name = str(require_field(record, "video_name", where))
        question = require_field(record, "question_text", where, str)
        option_texts, problem = _options(record, where, options)
        if problem is not None:
            notes.append({"index": position, "id": question_id, "problem": problem, "action": options})
            if option_texts is None:
                continue
        answer = require_field(record, "answer", where, int)
        options_list = option_texts
        if not 0 <= answer < len(options_list):
            raise ConversionError(f"{where}: field 'answer' {answer} is not an index into {len(options_list)} options")
        relation = str(record.get("question_relation", ""))
        kind = str(record.get("question_type", ""))
        if kind not in QUESTION_TYPES:
            raise ConversionError(f"{where}: field 'question_type' {kind!r} is not one of {list(QUESTION_TYPES)}")
        samples.append(
            Sample(
                data_source=DATA_SOURCE,
                index=position,
                split=split,
                question=question.strip(),
                prompt_text=format_options(question, options_list),
                ground_truth=options_list[answer],
                video=video_dir / f"{video_name}.mp4",
                video_id=video_name,
                question_type=f"{relation}/{kind}",
                ability=ABILITY,
                options=options_list,
                extra={
                    "question_id": question_id,
                    "answer_index": answer,
                    "question_relation": relation,
                    "avqa_video_id": record.get("video_id"),
                    "avqa_question_type": kind,
                },
            )
        )
    if not samples:
        raise ConversionError(f"{path}: no questions to convert")
    return samples, notes


def load_samples(
    path: str | Path, video_dir: str | Path, *, split: str | None = None, options: str = "pad"
) -> list[Sample]:
    """Read an AVQA release file into samples (file order; ``Sample.index`` = position in the file)."""
    samples, notes = load_samples_with_report(path, video_dir, split=split, options=options)
    if notes:
        print(
            f"{path}: {len(notes)} record(s) with None or fewer than {N_OPTIONS} options ({options})", file=sys.stderr
        )
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, type=Path, help="AVQA train_qa.json / val_qa.json")
    parser.add_argument(
        "--options",
        choices=OPTION_MODES,
        default="pad",
        help="None / missing options: pad as the official code, or skip",
    )
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    return run_converter(
        args, lambda: load_samples(args.input, args.video_dir, split=args.split, options=args.options), args.input
    )


if __name__ == "__main__":
    sys.exit(main())
