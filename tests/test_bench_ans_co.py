"""benchmarks/bench_ans_co.py: the variants it times compute the losses they are named after."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import bench_ans_co  # noqa: E402


@pytest.fixture(scope="module")
def verl():
    return bench_ans_co.verl_pieces()


def test_the_inline_pg_loss_is_verls_vanilla_loss(verl):
    """The device check has no verl: its PPO-clip token-mean must equal verl's compute_policy_loss_vanilla."""
    g = torch.Generator().manual_seed(0)
    old = torch.randn(6, 40, generator=g)
    new = old + 0.5 * torch.randn(6, 40, generator=g)  # ratios well beyond the 0.2 clip, both ways
    advantages = torch.randn(6, 1, generator=g).expand(-1, 40) * 2  # some below -1: dual clip active
    mask = torch.rand(6, 40, generator=g) > 0.2
    expected, _ = verl[0](old, new, advantages, mask, config=verl[1])
    assert verl[1].clip_ratio == 0.2 and verl[1].get("clip_ratio_c", 3.0) == 3.0
    assert bench_ans_co.ppo_clip_token_mean(old, new, advantages, mask).item() == pytest.approx(
        expected.item(), abs=1e-6
    )


@pytest.mark.parametrize("use_verl", [True, False], ids=["verl", "inline"])
def test_answer_only_and_all_position_entropy_give_the_same_ans_co_loss(verl, use_verl):
    """Ans-CO reads the entropy at answer tokens only: every variant is the same loss, at different cost."""
    dims = bench_ans_co.DIMS["smoke"]
    model = bench_ans_co.build_lm(dims, "cpu", torch.float32)
    batch = bench_ans_co.make_batch(dims, 4, 8, 16, 3, "cpu")
    pieces = verl if use_verl else None
    with torch.no_grad():
        vanilla, answer_only, answer_dense, answer_hidden, all_positions = (
            bench_ans_co.update_loss(model, batch, v, 8, pieces).item() for v in bench_ans_co.VARIANTS
        )
    for answer_variant in (answer_only, answer_dense, answer_hidden):
        assert answer_variant == pytest.approx(all_positions, abs=1e-5)
    # Ans-CO adds NLL of the right answers (rows 0, 2) and 0.5 x answer entropy (~log V for a random model).
    assert answer_only - vanilla > 0.5 * 0.5 * torch.log(torch.tensor(float(dims.vocab))).item()


def test_every_answer_only_variant_gives_the_all_position_gradient(verl):
    """The variants differ in cost only: the same gradient of the whole update's loss (float32, 1e-6)."""
    dims = bench_ans_co.DIMS["smoke"]
    model = bench_ans_co.build_lm(dims, "cpu", torch.float32)
    batch = bench_ans_co.make_batch(dims, 4, 8, 16, 3, "cpu")
    params = list(model.parameters())
    grads = {
        v: torch.autograd.grad(bench_ans_co.update_loss(model, batch, v, 8, verl), params)
        for v in bench_ans_co.VARIANTS[1:]
    }
    for variant in ("ansco_answer", "ansco_answer_dense", "ansco_answer_hidden"):
        for ours, full in zip(grads[variant], grads["ansco_all"], strict=True):
            torch.testing.assert_close(ours, full, rtol=1e-6, atol=1e-6)


def test_the_cpu_run_prints_each_variant_beside_vanilla_and_writes_its_raw_rounds(capsys, tmp_path):
    result = tmp_path / "bench_ans_co.json"
    out = bench_ans_co.main(
        ["--dims", "smoke", "--prompt-len", "8", "--response-len", "16", "--repeats", "3", "--result", str(result)]
    )
    printed = capsys.readouterr().out
    assert "vocab 2048" in printed and "machine:" in printed and "load" in printed
    assert set(out) == set(bench_ans_co.VARIANTS)
    # every figure follows from the raw rounds: best = min, median = median, ratio = median of the
    # per-round ratios to vanilla (3 rounds: the middle one), wall and CPU time alike
    vanilla, vanilla_cpu = out["vanilla"]["rounds_s"], out["vanilla"]["cpu_rounds_s"]
    for variant, row in out.items():
        rounds, cpu_rounds = row["rounds_s"], row["cpu_rounds_s"]
        assert len(rounds) == len(cpu_rounds) == 3
        assert row["best_s"] == min(rounds) and row["median_s"] == sorted(rounds)[1]
        assert row["ratio"] == pytest.approx(sorted(t / v for t, v in zip(rounds, vanilla, strict=True))[1], rel=1e-12)
        cpu = sorted(t / v for t, v in zip(cpu_rounds, vanilla_cpu, strict=True))[1]
        assert row["cpu_ratio"] == pytest.approx(cpu, rel=1e-12), variant
    assert out["vanilla"]["ratio"] == 1.0
    answer = out["ansco_answer"]
    assert f"answer-only Ans-CO / vanilla PG (wall time): {answer['ratio']:.3f}, limit 1.05" in printed
    assert f"(CPU time): {answer['cpu_ratio']:.3f}, limit 1.05" in printed
    # the result file: the same figures with where and when they were measured
    written = json.loads(result.read_text())
    assert written["variants"] == out and written["settings"]["dims"] == "smoke"
    assert written["command"].startswith("python benchmarks/bench_ans_co.py --dims smoke")
    assert len(written["commit"]) == 40 and written["machine"]["cpu_count"] == os.cpu_count()
    assert {"started", "finished", "load_1min_at_start", "load_1min_at_end"} <= set(written)


def test_allocations_count_the_dense_gradient_the_engine_avoids():
    """Smoke dims, 2 x 127 scored positions x 2,048 fp32 = 1.98 MiB per logits-sized tensor, 2 answer tokens
    each: plain indexing of the answer rows allocates one more such tensor per update (its zero-filled
    gradient) than the engine's sparse-gradient rows, which add less than a sixth of one to vanilla PG's."""
    argv = ["--dims", "smoke", "--prompt-len", "8", "--response-len", "120", "--answer-len", "2"]
    out = bench_ans_co.main([*argv, "--repeats", "1", "--allocations"])
    logits_gib = 2 * 127 * 2048 * 4 / 2**30
    allocated = {variant: row["allocated_gib"] for variant, row in out.items()}
    assert allocated["ansco_answer_dense"] - allocated["ansco_answer"] == pytest.approx(logits_gib, rel=0.2)
    assert allocated["ansco_answer"] - allocated["vanilla"] < logits_gib / 6
    assert out["vanilla"]["op_ratio"] == 1.0 and all(row["op_s"] > 0 for row in out.values())


def test_the_cpu_dims_keep_qwens_vocabulary():
    assert bench_ans_co.DIMS["cpu"].vocab == bench_ans_co.DIMS["omni-3b"].vocab == 151_936
