"""``avconfuse omni-params``, ``avconfuse extract-thinker``, ``avconfuse export-omni``."""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path

from verl_avconfuse.errors import InputError

#: The recorded Qwen2.5-Omni-3B config (see docs/omni.md for the provenance of its values).
QWEN2_5_OMNI_3B = "qwen2_5_omni_3b.json"


def default_config_path() -> Path:
    return Path(str(resources.files("verl_avconfuse.omni") / "assets" / QWEN2_5_OMNI_3B))


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    if command == "omni-params":
        parser.add_argument(
            "--config",
            type=Path,
            default=None,
            help="a full Qwen2.5-Omni config.json, or a full or thinker-only Qwen3-Omni one "
            "(default: the recorded Qwen2.5-Omni-3B config)",
        )
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    elif command == "extract-thinker":
        parser.add_argument("full", type=Path, help="full Qwen2.5-Omni checkpoint directory")
        parser.add_argument("out", type=Path, help="new thinker-only directory")
    elif command == "export-omni":
        parser.add_argument("full", type=Path, help="the original full Qwen2.5-Omni checkpoint (talker, token2wav)")
        parser.add_argument(
            "thinker", type=Path, help="the trained thinker (HF directory, e.g. a merged verl checkpoint)"
        )
        parser.add_argument("out", type=Path, help="new full checkpoint directory")


def _require_folder(path: Path, what: str) -> None:
    if not path.is_dir():
        raise InputError(f"{what} {path}: no such folder")
    if not (path / "config.json").is_file():
        raise InputError(f"{what} {path}: the folder has no config.json; expected an HF checkpoint folder")


def _require_new(path: Path) -> None:
    if path.exists():
        raise InputError(f"out {path}: already exists; choose a new output folder")


def _parameter_counts(config: dict, path) -> dict[str, int]:
    """Per-component counts for either Omni family, by the config's ``model_type``."""
    from verl_avconfuse.omni import checkpoint, qwen3_omni

    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type in qwen3_omni.MODEL_TYPES:
        return qwen3_omni.parameter_counts(config)
    if model_type in (None, "qwen2_5_omni"):
        return checkpoint.parameter_counts(config)
    raise InputError(
        f"--config {path}: model_type={model_type!r}; expected a full Qwen2.5-Omni config (qwen2_5_omni) or a "
        f"Qwen3-Omni one ({', '.join(qwen3_omni.MODEL_TYPES)})"
    )


def run(command: str, args: argparse.Namespace) -> int:
    from verl_avconfuse.omni import checkpoint

    if command == "omni-params":
        path = args.config or default_config_path()
        if not Path(path).is_file():
            raise InputError(f"--config {path}: no such file")
        try:
            config = json.loads(Path(path).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InputError(f"--config {path}: not a JSON file ({error})") from None
        counts = _parameter_counts(config, path)
        if args.json:
            print(json.dumps(counts, indent=2))
        else:
            print(f"parameters of {path}")
            for name, value in counts.items():
                print(f"  {name:30s} {value:>15,d}  ({value / 1e9:.3f} B)")
            print(f"  {'thinker share of total':30s} {counts['thinker'] / counts['total']:.1%}")
        return 0
    if command == "extract-thinker":
        _require_folder(args.full, "full")
        _require_new(args.out)
        print(checkpoint.extract_thinker(args.full, args.out))
        return 0
    if command == "export-omni":
        _require_folder(args.full, "full")
        _require_folder(args.thinker, "thinker")
        _require_new(args.out)
        print(checkpoint.merge_thinker(args.full, args.thinker, args.out))
        return 0
    raise ValueError(command)
