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

# The paper's numbers and open choices are named once, beside their formulas; the config reads them from there.
from verl_avconfuse.method.ans_co import DEFAULT_LAM, DEFAULT_U_MAX, UNCERTAINTIES
from verl_avconfuse.method.answer_mask import ANSWER_SPANS
from verl_avconfuse.method.step_rr import DEFAULT_OMEGA


def _default_cache_dir() -> str:
    return os.environ.get("AVCONFUSE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "verl_avconfuse")


#: Where the reference audio LM runs (see docs/deployment.md).
REFERENCE_PLACEMENTS = ("separate", "colocated", "none")
#: When the trainer asks the reference for a batch's prompts (see docs/deployment.md).
REFERENCE_PREFETCH = ("none", "batch", "next")
#: Where the Step-RR embedder runs.
SIMILARITY_PLACEMENTS = ("auto", "reference", "colocated", "cpu")
#: Step-RR's embedder, as in the release (any sentence-transformers model works).
DEFAULT_EMBEDDING_MODEL = "Qwen/Qwen3-Embedding-0.6B"


@dataclass(frozen=True)
class ReferenceSettings:
    """The heterogeneous reference: an audio LM in its own Ray worker (replaces the KL reference)."""

    #: false: Step-RR has no reference at all (ARR only from precomputed ``extra_info.reference_a_think``).
    enable: bool = True
    #: Audio LM checkpoint (the paper: Qwen2-Audio-7B-Instruct). Required when a worker is placed.
    model_path: str | None = None
    backend: str = "hf"
    #: The worker's own cache (it alone reads and writes it; reward workers ask the worker).
    cache_dir: str = field(default_factory=lambda: os.path.join(_default_cache_dir(), "reference"))
    #: "separate": a verl resource pool of its own, ``num_gpus`` GPUs over ``nnodes`` nodes, one reference
    #: replica per GPU; "colocated": one replica in a free slot of the first actor GPU's bundle (verl's
    #: colocation), using at most ``gpu_memory_fraction`` of that GPU's memory; "none": no worker, every
    #: prompt must carry a precomputed reference (``avconfuse reference precompute``).
    placement: str = "separate"
    num_gpus: int = 1
    nnodes: int = 1
    gpu_memory_fraction: float = 0.3
    batch_size: int = 8
    #: Requests arriving within this window are generated together.
    batch_window_s: float = 0.05
    #: "batch": when the trainer draws a batch it sends the batch's reference requests (unique prompts) to the
    #: reference workers before the rollout starts, so references (and their embeddings) are ready when the
    #: rewards ask; "next": the next batch's too (drawn one batch ahead); "none": a reward asks when it scores.
    prefetch: str = "batch"
    #: A reward that waits longer than this gets arr = 0 (counted in reference/errors).
    timeout_s: float = 600.0
    #: A worker that has not loaded its model within this many seconds stops the run, naming it.
    start_timeout_s: float = 1800.0
    #: More than this share of a step's prompts without a reference stops the run (null: never).
    max_error_rate: float | None = 0.2
    temperature: float = 0.5
    top_p: float = 0.95
    max_new_tokens: int = 128
    seed: int = 0

    @property
    def has_worker(self) -> bool:
        """Whether the run places a reference worker (else references are precomputed or absent)."""
        return self.enable and self.placement != "none"

    @property
    def replicas(self) -> int:
        """Reference workers: one per GPU of a separate pool, one colocated, none otherwise."""
        if not self.has_worker:
            return 0
        return self.num_gpus if self.placement == "separate" else 1


@dataclass(frozen=True)
class SimilaritySettings:
    #: The release: Qwen3-Embedding-0.6B.
    model: str = DEFAULT_EMBEDDING_MODEL
    #: "auto": beside the reference on its first GPU when the reference has a pool of its own, else in a
    #: free slot of the first actor GPU; "reference" / "colocated": one of those explicitly; "cpu": a
    #: CPU-only worker. One worker is shared by all reward workers.
    placement: str = "auto"
    batch_size: int = 64
    batch_window_s: float = 0.02
    use_instructions: bool = True
    #: More than this share of a step's samples without a similarity stops the run (null: never).
    max_error_rate: float | None = 0.0


@dataclass(frozen=True)
class StepRRSettings:
    omega: float = DEFAULT_OMEGA


@dataclass(frozen=True)
class AnsCoSettings:
    """Ans-CO, RL-CoMM stage 3 (see docs/ans_co.md): ``pg_coef * L_PG + ansco_coef * L_OP``."""

    enable: bool = False
    #: Entropy weight lambda; 0 gives pure NLL (and no entropy is computed).
    lam: float = DEFAULT_LAM
    #: Per sample, lambda = 0 when the answer's uncertainty u exceeds this.
    u_max: float = DEFAULT_U_MAX
    #: "answer_prob": u = 1 - exp(mean log-prob of the answer tokens); "entropy": mean answer entropy / log V.
    uncertainty: str = UNCERTAINTIES[0]
    #: "through_end": <answer> ... through the end of the response; "content": inside <answer></answer> only.
    answer_span: str = ANSWER_SPANS[0]
    #: "right": NLL on responses whose answer is right (default); "all": on every response.
    nll_on: str = "right"
    #: Weight of verl's policy-gradient term. 1.0 (ours): Step-RR's reward keeps being optimised in stage 3;
    #: 0.0: the paper's stage-3 objective, L_OP alone (docs/paper_deviations.md).
    pg_coef: float = 1.0
    ansco_coef: float = 1.0
    #: What L_OP's two sums are divided by. "batch" (ours): the mini-batch's sample count, as verl's
    #: seq-mean PG term (a sample outside the NLL or answer set counts as a zero); "sets": the sizes of
    #: those sets, |S_nll| and |S_ans| (the per-set means of the paper's per-sample loss).
    normalize_by: str = "batch"
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
    #: How often verl's sync replay buffer looks for finished rollouts, in seconds (``ReplayBuffer.poll_interval``,
    #: 2 s in verl 0.9.1, no config key there): a step's rollout phase (``timing_s/gen``) lasts a whole number
    #: of polls. null keeps verl's; the step-time benchmark sets 0.05 so tiny steps time their work.
    sampler_poll_interval_s: float | None = None


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
    if reference.placement not in REFERENCE_PLACEMENTS:
        raise ValueError(
            f"avconfuse.reference.placement: expected one of {REFERENCE_PLACEMENTS}, got {reference.placement!r}"
        )
    if reference.prefetch not in REFERENCE_PREFETCH:
        raise ValueError(
            f"avconfuse.reference.prefetch: expected one of {REFERENCE_PREFETCH}, got {reference.prefetch!r}"
        )
    if settings.similarity.placement not in SIMILARITY_PLACEMENTS:
        raise ValueError(
            f"avconfuse.similarity.placement: expected one of {SIMILARITY_PLACEMENTS}, "
            f"got {settings.similarity.placement!r}"
        )
    if reference.placement == "separate" and (
        reference.num_gpus < 1 or reference.nnodes < 1 or reference.num_gpus % reference.nnodes
    ):
        raise ValueError(
            "avconfuse.reference.num_gpus / nnodes: a separate reference pool needs whole GPUs spread evenly over "
            f"its nodes, got num_gpus={reference.num_gpus}, nnodes={reference.nnodes}"
        )
    if not 0 < reference.gpu_memory_fraction <= 1:
        raise ValueError(
            f"avconfuse.reference.gpu_memory_fraction: expected a share in (0, 1], got {reference.gpu_memory_fraction}"
        )
    if reference.enable and reference.placement != "none" and not reference.model_path:
        raise ValueError(
            "avconfuse.reference.model_path: required when a reference worker is placed "
            "(or set avconfuse.reference.placement=none and precompute the references)"
        )
    poll = settings.sampler_poll_interval_s
    if poll is not None and not poll > 0:
        raise ValueError(f"avconfuse.sampler_poll_interval_s: expected seconds > 0 or null, got {poll!r}")
    ans_co = settings.ans_co
    for name, value, allowed in (
        ("uncertainty", ans_co.uncertainty, UNCERTAINTIES),
        ("answer_span", ans_co.answer_span, ANSWER_SPANS),
        ("nll_on", ans_co.nll_on, ("right", "all")),
        ("entropy_positions", ans_co.entropy_positions, ("answer", "all")),
        ("normalize_by", ans_co.normalize_by, ("batch", "sets")),
    ):
        if value not in allowed:
            raise ValueError(f"avconfuse.ans_co.{name}: expected one of {allowed}, got {value!r}")
    return settings
