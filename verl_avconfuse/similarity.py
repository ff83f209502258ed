"""Step-RR's similarity: cosine of sentence embeddings, instruction on the query side.

RL-CoMM scores ``sim(policy a-think, reference a-think)`` (ARR) and ``sim(a-think, v-think)``
(AVC) with Qwen3-Embedding-0.6B, the query prefixed with ``Instruct: {task}\\nQuery:`` and the
document embedded bare; the score is the dot product of the normalised embeddings.

:class:`SimilarityModel` loads a sentence-transformers model once per process (any local path
or model id) and scores a whole batch of pairs, ARR and AVC together, embedding each distinct
(prompt, text) once across kinds and sides, on a GPU when the process has one.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from verl_avconfuse.prompts import ARR_INSTRUCTION, AVC_INSTRUCTION, embedding_query_prompt

DEFAULT_EMBEDDING_MODEL = "Qwen/Qwen3-Embedding-0.6B"
INSTRUCTIONS = {"arr": ARR_INSTRUCTION, "avc": AVC_INSTRUCTION}


class TextPair(Protocol):
    """One pair to score (e.g. :class:`verl_avconfuse.rewards.SimilarityPair`): ``kind`` picks the
    instruction (``arr`` or ``avc``), which goes on the ``query`` side only."""

    kind: str
    query: str
    document: str


class SimilarityModel:
    """A sentence-transformers model scoring (query, document) pairs, batched."""

    def __init__(
        self,
        model_name_or_path: str = DEFAULT_EMBEDDING_MODEL,
        *,
        device: str | None = None,
        batch_size: int = 64,
        use_instructions: bool = True,
    ):
        import torch
        from sentence_transformers import SentenceTransformer

        self.model_name = str(model_name_or_path)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = SentenceTransformer(self.model_name, device=device)
        self.batch_size = batch_size
        self.use_instructions = use_instructions

    def _query_prompt(self, kind: str) -> str | None:
        if not self.use_instructions:
            return None
        if kind not in INSTRUCTIONS:
            raise ValueError(f"similarity kind {kind!r}: expected one of {sorted(INSTRUCTIONS)}")
        # A model saved with named prompts (our tiny one, Qwen3-Embedding) uses its own; else the format.
        saved = (getattr(self.model, "prompts", None) or {}).get(kind)
        return saved if saved is not None else embedding_query_prompt(INSTRUCTIONS[kind])

    def _encode(self, texts: list[str], prompt: str | None) -> np.ndarray:
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        return self.model.encode(
            texts,
            prompt=prompt,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    def score(self, requests: Sequence[TextPair]) -> np.ndarray:
        """Cosine similarity per request, shape ``(len(requests),)``.

        Each distinct ``(prompt, text)`` is embedded once, whatever kinds and sides it appears on: the
        policy a-think is ARR's bare document and AVC's query (one embedding for both when AVC's query
        has no instruction), v-thinks are bare documents like it, and a group's reference a-think is
        the ARR query of all its rollouts. One ``encode`` per distinct prompt (at most 3: ARR's, AVC's,
        none), each over its texts sorted, so the result does not depend on the requests' order.
        """
        if not requests:
            return np.zeros(0, dtype=np.float32)
        prompts = {kind: self._query_prompt(kind) for kind in {request.kind for request in requests}}
        texts: dict[str | None, set[str]] = {}
        for request in requests:
            texts.setdefault(prompts[request.kind], set()).add(request.query)
            texts.setdefault(None, set()).add(request.document)
        row: dict[tuple[str | None, str], int] = {}
        blocks = []
        for prompt, group in texts.items():
            ordered, offset = sorted(group), len(row)
            row.update(((prompt, text), offset + i) for i, text in enumerate(ordered))
            blocks.append(self._encode(ordered, prompt))
        vectors = np.concatenate(blocks)
        queries = vectors[[row[prompts[r.kind], r.query] for r in requests]]
        documents = vectors[[row[None, r.document] for r in requests]]
        return np.einsum("ij,ij->i", queries, documents).astype(np.float32, copy=False)


_models: dict[tuple, SimilarityModel] = {}
_models_lock = threading.Lock()


def get_similarity_model(model_name_or_path: str = DEFAULT_EMBEDDING_MODEL, **kwargs) -> SimilarityModel:
    """The process-wide instance for a model (loaded on first use, never per call)."""
    key = (str(model_name_or_path), tuple(sorted(kwargs.items())))
    with _models_lock:
        if key not in _models:
            _models[key] = SimilarityModel(model_name_or_path, **kwargs)
        return _models[key]
