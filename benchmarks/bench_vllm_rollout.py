"""The vLLM rollout against the HF rollout on the same run shape, and what vLLM's processor cache would save.

    DIR/bin/python benchmarks/bench_vllm_rollout.py [--steps 4] [--out benchmarks/results/vllm_rollout.json]

(``DIR`` from ``bash .ci/vllm_cpu_env.sh DIR``.) Two parts, one results file:

1. ``main_ppo +recipe=avconfuse`` for ``--steps`` steps twice, ``+machine=cpu_tiny`` (``rollout.name=hf``) and
   ``+machine=cpu_tiny_vllm`` (``rollout.name=vllm_omni``), the same data, seed and batch (2 prompts x 4 rollouts);
   per step verl's ``timing_s/gen``, ``timing_s/update_weights``, ``timing_s/step`` and
   ``training/rollout_probs_diff_mean``. Step 1 carries each engine's first-use costs (vLLM: the first full sync
   into dummy weights); the ratios are over steps 2..N. The engine start-up is the wall time before step 1.
2. vLLM's multimodal processor cache, which the rollout turns off (``vllm_server.MM_PROCESSOR_CACHE_GB``: with
   the audio inside the video it mixes up clips that share a soundtrack): an offline engine on the tiny thinker
   prefills 4 clips x ``--n`` identical requests (a GRPO group each; separate audio items, where the cache is
   safe), cache on and off, ``--repeats`` times; the figure is prompts per second and the on/off ratio.

On this 2-core CPU the tiny model's rollout is dominated by per-request overhead, not by the model: the GPU figure
for a 3B thinker is benchmarks/device_check.sh's (vLLM vs HF generate, tokens per second).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, machine_line

from verl_avconfuse.experiments.provenance import result_record, write_result

POLL_S = 0.05
STEP_KEYS = ("timing_s/gen", "timing_s/update_weights", "timing_s/step", "training/rollout_probs_diff_mean")
DEFAULT_OUT = REPO / "benchmarks" / "results" / "vllm_rollout.json"


def _run(machine: str, steps: int, workdir: Path) -> dict:
    from verl_avconfuse.experiments.console_metrics import parse_console_metrics

    cmd = [
        sys.executable, "-m", "verl.trainer.main_ppo", "+recipe=avconfuse", f"+machine={machine}",
        f"trainer.total_training_steps={steps}", f"avconfuse.reference.cache_dir={workdir / 'ref'}",
        # verl's sync replay buffer looks for finished rollouts every 2 s: at that poll every tiny rollout phase
        # takes 2.0 or 4.0 s whatever the engine does (bench_rl_comm_runs found it), so poll often
        f"avconfuse.sampler_poll_interval_s={POLL_S}",
    ]  # fmt: skip
    env = {**os.environ, "RAY_ADDRESS": "local", "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    first_step_at = None
    lines = []
    with subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
        for line in p.stdout:
            lines.append(line)
            if first_step_at is None and re.search(r"\bstep:1 - ", line):
                first_step_at = time.perf_counter() - start
    wall = time.perf_counter() - start
    if p.returncode != 0:
        raise SystemExit(f"{machine}: main_ppo exited {p.returncode}:\n{''.join(lines[-40:])}")
    steps_metrics = parse_console_metrics("".join(lines))
    per_step = {key: [steps_metrics[s][key] for s in sorted(steps_metrics)] for key in STEP_KEYS}
    return {"command": " ".join(cmd), "wall_s": round(wall, 2), "until_step_1_s": first_step_at, "per_step": per_step}


def _cache_cost(n: int, repeats: int) -> dict:
    os.environ.update(
        VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_CPU_KVCACHE_SPACE="1", VLLM_CPU_OMP_THREADS_BIND="nobind"
    )
    import numpy as np
    from verl.utils import tokenizer as tokenizer_mod
    from vllm import LLM, SamplingParams

    from verl_avconfuse.omni.processor import load_omni_processor
    from verl_avconfuse.omni.vllm_contract import OmniTokenIds, build_omni_prompt, wrap_thinker_config
    from verl_avconfuse.tiny.resolver import tiny_asset

    thinker = tiny_asset("models/omni_thinker")
    processor = load_omni_processor(thinker)
    ids = OmniTokenIds.from_tokenizer(processor)
    text = (
        "<|im_start|>user\n<|vision_bos|><|VIDEO|><|vision_eos|><|audio_bos|><|AUDIO|><|audio_eos|>"
        "What plays?<|im_end|>\n<|im_start|>assistant\n"
    )
    rng = np.random.default_rng(0)
    prompts = []
    for clip in range(4):
        frames = rng.uniform(0, 255, size=(8, 3, 48, 64)).astype(np.float32)
        meta = {"fps": 2.0, "total_num_frames": 8, "frames_indices": list(range(8))}
        audio = (0.1 * np.sin(2 * np.pi * (300 + 100 * clip) * np.arange(48_000) / 16_000)).astype(np.float32)
        actor = tokenizer_mod.build_multimodal_processor_inputs(
            processor, text=[text], videos=[(frames, meta)], audio=[audio], mm_processor_kwargs={"fps": 2.0}
        )
        request = build_omni_prompt(
            actor["input_ids"][0].tolist(), token_ids=ids, audio_data=[audio], video_data=[(frames, meta)],
            use_audio_in_video=False, extra_mm_processor_kwargs={"fps": 2.0},
        )  # fmt: skip
        prompts.extend([request] * n)
    figures = {}
    params = SamplingParams(max_tokens=1, temperature=0.0)
    for gb in (4, 0):
        llm = LLM(
            model=thinker, hf_overrides=wrap_thinker_config, enforce_eager=True, dtype="float32", max_model_len=1024,
            mm_processor_cache_gb=gb, seed=0, limit_mm_per_prompt={"audio": 1, "video": 1},
            enable_prefix_caching=False,
        )  # fmt: skip
        llm.generate(prompts[:n], params, use_tqdm=False)  # warm-up (also fills the cache for clip 0 only)
        times = []
        for _ in range(repeats):
            llm.reset_mm_cache()
            start = time.perf_counter()
            llm.generate(prompts, params, use_tqdm=False)
            times.append(time.perf_counter() - start)
        figures[f"cache_{gb}gb"] = {"seconds": times, "prompts_per_s": len(prompts) / statistics.median(times)}
        del llm
    figures["cache_off_over_on_time"] = statistics.median(figures["cache_0gb"]["seconds"]) / statistics.median(
        figures["cache_4gb"]["seconds"]
    )
    figures["shape"] = {"clips": 4, "requests_per_clip": n, "max_tokens": 1, "prefix_caching": False}
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--n", type=int, default=4, help="requests per clip in the cache measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    machine = machine_line()
    print(machine, flush=True)
    from importlib.metadata import version

    record = result_record()
    result: dict = {"versions": {name: version(name) for name in ("vllm-cpu", "verl", "torch", "transformers")}}
    with tempfile.TemporaryDirectory(prefix="bench-vllm-") as tmp:
        runs = {}
        for rollout, machine_name in (("hf", "cpu_tiny"), ("vllm_omni", "cpu_tiny_vllm")):
            workdir = Path(tmp) / rollout
            workdir.mkdir()
            runs[rollout] = _run(machine_name, args.steps, workdir)
            print(f"{rollout}: {json.dumps(runs[rollout]['per_step'])}", flush=True)
    later = slice(1, None)
    ratios = {}
    for key in ("timing_s/gen", "timing_s/update_weights", "timing_s/step"):
        hf, vl = (statistics.median(runs[r]["per_step"][key][later]) for r in ("hf", "vllm_omni"))
        ratios[key] = {"hf_median_s": hf, "vllm_median_s": vl, "vllm_over_hf": vl / hf if hf else None}
    result["rollout"] = {"runs": runs, "steps_2_to_n": ratios}
    result["processor_cache"] = _cache_cost(args.n, args.repeats)
    write_result(args.out, record, result)
    for key, figure in ratios.items():
        print(
            f"{key}: hf {figure['hf_median_s']:.3f} s, vllm {figure['vllm_median_s']:.3f} s, ratio {figure['vllm_over_hf']:.2f}"
        )
    cache = result["processor_cache"]
    print(
        f"processor cache: on {cache['cache_4gb']['prompts_per_s']:.2f} prompts/s, off "
        f"{cache['cache_0gb']['prompts_per_s']:.2f} prompts/s, off/on time {cache['cache_off_over_on_time']:.2f}"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
