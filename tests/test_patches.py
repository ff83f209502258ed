"""Every verl monkeypatch still finds its target, with the signature it was written for."""

from __future__ import annotations

import json

import pytest

from verl_avconfuse import patches

from conftest import free_port, run_python


@pytest.mark.parametrize("target", patches.ALL_TARGETS, ids=lambda t: f"{t.module}.{t.attribute}")
def test_patch_target_exists_with_expected_signature(target):
    assert target.current_signature() == target.signature, (
        f"{target.module}.{target.attribute} changed since verl {patches.VERL_VERSION}: review the patch ({target.reason})"
    )


def test_installed_verl_is_the_patched_version():
    import verl

    assert verl.__version__ == patches.VERL_VERSION


def test_process_group_backend_patch_gives_plain_gloo_on_cpu(tmp_path):
    code = """
import json, os
import verl
from verl.utils import distributed
os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")  # MASTER_PORT: a free one
import torch.distributed as dist
distributed.initialize_global_process_group_ray()
# the name engine_workers imports must be the patched one too
from verl.workers.engine_workers import initialize_global_process_group_ray as imported
print(json.dumps([dist.get_backend(), getattr(imported, "_avconfuse_patched", False)]))
dist.destroy_process_group()
"""
    result = run_python(
        ["-c", code], cwd=tmp_path, env={"VERL_PLATFORM": "cpu", "MASTER_PORT": str(free_port())}, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == ["gloo", True]


def test_torchrun_process_group_patch_gives_plain_gloo_on_cpu(tmp_path):
    """verl.trainer.sft_trainer's initialize_global_process_group, as torchrun would call it."""
    code = """
import json, os
os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")  # MASTER_PORT: a free one
import verl
from verl.utils.distributed import initialize_global_process_group
import torch.distributed as dist
ranks = initialize_global_process_group()
print(json.dumps([dist.get_backend(), list(ranks), initialize_global_process_group._avconfuse_patched]))
dist.destroy_process_group()
"""
    result = run_python(
        ["-c", code], cwd=tmp_path, env={"VERL_PLATFORM": "cpu", "MASTER_PORT": str(free_port())}, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == ["gloo", [0, 0, 1], True]
