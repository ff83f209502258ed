"""RL-CoMM's method, as pure functions: what the paper defines, with nothing of verl, Ray or a model.

- :mod:`.parsing`: the response's blocks and :func:`~.parsing.locate_answer`, the one answer rule the
  reward, the Ans-CO mask and the evaluation share;
- :mod:`.answers`: answer normalisation and grading;
- :mod:`.step_rr`: Step-RR, ``r = r_format + r_arr + r_avc`` (stage 2), one response or a batch;
- :mod:`.ans_co`: Ans-CO, ``L_OP = NLL + lambda * H(answer)`` with the uncertainty gate (stage 3), torch tensors;
- :mod:`.answer_mask`: which response tokens are the answer's;
- :mod:`.prompts`: the output instruction, the reference audio LM's prompt and the embedding instructions.

The integration layer (:mod:`verl_avconfuse.integration`) wraps these for verl; nothing here imports it, nor
verl, Ray, ``torch.distributed``, transformers or vLLM (``pyproject.toml``'s import contracts,
docs/architecture.md). Importing this package imports none of its modules.
"""
