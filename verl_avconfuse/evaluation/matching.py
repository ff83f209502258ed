"""Which answer a reply gives, and whether it is right: the two answer rules of the harness.

Answer extraction (both rules): the ``<answer>`` block when the reply has one
(:func:`verl_avconfuse.method.parsing.parse_response`), else the whole reply, so a base model that ignores the
three-part format is still graded on what it said (``strict_format=True``: no block, no answer).

Two rules, chosen with ``--match`` (``both`` scores every reply under each and reports both):

- ``strict`` (default): :func:`verl_avconfuse.method.answers_match`, whole-answer comparison after
  normalisation (numbers, articles, ``_``); yes/no answers by their opening polarity ("Yes, there is");
  multiple choice by the option *index* (:func:`verl_avconfuse.method.answers.matches_option_index`).
  It never matches a substring ("piano" does not say "no"), and a verbose right reply ("There are two
  instruments.") is wrong.
- ``release``: the rule of the paper's official release, which the paper's numbers come from: after
  lower-casing and deleting whitespace and ``_``, prediction and truth match when either is a substring of
  the other. Verbose right replies pass; so do "piano" for "no" and "not sure" for "no". Use it to compare
  with the paper's rows, ``strict`` to compare models.

Polarity (what a yes/no reply says, for yes-rates and AVHBench's precision/recall): ``strict`` reads the
opening yes/no; ``release`` says the truth when the reply matches it, the other answer when it matches
only that one, else nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = [
    "MATCH_RULES",
    "extract_answer",
    "is_correct",
    "match_rules",
    "polarity",
    "release_match",
]

MATCH_RULES = ("strict", "release")
YES, NO = "yes", "no"
_RELEASE_DROPPED = re.compile(r"[\s_]+")


def match_rules(value: str) -> tuple[str, ...]:
    """``--match`` value -> the rules to score with, the reported one first."""
    if value == "both":
        return MATCH_RULES
    if value not in MATCH_RULES:
        raise ValueError(f"--match: expected one of {[*MATCH_RULES, 'both']}, got {value!r}")
    return (value,)


def extract_answer(reply: str, strict_format: bool = False) -> str | None:
    """The ``<answer>`` block, else the whole reply stripped (``None`` when blank or ``strict_format``)."""
    from verl_avconfuse.method.parsing import parse_response

    answer = parse_response(reply).answer
    if answer is not None or strict_format:
        return answer
    return reply.strip() or None


def _release_key(text: str) -> str:
    return _RELEASE_DROPPED.sub("", text.lower())


def release_match(prediction: str | None, ground_truth: str) -> bool:
    """The release's rule: either is a substring of the other once lower-cased without whitespace and ``_``."""
    if prediction is None:
        return False
    pred, truth = _release_key(prediction), _release_key(ground_truth)
    return bool(pred) and bool(truth) and (pred in truth or truth in pred)


def is_correct(
    answer: str | None,
    ground_truth: str,
    rule: str,
    options: Sequence[str] | None = None,
    answer_index: int | None = None,
) -> bool:
    """Whether ``answer`` is right under ``rule`` (module docstring).

    Multiple choice: with ``answer_index`` the right option is that index (the release's ``answer``
    field), so two options that normalise alike ("dog", "The dog") cannot move the truth to the first.
    """
    from verl_avconfuse.method.answers import answers_match, matches_option_index

    if answer is None:
        return False
    if rule == "release":
        return release_match(answer, ground_truth)
    if rule != "strict":
        raise ValueError(f"unknown answer rule {rule!r}; expected one of {MATCH_RULES}")
    if options is not None and answer_index is not None:
        return matches_option_index(answer, answer_index, options)
    return answers_match(answer, ground_truth, list(options) if options else None)


def polarity(answer: str | None, rule: str, ground_truth: str | None = None) -> str | None:
    """``"yes"`` / ``"no"`` / ``None``: what a yes/no answer says under ``rule`` (module docstring)."""
    from verl_avconfuse.method.answers import answers_match

    if answer is None:
        return None
    if rule == "strict":
        for value in (YES, NO):
            if answers_match(answer, value):
                return value
        return None
    truth = ground_truth if ground_truth in (YES, NO) else None
    if truth is not None and release_match(answer, truth):
        return truth
    said = [v for v in (YES, NO) if release_match(answer, v)]
    return said[0] if len(said) == 1 else None
