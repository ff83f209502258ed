"""Step-RR's similarity: cosine of sentence embeddings, instruction on the query side.

RL-CoMM scores ``sim(policy a-think, reference a-think)`` (ARR) and ``sim(a-think, v-think)``
(AVC) with Qwen3-Embedding-0.6B, the query prefixed with ``Instruct: {task}\\nQuery:`` and the
document embedded bare; the score is the dot product of the normalised embeddings.

:class:`SimilarityModel` loads a sentence-transformers model once per process (any local path
or model id) and scores a whole batch of pairs, ARR and AVC together, embedding each distinct
(prompt, text) once across kinds and sides, on a GPU when the process has one. ARR's query is the
group's reference a-think, the same for every rollout of the prompt and every epoch: its embedding is
kept (:meth:`SimilarityModel.remember_queries`, called when a prefetched reference returns) and never
computed again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np

from verl_avconfuse.method.prompts import ARR_INSTRUCTION, AVC_INSTRUCTION, embedding_query_prompt
from verl_avconfuse.settings import DEFAULT_EMBEDDING_MODEL

INSTRUCTIONS = {"arr": ARR_INSTRUCTION, "avc": AVC_INSTRUCTION}
#: Kinds whose query embeddings are kept: ARR's query is a reference a-think (one per prompt).
REMEMBERED_KINDS = ("arr",)
#: Reference embeddings kept, least recently used dropped first (8,192 x 1,024 floats: 32 MiB).
REMEMBERED_MAX = 8192


class TextPair(Protocol):
    """One pair to score (e.g. :class:`verl_avconfuse.method.SimilarityPair`): ``kind`` picks the
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
        self._remembered: OrderedDict[tuple[str | None, str], np.ndarray] = OrderedDict()
        # One caller at a time: score and remember_queries may run in different threads of one worker.
        self._lock = threading.Lock()
        #: Texts encoded so far (what the remembered embeddings save is visible here).
        self.encoded_texts = 0

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
        self.encoded_texts += len(texts)
        return self.model.encode(
            texts,
            prompt=prompt,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    def remember_queries(self, kind: str, texts: Iterable[str]) -> int:
        """Embed ``texts`` as ``kind``'s queries now and keep them for :meth:`score`; returns how many were new."""
        if kind not in REMEMBERED_KINDS:
            raise ValueError(f"remember_queries: only {REMEMBERED_KINDS} queries are kept, got {kind!r}")
        prompt = self._query_prompt(kind)
        with self._lock:
            todo = sorted({text for text in texts if (prompt, text) not in self._remembered})
            if todo:
                self._keep(zip(((prompt, text) for text in todo), self._encode(todo, prompt), strict=True))
            return len(todo)

    def _keep(self, items: Iterable[tuple[tuple[str | None, str], np.ndarray]]) -> None:
        for key, vector in items:
            self._remembered[key] = vector
            self._remembered.move_to_end(key)
        while len(self._remembered) > REMEMBERED_MAX:
            self._remembered.popitem(last=False)

    def score(self, requests: Sequence[TextPair]) -> np.ndarray:
        """Cosine similarity per request, shape ``(len(requests),)``.

        Each distinct ``(prompt, text)`` is embedded once, whatever kinds and sides it appears on: the
        policy a-think is ARR's bare document and AVC's query (one embedding for both when AVC's query
        has no instruction), v-thinks are bare documents like it, and a group's reference a-think is
        the ARR query of all its rollouts, embedded at most once per process (kept after its first
        embedding). One ``encode`` per distinct prompt (at most 3: ARR's, AVC's, none), each over its
        texts sorted, so the result does not depend on the requests' order.
        """
        if not requests:
            return np.zeros(0, dtype=np.float32)
        prompts = {kind: self._query_prompt(kind) for kind in {request.kind for request in requests}}
        texts: dict[str | None, set[str]] = {}
        for request in requests:
            texts.setdefault(prompts[request.kind], set()).add(request.query)
            texts.setdefault(None, set()).add(request.document)
        kept = {(prompts[r.kind], r.query) for r in requests if r.kind in REMEMBERED_KINDS}
        vectors: dict[tuple[str | None, str], np.ndarray] = {}
        with self._lock:
            for prompt, group in texts.items():
                todo = []
                for text in sorted(group):
                    vector = self._remembered.get((prompt, text))
                    if vector is None:
                        todo.append(text)
                    else:
                        vectors[prompt, text] = vector
                        self._remembered.move_to_end((prompt, text))
                if todo:
                    encoded = list(zip(((prompt, text) for text in todo), self._encode(todo, prompt), strict=True))
                    vectors.update(encoded)
                    self._keep(item for item in encoded if item[0] in kept)
        queries = np.stack([vectors[prompts[r.kind], r.query] for r in requests])
        documents = np.stack([vectors[None, r.document] for r in requests])
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
