"""LoRA on an Omni thinker (both families): export a merged thinker from verl's adapter checkpoint.

verl trains LoRA through its own options (``actor_rollout_ref.model.lora_rank``, ``lora_alpha``,
``target_modules``; PEFT inside the FSDP engine) and ``python -m verl.model_merger merge`` writes the
*base* weights plus a separate ``lora_adapter/`` folder (``adapter_config.json``,
``adapter_model.safetensors``). RL-CoMM's tools (evaluation, ``export-omni``, vLLM serving without LoRA)
take a plain thinker, so :func:`merge_lora_thinker` folds the adapter into the base thinker
(``W + (alpha / r) * B @ A``) and writes an ordinary thinker directory with the processor files::

    python -m verl_avconfuse.omni.lora BASE_THINKER CKPT_MERGED/lora_adapter OUT_THINKER

The base is the thinker the run started from (``actor_rollout_ref.model.path``): LoRA trains nothing else.
For Qwen3-Omni the MoE experts are fused 3D parameters that ``all-linear`` never adapts; the merged
thinker is saved one tensor per expert, as the released checkpoints are.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

#: Where PEFT puts the wrapped model in its state dict and module names.
_PEFT_PREFIX = "base_model.model."


def adapter_config(adapter_dir: str | Path) -> dict:
    path = Path(adapter_dir) / "adapter_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a LoRA adapter folder (verl.model_merger writes CKPT/lora_adapter)")
    return json.loads(path.read_text())


def merge_lora_thinker(base_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path) -> Path:
    """Write ``base_dir``'s thinker with the LoRA adapter of ``adapter_dir`` merged in, to ``out_dir``.

    Raises:
        FileNotFoundError: ``adapter_dir`` has no ``adapter_config.json``.
        ValueError: the adapter names modules the thinker does not have, or holds tensors PEFT did not load.
    """
    import torch
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    from verl_avconfuse.omni.checkpoint import _atomic_dir, _copy_sidecars

    base_dir, adapter_dir, out_dir = Path(base_dir), Path(adapter_dir), Path(out_dir)
    config = adapter_config(adapter_dir)
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    # The adapted modules are read from the tensors, not from config["target_modules"]: verl's model merger
    # writes each module's last name there ("q_proj", but also "0" and "2" for Qwen2.5-Omni's vision merger
    # ModuleList), and PEFT would then also match whole layers named "...layers.0" and refuse them.
    modules = sorted({name.removeprefix(_PEFT_PREFIX).rsplit(".lora_", 1)[0] for name in tensors})
    model = AutoModelForImageTextToText.from_pretrained(str(base_dir), dtype="auto")
    lora = LoraConfig(
        r=int(config["r"]),
        lora_alpha=config["lora_alpha"],
        # full names: PEFT matches a list entry as the name or its dotted suffix (a regex string matched
        # "model.layers.0.self_attn.q_proj" for "model.layers.1.self_attn.q_proj" in peft 0.21.2)
        target_modules=modules,
        use_rslora=bool(config.get("use_rslora", False)),
        bias="none",
    )
    peft_model = get_peft_model(model, lora)
    adapted = sorted(n.removeprefix(_PEFT_PREFIX) for n, m in peft_model.named_modules() if hasattr(m, "lora_A"))
    if adapted != modules:
        raise ValueError(
            f"{adapter_dir}: the adapter names modules the thinker in {base_dir} does not have: "
            f"{sorted(set(modules) - set(adapted))[:5]}"
        )
    result = set_peft_model_state_dict(peft_model, tensors)
    if result.unexpected_keys:
        raise ValueError(f"{adapter_dir}: adapter tensors not loaded: {result.unexpected_keys[:5]}")
    with torch.no_grad():
        merged = peft_model.merge_and_unload()
    with _atomic_dir(out_dir) as tmp:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        # processor, tokenizer, chat template: as the base thinker has them (config.json is the merged one's)
        _copy_sidecars(base_dir, tmp, skip=("config.json", "generation_config.json"))
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m verl_avconfuse.omni.lora", description="Merge a verl LoRA adapter into an Omni thinker."
    )
    parser.add_argument("base", help="the thinker the LoRA run started from")
    parser.add_argument("adapter", help="the adapter folder (verl.model_merger's TARGET/lora_adapter)")
    parser.add_argument("out", help="new directory for the merged thinker")
    args = parser.parse_args(argv)
    print(merge_lora_thinker(args.base, args.adapter, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
