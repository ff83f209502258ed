"""The GPU check: RL-CoMM's costs at Qwen2.5-Omni-3B's real dimensions, random weights, bf16, one GPU.

    python benchmarks/device_check.py [--out results.json] [--only ans-co,rollout,similarity,rl-comm]
    python benchmarks/device_check.py --cpu-smoke     # the same code at toy sizes on a CPU (tests)

Needs only torch and transformers (and this checkout on ``PYTHONPATH``): no verl, no
sentence-transformers, nothing to download. ``benchmarks/device_check.sh`` runs it within 8 minutes.
Three sections, each figure beside the limit it is measured against, in the same run:

1. ``ans-co``: one actor update of the thinker's language model (hidden 2048, 36 layers, vocab
   151,936) with Ans-CO (answer-only entropy, and entropy at every position as verl's engine computes
   it) against vanilla PG: time and peak memory (``benchmarks/bench_ans_co.py``).
2. ``rollout``: HF ``generate`` tokens/s of a random-init Qwen2.5-Omni-3B thinker (audio and vision
   towers included, text-only prompts of the real prompt length, 256 new tokens, temperature 0.9) at
   the group size (6) and at 4 groups (24); the limit: decoding reads every language-model weight once
   a step, so steps/s <= the copy bandwidth measured here / the weights' bytes.
3. ``vllm-rollout``: the same thinker and prompts on vLLM (dummy weights), tokens/s beside ``rollout``'s HF
   figure: what verl's ``vllm_omni`` rollout gains over the ``hf`` one on this GPU (needs ``verl[vllm]``).
4. ``similarity``: Qwen3-Embedding-0.6B-sized embedder (Qwen3 body, last-token pooling, normalised)
   over batches of ``--texts-batch`` texts of realistic token lengths: texts/s and Step-RR responses/s
   (3.17 distinct texts a response with instructions); the limit: its matmul FLOPs at the bf16 matmul
   rate measured here.

4. ``rl-comm``: RL-CoMM's reference against the rollout it must hide behind, at the paper's topology (a 3B
   policy on 7 GPUs, a 7B reference on 1): a random-init Qwen2-Audio-7B-shaped reference (Qwen2-7B language
   model, Whisper-large-sized audio encoder over 30 s of audio = 750 audio tokens) generates 128 tokens for
   ``R`` prompts, while each policy GPU rolls out ``6 R / 7`` responses (the ``rollout`` section's batches 6
   and 24: R = 7 and 28). Printed: reference seconds / rollout seconds, and the reward loop's wait with the
   prefetch off (the whole reference: it starts as the rollout ends) and on (what outlasts the rollout);
   ``benchmarks/bench_rl_comm_runs.py`` measures the same comparison with the tiny models through verl.

The results go to ``--out`` as JSON too (with torch/transformers versions and the device name).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_ans_co  # noqa: E402
from _common import machine_line  # noqa: E402

#: Qwen2.5-Omni-3B thinker (config.json): text model, audio tower (output 2048), vision tower (out 2048).
OMNI_3B_TEXT = dict(
    vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
    num_key_value_heads=2, max_position_embeddings=32768,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
)  # fmt: skip
#: Qwen2.5-Omni's special token ids (its tokenizer); random prompts stay below them.
OMNI_IDS = dict(
    audio_token_index=151646, image_token_index=151655, video_token_index=151656, audio_start_token_id=151647,
    audio_end_token_id=151648, user_token_id=872,
)  # fmt: skip
FIRST_SPECIAL_ID = 151643  # <|endoftext|>
#: Qwen3-Embedding-0.6B (config.json).
QWEN3_EMBEDDING_06B = dict(
    vocab_size=151669, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
    num_key_value_heads=8, head_dim=128,
)  # fmt: skip
#: Qwen2-Audio-7B-Instruct (config.json): a Qwen2-7B language model and a Whisper-large-v3-sized encoder.
QWEN2_AUDIO_7B_TEXT = dict(
    vocab_size=156032, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=32, max_position_embeddings=8192, rope_theta=10000.0,
)  # fmt: skip
QWEN2_AUDIO_7B_AUDIO = dict(
    num_mel_bins=128, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120, d_model=1280,
    max_source_positions=1500,
)  # fmt: skip
QWEN2_AUDIO_TOKEN_ID = 151646
#: The reference's prompt besides its 750 audio tokens (instruction, question, answer) and its output budget
#: (avconfuse.reference.max_new_tokens).
REFERENCE_TEXT_TOKENS, REFERENCE_NEW_TOKENS = 100, 128
#: GRPO group size and the paper's GPUs: the policy's 7, the reference's 1.
GROUP, POLICY_GPUS = 6, 7
#: Distinct (prompt, text) per Step-RR response with instructions: a-think twice (ARR document, AVC
#: query), v-think, the group's reference / 6 (benchmarks/bench_step_rr.py counts them).
TEXTS_PER_RESPONSE = 3 + 1 / 6


def device_and_dtype(args):
    import torch

    if args.cpu_smoke:
        return "cpu", torch.float32
    if not torch.cuda.is_available():
        raise SystemExit("device_check: no CUDA device (use --cpu-smoke for the toy-size run on a CPU)")
    return "cuda", torch.bfloat16


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def copy_bandwidth(device: str, gib: float) -> float:
    """Bytes/s of a device-to-device copy (read + write), best of 5."""
    import torch

    x = torch.empty(int(gib * 2**30) // 2, dtype=torch.bfloat16, device=device)
    y = torch.empty_like(x)
    y.copy_(x)
    best = min(timed(lambda: y.copy_(x), device) for _ in range(5))
    return 2 * x.numel() * x.element_size() / best


def matmul_flops(device: str, dtype, n: int) -> float:
    """FLOP/s of an n x n x n matmul in ``dtype``, best of 5."""
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = min(timed(lambda: a @ b, device) for _ in range(5))
    return 2 * n**3 / best


def section_ans_co(args, device: str) -> dict:
    parser = argparse.ArgumentParser()
    bench_ans_co.add_arguments(parser)
    if args.cpu_smoke:
        argv = ["--dims", "smoke", "--prompt-len", "16", "--response-len", "32", "--repeats", "1"]
    else:
        argv = ["--dims", "omni-3b", "--dtype", "bf16", "--micro-batch", str(args.micro_batch)]
        argv += ["--prompt-len", str(args.prompt_len), "--response-len", "256", "--repeats", "3"]
    inner = parser.parse_args([*argv, "--device", device])
    if args.no_verl:
        inner.no_verl = True
    return bench_ans_co.run(inner)


def thinker_3b(device: str, dtype, smoke: bool):
    import torch
    from transformers import Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration

    text = dict(OMNI_3B_TEXT)
    audio, vision = dict(output_dim=text["hidden_size"]), dict(out_hidden_size=text["hidden_size"])
    if smoke:
        text.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2)
        # head_dim 32: vLLM's CPU attention takes 32, 64, 80, ... (the smoke run of vllm-rollout uses it)
        text.update(num_attention_heads=2, num_key_value_heads=1)
        text.update(rope_parameters={**text["rope_parameters"], "mrope_section": [4, 6, 6]})
        audio = dict(output_dim=64, d_model=32, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64)
        vision = dict(out_hidden_size=64, depth=1, hidden_size=32, intermediate_size=64, num_heads=2)
        vision["fullatt_block_indexes"] = [0]
    config = Qwen2_5OmniThinkerConfig(
        text_config=text, audio_config=audio, vision_config=vision, tie_word_embeddings=False, **OMNI_IDS
    )
    config.vision_start_token_id, config.vision_end_token_id = 151652, 151653
    config.pad_token_id, config.eos_token_id = FIRST_SPECIAL_ID, 151645
    torch.manual_seed(0)
    with torch.device(device):  # random init on the device: seconds, not minutes on its CPU
        model = Qwen2_5OmniThinkerForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model.eval()


def section_rollout(args, device: str, dtype) -> dict:
    import torch

    model = thinker_3b(device, dtype, args.cpu_smoke)
    lm_bytes = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "model." in n or "lm_head" in n)
    lm_bytes -= model.get_input_embeddings().weight.numel() * model.get_input_embeddings().weight.element_size()
    total = sum(p.numel() for p in model.parameters())
    prompt_len, new_tokens = (32, 8) if args.cpu_smoke else (args.prompt_len, 256)
    bandwidth = copy_bandwidth(device, 0.01 if args.cpu_smoke else 4.0)
    print(
        f"\nrollout: random-init Qwen2.5-Omni-3B thinker, {total / 1e9:.2f} B params ({lm_bytes / 2**30:.2f} GiB "
        f"read a decode step: LM without the embedding), {str(dtype).split('.')[-1]}, HF generate, "
        f"{prompt_len}-token text prompts, {new_tokens} new tokens, temperature 0.9"
    )
    print(f"  copy bandwidth measured here: {bandwidth / 1e9:.0f} GB/s -> at most {bandwidth / lm_bytes:.0f} steps/s")
    out = {"params_b": total / 1e9, "bandwidth_gbs": bandwidth / 1e9, "lm_bytes": lm_bytes, "batches": {}}
    g = torch.Generator().manual_seed(0)
    print(f"  {'batch':>5s} {'tokens/s':>9s} {'steps/s':>8s} {'/ limit':>8s} {'prefill s':>9s} {'peak GiB':>8s}")
    for batch in (2, 4) if args.cpu_smoke else (6, 24):
        ids = torch.randint(0, FIRST_SPECIAL_ID, (batch, prompt_len), generator=g).to(device)
        mask = torch.ones_like(ids)
        kwargs = dict(do_sample=True, temperature=0.9, top_p=1.0, pad_token_id=FIRST_SPECIAL_ID)

        def generate(n, ids=ids, mask=mask, kwargs=kwargs):
            return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, **kwargs)

        with torch.no_grad():
            generate(2)  # warm-up
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            prefill = timed(lambda: generate(1), device)
            seconds = timed(lambda: generate(new_tokens), device)
        decode_steps_s = (new_tokens - 1) / max(seconds - prefill, 1e-9)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
        row = {
            "tokens_per_s": batch * new_tokens / seconds,
            "decode_steps_per_s": decode_steps_s,
            "of_bandwidth_limit": decode_steps_s / (bandwidth / lm_bytes),
            "prefill_s": prefill,
            "peak_gib": peak,
        }
        out["batches"][batch] = row
        print(
            f"  {batch:5d} {row['tokens_per_s']:9.0f} {decode_steps_s:8.1f} {row['of_bandwidth_limit']:8.3f} "
            f"{prefill:9.3f} {peak:8.2f}"
        )
    return out


def section_vllm_rollout(args, device: str, dtype) -> dict:
    """vLLM's tokens/s for the same random-init 3B thinker and prompt shape as ``section_rollout`` (HF generate).

    The engine loads dummy weights (``load_format=dummy``) from a directory holding only the thinker's config,
    wrapped as verl's ``vllm_omni`` rollout wraps it (``vllm_contract.wrap_thinker_config``); prompts are token
    ids (no tokenizer is read: ``skip_tokenizer_init``), text-only (``limit_mm_per_prompt`` 0: no media
    profiling), sampled at temperature 0.9 with ``min_tokens`` = ``max_tokens``. Needs vLLM (``verl[vllm]``);
    on a CPU with ``--cpu-smoke`` it runs vLLM's CPU build at toy sizes.
    """
    import tempfile

    import torch
    from vllm import LLM, SamplingParams

    from verl_avconfuse.omni.vllm_contract import wrap_thinker_config

    model = thinker_3b("cpu" if args.cpu_smoke else "meta", dtype, args.cpu_smoke)
    config = model.config
    total = sum(p.numel() for p in model.parameters())
    del model
    prompt_len, new_tokens = (32, 8) if args.cpu_smoke else (args.prompt_len, 256)
    out = {"params_b": total / 1e9, "batches": {}}
    with tempfile.TemporaryDirectory(prefix="thinker3b-") as folder:
        config.save_pretrained(folder)
        options = dict(
            model=folder, hf_overrides=wrap_thinker_config, load_format="dummy", skip_tokenizer_init=True,
            dtype=str(dtype).split(".")[-1], max_model_len=prompt_len + new_tokens + 16, seed=0,
            limit_mm_per_prompt={"audio": 0, "image": 0, "video": 0}, enforce_eager=args.cpu_smoke,
        )  # fmt: skip
        if not args.cpu_smoke:
            options["gpu_memory_utilization"] = 0.85
        llm = LLM(**options)
        g = torch.Generator().manual_seed(0)
        print(f"\nvllm-rollout: the same thinker on vLLM, {prompt_len}-token prompts, {new_tokens} new tokens")
        print(f"  {'batch':>5s} {'tokens/s':>9s}")
        for batch in (2, 4) if args.cpu_smoke else (6, 24):
            prompts = [
                {"prompt_token_ids": torch.randint(0, FIRST_SPECIAL_ID, (prompt_len,), generator=g).tolist()}
                for _ in range(batch)
            ]
            params = SamplingParams(
                temperature=0.9, max_tokens=new_tokens, min_tokens=new_tokens, detokenize=False, seed=0
            )
            llm.generate(prompts, SamplingParams(max_tokens=2, detokenize=False), use_tqdm=False)  # warm-up
            start = time.perf_counter()
            outputs = llm.generate(prompts, params, use_tqdm=False)
            seconds = time.perf_counter() - start
            tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
            out["batches"][batch] = {"tokens_per_s": tokens / seconds, "seconds": seconds, "tokens": tokens}
            print(f"  {batch:5d} {tokens / seconds:9.0f}")
        del llm
    return out


def section_similarity(args, device: str, dtype) -> dict:
    import torch
    from transformers import Qwen3Config, Qwen3Model

    dims = dict(QWEN3_EMBEDDING_06B)
    if args.cpu_smoke:
        dims.update(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
        dims.update(num_key_value_heads=1, head_dim=16, vocab_size=1024)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen3Model._from_config(Qwen3Config(**dims), dtype=dtype, attn_implementation="sdpa").eval()
    batch = 8 if args.cpu_smoke else args.texts_batch
    # Token lengths of Step-RR texts: ~30-word thinks (~40 tokens), +~20 with the instruction prefix.
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(30, 80, (batch,), generator=g)
    seq = int(lengths.max())
    ids = torch.randint(0, dims["vocab_size"] - 10, (batch, seq), generator=g)
    mask = (torch.arange(seq)[None, :] >= seq - lengths[:, None]).long()  # left padding, as the embedder pads
    ids, mask = ids.to(device), mask.to(device)

    def embed():
        with torch.no_grad():
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state[:, -1]  # last-token pooling
            return torch.nn.functional.normalize(hidden.float(), dim=-1)

    embed()
    rounds = 3 if args.cpu_smoke else 10
    seconds = statistics.median(timed(embed, device) for _ in range(rounds))
    body = sum(p.numel() for p in model.parameters()) - model.embed_tokens.weight.numel()
    tokens = batch * seq  # padded tokens are computed too
    flops = 2 * body * tokens
    rate = matmul_flops(device, dtype, 256 if args.cpu_smoke else 8192)
    texts_s = batch / seconds
    out = {
        "texts_per_s": texts_s,
        "responses_per_s": texts_s / TEXTS_PER_RESPONSE,
        "achieved_tflops": flops / seconds / 1e12,
        "matmul_tflops": rate / 1e12,
        "of_matmul_limit": flops / seconds / rate,
        "padded_tokens": tokens,
        "real_tokens": int(lengths.sum()),
    }
    print(
        f"\nsimilarity: Qwen3-Embedding-0.6B-sized ({body / 1e6:.0f} M non-embedding params), {batch} texts of "
        f"30-79 tokens ({seq} padded), last-token pooling"
    )
    print(
        f"  texts/s {texts_s:.0f}; Step-RR responses/s {out['responses_per_s']:.0f} ({TEXTS_PER_RESPONSE:.2f} texts each)"
    )
    print(
        f"  {out['achieved_tflops']:.1f} TFLOP/s of the {out['matmul_tflops']:.0f} TFLOP/s matmul rate measured here: "
        f"{out['of_matmul_limit']:.3f} (real tokens {out['real_tokens']} of {tokens} computed)"
    )
    return out


def reference_7b(device: str, dtype, smoke: bool):
    import torch
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration

    text, audio = dict(QWEN2_AUDIO_7B_TEXT), dict(QWEN2_AUDIO_7B_AUDIO)
    if smoke:
        text.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
        text.update(num_key_value_heads=4, vocab_size=QWEN2_AUDIO_TOKEN_ID + 16)
        audio.update(num_mel_bins=16, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64, d_model=32)
        audio.update(max_source_positions=16)
    config = Qwen2AudioConfig(text_config=text, audio_config=audio, audio_token_index=QWEN2_AUDIO_TOKEN_ID)
    config.pad_token_id = config.text_config.pad_token_id = FIRST_SPECIAL_ID
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2AudioForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model.eval(), audio


def section_rl_comm(args, device: str, dtype, rollout: dict | None) -> dict:
    """The reference's generation for R prompts against the policy GPU's rollout of 6 R / 7 responses."""
    import torch

    if rollout is None:  # the policy side is the rollout section's measurement
        rollout = section_rollout(args, device, dtype)
    model, audio = reference_7b(device, dtype, args.cpu_smoke)
    params = sum(p.numel() for p in model.parameters())
    frames = 2 * audio["max_source_positions"]  # the encoder takes exactly this many mel frames
    audio_tokens = audio["max_source_positions"] // 2  # conv stride 2, then pooling by 2
    text_tokens, new_tokens = (8, 4) if args.cpu_smoke else (REFERENCE_TEXT_TOKENS, REFERENCE_NEW_TOKENS)
    print(
        f"\nrl-comm: random-init Qwen2-Audio-7B-shaped reference, {params / 1e9:.2f} B params, {audio_tokens} audio + "
        f"{text_tokens} text tokens a prompt, {new_tokens} new tokens, temperature 0.5; against the policy GPU's "
        f"rollout of {GROUP} R / {POLICY_GPUS} responses (rollout section)"
    )
    g = torch.Generator().manual_seed(0)
    out = {"params_b": params / 1e9, "audio_tokens": audio_tokens, "new_tokens": new_tokens, "prompts": {}}
    print(
        f"  {'R':>3s} {'reference s':>11s} {'rollout s':>9s} {'ref/rollout':>11s} {'wait off s':>10s} {'wait on s':>9s}"
    )
    for batch_key, row in rollout["batches"].items():
        responses = int(batch_key)
        prompts = max(1, round(responses * POLICY_GPUS / GROUP))  # R: the prompts whose rollouts fill that batch
        text = torch.randint(0, FIRST_SPECIAL_ID, (prompts, text_tokens), generator=g)
        ids = torch.cat([torch.full((prompts, audio_tokens), QWEN2_AUDIO_TOKEN_ID), text], dim=1).to(device)
        features = torch.randn(prompts, audio["num_mel_bins"], frames, generator=g).to(device, dtype)
        feature_mask = torch.ones(prompts, frames, dtype=torch.long, device=device)

        def generate(n, ids=ids, features=features, feature_mask=feature_mask):
            return model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), input_features=features,
                feature_attention_mask=feature_mask, max_new_tokens=n, min_new_tokens=n, do_sample=True,
                temperature=0.5, top_p=0.95, pad_token_id=FIRST_SPECIAL_ID,
            )  # fmt: skip

        with torch.no_grad():
            generate(2)  # warm-up
            seconds = timed(lambda: generate(new_tokens), device)
        # The rollout section timed its prompt length and 256 new tokens: the policy GPU's share of the step.
        policy_tokens = 256 if not args.cpu_smoke else 8
        rollout_s = responses * policy_tokens / row["tokens_per_s"]
        entry = {
            "responses_per_policy_gpu": responses,
            "reference_s": seconds,
            "rollout_s": rollout_s,
            "reference_over_rollout": seconds / rollout_s,
            "wait_off_s": seconds,
            "wait_on_s": max(0.0, seconds - rollout_s),
        }
        out["prompts"][prompts] = entry
        print(
            f"  {prompts:3d} {seconds:11.2f} {rollout_s:9.2f} {entry['reference_over_rollout']:11.2f} "
            f"{entry['wait_off_s']:10.2f} {entry['wait_on_s']:9.2f}"
        )
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="toy sizes on the CPU (the code path, no figures)")
    parser.add_argument("--only", default="ans-co,rollout,vllm-rollout,similarity,rl-comm")
    parser.add_argument("--micro-batch", type=int, default=4, help="Ans-CO update micro-batch (default 4)")
    parser.add_argument("--prompt-len", type=int, default=2048, help="prompt tokens: audio + frames + text (2048)")
    parser.add_argument("--texts-batch", type=int, default=256, help="embedder batch (default 256)")
    parser.add_argument("--no-verl", action="store_true", help="the inline PG loss even where verl is installed")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch
    import transformers

    device, dtype = device_and_dtype(args)
    print(machine_line())
    results = {
        "machine": machine_line(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "cpu_smoke": args.cpu_smoke,
    }
    sections = {
        "ans-co": lambda: section_ans_co(args, device),
        "rollout": lambda: section_rollout(args, device, dtype),
        "vllm-rollout": lambda: section_vllm_rollout(args, device, dtype),
        "similarity": lambda: section_similarity(args, device, dtype),
        "rl-comm": lambda: section_rl_comm(args, device, dtype, results.get("rollout")),
    }
    for name in args.only.split(","):
        start = time.perf_counter()
        print(f"\n=== {name}", flush=True)
        if name == "vllm-rollout" and importlib.util.find_spec("vllm") is None:
            print("  skipped: vLLM is not installed here (pip install 'verl[vllm]==0.9.1')")
            results[name] = {"skipped": "vLLM is not installed"}
            continue
        results[name] = sections[name]()
        results[name]["section_s"] = time.perf_counter() - start
        if device == "cuda":  # the section's models are garbage now: give the next one the whole GPU
            gc.collect()
            torch.cuda.empty_cache()
        if args.out:  # written after every section: a run cut short still leaves what it measured
            args.out.write_text(json.dumps(results, indent=1, default=str))
    return results


if __name__ == "__main__":
    main()
