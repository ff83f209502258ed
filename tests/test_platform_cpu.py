"""The CPU platform: explicit only, host-memory device module, gloo."""

from __future__ import annotations

import json

import torch

from verl_avconfuse.integration.platform.cpu import PlatformCPU

from conftest import run_python


def test_cpu_platform_is_never_auto_detected():
    assert PlatformCPU().is_platform_available(use_smi_check=True) is False
    assert PlatformCPU().is_platform_available(use_smi_check=False) is False


def test_cpu_platform_answers_verls_device_questions():
    platform = PlatformCPU()
    assert platform.device_name == "cpu"
    assert platform.communication_backend_name() == "gloo"
    assert platform.current_device() == torch.device("cpu")
    assert platform.ray_resource_options(1) == {"num_gpus": 1}
    module = platform.device_module
    free, total = module.mem_get_info()
    assert 0 < free <= total
    assert module.memory_allocated() == 0
    assert module.get_device_name() == "CPU"
    torch.manual_seed(3)
    state = module.get_rng_state()
    first = torch.rand(2)
    module.set_rng_state(state)
    assert torch.equal(torch.rand(2), first)
    # A CPU tensor moved to "the current device" stays put (FSDP2 does this).
    assert torch.ones(1).to(platform.current_device()).device.type == "cpu"


def test_verl_platform_env_selects_cpu_and_flops_counter_copes(tmp_path):
    code = """
import json, verl
from verl.utils.device import get_device_name, get_nccl_backend, get_torch_device
from verl.utils.flops_counter import get_device_flops
print(json.dumps([get_device_name(), get_nccl_backend(), get_torch_device().get_device_name(), str(get_device_flops())]))
"""
    result = run_python(["-c", code], cwd=tmp_path, env={"VERL_PLATFORM": "cpu"}, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    name, backend, device, flops = json.loads(result.stdout.strip().splitlines()[-1])
    assert (name, backend, device) == ("cpu", "gloo", "CPU")
    assert 0 < float(flops) < float("inf")  # verl has a "CPU" row in its flops table


def test_trainer_device_cpu_switches_platform_through_the_hydra_callback(tmp_path):
    # Without the callback, verl's auto_set_device would rewrite trainer.device=cpu to cuda here.
    code = """
import json, verl
from omegaconf import OmegaConf
from verl.utils.device import auto_set_device, get_device_name
from verl_avconfuse.integration.platform.hydra_callback import CpuPlatformCallback
import os
config = OmegaConf.create({"trainer": {"device": "cpu"}})
CpuPlatformCallback().on_job_start(config=config)
auto_set_device(config)
print(json.dumps([config.trainer.device, get_device_name(), os.environ.get("VERL_PLATFORM")]))
"""
    result = run_python(["-c", code], cwd=tmp_path, env={"VERL_PLATFORM": ""}, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == ["cpu", "cpu", "cpu"]


def test_callback_leaves_gpu_configs_alone(tmp_path):
    code = """
import json, os, verl
from omegaconf import OmegaConf
from verl_avconfuse.integration.platform.hydra_callback import CpuPlatformCallback
CpuPlatformCallback().on_job_start(config=OmegaConf.create({"trainer": {"device": "cuda"}}))
print(json.dumps(os.environ.get("VERL_PLATFORM", "")))
"""
    result = run_python(["-c", code], cwd=tmp_path, env={"VERL_PLATFORM": ""}, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == ""
