"""End to end: every Step-RR term fires in a tiny run, and each logged score follows from the logged texts.

One real ``main_ppo`` run (reference worker, MiniLM similarity worker, verl's rollout dump). Then, from
each dumped response alone -- its text, the reference a-think it was scored against, its ground truth --
the test grades the answer by rules written out here (the tiny task's answers are yes/no and counts),
recomputes the similarities with sentence-transformers directly (not the plugin's similarity code) and the
reward terms by the paper's rules, and checks them against what the trainer used. A wrong grade, a
similarity taken between the wrong texts (e.g. the reference against the v-think) or an instruction on the
wrong side break the equality. Which reference a prompt gets is checked only as "one per group": the
reference text is sampled, so nothing outside the run says which text belongs to which prompt.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict

import pytest

from e2e_utils import run_main_ppo

pytestmark = pytest.mark.slow

OMEGA = 0.8  # the paper's ARR threshold (recipes/avconfuse.yaml: avconfuse.step_rr.omega)
STEPS, PROMPTS, ROLLOUTS = 4, 4, 6


def _block(text: str, tag: str) -> str | None:
    """The first complete ``<tag>...</tag>`` block; of two openings before a close, the nearer one counts
    (docs/step_rr.md, "Format and parsing"); empty is absent."""
    match = re.search(rf"<{tag}>((?:(?!<{tag}>).)*?)</{tag}>", text, re.IGNORECASE | re.DOTALL)
    return (match.group(1).strip() or None) if match else None


def _answer(text: str) -> str | None:
    """The answer: the first complete answer block opened after the last closing think tag (docs/step_rr.md)."""
    think_end = max((m.end() for m in re.finditer(r"</(?:a-think|v-think|think)>", text, re.IGNORECASE)), default=0)
    return _block(text[think_end:], "answer")


NUMBERS = {
    w: i for i, w in enumerate(("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"))
}


def _right(answer: str | None, truth: str) -> bool:
    """The tiny task's grading, written out: yes/no (alone or followed by , . ; : ! or a line break) and counts
    (a number word or digits); otherwise the casefolded answers must be equal."""
    if answer is None:
        return False
    answer, truth = answer.strip().casefold(), truth.strip().casefold()
    if truth in ("yes", "no"):
        return answer == truth or re.match(rf"{truth}[,.;:!\n]", answer) is not None
    if truth in NUMBERS:
        value = NUMBERS.get(answer, int(answer) if answer.isdigit() else None)
        return value == NUMBERS[truth]
    return answer == truth


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("step_rr_run")
    result, steps = run_main_ppo(
        tmp,
        "+recipe=avconfuse",
        "+machine=cpu_tiny",
        f"trainer.total_training_steps={STEPS}",
        f"data.train_batch_size={PROMPTS}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={PROMPTS}",
        f"actor_rollout_ref.rollout.n={ROLLOUTS}",
        f"trainer.rollout_data_dir={tmp / 'rollouts'}",
        f"avconfuse.reference.cache_dir={tmp / 'ref'}",
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-8000:]
    rows = [json.loads(line) for path in sorted((tmp / "rollouts").glob("*.jsonl")) for line in path.open()]
    return steps, rows


def test_every_step_rr_term_takes_its_zero_and_its_non_zero_values(tiny_run):
    steps, rows = tiny_run
    assert len(rows) == STEPS * PROMPTS * ROLLOUTS
    answered = [r for r in rows if _answer(r["output"]) is not None]
    right = [r for r in rows if _right(_answer(r["output"]), r["gts"])]
    right_ids = {id(r) for r in right}
    wrong = [r for r in answered if id(r) not in right_ids]
    unanswered = [r for r in rows if _answer(r["output"]) is None]
    assert {r["format"] for r in rows} == {0.0, 1.0}
    assert {r["arr"] for r in rows} == {0.0, 1.0}
    assert right and min(r["avc"] for r in right) >= 1.0  # right: 1 + s
    assert any(r["avc"] > 0 for r in wrong) and any(r["avc"] == 0 for r in rows if id(r) not in right_ids)
    assert unanswered and all(r["avc"] == 0.0 for r in unanswered)  # no answer: 0
    # ARR varies inside a GRPO group (where the group's advantage can see it); it never pays for a wrong or
    # missing answer
    groups = defaultdict(set)
    for r in rows:
        groups[(r["step"], r["uid"].rsplit("_", 2)[0])].add(r["arr"])
    assert any(values == {0.0, 1.0} for values in groups.values())
    assert all(r["arr"] == 0.0 for r in rows if id(r) not in right_ids)
    # each step's logged means are the means of its dumped rows
    for step, metrics in steps.items():
        of_step = [r for r in rows if r["step"] == step]
        assert len(of_step) == PROMPTS * ROLLOUTS, step
        for key in ("format", "arr", "avc", "acc"):
            expected = sum(r[key] for r in of_step) / len(of_step)
            assert metrics[f"reward/{key}/mean"] == pytest.approx(expected, abs=1e-6), (step, key)


def test_logged_arr_and_avc_follow_from_the_logged_texts_and_the_embedder(tiny_run):
    from sentence_transformers import SentenceTransformer

    from verl_avconfuse.tiny.resolver import tiny_asset

    _, rows = tiny_run
    embedder = SentenceTransformer(tiny_asset("models/minilm"), device="cpu")

    def cosine(a: str, b: str) -> float:
        first, second = embedder.encode([a, b], normalize_embeddings=True)
        return float(first @ second)

    references = defaultdict(set)
    checked_arr = checked_avc = 0
    for r in rows:
        a_think, v_think, answer = _block(r["output"], "a-think"), _block(r["output"], "v-think"), _answer(r["output"])
        right = _right(answer, r["gts"])
        assert r["acc"] == float(right), (answer, r["gts"])
        reference = r["reference_a_think"]
        assert reference, r  # every prompt got its reference
        references[(r["step"], r["uid"].rsplit("_", 2)[0])].add(reference)
        if a_think is not None:
            sim_ref = cosine(reference, a_think)
            assert r["sim_a_ref"] == pytest.approx(sim_ref, abs=1e-4), (r["output"], reference)
            assert r["arr"] == (1.0 if right and sim_ref > OMEGA else 0.0)
            checked_arr += 1
        else:
            assert r["sim_a_ref"] is None and r["arr"] == 0.0
        s = 0.0
        if a_think is not None and v_think is not None:
            sim_av = cosine(a_think, v_think)
            assert r["sim_a_v"] == pytest.approx(sim_av, abs=1e-4)
            s = min(max(sim_av, 0.0), 1.0)
            checked_avc += 1
        expected_avc = 1.0 + s if right else (s if answer is not None else 0.0)
        assert r["avc"] == pytest.approx(expected_avc, abs=1e-4), r["output"]
        assert r["score"] == pytest.approx(r["format"] + r["arr"] + r["avc"], abs=1e-4)
    assert checked_arr >= len(rows) // 2 and checked_avc >= len(rows) // 4
    # One reference per prompt, shared by the whole group (sampled once, served from the worker's cache).
    assert all(len(texts) == 1 for texts in references.values())
