"""What every dataset converter shares: samples, subsets, media checks, verl rows, atomic writes.

A converter (``music_avqa.py``, ``avqa.py``, ``avhbench.py``) only reads its release into
:class:`Sample` s; :func:`convert` does the rest, the same way for every dataset:

1. **select**: ``--first N`` (file order; the paper trains on the first 1,000 Music-AVQA questions)
   or ``--subset N --seed S`` (a seeded random sample, written in file order);
2. **check media** before writing anything: each selected sample's video exists, decodes (one frame
   of every stream the prompt needs is decoded, not only the header probed) and has a soundtrack.
   Without ``--skip-bad`` any bad file aborts the run, naming every bad file and why; with it the
   bad samples are replaced by the next candidates (so ``--first 1000`` still gives 1,000 rows when
   enough good ones exist) and a JSON report lands next to the output;
3. **write** verl's RL rows (:func:`rl_row`, through :func:`verl_row`) to parquet through a temp file and ``os.replace``, so an
   interrupted run leaves no output file.

Row schema (verl ``RLHFDataset`` / ``OmniRLDataset``)::

    data_source   "music_avqa" | "avqa" | "avhbench"
    prompt        [{"role": "user", "content": "<video><audio>\\n{question} {format instruction}"}]
    videos        [path]            the clip
    audios        [path]            the same clip: its soundtrack (absent with --audio-in-video)
    ability       what is tested, e.g. "audio_visual_qa"
    reward_model  {"style": "rule", "ground_truth": answer}
    extra_info    {index, split, question, question_type, video_id, [options], dataset ids...}

:func:`verl_row` builds every verl RL row this package writes (these converters, AV-ConfuseBench's
builders, the tiny datasets), so the schema is written down once.

Paths are absolute unless ``--relative-paths`` (relative to ``--video-dir``; train with
``data.media.root=DIR``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verl_avconfuse.io import atomic_path, atomic_write_json, atomic_write_parquet
from verl_avconfuse.method.prompts import format_question

__all__ = [
    "BadMedia",
    "ConversionError",
    "ConversionResult",
    "Sample",
    "add_common_arguments",
    "atomic_path",
    "check_media_file",
    "check_media_files",
    "convert",
    "load_json_list",
    "media_placeholders",
    "parse_stringified_list",
    "rl_row",
    "run_converter",
    "select_candidates",
    "verl_row",
    "write_json_atomic",
    "write_parquet_atomic",
]

#: Placeholders of the two input modes (``OmniRLDataset`` turns them into media items).
SEPARATE_AUDIO_PLACEHOLDERS = "<video><audio>"
AUDIO_IN_VIDEO_PLACEHOLDERS = "<video>"


class ConversionError(ValueError):
    """The input is not in the published format, or media are unusable; the message names the file/field."""


@dataclass(frozen=True)
class BadMedia:
    """A sample dropped (or that would abort the run) because of its media file."""

    index: int
    video: str
    reason: str


@dataclass
class Sample:
    """One question of a release, read but not yet turned into a verl row.

    Attributes:
        data_source: verl's dataset key (dispatches the reward function).
        index: position of the question in the release file (stable across subsets).
        split: ``train`` / ``val`` / ``test``.
        question: the plain question text (what the reference audio LM is told).
        prompt_text: what the policy is asked, without media placeholders and without the format
            instruction (e.g. the question plus its lettered options).
        ground_truth: the reference answer text.
        video: the media file (a video with a soundtrack).
        video_id: the release's id of the clip.
        question_type: e.g. ``"Audio-Visual/Existential"``.
        ability: verl's ``ability`` column.
        options: multiple-choice option texts (``options[0]`` is letter A), else ``None``.
        extra: dataset-specific ids copied into ``extra_info``.
    """

    data_source: str
    index: int
    split: str
    question: str
    prompt_text: str
    ground_truth: str
    video: Path
    video_id: str
    question_type: str
    ability: str
    options: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ parsing


def parse_stringified_list(value: Any, *, where: str) -> list:
    """A list stored as a string in the release (``'["Audio", "Counting"]'`` or ``"['violin']"``).

    JSON first (the Music-AVQA files double-encode with double quotes), then a Python literal.
    """
    import ast

    if isinstance(value, list):
        return value
    if not isinstance(value, str):
        raise ConversionError(f"{where}: expected a list or a stringified list, got {type(value).__name__}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise ConversionError(f"{where}: {value!r} is not a stringified list") from None
    if not isinstance(parsed, (list, tuple)):
        raise ConversionError(f"{where}: {value!r} is not a list")
    return list(parsed)


def require_field(record: dict, name: str, where: str, kinds: type | tuple[type, ...] = (str, int)) -> Any:
    if not isinstance(record, dict):
        raise ConversionError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if name not in record:
        raise ConversionError(f"{where}: missing field {name!r} (fields: {sorted(record)})")
    value = record[name]
    if not isinstance(value, kinds) or isinstance(value, bool):
        expected = kinds.__name__ if isinstance(kinds, type) else " or ".join(k.__name__ for k in kinds)
        raise ConversionError(f"{where}: field {name!r} must be {expected}, got {type(value).__name__}")
    return value


def load_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: file not found")
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as error:
        raise ConversionError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None


def load_json_list(path: str | os.PathLike, what: str) -> list:
    """A release file that must hold a JSON list (of ``what``: "questions", "items"); anything else raises."""
    data = load_json(path)
    if not isinstance(data, list):
        raise ConversionError(f"{path}: expected a JSON list of {what}, got {type(data).__name__}")
    return data


def split_from_filename(path: Path, default: str = "train") -> str:
    name = path.stem.lower()
    for split in ("train", "val", "test"):
        if split in name:
            return split
    return default


# ---------------------------------------------------------------------------------- selection


def select_candidates(
    n_total: int, *, first: int | None = None, subset: int | None = None, seed: int = 0
) -> tuple[list[int], int | None]:
    """Candidate indices in the order they are tried, and how many to keep (``None``: all).

    ``first``: file order. ``subset``: a seeded permutation (``random.Random(seed).shuffle``), the
    same for every run with the same seed and length.
    """
    if first is not None and subset is not None:
        raise ConversionError("--first and --subset are mutually exclusive")
    for name, value in (("--first", first), ("--subset", subset)):
        if value is not None and value < 1:
            raise ConversionError(f"{name} must be >= 1, got {value}")
    order = list(range(n_total))
    if subset is not None:
        random.Random(seed).shuffle(order)
        return order, subset
    return order, first


# ------------------------------------------------------------------------------------- media


def check_media_file(path: str | os.PathLike, *, audio: bool, video: bool = True) -> None:
    """Raise :class:`~verl_avconfuse.media.MediaError` unless ``path`` has (and decodes) the streams.

    The header check (:func:`~verl_avconfuse.media.require_streams`) misses a file whose header is
    fine but whose packets are not; decoding one frame of each needed stream catches that (~5 ms).
    """
    import av

    from verl_avconfuse.media import UnreadableMediaError, require_streams

    require_streams(path, audio=audio, video=video)
    try:
        with av.open(str(path)) as container:
            for kind, wanted in (("video", video), ("audio", audio)):
                if not wanted:
                    continue
                stream = getattr(container.streams, kind)[0]
                container.seek(0)
                if next(container.decode(stream), None) is None:
                    raise UnreadableMediaError(path, f"the {kind} stream has no decodable frame")
    except av.error.FFmpegError as error:
        raise UnreadableMediaError(path, f"decoding failed ({error.strerror or error})") from error


def check_media_files(
    paths: Sequence[str],
    cache: dict[str, str | None],
    *,
    needs_audio: bool = True,
    needs_video: bool | None = True,
    progress: bool = True,
    desc: str = "checking media",
) -> None:
    """Fill ``cache`` (path -> reason, or ``None`` when usable) for ``paths``, with a progress bar.

    ``needs_video=None``: a video stream is checked when the file has one (audio-only files pass).
    """
    from tqdm import tqdm

    from verl_avconfuse.media import MediaError, probe

    todo = [p for p in dict.fromkeys(paths) if p not in cache]
    for path in tqdm(todo, desc=desc, unit="file", disable=not progress or not todo):
        try:
            video = probe(path).has_video if needs_video is None else needs_video
            check_media_file(path, audio=needs_audio, video=video)
            cache[path] = None
        except MediaError as error:
            cache[path] = str(error)


# --------------------------------------------------------------------------------------- rows


def media_placeholders(audio_in_video: bool) -> str:
    return AUDIO_IN_VIDEO_PLACEHOLDERS if audio_in_video else SEPARATE_AUDIO_PLACEHOLDERS


def media_reference(path: Path, video_dir: Path, relative: bool) -> str:
    """How a row names its media file: absolute, or relative to ``video_dir`` (``data.media.root``)."""
    if relative:
        return os.path.relpath(path.resolve(), video_dir.resolve())
    return str(path.resolve())


def verl_row(
    *,
    data_source: str,
    question: str,
    ground_truth: str,
    index: int,
    split: str,
    extra_info: dict[str, Any] | None = None,
    prompt_text: str | None = None,
    placeholders: str = "",
    videos: Sequence[str] = (),
    audios: Sequence[str] = (),
    ability: str = "audio_visual_qa",
    reward_style: str = "rule",
) -> dict:
    """One verl RL row (module docstring: the schema), the one builder of them in this package.

    ``prompt_text`` is what the prompt asks (default ``question``; AVQA's adds the lettered options),
    wrapped by :func:`~verl_avconfuse.method.prompts.format_question` after the media ``placeholders``;
    ``extra_info`` follows ``index``, ``split`` and ``question`` (which the reference request reads).
    ``videos`` / ``audios`` are left out when empty (a text-only row).
    """
    row: dict[str, Any] = {
        "data_source": data_source,
        "prompt": [
            {"role": "user", "content": format_question(question if prompt_text is None else prompt_text, placeholders)}
        ],
    }
    if videos:
        row["videos"] = list(videos)
    if audios:
        row["audios"] = list(audios)
    row.update(
        ability=ability,
        reward_model={"style": reward_style, "ground_truth": ground_truth},
        extra_info={"index": index, "split": split, "question": question, **(extra_info or {})},
    )
    return row


def rl_row(sample: Sample, *, audio_in_video: bool, video_dir: Path, relative_paths: bool = False) -> dict:
    """verl's RL row for one sample (module docstring: the schema)."""
    media = media_reference(sample.video, video_dir, relative_paths)
    extra_info: dict[str, Any] = {"question_type": sample.question_type, "video_id": sample.video_id}
    if sample.options is not None:
        extra_info["options"] = list(sample.options)
    extra_info.update(sample.extra)
    return verl_row(
        data_source=sample.data_source,
        question=sample.question,
        prompt_text=sample.prompt_text,
        placeholders=media_placeholders(audio_in_video),
        videos=[media],
        # The soundtrack as its own <audio> item: the same file, read for its audio stream.
        audios=[] if audio_in_video else [media],
        ability=sample.ability,
        ground_truth=sample.ground_truth,
        index=sample.index,
        split=sample.split,
        extra_info=extra_info,
    )


# ------------------------------------------------------------------------------------ writing


def write_parquet_atomic(rows: list[dict], path: str | os.PathLike) -> Path:
    """verl's rows as parquet, atomically (:mod:`verl_avconfuse.io`), creating the folder; no rows is an error."""
    if not rows:
        raise ConversionError(f"{path}: no rows to write")
    return atomic_write_parquet(path, rows, parents=True, index=False)


def write_json_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """A report as indented UTF-8 JSON, atomically, creating the folder."""
    return atomic_write_json(path, obj, parents=True, indent=2, ensure_ascii=False)


def report_path(output: str | os.PathLike) -> Path:
    """Where ``--skip-bad`` writes its report: ``train.parquet`` -> ``train.report.json``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.report.json")


# -------------------------------------------------------------------------------------- driver


@dataclass
class ConversionResult:
    rows: list[dict]
    kept: list[Sample]
    dropped: list[BadMedia]
    output: Path | None = None
    report: Path | None = None


def convert(
    samples: Sequence[Sample],
    *,
    video_dir: str | os.PathLike,
    output: str | os.PathLike | None,
    audio_in_video: bool = False,
    relative_paths: bool = False,
    first: int | None = None,
    subset: int | None = None,
    seed: int = 0,
    skip_bad: bool = False,
    progress: bool = True,
    make_row: Callable[..., dict] = rl_row,
    source: str | os.PathLike | None = None,
) -> ConversionResult:
    """Select, check and write ``samples`` (module docstring); ``output=None`` writes nothing.

    Raises:
        ConversionError: bad media without ``skip_bad`` (every bad file named), nothing to write.
    """
    video_dir = Path(video_dir)
    order, wanted = select_candidates(len(samples), first=first, subset=subset, seed=seed)
    # Every video is read for its picture and, in both input modes, for its soundtrack.
    cache: dict[str, str | None] = {}
    kept_indices: list[int] = []
    dropped: list[BadMedia] = []
    if skip_bad:
        # Walk the candidates in order, checking lazily, until enough good samples are found.
        batch = 64
        position = 0
        while position < len(order) and (wanted is None or len(kept_indices) < wanted):
            chunk = order[position : position + batch]
            position += len(chunk)
            check_media_files([str(samples[i].video) for i in chunk], cache, progress=progress)
            for i in chunk:
                if wanted is not None and len(kept_indices) >= wanted:
                    break
                reason = cache[str(samples[i].video)]
                if reason is None:
                    kept_indices.append(i)
                else:
                    dropped.append(BadMedia(samples[i].index, str(samples[i].video), reason))
    else:
        chosen = order if wanted is None else order[:wanted]
        check_media_files([str(samples[i].video) for i in chosen], cache, progress=progress)
        bad = {path: reason for path, reason in cache.items() if reason}
        if bad:
            lines = "\n".join(f"  {reason}" for _, reason in sorted(bad.items()))
            raise ConversionError(
                f"{len(bad)} unusable media file(s) among the selected samples; nothing was written "
                f"(use --skip-bad to drop them and write a report):\n{lines}"
            )
        kept_indices = list(chosen)
    kept_indices.sort(key=lambda i: samples[i].index)
    kept = [samples[i] for i in kept_indices]
    if not kept:
        raise ConversionError(
            "no usable samples to write" + (f" ({len(dropped)} dropped for bad media)" if dropped else "")
        )
    rows = [
        make_row(s, audio_in_video=audio_in_video, video_dir=video_dir, relative_paths=relative_paths) for s in kept
    ]
    result = ConversionResult(rows=rows, kept=kept, dropped=dropped)
    if output is not None:
        result.output = write_parquet_atomic(rows, output)
        if skip_bad:
            report = {
                "source": str(source) if source is not None else None,
                "output": str(Path(output).resolve()),
                "rows_written": len(rows),
                "requested": wanted,
                "dropped": [vars(d) for d in dropped],
                "bad_files": {path: reason for path, reason in sorted(cache.items()) if reason},
            }
            result.report = write_json_atomic(report, report_path(output))
    return result


# ------------------------------------------------------------------------------------------ CLI


def add_common_arguments(parser: argparse.ArgumentParser, *, unit: str = "samples", split: bool = True) -> None:
    """The options every converter takes (``split=False``: no ``--split``, for SFT data)."""
    parser.add_argument("--video-dir", required=True, type=Path, help="folder holding the clips")
    parser.add_argument("--out", required=True, type=Path, help="output parquet file")
    if split:
        parser.add_argument(
            "--split", default=None, help="split name for extra_info (default: from the input file name)"
        )
    parser.add_argument(
        "--audio-in-video",
        action="store_true",
        help="prompt with <video> only; train with data.mm_processor_kwargs.use_audio_in_video=true",
    )
    parser.add_argument(
        "--relative-paths", action="store_true", help="media paths relative to --video-dir (train with data.media.root)"
    )
    select = parser.add_mutually_exclusive_group()
    select.add_argument("--first", type=int, default=None, help=f"keep the first N {unit} (file order)")
    select.add_argument("--subset", type=int, default=None, help=f"keep a seeded random subset of N {unit}")
    parser.add_argument("--seed", type=int, default=0, help="seed of --subset")
    parser.add_argument(
        "--skip-bad", action="store_true", help=f"drop {unit} with unusable media and write OUT.report.json"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_converter(args: argparse.Namespace, load: Callable[[], Sequence[Sample]], source: Path) -> int:
    """Shared ``main`` tail: ``load()`` the samples, convert them, print a summary.

    A :class:`ConversionError` from either step is printed as ``error: ...`` and gives exit code 1.
    """
    import sys

    try:
        samples = load()
        result = convert(
            samples,
            video_dir=args.video_dir,
            output=args.out,
            audio_in_video=args.audio_in_video,
            relative_paths=args.relative_paths,
            first=args.first,
            subset=args.subset,
            seed=args.seed,
            skip_bad=args.skip_bad,
            progress=not args.no_progress,
            source=source,
        )
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {len(result.rows)} rows to {result.output}")
    if result.report is not None:
        print(f"dropped {len(result.dropped)} sample(s) with unusable media; report: {result.report}")
    return 0
