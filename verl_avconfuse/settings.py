"""The ``avconfuse`` section of the verl config: RL-CoMM's own knobs, read in one place.

verl's config covers the policy, rollout and actor; what RL-CoMM adds (the reference audio LM, the
embedder, omega, Ans-CO) lives under ``avconfuse:`` and is parsed here into frozen dataclasses, so
an unknown or misspelled key is an error naming it, not a silent default.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any


def _default_cache_dir() -> str:
    return os.environ.get("AVCONFUSE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "verl_avconfuse")


@dataclass(frozen=True)
class ReferenceSettings:
    """The heterogeneous reference: an audio LM in its own Ray worker (replaces the KL reference)."""

    enable: bool = True
    #: Audio LM checkpoint (the paper: Qwen2-Audio-7B-Instruct). Required when enabled.
    model_path: str | None = None
    backend: str = "hf"
    cache_dir: str = field(default_factory=lambda: os.path.join(_default_cache_dir(), "reference"))
    #: "separate": the worker asks Ray for ``num_gpus`` of its own; "colocated": it shares the first
    #: actor worker's GPU without reserving it (precompute references first if memory is tight).
    placement: str = "separate"
    num_gpus: float = 1.0
    batch_size: int = 8
    #: Requests arriving within this window are generated together.
    batch_window_s: float = 0.05
    #: A reward that waits longer than this gets arr = 0 (counted in reference/errors).
    timeout_s: float = 600.0
    temperature: float = 0.5
    top_p: float = 0.95
    max_new_tokens: int = 128
    seed: int = 0


@dataclass(frozen=True)
class SimilaritySettings:
    model: str = "Qwen/Qwen3-Embedding-0.6B"
    #: The embedder runs in its own Ray worker, shared by all reward workers, on this much GPU (0: CPU).
    num_gpus: float = 0.0
    batch_size: int = 64
    batch_window_s: float = 0.02
    use_instructions: bool = True


@dataclass(frozen=True)
class StepRRSettings:
    omega: float = 0.8


@dataclass(frozen=True)
class AnsCoSettings:
    """Ans-CO, RL-CoMM stage 3 (see docs/ans_co.md): ``pg_coef * L_PG + ansco_coef * L_OP``."""

    enable: bool = False
    #: Entropy weight lambda; 0 gives pure NLL (and no entropy is computed).
    lam: float = 0.5
    #: Per sample, lambda = 0 when the answer's uncertainty u exceeds this.
    u_max: float = 0.75
    #: "answer_prob": u = 1 - exp(mean log-prob of the answer tokens); "entropy": mean answer entropy / log V.
    uncertainty: str = "answer_prob"
    #: "through_end": <answer> ... through the end of the response; "content": inside <answer></answer> only.
    answer_span: str = "through_end"
    #: "right": NLL on responses whose answer is right (default); "all": on every response.
    nll_on: str = "right"
    pg_coef: float = 1.0
    ansco_coef: float = 1.0
    #: Where the actor's forward computes the entropy: "answer": at the answer tokens only, the one place
    #: L_OP reads it (needs actor.entropy_coeff == 0; otherwise verl's entropy bonus needs every position);
    #: "all": verl's own full-sequence entropy.
    entropy_positions: str = "answer"


@dataclass(frozen=True)
class AvconfuseSettings:
    reference: ReferenceSettings = field(default_factory=ReferenceSettings)
    similarity: SimilaritySettings = field(default_factory=SimilaritySettings)
    step_rr: StepRRSettings = field(default_factory=StepRRSettings)
    ans_co: AnsCoSettings = field(default_factory=AnsCoSettings)


def _build(cls, values: dict[str, Any], where: str):
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected {sorted(known)}")
    kwargs = {}
    for name, value in values.items():
        sub = known[name].default_factory if known[name].default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(sub) and isinstance(value, dict):
            kwargs[name] = _build(sub, value, f"{where}.{name}")
        else:
            kwargs[name] = value
    return cls(**kwargs)


def avconfuse_settings(config) -> AvconfuseSettings:
    """Parse ``config.avconfuse`` (a DictConfig or dict; absent means all defaults)."""
    from omegaconf import DictConfig, OmegaConf

    section = config.get("avconfuse", None) if config is not None else None
    if isinstance(section, DictConfig):
        section = OmegaConf.to_container(section, resolve=True)
    settings = _build(AvconfuseSettings, dict(section or {}), "avconfuse")
    reference = settings.reference
    if reference.backend not in ("hf", "vllm"):
        raise ValueError(f"avconfuse.reference.backend: expected 'hf' or 'vllm', got {reference.backend!r}")
    if reference.placement not in ("separate", "colocated"):
        raise ValueError(
            f"avconfuse.reference.placement: expected 'separate' or 'colocated', got {reference.placement!r}"
        )
    if reference.enable and not reference.model_path:
        raise ValueError("avconfuse.reference.model_path: required when avconfuse.reference.enable is true")
    ans_co = settings.ans_co
    for name, value, allowed in (
        ("uncertainty", ans_co.uncertainty, ("answer_prob", "entropy")),
        ("answer_span", ans_co.answer_span, ("through_end", "content")),
        ("nll_on", ans_co.nll_on, ("right", "all")),
        ("entropy_positions", ans_co.entropy_positions, ("answer", "all")),
    ):
        if value not in allowed:
            raise ValueError(f"avconfuse.ans_co.{name}: expected one of {allowed}, got {value!r}")
    return settings
