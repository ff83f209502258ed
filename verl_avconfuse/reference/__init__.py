"""The heterogeneous reference of RL-CoMM: a large audio LM that hears only the audio.

For each prompt it is told the question and the right answer and writes an ``<a-think>``
paragraph about what it hears; Step-RR rewards a policy whose own ``<a-think>`` is close to it.
It replaces verl's KL reference policy (RL-CoMM trains without KL).

- :mod:`.cache`: a persistent, content-keyed cache (sqlite): a re-run or a second epoch generates nothing;
- :mod:`.backends`: the audio LM, with HF transformers (Qwen2-Audio class) or vLLM;
- :mod:`.service`: cache + backend, batched, errors per request instead of exceptions;
- :mod:`.requests`: what the audio LM is asked for one dataset row;
- :mod:`.similarity`: Step-RR's embedder (one batched pass per step);
- :mod:`.cli`: ``avconfuse reference precompute`` writes the references into a dataset ahead of training.

The Ray actors that serve them in a training run, and the trainer's prefetch, are the integration layer's
(:mod:`verl_avconfuse.integration.reference_worker`, :mod:`verl_avconfuse.integration.reference_prefetch`).
"""

from verl_avconfuse.reference.cache import ReferenceCache, ReferenceRequest, audio_identity, reference_key

__all__ = ["ReferenceCache", "ReferenceRequest", "audio_identity", "reference_key"]
