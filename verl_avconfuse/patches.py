"""Every monkeypatch this project applies to verl (or to the tools around it), in one place.

Each patch names the version and the function it targets and why no extension point covers it.
``tests/test_patches.py`` fails when a target disappears or changes its signature, so a verl
upgrade cannot silently turn a patch into a no-op. Patches are applied from
:mod:`verl_avconfuse.plugin`, lazily, when verl imports the module that owns the target.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

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
        return str(inspect.signature(self.resolve()))


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

    initialize_global_process_group_ray._avconfuse_patched = True
    setattr(module, PROCESS_GROUP_BACKEND.attribute, initialize_global_process_group_ray)


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

    initialize_global_process_group._avconfuse_patched = True
    setattr(module, SFT_PROCESS_GROUP_BACKEND.attribute, initialize_global_process_group)


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

    hf_processor._avconfuse_patched = True
    setattr(module, HF_PROCESSOR.attribute, hf_processor)
    for name in HF_PROCESSOR_REEXPORTS:
        reexporter = sys.modules.get(name)
        if reexporter is not None and getattr(reexporter, HF_PROCESSOR.attribute, None) is original:
            setattr(reexporter, HF_PROCESSOR.attribute, hf_processor)


# --------------------------------------------------------------------------------------------------
# registry of module-level patches, applied from the plugin through post-import hooks
# --------------------------------------------------------------------------------------------------

MODULE_PATCHES: dict[str, list[tuple[PatchTarget, Callable[[ModuleType], None]]]] = {
    PROCESS_GROUP_BACKEND.module: [
        (PROCESS_GROUP_BACKEND, _patch_process_group_backend),
        (SFT_PROCESS_GROUP_BACKEND, _patch_sft_process_group_backend),
    ],
    HF_PROCESSOR.module: [(HF_PROCESSOR, _patch_hf_processor)],
}

ALL_TARGETS: list[PatchTarget] = [target for patches in MODULE_PATCHES.values() for target, _ in patches]
