"""Execution platforms: the CPU platform and the switches that select it.

``hydra_callback.CpuPlatformCallback`` is not imported here: the plugin imports this package in
every verl process and must stay cheap; Hydra imports the callback by path from the recipe.
"""

from .cpu import PLATFORM_NAME, PlatformCPU, activate_cpu_platform

__all__ = ["PLATFORM_NAME", "PlatformCPU", "activate_cpu_platform"]
