"""The heterogeneous reference of RL-CoMM: a large audio LM that hears only the audio.

For each prompt it is told the question and the right answer and writes an ``<a-think>``
paragraph about what it hears; Step-RR rewards a policy whose own ``<a-think>`` is close to it.
It replaces verl's KL reference policy (RL-CoMM trains without KL).

- :mod:`.cache`: a persistent, content-keyed cache (sqlite): a re-run or a second epoch generates nothing;
- :mod:`.backends`: the audio LM, with HF transformers (Qwen2-Audio class) or vLLM;
- :mod:`.service`: cache + backend, batched, errors per request instead of exceptions;
- :mod:`.worker`: the Ray actor the trainer starts in place of the KL reference;
- :mod:`.cli`: ``avconfuse reference precompute`` writes the references into a dataset ahead of training.
"""

from verl_avconfuse.reference.cache import ReferenceCache, ReferenceRequest, audio_identity, reference_key

__all__ = ["ReferenceCache", "ReferenceRequest", "audio_identity", "reference_key"]
