"""How often the tiny warm-started models write RL-CoMM's format at temperature 1, over several sampling seeds.

``python benchmarks/tiny_format_rates.py [--result FILE]``: the prompts, media and sampling settings of
``tests/test_tiny_models.py``, with ``torch.manual_seed(s)`` for s in 0..7 (``qwen2_audio``: 0..15) instead
of the tests' single seed 0. The rates over all seeds are the p from which those tests derive their bounds
(p +- 3 sigma of a binomial of the test's size, plus this estimate's own sigma); the committed run is
``benchmarks/results/tiny_format_rates.json``. Uses the cached tiny models (``AVCONFUSE_TINY_DIR``).
"""

import argparse
import json
import sys

import _common  # noqa: F401  (the checkout on sys.path)
import numpy as np
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoProcessor,
    AutoTokenizer,
    Qwen2_5OmniThinkerForConditionalGeneration,
    Qwen2AudioForConditionalGeneration,
)

from verl_avconfuse.experiments.provenance import result_record, write_result
from verl_avconfuse.tiny import models as tiny
from verl_avconfuse.tiny.corpus import WELL_FORMED_REFERENCE, WELL_FORMED_RESPONSE, policy_chats, reference_chats
from verl_avconfuse.tiny.resolver import tiny_asset

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--result", default=None, help="write the rates with their provenance to this JSON")
args = parser.parse_args()
record = result_record(["python", "benchmarks/tiny_format_rates.py", *sys.argv[1:]])
HELD_OUT_SEED = 12345
SR = tiny.AUDIO_SAMPLING_RATE
SEEDS = range(8)


def tone(seconds, hz=440.0):
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def frames(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 48, 64, 3), dtype=np.uint8)


out = {}

path = tiny_asset("models/qwen2")
tok = AutoTokenizer.from_pretrained(path)
model = AutoModelForCausalLM.from_pretrained(path)
users = [c.user for c in policy_chats(64, seed=HELD_OUT_SEED)]
prompts = [
    tok.apply_chat_template([{"role": "user", "content": u}], add_generation_prompt=True, tokenize=False) for u in users
]
tok.padding_side = "left"
batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
fr = []
for s in SEEDS:
    torch.manual_seed(s)
    with torch.no_grad():
        o = model.generate(**batch, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=64)
    r = tok.batch_decode(o[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    fr.append(sum(bool(WELL_FORMED_RESPONSE.match(x)) for x in r) / len(r))
out["qwen2"] = {"n_per_seed": 64, "fractions": fr}
path = tiny_asset("models/omni_thinker")
proc = AutoProcessor.from_pretrained(path)
model = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(path)
chats = policy_chats(32, seed=HELD_OUT_SEED)
content = [[{"type": "video"}, {"type": "audio"}, {"type": "text", "text": "\n" + c.user}] for c in chats]
texts = [
    proc.apply_chat_template([{"role": "user", "content": c}], add_generation_prompt=True, tokenize=False)
    for c in content
]
inputs = proc(
    text=texts,
    audio=[tone(2.0, 220 + 20 * i) for i in range(32)],
    videos=[frames(4, seed=i) for i in range(32)],
    padding=True,
    return_tensors="pt",
)
fr = []
for s in SEEDS:
    torch.manual_seed(s)
    with torch.no_grad():
        o = model.generate(**inputs, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=64)
    r = proc.tokenizer.batch_decode(o[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    fr.append(sum(bool(WELL_FORMED_RESPONSE.match(x)) for x in r) / len(r))
out["omni_thinker"] = {"n_per_seed": 32, "fractions": fr}
path = tiny_asset("models/qwen2_audio")
proc = AutoProcessor.from_pretrained(path)
model = Qwen2AudioForConditionalGeneration.from_pretrained(path)
chats = reference_chats(16, seed=HELD_OUT_SEED)
texts = [
    proc.apply_chat_template(
        [{"role": "user", "content": [{"type": "audio", "audio": "x.wav"}, {"type": "text", "text": "\n" + c.user}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    for c in chats
]
inputs = proc(
    text=texts, audio=[tone(2.0, 300 + 10 * i) for i in range(16)], sampling_rate=SR, padding=True, return_tensors="pt"
)
fr = []
for s in range(16):
    torch.manual_seed(s)
    with torch.no_grad():
        o = model.generate(**inputs, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=48)
    r = proc.tokenizer.batch_decode(o[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    fr.append(sum(bool(WELL_FORMED_REFERENCE.match(x)) for x in r) / len(r))
out["qwen2_audio"] = {"n_per_seed": 16, "fractions": fr}
for row in out.values():
    row["rate"] = sum(row["fractions"]) / len(row["fractions"])
    row["samples"] = row["n_per_seed"] * len(row["fractions"])
print(json.dumps(out))
if args.result:
    print(f"result: {write_result(args.result, record, {'models': out})}")
