"""Music-AVQA (Li et al., CVPR 2022) -> verl RL parquet.

Release format (``avqa-{train,val,test}.json``, a list of objects)::

    {"video_id": "00000272", "question_id": 50,
     "type": "[\\"Audio-Visual\\", \\"Temporal\\"]",            # a stringified [modality, kind] pair
     "question_content": "Where is the <FL> sounding instrument?",
     "templ_values": "[\\"first\\"]",                           # fills the <...> slots in order
     "question_deleted": 0, "anser": "left"}                     # (sic) the answer

The clip is ``{video_dir}/{video_id}.mp4``. Template values are Music-AVQA tokens such as
``acoustic_guitar``: the question shows them with spaces ("acoustic guitar"), the ground truth keeps
the release's token (answers are compared after normalisation, which treats ``_`` as a space).
The release's ``question_content`` has quirks kept in the file but not shown to the model: 430 test
questions end in a full-width "？" and 591 carry trailing spaces; the filled question ends in "?"
and is stripped.

Both published folders are read as they are: ``data/json`` (its test file holds 55, its val file 27
``(video_id, question_id)`` pairs twice, with different answers; every record is kept) and
``data/json_update`` (the same without those pairs). Records are never deduplicated here; the
evaluation harness scores and counts them.

``--modality`` keeps one modality's questions (``Audio``, ``Visual``, ``Audio-Visual``) or ``all``.
The default is ``Audio-Visual``: the official release's RL training file
(``musicavqa_train_audiovisual_grpo.json``) holds the audio-visual questions only, and the paper's
"first 1,000 training questions" are the first 1,000 of those. Questions flagged
``question_deleted`` are skipped unless ``--keep-deleted``; ``--first N`` counts the questions that
remain after both filters.

Usage::

    python data_preprocess/music_avqa.py --input avqa-train.json --video-dir MUSIC-AVQA/videos \\
        --out data/music_avqa/train.parquet --first 1000
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from verl_avconfuse.data_preprocess.common import (
    ConversionError,
    Sample,
    add_common_arguments,
    load_json_list,
    parse_stringified_list,
    require_field,
    run_converter,
    split_from_filename,
)

DATA_SOURCE = "music_avqa"
ABILITY = "audio_visual_qa"
#: The question types of the release, by modality (the paper's table columns, in its order).
QUESTION_TYPES: dict[str, tuple[str, ...]] = {
    "Audio": ("Counting", "Comparative"),
    "Visual": ("Counting", "Location"),
    "Audio-Visual": ("Existential", "Location", "Counting", "Comparative", "Temporal"),
}
MODALITIES = tuple(QUESTION_TYPES)
#: What the release trained RL on (its ``musicavqa_train_audiovisual_grpo.json``).
DEFAULT_TRAIN_MODALITY = "Audio-Visual"
_SLOT = re.compile(r"<[^<>]+>")
#: Full-width punctuation seen in the release's questions, and its ASCII form.
_FULL_WIDTH = str.maketrans({"？": "?", "，": ",", "！": "!"})


def clean_question(text: str) -> str:
    """Full-width "？" (and "，", "！") to ASCII, surrounding whitespace and inner runs of spaces collapsed."""
    return " ".join(text.translate(_FULL_WIDTH).split())


def fill_template(question_content: str, values: list, *, where: str) -> str:
    """Fill the ``<...>`` slots in order; underscores in values become spaces for display."""
    slots = _SLOT.findall(question_content)
    if len(slots) != len(values):
        raise ConversionError(
            f"{where}: question_content {question_content!r} has {len(slots)} slot(s) but templ_values has "
            f"{len(values)} value(s) {values!r}"
        )
    pieces = iter(str(v).replace("_", " ").strip() for v in values)
    return clean_question(_SLOT.sub(lambda _: next(pieces), question_content))


def parse_type(value, *, where: str) -> tuple[str, str]:
    pair = parse_stringified_list(value, where=f"{where}: field 'type'")
    if len(pair) != 2 or pair[0] not in QUESTION_TYPES or pair[1] not in QUESTION_TYPES[pair[0]]:
        known = {m: list(t) for m, t in QUESTION_TYPES.items()}
        raise ConversionError(f"{where}: field 'type' {value!r} is not a known [modality, type] pair ({known})")
    return pair[0], pair[1]


def parse_modalities(value: str | None) -> tuple[str, ...] | None:
    """``--modality`` -> the modalities kept (``None``: all); a comma-separated list is accepted."""
    if value is None or value == "all":
        return None
    wanted = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [v for v in wanted if v not in QUESTION_TYPES]
    if unknown or not wanted:
        raise ConversionError(f"--modality {value!r}: expected 'all' or one of {list(MODALITIES)}")
    return wanted


def load_samples(
    path: str | Path,
    video_dir: str | Path,
    *,
    split: str | None = None,
    keep_deleted: bool = False,
    modalities: tuple[str, ...] | None = None,
) -> list[Sample]:
    """Read a Music-AVQA release file into samples (in file order; ``Sample.index`` = position in the file).

    ``modalities``: keep only those question modalities (``None``: all). Duplicate records are kept.
    """
    path, video_dir = Path(path), Path(video_dir)
    records = load_json_list(path, "questions")
    split = split or split_from_filename(path)
    samples = []
    for position, record in enumerate(records):
        where = f"{path.name}[{position}]"
        video_id = str(require_field(record, "video_id", where))
        if not keep_deleted and int(record.get("question_deleted", 0) or 0):
            continue
        question_id = require_field(record, "question_id", where)
        content = require_field(record, "question_content", where, str)
        answer = require_field(record, "anser", where, (str, int))
        values = parse_stringified_list(record.get("templ_values", "[]"), where=f"{where}: field 'templ_values'")
        modality, kind = parse_type(require_field(record, "type", where, (str, list)), where=where)
        if modalities is not None and modality not in modalities:
            continue
        question = fill_template(content, values, where=f"{where} (question_id {question_id})")
        samples.append(
            Sample(
                data_source=DATA_SOURCE,
                index=position,
                split=split,
                question=question,
                prompt_text=question,
                ground_truth=str(answer).strip(),
                video=video_dir / f"{video_id}.mp4",
                video_id=video_id,
                question_type=f"{modality}/{kind}",
                ability=ABILITY,
                extra={"question_id": question_id},
            )
        )
    if not samples:
        kept = "" if modalities is None else f" of modality {'/'.join(modalities)}"
        raise ConversionError(f"{path}: no questions{kept} left to convert")
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, type=Path, help="avqa-{train,val,test}.json")
    parser.add_argument("--keep-deleted", action="store_true", help="keep questions flagged question_deleted")
    parser.add_argument(
        "--modality",
        default=DEFAULT_TRAIN_MODALITY,
        help=f"Audio | Visual | Audio-Visual | all (default {DEFAULT_TRAIN_MODALITY}: what the release trained on)",
    )
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    return run_converter(
        args,
        lambda: load_samples(
            args.input,
            args.video_dir,
            split=args.split,
            keep_deleted=args.keep_deleted,
            modalities=parse_modalities(args.modality),
        ),
        args.input,
    )


if __name__ == "__main__":
    sys.exit(main())
