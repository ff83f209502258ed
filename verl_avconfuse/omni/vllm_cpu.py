"""vLLM's CPU build, for every vLLM engine this package starts: verl's rollout servers (through the CPU
platform, :class:`verl_avconfuse.integration.platform.cpu.PlatformCPU`) and the offline ``vllm.LLM`` of the
reference and evaluation backends. One environment, so the three cannot drift apart.
"""

from __future__ import annotations

import os
from typing import Any

#: KV-cache GiB of each vLLM CPU engine (``VLLM_CPU_KVCACHE_SPACE``): the tiny runs need a few MiB.
VLLM_CPU_KVCACHE_GIB = "1"


def vllm_cpu_env() -> dict[str, str]:
    """What a vLLM CPU engine needs in its environment here (also :meth:`~verl_avconfuse.integration.platform.cpu.PlatformCPU.rollout_env_vars`)."""
    return {
        name: os.environ.get(name, default)
        for name, default in (
            ("VLLM_CPU_KVCACHE_SPACE", VLLM_CPU_KVCACHE_GIB),
            ("VLLM_CPU_OMP_THREADS_BIND", "nobind"),
        )
    }


def prepare_offline_vllm(engine_kwargs: dict[str, Any]) -> bool:
    """For a ``vllm.LLM`` this process is about to build: on vLLM's CPU build, the environment of
    :func:`vllm_cpu_env` and ``enforce_eager`` (no inductor compile), each unless already set. Returns whether
    vLLM runs on the CPU (the reference and evaluation backends skip GPU-only options then)."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return False
    for name, value in vllm_cpu_env().items():
        os.environ.setdefault(name, value)
    engine_kwargs.setdefault("enforce_eager", True)
    return True
