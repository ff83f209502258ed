"""Prefetch: the reference a-think (and its embedding) ready before the rewards ask for it.

The reference depends only on the prompt, its soundtrack and its ground truth, never on the policy's
rollouts. So when the trainer draws a batch (``AvconfuseTrainer._submit_batch_to_rollout``, just before
verl hands it to the rollout) it sends the batch's unique prompts to the reference replica that owns each
(:func:`verl_avconfuse.integration.placement.reference_replica_for`, the one the rewards will ask), and the references
that come back to the similarity worker, which embeds each once. With the reference in a pool of its own
this runs on its GPU while the policy rolls out; the rewards then find the reference in the worker's cache
(or join its generation still in flight) instead of starting it.

Nothing waits on a prefetch: the trainer only looks at finished ones (:meth:`ReferencePrefetcher.collect`)
to count and log failures. A prefetch that fails is met again by the reward's own request (the worker
remembers the failure, or generates again), which the reward counts as a reference error under
``avconfuse.reference.max_error_rate``; its wait is bounded by ``avconfuse.reference.timeout_s`` as always.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from verl_avconfuse.reference.cache import ReferenceRequest
from verl_avconfuse.reference.requests import reference_request_for

logger = logging.getLogger(__name__)

#: Batch columns a reference request is built from (those the reward manager reads).
REQUEST_FIELDS = ("raw_prompt", "extra_info", "reward_model")


def batch_rows(batch) -> list[dict[str, Any]]:
    """Each sample's request fields from a batch the trainer drew (verl's TensorDict of the dataloader's dict)."""
    columns = {key: list(batch[key]) for key in REQUEST_FIELDS if key in batch.keys()}
    size = len(next(iter(columns.values()))) if columns else 0
    return [{key: values[i] for key, values in columns.items()} for i in range(size)]


def prefetch_requests(rows: Iterable[dict[str, Any]], media_root: str | None) -> list[ReferenceRequest]:
    """The distinct reference requests of a batch's rows, in order.

    Rows that carry a precomputed ``extra_info.reference_a_think`` need none; rows without an audio or video
    item are left to the reward, which reports them (one broken sample never stops training).
    """
    requests: dict[ReferenceRequest, None] = {}
    for row in rows:
        if (row.get("extra_info") or {}).get("reference_a_think"):
            continue
        try:
            request = reference_request_for(row, media_root)
        except Exception as error:  # noqa: BLE001 -- the reward meets this row again and counts it
            logger.warning("reference prefetch: no request for a row (its reward will report it): %s", error)
            continue
        if request is not None:
            requests[request] = None
    return list(requests)


class ReferencePrefetcher:
    """Sends a batch's reference requests to their replicas and their answers on to the embedder.

    ``replicas``: the reference workers' handles, by replica index; ``similarity``: the similarity worker's
    handle (``None``: nothing is embedded ahead).
    """

    def __init__(self, replicas: list, similarity=None):
        self.replicas = replicas
        self.similarity = similarity
        self._pending: list = []
        self.sent = 0

    def send(self, requests: list[ReferenceRequest]) -> int:
        """Start the references (and their embeddings) of ``requests``; returns how many were sent."""
        from verl_avconfuse.integration.placement import reference_replica_for

        if not requests or not self.replicas:
            return 0
        by_replica: dict[int, list[ReferenceRequest]] = {}
        for request in requests:
            by_replica.setdefault(reference_replica_for(request, len(self.replicas)), []).append(request)
        for replica, batch in by_replica.items():
            results = self.replicas[replica].prefetch.remote(batch)
            # Ray passes the references to the embedder when they exist: no process waits in between.
            self._pending.append(
                self.similarity.remember_references.remote(results) if self.similarity is not None else results
            )
        self.sent += len(requests)
        return len(requests)

    def collect(self) -> dict[str, float]:
        """Count (and log) the prefetches that finished since the last call; never waits for one."""
        import ray

        errors = 0
        if self._pending:
            done, self._pending = ray.wait(self._pending, num_returns=len(self._pending), timeout=0)
            for ref in done:
                try:
                    ray.get(ref, timeout=0)
                except Exception as error:  # noqa: BLE001 -- the rewards meet and count the failure themselves
                    errors += 1
                    logger.warning("reference prefetch failed (the rewards will ask again): %s", error)
        metrics = {"reference/prefetched": float(self.sent), "reference/prefetch_errors": float(errors)}
        self.sent = 0
        return metrics
