"""Thinker <-> full Qwen2.5-Omni checkpoints, and parameter counts.

RL-CoMM trains the thinker only. verl loads a thinker-only directory directly
(``AutoModelForImageTextToText`` maps ``qwen2_5_omni_thinker``), but it cannot load a full
Qwen2.5-Omni checkpoint (``AutoModel`` has no class for it) and should not: the talker and
token2wav are a third of the parameters and never train here. So:

- :func:`extract_thinker` writes a thinker-only directory from a full checkpoint, reading only the
  ``thinker.*`` tensors (the talker and token2wav are never loaded, not even lazily);
- :func:`merge_thinker` writes a new full checkpoint whose thinker is the trained one and whose
  talker and token2wav are the original, byte for byte, so the trained model still speaks;
- :func:`parameter_counts` counts parameters per component on the meta device (no memory).

Both writers build into a temporary sibling directory and rename it into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

THINKER_PREFIX = "thinker."
THINKER_ARCHITECTURE = "Qwen2_5OmniThinkerForConditionalGeneration"
#: Full-model ``model_type`` -> (thinker ``model_type``, thinker architecture), for both Omni families.
#: Qwen3-Omni's full checkpoint (``qwen3_omni_moe``) names its talker ``talker.*`` and its vocoder
#: ``code2wav.*``; its thinker tensors are stored one per MoE expert, which is also how
#: ``Qwen3OmniMoeThinkerForConditionalGeneration.save_pretrained`` writes them (it un-fuses on save), so
#: names match between an extracted, a trained and the original thinker.
OMNI_FAMILIES: dict[str, tuple[str, str]] = {
    "qwen2_5_omni": ("qwen2_5_omni_thinker", THINKER_ARCHITECTURE),
    "qwen3_omni_moe": ("qwen3_omni_moe_thinker", "Qwen3OmniMoeThinkerForConditionalGeneration"),
}
#: Files of a checkpoint that are not weights or the model config (tokenizer, processor, templates).
_SIDECAR_SUFFIXES = (".json", ".txt", ".jinja", ".model", ".tiktoken")
#: Largest shard written, as in transformers' save_pretrained default.
MAX_SHARD_BYTES = 5 * 1024**3


class CheckpointError(ValueError):
    """A checkpoint directory is not what an Omni tool expects; the message names the file."""


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from None


def _weight_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(_read_json(index)["weight_map"].values()))
        return [model_dir / shard for shard in shards]
    single = model_dir / "model.safetensors"
    if single.exists():
        return [single]
    raise CheckpointError(f"{model_dir}: no model.safetensors or model.safetensors.index.json")


def _iter_tensors(model_dir: Path, prefix: str = "") -> Iterator[tuple[str, object]]:
    """(name, tensor) for every stored tensor whose name starts with ``prefix``; others are never read."""
    from safetensors import safe_open

    for shard in _weight_files(model_dir):
        with safe_open(str(shard), framework="pt") as f:
            for name in f.keys():
                if name.startswith(prefix):
                    yield name, f.get_tensor(name)


_SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}


def _iter_shapes(model_dir: Path, prefix: str = "") -> Iterator[tuple[str, tuple[int, ...], str]]:
    """(name, shape, torch dtype name) of stored tensors, read from the headers only."""
    from safetensors import safe_open

    for shard in _weight_files(model_dir):
        with safe_open(str(shard), framework="pt") as f:
            for name in f.keys():
                if name.startswith(prefix):
                    tensor_slice = f.get_slice(name)
                    yield name, tuple(tensor_slice.get_shape()), _SAFETENSORS_DTYPES[tensor_slice.get_dtype()]


def _shard_and_save(tensors: Iterator[tuple[str, object]], out_dir: Path, metadata: dict | None = None) -> int:
    """Write tensors as transformers-style safetensors shards (+ index when several). Returns count."""
    from safetensors.torch import save_file

    shards: list[dict] = [{}]
    sizes = [0]
    for name, tensor in tensors:
        nbytes = tensor.numel() * tensor.element_size()
        if sizes[-1] and sizes[-1] + nbytes > MAX_SHARD_BYTES:
            shards.append({})
            sizes.append(0)
        shards[-1][name] = tensor.contiguous()
        sizes[-1] += nbytes
    metadata = {"format": "pt", **(metadata or {})}
    count = sum(len(shard) for shard in shards)
    if len(shards) == 1:
        save_file(shards[0], str(out_dir / "model.safetensors"), metadata=metadata)
        return count
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        filename = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out_dir / filename), metadata=metadata)
        weight_map.update({name: filename for name in shard})
    index = {"metadata": {"total_size": sum(sizes)}, "weight_map": weight_map}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return count


@contextmanager
def _atomic_dir(out_dir: Path):
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise CheckpointError(f"{out_dir}: already exists; choose a new output directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        yield tmp
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _is_weight_file(path: Path) -> bool:
    return path.name.endswith(".safetensors") or path.name == "model.safetensors.index.json"


def _copy_sidecars(
    src: Path, dst: Path, *, skip: tuple[str, ...] = (), only_suffixes: tuple[str, ...] | None = None
) -> None:
    """Copy every non-weight file (processor, tokenizer, templates, speaker dictionary...)."""
    for path in src.iterdir():
        if not path.is_file() or _is_weight_file(path) or path.name in skip:
            continue
        if only_suffixes is None or path.suffix in only_suffixes:
            shutil.copy2(path, dst / path.name)


def is_full_omni(model_dir: str | Path) -> bool:
    return _read_json(Path(model_dir) / "config.json").get("model_type") in OMNI_FAMILIES


def extract_thinker(full_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the thinker of a full Qwen2.5-Omni or Qwen3-Omni checkpoint as a thinker-only HF directory."""
    full_dir, out_dir = Path(full_dir), Path(out_dir)
    config = _read_json(full_dir / "config.json")
    if config.get("model_type") not in OMNI_FAMILIES or "thinker_config" not in config:
        raise CheckpointError(
            f"{full_dir / 'config.json'}: expected a full Qwen2.5-Omni config or a full Qwen3-Omni config "
            f"(model_type {' or '.join(repr(t) for t in OMNI_FAMILIES)} with a thinker_config), got model_type "
            f"{config.get('model_type')!r}"
        )
    thinker_type, architecture = OMNI_FAMILIES[config["model_type"]]
    thinker_config = dict(config["thinker_config"])
    thinker_config["architectures"] = [architecture]
    thinker_config["model_type"] = thinker_type
    for key in ("torch_dtype", "dtype", "transformers_version"):
        if key in config and key not in thinker_config:
            thinker_config[key] = config[key]
    with _atomic_dir(out_dir) as tmp:
        renamed = ((name[len(THINKER_PREFIX) :], tensor) for name, tensor in _iter_tensors(full_dir, THINKER_PREFIX))
        count = _shard_and_save(renamed, tmp)
        if count == 0:
            raise CheckpointError(f"{full_dir}: no tensors named '{THINKER_PREFIX}*'")
        # Tokenizer, processor and template files only: talker assets (spk_dict.pt) stay behind.
        _copy_sidecars(full_dir, tmp, skip=("config.json",), only_suffixes=_SIDECAR_SUFFIXES)
        (tmp / "config.json").write_text(json.dumps(thinker_config, indent=2))
    return out_dir


def merge_thinker(full_dir: str | Path, thinker_dir: str | Path, out_dir: str | Path) -> Path:
    """A full Omni checkpoint with the thinker from ``thinker_dir`` and everything else from ``full_dir``.

    Every thinker tensor of the original must be replaced by one of the same shape, and the trained
    thinker must not bring tensors the original lacks: a silent partial merge would ship a model
    whose audio or vision tower is still the base one.
    """
    full_dir, thinker_dir, out_dir = Path(full_dir), Path(thinker_dir), Path(out_dir)
    if not is_full_omni(full_dir):
        raise CheckpointError(f"{full_dir / 'config.json'}: expected a full Qwen2.5-Omni or Qwen3-Omni checkpoint")
    expected_type = OMNI_FAMILIES[_read_json(full_dir / "config.json")["model_type"]][0]
    thinker_model_type = _read_json(thinker_dir / "config.json").get("model_type")
    if thinker_model_type != expected_type:
        raise CheckpointError(
            f"{thinker_dir / 'config.json'}: expected model_type {expected_type!r}, got {thinker_model_type!r}"
        )
    trained = dict(_iter_tensors(thinker_dir))
    original = {
        name[len(THINKER_PREFIX) :]: (shape, dtype) for name, shape, dtype in _iter_shapes(full_dir, THINKER_PREFIX)
    }
    missing = sorted(set(original) - set(trained))
    extra = sorted(set(trained) - set(original))
    if missing or extra:
        raise CheckpointError(
            f"{thinker_dir}: thinker weights do not match {full_dir}: missing {missing[:5]} ({len(missing)}), "
            f"unexpected {extra[:5]} ({len(extra)})"
        )
    bad_shapes = [n for n, (shape, _) in original.items() if tuple(trained[n].shape) != shape]
    if bad_shapes:
        raise CheckpointError(f"{thinker_dir}: shapes differ from the original thinker for {bad_shapes[:5]}")

    def merged() -> Iterator[tuple[str, object]]:
        import torch
        from safetensors import safe_open

        for shard in _weight_files(full_dir):
            with safe_open(str(shard), framework="pt") as f:
                for name in f.keys():
                    if name.startswith(THINKER_PREFIX):
                        key = name[len(THINKER_PREFIX) :]
                        # Saved in the original dtype (e.g. bf16) even if training kept fp32 masters.
                        yield name, trained[key].to(getattr(torch, original[key][1]))
                    else:
                        yield name, f.get_tensor(name)

    with _atomic_dir(out_dir) as tmp:
        _shard_and_save(merged(), tmp)
        _copy_sidecars(full_dir, tmp)
    return out_dir


def parameter_counts(config) -> dict[str, int]:
    """Parameters per component of a full Qwen2.5-Omni model, built on the meta device.

    ``config`` is a ``Qwen2_5OmniConfig`` (or a dict / path to its config.json). Keys: ``thinker``
    with ``thinker.audio_tower``, ``thinker.visual``, ``thinker.language_model`` (embeddings, layers,
    norm, lm head), ``talker``, ``token2wav``, ``total``.
    """
    import torch
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    if isinstance(config, (str, Path)):
        config = Qwen2_5OmniConfig.from_pretrained(str(config))
    elif isinstance(config, dict):
        config = Qwen2_5OmniConfig(**config)
    with torch.device("meta"):
        model = Qwen2_5OmniForConditionalGeneration(config)

    def count(module) -> int:
        return sum(p.numel() for p in module.parameters())

    thinker = model.thinker
    counts = {
        "thinker.audio_tower": count(thinker.audio_tower),
        "thinker.visual": count(thinker.visual),
        "thinker": count(thinker),
    }
    counts["thinker.language_model"] = counts["thinker"] - counts["thinker.audio_tower"] - counts["thinker.visual"]
    counts["talker"] = count(model.talker) if getattr(model, "talker", None) is not None else 0
    counts["token2wav"] = count(model.token2wav) if getattr(model, "token2wav", None) is not None else 0
    counts["total"] = count(model)
    return counts
