"""Prefetch: the trainer asks for a batch's references when it draws the batch; the rewards then find them.

The worker is the real ``ReferenceWorker`` (its batcher, in-flight table, service and sqlite cache), with a
stand-in audio LM whose speed and failures the test controls; no Ray. What is checked: a reward that asks
during the prefetch joins it (one generation per prompt), after it the reward waits only for the cache, a
failed prefetch is the reward's counted reference error, and a prefetch that never returns costs the reward
its ``timeout_s``, never a hang.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from verl_avconfuse.integration.batching import BusyClock
from verl_avconfuse.integration.reference_prefetch import ReferencePrefetcher, prefetch_requests
from verl_avconfuse.reference.cache import ReferenceRequest
from verl_avconfuse.reference.requests import reference_request_for, request_for_row
from verl_avconfuse.settings import avconfuse_settings

QUESTION, ANSWER = "Is there a violin sound?", "yes"


class StandInLM:
    """An audio LM that takes ``delay_s`` per call (or blocks until ``release``, or raises ``error``)."""

    model_id = "stand-in-audio-lm"
    generation_settings = {"temperature": 0.5}

    def __init__(self, delay_s: float = 0.0, error: str | None = None, block: bool = False):
        self.delay_s, self.error, self.block = delay_s, error, block
        self.release = threading.Event()
        self.calls: list[list[ReferenceRequest]] = []

    def generate(self, requests):
        self.calls.append(list(requests))
        if self.block:
            self.release.wait(timeout=30)
        time.sleep(self.delay_s)
        if self.error:
            raise RuntimeError(self.error)
        return [f"<a-think>I hear the answer to {r.question!r} in {r.audio_path}.</a-think>" for r in requests]

    @property
    def generated(self) -> int:
        return sum(len(call) for call in self.calls)


def _worker(monkeypatch, tmp_path, lm: StandInLM, **reference):
    import verl_avconfuse.reference.backends as backends
    from verl_avconfuse.integration.reference_worker import ReferenceWorker

    monkeypatch.setattr(backends, "load_audio_lm", lambda *args, **kwargs: lm)
    settings = avconfuse_settings(
        {"avconfuse": {"reference": {"model_path": "stand-in", "cache_dir": str(tmp_path / "cache"), **reference}}}
    )
    return ReferenceWorker(settings.reference), settings


def _clips(tmp_path, n: int) -> list[str]:
    paths = []
    for i in range(n):
        path = tmp_path / f"clip{i}.wav"
        path.write_bytes(f"soundtrack {i}".encode())  # the cache keys on the bytes
        paths.append(str(path))
    return paths


def _row(clip: str, **extra_info) -> dict:
    return {
        "raw_prompt": [{"role": "user", "content": [{"type": "video", "video": clip}, {"type": "text", "text": "q"}]}],
        "extra_info": {"question": QUESTION, **extra_info},
        "reward_model": {"ground_truth": ANSWER},
    }


def test_a_group_asking_during_the_prefetch_joins_it_one_generation_per_prompt(monkeypatch, tmp_path):
    lm = StandInLM(delay_s=0.5)
    worker, _ = _worker(monkeypatch, tmp_path, lm)
    requests = [ReferenceRequest(clip, QUESTION, ANSWER) for clip in _clips(tmp_path, 2)]

    async def step():
        prefetch = asyncio.ensure_future(worker.prefetch(requests))
        await asyncio.sleep(0.1)  # the rollout finishes while the reference is still generating
        group = [worker.get_many([requests[i % 2]]) for i in range(8)]  # 2 prompts x 4 rollouts
        return await prefetch, await asyncio.gather(*group)

    prefetched, rewards = asyncio.run(step())
    assert lm.generated == 2 and len(lm.calls) == 1  # one batched generation, shared by all 8 rewards
    assert [r[0]["a_think"] for r in rewards] == [prefetched[i % 2]["a_think"] for i in range(8)]
    assert all(r[0]["error"] is None for r in rewards)
    stats = worker.stats()
    assert stats["reference/requests"] == 8.0  # the rewards' requests; the prefetch is counted apart
    assert worker.prefetched == 2 and stats["reference/generated"] == 2.0
    # The rewards waited for the rest of the generation only, not for a generation of their own.
    assert 0 < stats["timing_s/reference_wait"] < stats["timing_s/reference_generate"]


def test_after_the_prefetch_the_rewards_are_answered_from_memory_without_a_lookup(monkeypatch, tmp_path):
    lm = StandInLM(delay_s=1.0)
    worker, _ = _worker(monkeypatch, tmp_path, lm)
    requests = [ReferenceRequest(clip, QUESTION, ANSWER) for clip in _clips(tmp_path, 2)]

    async def step():
        await worker.prefetch(requests)  # generated while the policy rolled out
        return await asyncio.gather(*(worker.get_many([requests[i % 2]]) for i in range(8)))

    rewards = asyncio.run(step())
    stats = worker.stats()
    assert lm.generated == 2 and all(r[0]["cached"] and r[0]["a_think"] for r in rewards)
    assert worker.batcher.calls == 1  # the prefetch's lookup and generation; the rewards added none
    assert stats["timing_s/reference_generate"] >= 1.0
    # Not even the batching window (50 ms) that a cache read waits for.
    assert stats["timing_s/reference_wait"] < 0.05


def _manager(settings, worker):
    """The reward manager's reference path, its replica lookup pointed at the in-process worker."""
    from verl_avconfuse.integration.reward_manager import StepRRRewardManager

    class Handle:  # what ``ray.get_actor(...).get_many.remote(...)`` gives the manager: an awaitable
        class get_many:  # noqa: N801
            @staticmethod
            def remote(requests):
                return asyncio.ensure_future(worker.get_many(requests))

    manager = StepRRRewardManager.__new__(StepRRRewardManager)
    manager.settings, manager.media_root = settings, None
    manager._reference_replica = lambda request: Handle
    return manager


def test_a_failed_prefetch_is_the_rewards_counted_reference_error_and_is_not_generated_again(monkeypatch, tmp_path):
    from verl_avconfuse.integration.trainer import service_health

    lm = StandInLM(error="decoder exploded")
    worker, settings = _worker(monkeypatch, tmp_path, lm)
    rows = [_row(clip) for clip in _clips(tmp_path, 2)]

    async def step():
        prefetched = await worker.prefetch(prefetch_requests(rows, None))
        manager = _manager(settings, worker)
        scored = await asyncio.gather(*(manager._reference(rows[i % 2]) for i in range(8)))
        return prefetched, scored

    prefetched, scored = asyncio.run(step())
    assert all(r["a_think"] is None and "decoder exploded" in r["error"] for r in prefetched)
    assert scored == [(None, 0.0, 1.0)] * 8  # (reference, cached, ref_error): arr = 0, counted
    # The batch, then each request alone (isolating the failure); the rewards met the remembered failure.
    assert [len(call) for call in lm.calls] == [2, 1, 1]
    health = service_health([{"ref_error": error} for *_, error in scored], [i % 2 for i in range(8)])
    # Both prompts failed: past avconfuse.reference.max_error_rate (0.2), the trainer stops the run.
    assert health["reference/failed_prompt_frac"] == 1.0 > settings.reference.max_error_rate


def test_a_prefetch_that_never_returns_costs_the_reward_its_timeout_not_a_hang(monkeypatch, tmp_path):
    lm = StandInLM(block=True)
    worker, settings = _worker(monkeypatch, tmp_path, lm, timeout_s=0.5)
    rows = [_row(clip) for clip in _clips(tmp_path, 1)]

    async def step():
        prefetch = asyncio.ensure_future(worker.prefetch(prefetch_requests(rows, None)))
        await asyncio.sleep(0.1)
        started = time.perf_counter()
        scored = await _manager(settings, worker)._reference(rows[0])
        waited = time.perf_counter() - started
        lm.release.set()  # let the stuck generation end so the test's loop can close
        await prefetch
        return scored, waited

    scored, waited = asyncio.run(step())
    assert scored == (None, 0.0, 1.0)
    assert 0.5 <= waited < 5.0


def test_prefetch_requests_are_the_rewards_requests_once_per_prompt(tmp_path):
    clips = _clips(tmp_path, 2)
    rows = [
        _row(clips[0]),
        _row(clips[0]),  # the same prompt drawn twice
        _row(clips[1]),
        _row(clips[1], reference_a_think="precomputed"),  # needs no worker
        {"raw_prompt": [{"role": "user", "content": "no media"}], "extra_info": {}, "reward_model": {}},
    ]
    requests = prefetch_requests(rows, None)
    assert requests == [reference_request_for(rows[0], None), reference_request_for(rows[2], None)]
    assert requests[1] == ReferenceRequest(clips[1], QUESTION, ANSWER)


def test_precompute_reads_a_parquet_row_as_the_reward_reads_the_sample_verl_makes_of_it(tmp_path):
    from verl_avconfuse.method.prompts import format_question

    (clip,) = _clips(tmp_path, 1)
    row = {
        "prompt": [{"role": "user", "content": format_question(QUESTION, "<video><audio>")}],
        "videos": [clip],
        "audios": [clip],
        "extra_info": {"question": QUESTION},
        "reward_model": {"ground_truth": ANSWER},
    }
    # verl's dataset moves the media into the messages (RLHFDataset._build_messages) and drops the columns
    sample = {
        "raw_prompt": [
            {
                "role": "user",
                "content": [
                    {"type": "video", "video": clip},
                    {"type": "audio", "audio": clip},
                    {"type": "text", "text": format_question(QUESTION)},
                ],
            }
        ],
        "extra_info": row["extra_info"],
        "reward_model": row["reward_model"],
    }
    assert request_for_row(row, None) == reference_request_for(sample, None) == ReferenceRequest(clip, QUESTION, ANSWER)
    # a row written elsewhere, without extra_info.question: the prompt's question, the instruction removed
    bare = {**row, "extra_info": {}}
    assert request_for_row(bare, None) == ReferenceRequest(clip, QUESTION, ANSWER)


def test_the_prefetcher_sends_each_request_to_its_rewards_replica_and_on_to_the_embedder(tmp_path):
    from verl_avconfuse.integration.placement import reference_replica_for

    sent: list = []

    class Method:
        def __init__(self, name):
            self.name = name

        def remote(self, arg):
            sent.append((self.name, arg))
            return f"ref:{self.name}:{len(sent)}"

    class Replica:
        def __init__(self, index):
            self.prefetch = Method(f"replica{index}")

    class Similarity:
        remember_references = Method("similarity")

    requests = [ReferenceRequest(clip, QUESTION, ANSWER) for clip in _clips(tmp_path, 6)]
    prefetcher = ReferencePrefetcher([Replica(0), Replica(1)], Similarity())
    assert prefetcher.send(requests) == 6
    to_replicas = [(name, batch) for name, batch in sent if name.startswith("replica")]
    for name, batch in to_replicas:
        assert all(f"replica{reference_replica_for(r, 2)}" == name for r in batch)
    assert sorted((r for _, batch in to_replicas for r in batch), key=repr) == sorted(requests, key=repr)
    # Each replica's answer (an object ref) goes to the embedder as is: Ray hands it over when it exists.
    assert [arg for name, arg in sent if name == "similarity"] == [
        f"ref:{name}:{i + 1}" for i, (name, _) in enumerate(sent) if name.startswith("replica")
    ]


def test_busy_clock_counts_overlapping_waits_once(monkeypatch):
    import verl_avconfuse.integration.batching as batching

    now = [0.0]
    monkeypatch.setattr(batching.time, "perf_counter", lambda: now[0])
    clock = BusyClock()
    first, second = BusyClock.__enter__, BusyClock.__exit__
    first(clock)  # t=0: a reward starts waiting
    now[0] = 1.0
    first(clock)  # t=1: a second one (its group's other rollout)
    now[0] = 2.0
    second(clock)
    assert clock.seconds == 2.0  # still waiting: counted up to now
    now[0] = 3.0
    second(clock)  # t=3: none waits
    now[0] = 5.0
    with clock:
        now[0] = 6.0
    assert clock.seconds == pytest.approx(4.0)  # [0, 3] + [5, 6], not 3 + 2 + 1


class _Recorder:
    """A prefetcher that records what the trainer sends (no workers)."""

    def __init__(self):
        self.sent: list[list[ReferenceRequest]] = []

    def send(self, requests):
        self.sent.append(list(requests))
        return len(requests)


def _trainer(tmp_path, prefetch: str, prompts: int = 8, total_steps: int = 3):
    """The avconfuse trainer's batch drawing, on a dataloader of ``prompts`` rows (no workers, no Ray)."""
    import torch
    from omegaconf import OmegaConf
    from torchdata.stateful_dataloader import StatefulDataLoader
    from verl.utils.dataset.rl_dataset import collate_fn

    from verl_avconfuse.integration.trainer import AvconfuseTrainer

    clips = _clips(tmp_path, prompts)
    rows = [{"input_ids": torch.tensor([i]), **_row(clip)} for i, clip in enumerate(clips)]
    trainer = AvconfuseTrainer.__new__(AvconfuseTrainer)
    trainer.config = OmegaConf.create(
        {"data": {"train_batch_size": 2}, "trainer": {"default_local_dir": str(tmp_path / "ckpt")}}
    )
    trainer.avconfuse_settings = avconfuse_settings(
        {"avconfuse": {"reference": {"model_path": "stand-in", "prefetch": prefetch}}}
    )
    trainer._reference_prefetcher = _Recorder()
    trainer._lookahead = trainer._dataloader_state_before_lookahead = None
    trainer.global_steps, trainer.total_training_steps = 1, total_steps
    trainer.train_dataloader = StatefulDataLoader(rows, batch_size=2, shuffle=False, collate_fn=collate_fn)
    trainer.train_dataloader_it = None
    return trainer, clips


def _drawn(batch) -> list[int]:
    return batch["input_ids"][:, 0].tolist()


def test_prefetch_batch_asks_for_each_drawn_batch_before_it_is_returned(tmp_path):
    trainer, clips = _trainer(tmp_path, "batch")
    assert _drawn(trainer._next_train_batch()) == [0, 1]
    assert [r.audio_path for r in trainer._reference_prefetcher.sent[-1]] == clips[:2]
    trainer.global_steps = 2
    assert _drawn(trainer._next_train_batch()) == [2, 3]
    assert [[r.audio_path for r in sent] for sent in trainer._reference_prefetcher.sent] == [clips[:2], clips[2:4]]


def test_prefetch_next_draws_one_batch_ahead_and_a_checkpoint_resumes_at_the_batch_not_yet_trained(
    tmp_path, monkeypatch
):
    import torch
    from torchdata.stateful_dataloader import StatefulDataLoader
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
    from verl.utils.dataset.rl_dataset import collate_fn

    trainer, clips = _trainer(tmp_path, "next", total_steps=3)
    sent = trainer._reference_prefetcher.sent
    first = trainer._next_train_batch()
    assert _drawn(first) == [0, 1]
    # Step 1 asks for its own batch and the next one's.
    assert [[r.audio_path for r in s] for s in sent] == [clips[:2], clips[2:4]]
    trainer.global_steps = 2
    second = trainer._next_train_batch()
    assert _drawn(second) == [2, 3]  # the batch drawn ahead, now trained
    assert [r.audio_path for r in sent[-1]] == clips[4:6] and len(sent) == 3
    assert second["global_steps"] == 2  # stamped with the step that trains it, not the one that drew it

    # A checkpoint now (after step 2) must resume at [4, 5], which was drawn but not trained.
    def verl_save(self):  # verl saves the dataloader's current state (already past [4, 5])
        folder = tmp_path / "ckpt" / f"global_step_{self.global_steps}"
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.train_dataloader.state_dict(), folder / "data.pt")

    monkeypatch.setattr(PPOTrainerSync, "_save_checkpoint", verl_save)
    trainer._save_checkpoint()
    resumed = StatefulDataLoader(trainer.train_dataloader.dataset, batch_size=2, shuffle=False, collate_fn=collate_fn)
    resumed.load_state_dict(torch.load(tmp_path / "ckpt" / "global_step_2" / "data.pt", weights_only=False))
    assert next(iter(resumed))["input_ids"][:, 0].tolist() == [4, 5]

    trainer.global_steps = 3  # the last step draws nothing ahead
    assert _drawn(trainer._next_train_batch()) == [4, 5] and len(sent) == 3 and trainer._lookahead is None


def test_prefetch_setting_is_one_of_none_batch_next():
    base = {"model_path": "stand-in"}
    assert avconfuse_settings({"avconfuse": {"reference": base}}).reference.prefetch == "batch"
    with pytest.raises(ValueError, match=r"avconfuse.reference.prefetch: expected one of \('none', 'batch', 'next'\)"):
        avconfuse_settings({"avconfuse": {"reference": {**base, "prefetch": "later"}}})


def test_the_replay_buffer_polls_at_the_configured_interval_else_at_verls(monkeypatch):
    from omegaconf import OmegaConf
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    from verl_avconfuse.integration.trainer import AvconfuseTrainer

    class Buffer:
        poll_interval = 2.0  # verl 0.9.1's ReplayBuffer default

    monkeypatch.setattr(PPOTrainerSync, "_build_replay_buffer", lambda self: Buffer())
    trainer = AvconfuseTrainer.__new__(AvconfuseTrainer)
    trainer.config = OmegaConf.create({"avconfuse": {"reference": {"enable": False}}})
    assert trainer._build_replay_buffer().poll_interval == 2.0
    trainer.config = OmegaConf.create({"avconfuse": {"reference": {"enable": False}, "sampler_poll_interval_s": 0.05}})
    assert trainer._build_replay_buffer().poll_interval == 0.05
    with pytest.raises(ValueError, match="sampler_poll_interval_s"):
        avconfuse_settings({"avconfuse": {"reference": {"enable": False}, "sampler_poll_interval_s": 0}})
