"""Ans-CO's cost in one actor update at Qwen's real vocabulary (151,936), against vanilla PG.

    python benchmarks/bench_ans_co.py [--dims cpu|omni-3b] [--micro-batch 2] [--prompt-len 128]
                                      [--response-len 256] [--answer-len 6] [--device cpu] [--dtype fp32]
                                      [--repeats 3] [--allocations]

One actor update of a Qwen2 causal LM (the thinker's language model: Qwen2.5-Omni-3B's dimensions with
``--dims omni-3b``, its vocabulary with hidden sizes scaled to fit a CPU with ``--dims cpu``), random
weights, one micro-batch of ``--micro-batch`` sequences of ``--prompt-len`` prompt and
``--response-len`` response tokens, the last ``--answer-len`` of them the answer. Each variant is the
whole update: forward over every position (as verl's engine computes log-probs over the packed
sequence), loss, backward, AdamW step:

- ``vanilla PG``: verl's ``compute_policy_loss_vanilla`` on the response log-probs (the limit);
- ``+ Ans-CO, answer-only entropy``: plus :func:`verl_avconfuse.method.ans_co_loss_from_stats` with
  the entropy computed at the answer tokens only, what the Ans-CO engine computes: the answer rows of the
  logits read with :func:`verl_avconfuse.method.logit_rows` (a sparse gradient, added in place into the
  log-probs' dense one), then :func:`verl_avconfuse.method.token_entropy` on that ``(answer tokens, V)``
  slice; the issue's limit for its ratio to vanilla PG is 1.05;
- ``+ Ans-CO, answer-only, dense-gradient rows``: the same rows read by plain indexing (the engine before
  ``logit_rows``), whose backward is a zero-filled dense ``(bs, L, V)`` gradient plus an add;
- ``+ Ans-CO, answer-only, lm_head on answers``: the answer positions' logits recomputed from their hidden
  states (a second ``lm_head`` over those rows), the alternative to reading rows of the logits;
- ``+ Ans-CO, verl's all-position entropy``: the same loss, the entropy from verl's
  ``entropy_from_logits`` at every position the engine computes (prompt and response: verl's
  ``calculate_entropy`` path computes it over the whole packed sequence).

Printed: time per update (best and median of ``--repeats`` interleaved rounds; on a CPU also the process's
CPU time), the ratio to vanilla PG (median of per-round ratios), the answer-only ratio beside its limit
(1.05), and on CUDA the peak
memory of each. Where verl is not installed (the device check) the PG loss is the same PPO-clip
token-mean written out (tests/test_bench_ans_co.py checks it against verl's) and the all-position
entropy is :func:`token_entropy` at every position (the formula verl's ``entropy_from_logits`` uses).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

from _common import machine_line

VOCAB = 151_936  # Qwen2 / Qwen2.5-Omni tokenizer's embedding rows


@dataclasses.dataclass(frozen=True)
class LMDims:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int = VOCAB


DIMS = {
    # Qwen2.5-Omni-3B thinker's language model (its config.json text_config); lm_head untied.
    "omni-3b": LMDims(hidden=2048, layers=36, heads=16, kv_heads=2, intermediate=11008),
    # The real vocabulary; the body scaled down so one update takes seconds on 2 CPU cores.
    "cpu": LMDims(hidden=256, layers=2, heads=4, kv_heads=2, intermediate=704),
    # For tests: a smaller vocabulary too.
    "smoke": LMDims(hidden=32, layers=1, heads=2, kv_heads=1, intermediate=64, vocab=2048),
}
VARIANTS = ("vanilla", "ansco_answer", "ansco_answer_dense", "ansco_answer_hidden", "ansco_all")
LABELS = {
    "vanilla": "vanilla PG (limit)",
    "ansco_answer": "+ Ans-CO, answer-only entropy (engine)",
    "ansco_answer_dense": "+ Ans-CO, answer-only, dense-grad rows",
    "ansco_answer_hidden": "+ Ans-CO, answer-only, lm_head on answers",
    "ansco_all": "+ Ans-CO, verl's all-position entropy",
}
#: The issue's limit on (actor update with answer-only Ans-CO) / (vanilla PG update).
ANSWER_ONLY_LIMIT = 1.05


def build_lm(dims: LMDims, device: str, dtype):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=dims.vocab,
        hidden_size=dims.hidden,
        num_hidden_layers=dims.layers,
        num_attention_heads=dims.heads,
        num_key_value_heads=dims.kv_heads,
        intermediate_size=dims.intermediate,
        tie_word_embeddings=False,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    with torch.device(device):  # random init on the device: seconds for 3 B parameters, not minutes on a CPU
        return Qwen2ForCausalLM._from_config(config, dtype=dtype)


def verl_pieces():
    """verl's vanilla PG loss, log-prob and entropy functions, or ``None`` where verl is not installed."""
    try:
        import verl.utils.torch_functional as verl_F
        from verl.trainer.ppo.core_algos import compute_policy_loss_vanilla
    except ImportError:
        return None
    return compute_policy_loss_vanilla, verl_actor_config(), verl_F.logprobs_from_logits, verl_F.entropy_from_logits


def verl_actor_config():
    """verl's ActorConfig as ``main_ppo`` composes it (clip ratios, loss aggregation)."""
    import os

    import verl
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from verl.utils.config import omega_conf_to_dataclass

    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        config = compose(
            config_name="ppo_trainer", overrides=["actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1"]
        )
    return omega_conf_to_dataclass(OmegaConf.create(OmegaConf.to_container(config.actor_rollout_ref.actor)))


def ppo_clip_token_mean(old_log_prob, log_prob, advantages, response_mask, clip_low=0.2, clip_high=0.2, clip_c=3.0):
    """verl's vanilla policy loss (dual-clip PPO, token-mean) written out, for machines without verl."""
    import torch

    ratio = torch.exp(torch.clamp(log_prob - old_log_prob, -20.0, 20.0))
    clipped = torch.maximum(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip_low, 1 + clip_high))
    dual = torch.where(advantages < 0, torch.minimum(-advantages * clip_c, clipped), clipped)
    mask = response_mask.to(log_prob.dtype)
    return (dual * mask).sum() / mask.sum().clamp(min=1)


def make_batch(dims: LMDims, micro_batch: int, prompt_len: int, response_len: int, answer_len: int, device: str):
    """Random tokens; advantages of a GRPO group (half +, half -); the answer = the last answer_len tokens."""
    import torch

    g = torch.Generator().manual_seed(1)
    seq = prompt_len + response_len
    input_ids = torch.randint(0, dims.vocab, (micro_batch, seq), generator=g)
    response_mask = torch.ones(micro_batch, response_len, dtype=torch.bool)
    answer_mask = torch.zeros(micro_batch, response_len, dtype=torch.bool)
    answer_mask[:, -answer_len:] = True
    advantages = torch.where(torch.arange(micro_batch) % 2 == 0, 1.0, -1.0)[:, None].expand(-1, response_len)
    nll_mask = torch.arange(micro_batch) % 2 == 0  # the right answers get the NLL term
    batch = {
        "input_ids": input_ids,
        "response_mask": response_mask,
        "answer_mask": answer_mask,
        "advantages": advantages.contiguous(),
        "nll_mask": nll_mask,
    }
    return {k: v.to(device) for k, v in batch.items()}


def update_loss(model, batch, variant: str, prompt_len: int, verl):
    """The loss of one update: forward, log-probs at every position, PG loss, [entropy, Ans-CO]."""
    import torch

    from verl_avconfuse.method.ans_co import ans_co_loss_from_stats, logit_rows, token_entropy, token_log_probs

    input_ids = batch["input_ids"]
    hidden = model.model(input_ids=input_ids).last_hidden_state[:, :-1]  # position t predicts token t + 1
    logits = model.lm_head(hidden).float()
    labels = input_ids[:, 1:]
    log_probs_all = verl[2](logits, labels) if verl else token_log_probs(logits, labels)
    response = slice(prompt_len - 1, None)
    log_prob = log_probs_all[:, response]
    old_log_prob = log_prob.detach()
    if verl:
        pg_loss, _ = verl[0](old_log_prob, log_prob, batch["advantages"], batch["response_mask"], config=verl[1])
    else:
        pg_loss = ppo_clip_token_mean(old_log_prob, log_prob, batch["advantages"], batch["response_mask"])
    if variant == "vanilla":
        return pg_loss
    answer = batch["answer_mask"]
    rows, positions = answer.nonzero(as_tuple=True)
    if variant == "ansco_answer":
        # as the Ans-CO engine (integration/ans_co.answer_entropy): rows of the logits, a sparse gradient
        answer_logits = logit_rows(logits, torch.stack([rows, positions + prompt_len - 1]))
        entropy = torch.zeros_like(log_prob).index_put((rows, positions), token_entropy(answer_logits))
    elif variant == "ansco_answer_dense":
        # (row, position) indices straight into the logits: the entropy's gradient is one dense (bs, L, V)
        # zero-fill and accumulation. A boolean mask of the response slice costs two (measured: +7.3 s vs
        # +2.2-3.2 s of a 16 s update at hidden 256 on the shared CPU).
        answer_entropy = token_entropy(logits[rows, positions + prompt_len - 1])
        entropy = torch.zeros_like(log_prob).index_put((rows, positions), answer_entropy)
    elif variant == "ansco_answer_hidden":
        # The answer positions' logits recomputed from their hidden states: the entropy's gradient touches
        # those rows only (what an engine that knows the answer positions before the lm_head can do).
        answer_logits = model.lm_head(hidden[rows, positions + prompt_len - 1]).float()
        entropy = torch.zeros_like(log_prob).index_put((rows, positions), token_entropy(answer_logits))
    else:
        entropy_all = verl[3](logits) if verl else token_entropy(logits)
        entropy = entropy_all[:, response]
    ans_loss, _ = ans_co_loss_from_stats(
        log_prob, entropy, batch["response_mask"], answer, batch["nll_mask"], vocab_size=logits.shape[-1]
    )
    return pg_loss + ans_loss


def actor_update(model, optimizer, batch, variant: str, prompt_len: int, verl) -> None:
    """One whole update: :func:`update_loss`, backward, AdamW step."""
    update_loss(model, batch, variant, prompt_len, verl).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def profiled(update) -> tuple[float, float]:
    """``(GiB allocated, seconds of op time)`` of one ``update()`` under torch.profiler: the net allocation of
    each top-level op (forward ops and the autograd engine's backward nodes) summed where positive, and
    the ops' self CPU time summed (the update's work without the gaps other processes take)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        update()
    events = prof.events()
    allocated = sum(e.cpu_memory_usage for e in events if e.cpu_parent is None and e.cpu_memory_usage > 0)
    return allocated / 2**30, sum(e.self_cpu_time_total for e in events) / 1e6


def run(args) -> dict[str, dict[str, float]]:
    import torch

    dims = DIMS[args.dims]
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    verl = None if args.no_verl else verl_pieces()
    # Adam's squared-gradient state decays into subnormal floats, which x86 CPUs multiply ~100x slower:
    # without this the optimizer step, not the loss, dominates a CPU update.
    torch.set_flush_denormal(True)
    try:
        return _measure(args, dims, device, dtype, verl)
    finally:
        # the benchmark also runs inside other processes (pytest): leave their floating-point state as it was
        torch.set_flush_denormal(False)


def _measure(args, dims, device, dtype, verl) -> dict[str, dict[str, float]]:
    import torch

    model = build_lm(dims, device, dtype)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-7)
    batch = make_batch(dims, args.micro_batch, args.prompt_len, args.response_len, args.answer_len, device)
    params = sum(p.numel() for p in model.parameters())
    tokens = args.micro_batch * (args.prompt_len + args.response_len)
    print(
        f"actor update: {params / 1e6:.1f} M params (hidden {dims.hidden}, {dims.layers} layers, vocab {dims.vocab}), "
        f"{args.dtype} on {device}; micro-batch {args.micro_batch} x ({args.prompt_len} prompt + {args.response_len} "
        f"response) = {tokens} tokens, {args.answer_len} answer tokens each; "
        f"{'verl' if verl else 'inline (no verl)'} PG loss and entropy"
    )
    logits_gib = tokens * dims.vocab * 4 / 2**30
    print(f"  one fp32 logits tensor (tokens x V): {logits_gib:.2f} GiB")

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    peak = {}
    for variant in VARIANTS:  # warm-up, and each variant's peak memory on CUDA
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        actor_update(model, optimizer, batch, variant, args.prompt_len, verl)
        sync()
        if device.startswith("cuda"):
            peak[variant] = torch.cuda.max_memory_allocated() / 2**30
    # On a CPU also the process's CPU time (all its threads): on a shared machine the wall time includes
    # the time other processes held the cores, the CPU time is this update's own work.
    on_cpu = not device.startswith("cuda")
    rounds, cpu_rounds = [], []
    for _ in range(args.repeats):
        seconds, cpu_seconds = {}, {}
        for variant in VARIANTS:
            sync()
            start, cpu_start = time.perf_counter(), time.process_time()
            actor_update(model, optimizer, batch, variant, args.prompt_len, verl)
            sync()
            seconds[variant] = time.perf_counter() - start
            cpu_seconds[variant] = time.process_time() - cpu_start
        rounds.append(seconds)
        cpu_rounds.append(cpu_seconds)

    out = {}
    cpu_header = f" {'CPU best':>9s} {'CPU med':>9s} {'/ vanilla':>9s}" if on_cpu else ""
    print(
        f"  {'':42s} {'best ms':>9s} {'median ms':>9s} {'/ vanilla':>9s}{cpu_header}" + ("  peak GiB" if peak else "")
    )
    for variant in VARIANTS:
        times = [r[variant] for r in rounds]
        ratio = statistics.median(r[variant] / r["vanilla"] for r in rounds)
        out[variant] = {"best_s": min(times), "median_s": statistics.median(times), "ratio": ratio, "rounds_s": times}
        cpu = ""
        if on_cpu:
            cpu_times = [r[variant] for r in cpu_rounds]
            cpu_ratio = statistics.median(r[variant] / r["vanilla"] for r in cpu_rounds)
            out[variant].update(
                cpu_best_s=min(cpu_times),
                cpu_median_s=statistics.median(cpu_times),
                cpu_ratio=cpu_ratio,
                cpu_rounds_s=cpu_times,
            )
            cpu = f" {min(cpu_times) * 1e3:9.0f} {statistics.median(cpu_times) * 1e3:9.0f} {cpu_ratio:9.3f}"
        memory = f"  {peak[variant]:8.2f}" if peak else ""
        if peak:
            out[variant]["peak_gib"] = peak[variant]
        print(
            f"  {LABELS[variant]:42s} {min(times) * 1e3:9.0f} {statistics.median(times) * 1e3:9.0f} {ratio:9.3f}"
            f"{cpu}{memory}"
        )
    for kind, key in (("wall", "ratio"), ("CPU", "cpu_ratio"))[: 2 if on_cpu else 1]:
        ratio = out["ansco_answer"][key]
        verdict = "within" if ratio <= ANSWER_ONLY_LIMIT else "OVER"
        print(f"  answer-only Ans-CO / vanilla PG ({kind} time): {ratio:.3f}, limit {ANSWER_ONLY_LIMIT:.2f}: {verdict}")
    if args.allocations and on_cpu:
        # Timing-free on a shared CPU: what each update allocates, dense (tokens x V) gradients included,
        # and its ops' own CPU time (best of --repeats profiled updates).
        print(f"  profiled ({args.repeats} updates each): {'allocated GiB':>13s} {'op time ms':>10s} {'/ vanilla':>9s}")
        for variant in VARIANTS:
            runs = [
                profiled(lambda v=variant: actor_update(model, optimizer, batch, v, args.prompt_len, verl))
                for _ in range(args.repeats)
            ]
            out[variant]["allocated_gib"] = runs[0][0]
            out[variant]["op_s"] = min(op for _, op in runs)
            out[variant]["op_runs_s"] = [op for _, op in runs]
        for variant in VARIANTS:
            row = out[variant]
            row["op_ratio"] = row["op_s"] / out["vanilla"]["op_s"]
            print(
                f"  {LABELS[variant]:42s} {row['allocated_gib']:9.3f} {row['op_s'] * 1e3:10.0f} {row['op_ratio']:9.3f}"
            )
        ratio = out["ansco_answer"]["op_ratio"]
        verdict = "within" if ratio <= ANSWER_ONLY_LIMIT else "OVER"
        print(f"  answer-only Ans-CO / vanilla PG (op time): {ratio:.3f}, limit {ANSWER_ONLY_LIMIT:.2f}: {verdict}")
    answer_only, all_positions = out["ansco_answer"]["median_s"], out["ansco_all"]["median_s"]
    extra_all = out["ansco_all"]["median_s"] - out["vanilla"]["median_s"]
    extra_answer = answer_only - out["vanilla"]["median_s"]
    print(
        f"  entropy's extra time per update: answer-only {extra_answer * 1e3:.0f} ms, all positions "
        f"{extra_all * 1e3:.0f} ms; answer-only / all-position update time {answer_only / all_positions:.3f}"
    )
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dims", choices=sorted(DIMS), default="cpu")
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--response-len", type=int, default=256, help="the release's max new tokens (256)")
    parser.add_argument("--answer-len", type=int, default=6)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-verl", action="store_true", help="the inline PG loss and entropy even if verl is there")
    parser.add_argument(
        "--allocations",
        action="store_true",
        help="on a CPU, also each update's allocations and op time (torch.profiler)",
    )
    parser.add_argument(
        "--result",
        type=Path,
        default=None,
        help="write the figures, every round's timings, the command, commit, machine and load to this JSON "
        "(the committed one: benchmarks/results/bench_ans_co.json)",
    )


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    from verl_avconfuse.experiments.provenance import (  # the checkout's (on sys.path via _common)
        result_record,
        write_result,
    )

    record = result_record(["python", "benchmarks/bench_ans_co.py", *(sys.argv[1:] if argv is None else argv)])
    print(machine_line())
    out = run(args)
    if args.result is not None:
        settings = {k: v for k, v in vars(args).items() if k != "result"}
        print(f"result: {write_result(args.result, record, {'settings': settings, 'variants': out})}")
    return out


if __name__ == "__main__":
    main()
