"""The logit lens on an Omni thinker: every layer's next-token logits at the last position, from one forward.

For a decoder ``h_0 = embed(x)``, ``h_l = h_{l-1} + block_l(h_{l-1})`` and ``logits = lm_head(norm(h_L))``, the
lens reads layer ``l`` as ``lm_head(norm(h_l))``: the model's own final norm and unembedding applied early
(nostalgebraist 2020). Row ``L`` is then exactly the model's logits. Captured with forward pre-hooks, so
both Omni families work unchanged and nothing is patched:

- ``h_{l-1}`` is the input of decoder layer ``l`` (row 0, the embedding output, is the input of layer 1:
  the text embeddings with the audio and video features merged in);
- ``h_L`` is the input of the final norm.

Reading the *inputs* of the next module, not the outputs of each layer, is what the model itself passes
on: Qwen3-Omni's DeepStack adds vision features to the hidden states after its first layers, between one
layer's output and the next layer's input (only at video positions, so the answer position is unaffected
either way). Only the last position is kept (``(batch, hidden)`` per layer), so memory does not grow with
the clip's length.

Needs ``model.model.layers``, ``model.model.norm`` and ``model.lm_head`` (:func:`decoder_parts`): the layout of
``Qwen2_5OmniThinkerForConditionalGeneration`` and ``Qwen3OmniMoeThinkerForConditionalGeneration`` (and of
Qwen2/Qwen3 causal LMs).
"""

from __future__ import annotations

from typing import Any

__all__ = ["LogitLens", "decoder_parts"]


def decoder_parts(model: Any) -> tuple[Any, Any, Any]:
    """``(decoder layers, final norm, lm_head)`` of a thinker; a clear error for another layout."""
    text_model = getattr(model, "model", None)
    layers = getattr(text_model, "layers", None)
    norm = getattr(text_model, "norm", None)
    lm_head = getattr(model, "lm_head", None)
    if layers is None or norm is None or lm_head is None or len(layers) == 0:
        raise ValueError(
            f"{type(model).__name__}: the logit lens needs model.model.layers, model.model.norm and model.lm_head "
            "(the Qwen2.5-Omni / Qwen3-Omni thinker layout)"
        )
    return layers, norm, lm_head


def _hidden_states(args: tuple, kwargs: dict) -> Any:
    return args[0] if args else kwargs["hidden_states"]


class LogitLens:
    """Hooks on one model; :meth:`forward` runs it once and returns every layer's logits at the last position.

    Args:
        model: an Omni thinker (or any model with :func:`decoder_parts`); left as it is (hooks are removed
            after each forward).

    Attributes:
        n_layers: rows of the result, ``num_hidden_layers + 1`` (row 0: the embedding output).
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.layers, self.norm, self.lm_head = decoder_parts(model)
        self.n_layers = len(self.layers) + 1

    def forward(self, inputs: dict[str, Any]) -> tuple[Any, Any]:
        """``(lens, final)`` for a (left-padded) batch of processor features.

        Returns:
            lens: ``(batch, n_layers, V)`` float32 logits, ``lm_head(norm(h_l))`` at the last position;
            final: ``(batch, V)`` float32, the model's own logits at the last position (``lens[:, -1]``
            equals it up to float rounding; tested to 1e-5 in fp32).
        """
        import torch

        captured: list[Any] = [None] * self.n_layers

        def keep(index: int):
            def hook(module, args, kwargs):
                captured[index] = _hidden_states(args, kwargs)[:, -1, :].detach()

            return hook

        handles = [layer.register_forward_pre_hook(keep(i), with_kwargs=True) for i, layer in enumerate(self.layers)]
        handles.append(self.norm.register_forward_pre_hook(keep(self.n_layers - 1), with_kwargs=True))
        try:
            with torch.inference_mode():
                # One forward, nothing generated after it: no KV cache to keep.
                final = self.model(**{**inputs, "use_cache": False}).logits[:, -1, :].float()
                missing = [i for i, h in enumerate(captured) if h is None]
                if missing:
                    raise RuntimeError(f"logit lens: no hidden state was captured for rows {missing}")
                stream = torch.stack(captured, dim=1)  # (batch, n_layers, hidden)
                lens = self.lm_head(self.norm(stream)).float()
        finally:
            for handle in handles:
                handle.remove()
        return lens, final
