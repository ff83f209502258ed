"""Cache + audio LM: references for a batch of requests, generated only for cache misses.

Per-request failures (a file without a soundtrack, a decode error, a generation error) come back
as ``None`` with the reason; the caller scores those samples with arr = 0 and counts them. A
batch that fails as a whole is retried one request at a time, so one bad file costs one sample.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from verl_avconfuse.method.parsing import reference_a_think
from verl_avconfuse.reference.backends import AudioLM
from verl_avconfuse.reference.cache import ReferenceCache, ReferenceRequest, reference_key

logger = logging.getLogger(__name__)


@dataclass
class ReferenceStats:
    requests: int = 0
    cache_hits: int = 0
    generated: int = 0
    errors: int = 0
    #: Seconds spent in the audio LM's ``generate`` (the reference's compute, whoever asked).
    generate_s: float = 0.0
    error_reasons: list[str] = field(default_factory=list)

    def as_metrics(self) -> dict[str, float]:
        return {
            "reference/requests": float(self.requests),
            "reference/cache_hit_rate": self.cache_hits / self.requests if self.requests else 0.0,
            "reference/generated": float(self.generated),
            "reference/errors": float(self.errors),
            "reference/generate_s": self.generate_s,
        }


@dataclass
class ReferenceResult:
    a_think: str | None
    error: str | None = None
    cached: bool = False


class ReferenceService:
    def __init__(self, audio_lm: AudioLM, cache: ReferenceCache, *, batch_size: int = 8):
        self.audio_lm = audio_lm
        self.cache = cache
        self.batch_size = batch_size
        self.stats = ReferenceStats()
        # Failures are not cached on disk (a fixed file should work next run) but are remembered
        # in-process, so a broken clip costs one attempt per run, not one per step.
        self._failed: dict[str, str] = {}

    def get_many(self, requests: list[ReferenceRequest]) -> list[ReferenceResult]:
        results: list[ReferenceResult | None] = [None] * len(requests)
        keys: list[str | None] = []
        for i, request in enumerate(requests):
            try:
                keys.append(reference_key(request, self.audio_lm.model_id, self.audio_lm.generation_settings))
            except OSError as error:
                keys.append(None)
                results[i] = ReferenceResult(None, f"{request.audio_path}: {error.strerror or error}")
        found = self.cache.get_many([k for k in keys if k is not None])
        misses: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            if key is None:
                continue
            if key in found:
                results[i] = ReferenceResult(found[key], cached=True)
            elif key in self._failed:
                results[i] = ReferenceResult(None, self._failed[key])
            else:
                misses.setdefault(key, []).append(i)
        self.stats.requests += len(requests)
        self.stats.cache_hits += sum(1 for r in results if r is not None and r.cached)
        todo = list(misses.items())
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            for (key, indices), (a_think, raw, error) in zip(
                chunk, self._generate([requests[ix[0]] for _, ix in chunk]), strict=True
            ):
                if error is None:
                    self.cache.put_many([(key, a_think, raw)], model=self.audio_lm.model_id)
                    self.stats.generated += 1
                else:
                    self._failed[key] = error
                for i in indices:
                    results[i] = ReferenceResult(a_think, error)
        for result in results:
            if result is not None and result.error is not None:
                self.stats.errors += 1
                if len(self.stats.error_reasons) < 20:
                    self.stats.error_reasons.append(result.error)
        return results  # type: ignore[return-value]

    def _generate(self, requests: list[ReferenceRequest]) -> list[tuple[str | None, str | None, str | None]]:
        """(a_think, raw, error) per request; a failing batch is retried request by request."""
        started = time.perf_counter()
        try:
            raw = self.audio_lm.generate(requests)
        except Exception as error:  # noqa: BLE001 -- isolate the failing request(s)
            self.stats.generate_s += time.perf_counter() - started
            if len(requests) == 1:
                reason = str(error) if requests[0].audio_path in str(error) else f"{requests[0].audio_path}: {error}"
                logger.warning("reference generation failed: %s", reason)
                return [(None, None, reason)]
            return [item for request in requests for item in self._generate([request])]
        self.stats.generate_s += time.perf_counter() - started
        results = []
        for request, text in zip(requests, raw, strict=True):
            # The one extractor the reward uses too (the a-think block, else the whole text, tags removed).
            a_think = reference_a_think(text)
            if a_think is None:
                results.append((None, text, f"{request.audio_path}: the reference audio LM wrote nothing"))
            else:
                results.append((a_think, text, None))
        return results
