"""A CPU platform for verl's platform registry.

verl 0.9.1 resolves one ``PlatformBase`` per process (``verl.plugin.platform.get_platform``) and routes
every device question through it: the torch device module, the collective backend, the Ray resource
name, the current device. verl ships CUDA, NPU and ROCm platforms only, so on a machine without an
accelerator it falls back to ``nvidia`` and fails on the first NCCL call. This platform makes the
whole hybrid engine (FSDP2 actor, rollout server, reward workers) run on host memory with gloo.

It is never auto-detected: ``is_platform_available`` is False, so a GPU-less machine does not slide
into CPU mode by accident. It is selected explicitly, by ``VERL_PLATFORM=cpu`` (verl's own switch)
or by ``trainer.device=cpu`` through :class:`verl_avconfuse.integration.platform.CpuPlatformCallback`.

Ray still schedules verl's workers on ``GPU`` resources; a CPU run declares logical GPUs with
``ray_kwargs.ray_init.num_gpus`` (the ``cpu_tiny`` recipe does), which Ray accepts on any machine.
"""

from __future__ import annotations

import os
import types
from contextlib import contextmanager
from typing import Any

import torch
from verl.plugin.platform import PlatformBase

from verl_avconfuse.omni.vllm_cpu import vllm_cpu_env

PLATFORM_NAME = "cpu"


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


def _host_mem_get_info(device: Any = None) -> tuple[int, int]:
    """(free, total) bytes of host memory, the CPU analogue of ``torch.cuda.mem_get_info``."""
    import psutil

    vm = psutil.virtual_memory()
    return vm.available, vm.total


def _zero(*args: Any, **kwargs: Any) -> int:
    return 0


def _build_device_module() -> types.ModuleType:
    """``torch.cpu`` plus host-side stand-ins for the CUDA-only calls verl makes on its device module.

    verl calls ``get_torch_device().empty_cache()``, ``.mem_get_info()``, ``.get_rng_state()``,
    ``.memory_allocated()`` etc. unconditionally; ``torch.cpu`` lacks most of them. Memory counters
    report 0 (there is no separate device pool to account for), RNG state is the host generator's.
    """
    module = types.ModuleType("verl_avconfuse.integration.platform.cpu_device")
    for name in dir(torch.cpu):
        if not name.startswith("_"):
            setattr(module, name, getattr(torch.cpu, name))
    module.is_available = lambda: True
    module.device_count = lambda: 1
    module.current_device = lambda: torch.device("cpu")
    module.set_device = _noop
    module.empty_cache = _noop
    module.ipc_collect = _noop
    module.set_per_process_memory_fraction = _noop
    module.reset_peak_memory_stats = _noop
    module.mem_get_info = _host_mem_get_info
    module.memory_allocated = _zero
    module.memory_reserved = _zero
    module.max_memory_allocated = _zero
    module.max_memory_reserved = _zero
    module.get_rng_state = lambda device=None: torch.get_rng_state()
    module.set_rng_state = lambda state, device=None: torch.set_rng_state(state)
    module.manual_seed = torch.manual_seed
    module.manual_seed_all = torch.manual_seed
    # flops_counter.get_device_flops looks this name up in its table (it has a "CPU" row) for MFU.
    module.get_device_name = lambda device=None: "CPU"
    return module


_DEVICE_MODULE = _build_device_module()


class PlatformCPU(PlatformBase):
    """Host-only platform: device ``cpu``, collectives over gloo, logical Ray ``GPU`` resources."""

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> types.ModuleType:
        return _DEVICE_MODULE

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        # Never auto-detected: CPU mode must be asked for (VERL_PLATFORM=cpu or trainer.device=cpu).
        return False

    def current_device(self) -> torch.device:
        # FSDP2 and verl's engines pass this to `.to(...)` / `torch.device(...)`; an int would mean
        # "accelerator 0", which on a CPU-only torch build raises.
        return torch.device("cpu")

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: int | None = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        # Ray sets CUDA_VISIBLE_DEVICES for the logical GPUs it hands out; reading it is harmless.
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        # verl's resource pools place workers on "GPU" bundles; on CPU these are logical GPUs.
        return "GPU"

    def ray_resource_options(self, num_gpus: float) -> dict[str, Any]:
        return {"num_gpus": num_gpus}

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None

    # -- vLLM's CPU build as the rollout engine (rollout.name=vllm_omni) ------------------------------------
    def rollout_env_vars(self) -> dict[str, str]:
        """Environment of the vLLM server and its engine processes (verl: ``vLLMReplica.launch_servers``).

        - ``VLLM_CPU_KVCACHE_SPACE`` (GiB): without it the CPU worker sizes its KV cache by
          ``gpu_memory_utilization`` of host memory (verl's 0.5: half the machine) or refuses to start
          (``vllm/v1/worker/cpu_worker.py: determine_available_memory``).
        - ``VLLM_CPU_OMP_THREADS_BIND=nobind``: vLLM pins its OpenMP threads to cores by default; several
          engines and the FSDP workers share the machine's cores here (``vllm/v1/worker/cpu_worker.py``).
        A value already in the environment wins. Ray wants strings.
        """
        return vllm_cpu_env()

    def vllm_rollout_settings(self) -> dict[str, Any]:
        """Rollout-config values vLLM's CPU build needs, applied by the vllm_omni server on this platform.

        - ``enable_sleep_mode``: the CPU platform refuses it ("Sleep mode is not supported on current
          platform", ``vllm/platforms/cpu.py``); verl's dataclass defaults it to True and its yaml has no key.
          There is no device memory to free between rollout and update anyway.
        - ``enforce_eager``: without it vLLM compiles the model with inductor for minutes on a CPU.
        """
        return {"enable_sleep_mode": False, "enforce_eager": True}


def activate_cpu_platform() -> PlatformCPU:
    """Make this process (and the Ray workers it starts afterwards) use the CPU platform.

    Sets ``VERL_PLATFORM=cpu`` so every process resolves the same platform, and replaces the
    process-wide singleton in case something already resolved another one.
    """
    from verl.plugin.platform import platform_manager, set_platform

    os.environ["VERL_PLATFORM"] = PLATFORM_NAME
    current = platform_manager._current_platform
    if isinstance(current, PlatformCPU):
        return current
    platform = PlatformCPU()
    set_platform(platform)
    return platform
