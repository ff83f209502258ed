"""``AvconfuseTrainer``: verl's synchronous v1 trainer, registered as ``trainer.v1.trainer_mode=avconfuse``.

RL-CoMM trains without KL, so verl builds no reference policy; in its place this trainer starts
the *heterogeneous reference*, Ray workers holding a large audio LM, and the shared Step-RR
embedder (:mod:`verl_avconfuse.integration.reference_worker`), when the reward manager is ``step_rr``. They are
placed inside verl's resource model (:mod:`verl_avconfuse.integration.placement`: a pool of their own added to
verl's ``ResourcePoolManager``, or slots of the actor pool's bundles), after a preflight of every role
against the Ray cluster that runs before any model loads. Each step, before the actor update, it stops
the run when the reference or similarity failures exceed their budget. It adds, through
``register_trainer`` rather than a patched trainer, the metrics:

- ``reward/{format,arr,avc,acc}/mean``: Step-RR's components (from each sample's reward extra info), and
  ``reward/arr_of_right/mean``, ARR's share of the right answers;
- ``reference/cache_hit_rate``, ``reference/errors``, ``reference/requests``, ``reference/generated``,
  ``reference/failed_prompt_frac``, ``similarity/errors``: the reference audio LM and the embedder;
- ``timing_s/reference_wait`` (the time the reward loop spent waiting on references: the union of the
  rewards' requests to the reference workers), ``timing_s/reference_generate`` (the audio LM's generation
  time), ``timing_s/similarity`` (the embedder's time), each this step's, and ``reference/prefetched``
  (prompts whose reference was asked for ahead, when the batch was drawn; ``avconfuse.reference.prefetch``);
- ``rollout/media/{audio,video,image}_tokens/mean`` and ``with_*_frac``: proof the rollouts carried
  the media (placeholder tokens per prompt);
- ``data/skipped_samples``: rows the dataset dropped for unusable media (see ``OmniRLDataset``);
- ``adv/nonzero_group_frac`` and, for rows with an ``extra_info.cell``, ``adv/mass_frac/{cell}``: where the
  step's advantage lands (:mod:`verl_avconfuse.method.signal`).

Each step reads the transfer queue once, right after verl computes the advantages (:class:`StepView`):
the service check, the advantage signal, Ans-CO's inputs, the metrics and the rollout dump all use that read.

Prefetch (:mod:`verl_avconfuse.integration.reference_prefetch`): when the trainer draws a batch (``_next_train_batch``,
before verl hands it to the rollout) it sends the batch's unique prompts to the reference workers, so the
reference generates while the policy rolls out; with ``prefetch=next`` it also draws the next batch then
and sends its prompts (a checkpoint saves the dataloader's state from before that draw).

With ``avconfuse.ans_co.enable`` (RL-CoMM stage 3) it installs the Ans-CO loss in the actor workers
and, before each actor update, writes each response's answer-token mask and NLL flag into the transfer
queue (both in :mod:`verl_avconfuse.integration.ans_co`); ``ansco/{nll,answer_entropy,u_mean,gated_fraction,loss}`` are logged.

Everything else is ``PPOTrainerSync``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from verl_avconfuse.method.signal import advantage_signal

logger = logging.getLogger(__name__)

TRAINER_MODE = "avconfuse"
#: verl's v1 trainers key sync/async behaviour (replay buffer, refills, checkpointed queue state)
#: on ``trainer_mode == "sync"``; this trainer is synchronous under its own registry name.
_VERL_SYNC_MODE = "sync"


def media_token_ids(processor) -> dict[str, int]:
    """Placeholder token id per modality, as verl resolves them."""
    from verl.utils.tokenizer import get_processor_token_id

    ids = {}
    for modality in ("audio", "video", "image"):
        token_id = get_processor_token_id(processor, modality)
        if token_id is not None:
            ids[modality] = token_id
    return ids


def media_token_metrics(prompts: Iterable, token_ids: dict[str, int]) -> dict[str, float]:
    """Mean placeholder tokens per prompt and the share of prompts carrying each modality."""
    counts = {modality: [] for modality in token_ids}
    for prompt in prompts:
        ids = np.asarray(prompt)
        for modality, token_id in token_ids.items():
            counts[modality].append(int((ids == token_id).sum()))
    metrics = {}
    for modality, values in counts.items():
        if values:
            values = np.asarray(values)
            metrics[f"rollout/media/{modality}_tokens/mean"] = float(values.mean())
            metrics[f"rollout/media/with_{modality}_frac"] = float((values > 0).mean())
    return metrics


REWARD_KEYS = ("format", "arr", "avc", "acc")
#: How long a step waits for the Step-RR workers' counters.
_STATS_TIMEOUT_S = 60.0


def reward_extra_infos(extra_fields) -> list[dict]:
    """Each sample's ``reward_extra_info`` from the transfer queue's ``extra_fields`` column ({} if none)."""
    fields = extra_fields.tolist() if hasattr(extra_fields, "tolist") else list(extra_fields)
    return [field.get("reward_extra_info", {}) if isinstance(field, dict) else {} for field in fields]


def _dump_sort_key(key: str) -> tuple:
    """The order of verl 0.9.1's rollout dump (``PPOTrainer._log_rollout_data``): ``{sample}_{rollout}_{output}``."""
    parts = key.rsplit("_", 2)
    return (parts[0], int(parts[1]), int(parts[2])) if len(parts) == 3 else (key, 0, 0)


def service_health(reward_extra_infos: list[dict], uids: list) -> dict[str, float]:
    """Step-RR's service failures over one step's samples: reference failures per prompt (a prompt whose
    rollouts got no reference counts once), similarity failures per sample."""
    if len(reward_extra_infos) != len(uids):
        raise ValueError(f"service_health: {len(reward_extra_infos)} reward infos for {len(uids)} uids")
    failed_prompts: set = set()
    for info, uid in zip(reward_extra_infos, uids, strict=True):
        if float(info.get("ref_error", 0.0)) > 0:
            failed_prompts.add(uid)
    prompts = len(set(uids))
    sim_errors = sum(float(info.get("sim_error", 0.0)) for info in reward_extra_infos)
    return {
        "reference/prompts": float(prompts),
        "reference/failed_prompts": float(len(failed_prompts)),
        "reference/failed_prompt_frac": len(failed_prompts) / prompts if prompts else 0.0,
        "similarity/errors": float(sim_errors),
        "similarity/error_frac": sim_errors / len(reward_extra_infos) if reward_extra_infos else 0.0,
    }


def reward_metrics(reward_extra_infos: Iterable[dict]) -> dict[str, float]:
    """Step-RR component means and reference counters over a step's samples."""
    infos = [info for info in reward_extra_infos if isinstance(info, dict)]
    metrics: dict[str, float] = {}
    for key in REWARD_KEYS:
        values = [float(info[key]) for info in infos if key in info]
        if values:
            metrics[f"reward/{key}/mean"] = float(np.mean(values))
    # ARR's share of the right answers: how often the heterogeneous reference's reward pays out.
    arr_of_right = [float(info["arr"]) for info in infos if "arr" in info and float(info.get("acc", 0.0)) == 1.0]
    if arr_of_right:
        metrics["reward/arr_of_right/mean"] = float(np.mean(arr_of_right))
    cached = [float(info["ref_cached"]) for info in infos if "ref_cached" in info]
    if cached:
        metrics["reference/cache_hit_rate"] = float(np.mean(cached))
        metrics["reference/errors"] = float(sum(float(info.get("ref_error", 0.0)) for info in infos))
    return metrics


#: The last step's metrics the end-of-run summary shows, in this order (those the run logged).
SUMMARY_METRICS = (
    "critic/score/mean",
    "reward/format/mean",
    "reward/acc/mean",
    "reward/arr/mean",
    "reward/avc/mean",
    "reward/arr_of_right/mean",
    "ansco/loss",
    "actor/pg_loss",
    "reference/cache_hit_rate",
    "reference/errors",
)
#: Per-step costs of RL-CoMM's extra work, summed over the run for the summary.
REFERENCE_TIMINGS = ("timing_s/reference_generate", "timing_s/reference_wait", "timing_s/similarity")


class StepView:
    """One step's fields from verl's transfer queue, read once (after the advantages) and shared by every
    use of the step: the Step-RR service check, the advantage signal, Ans-CO's inputs, the metrics and the
    rollout dump."""

    FIELDS = ("uid", "extra_fields", "extra_info", "advantages", "responses", "response_mask", "prompts")

    def __init__(self, keys: list, data) -> None:
        self.keys = keys
        self.data = data
        uids = data["uid"]
        self.uids = uids.tolist() if hasattr(uids, "tolist") else list(uids)
        self.reward_infos = (
            reward_extra_infos(data["extra_fields"]) if "extra_fields" in data.keys() else [{}] * len(keys)
        )

    @classmethod
    def read(cls, batch) -> StepView:
        import transfer_queue as tq

        # A dataset without extra_info (none of this package's) has no such field to read.
        listed = getattr(batch, "fields", None)
        fields = [f for f in cls.FIELDS if f != "extra_info" or not listed or f in listed]
        return cls(
            list(batch.keys), tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        )

    def advantages(self) -> list[float]:
        """One advantage per response: the mean over its tokens (GRPO's is the same at every token)."""
        mask = self.data["response_mask"].to_padded_tensor(padding=0).float()
        values = self.data["advantages"].to_padded_tensor(padding=0.0)
        return ((values * mask).sum(-1) / mask.sum(-1).clamp(min=1)).tolist()

    def cells(self) -> list[str | None]:
        """Each row's ``extra_info.cell`` (a task's question kind, e.g. the ablation replica's), or None."""
        if "extra_info" not in self.data.keys():
            return [None] * len(self.keys)
        return [info.get("cell") if isinstance(info, dict) else None for info in self.data["extra_info"]]


def run_summary(trainer_config, steps: int, last_metrics: dict, elapsed_s: float, totals: dict | None = None) -> str:
    """The lines a run ends with: steps and time, the last step's rewards, the reference's costs over the run
    (``totals``: per-step metrics summed over the steps), where checkpoints and logs are.

    ``trainer_config`` is verl's ``trainer`` section; relative paths are shown as absolute (the run's cwd).
    """
    import os

    lines = [f"avconfuse: training finished: {steps} step(s) in {elapsed_s:.0f} s"]
    shown = [f"{key} {float(last_metrics[key]):.4g}" for key in SUMMARY_METRICS if key in last_metrics]
    if shown:
        lines.append("  last step: " + ", ".join(shown))
    totals = totals or {}
    if all(key in totals for key in REFERENCE_TIMINGS):
        generate, wait, similarity = (totals[key] for key in REFERENCE_TIMINGS)
        step_s = totals.get("timing_s/step")
        share = f" ({wait / step_s:.0%} of the steps' time)" if step_s else ""
        line = (
            f"  reference over the run: generated {generate:.1f} s, the rewards waited {wait:.1f} s{share}, "
            f"embedder {similarity:.1f} s"
        )
        if "reference/prefetched" in totals:
            line += f"; {totals['reference/prefetched']:.0f} prompts prefetched"
        lines.append(line)
    checkpoints = os.path.abspath(str(trainer_config.get("default_local_dir", "checkpoints")))
    if int(trainer_config.get("save_freq", -1) or -1) > 0:
        lines.append(f"  checkpoints: {checkpoints}/global_step_N (merge: python -m verl.model_merger merge ...)")
    else:
        lines.append("  checkpoints: none saved (trainer.save_freq=-1; set it to save)")
    loggers = trainer_config.get("logger", ["console"])
    loggers = [loggers] if isinstance(loggers, str) else list(loggers)
    where = []
    project, experiment = trainer_config.get("project_name"), trainer_config.get("experiment_name")
    for name in loggers:
        if name == "file":
            path = os.environ.get("VERL_FILE_LOGGER_PATH") or os.path.join(
                os.path.expanduser(os.environ.get("VERL_FILE_LOGGER_ROOT", ".")), str(project), f"{experiment}.jsonl"
            )
            where.append(f"file {os.path.abspath(path)}")
        elif name == "tensorboard":
            path = os.environ.get("TENSORBOARD_DIR", f"tensorboard_log/{project}/{experiment}")
            where.append(f"tensorboard {os.path.abspath(path)}")
        elif name == "console":
            where.append("console (the step: lines above)")
        else:
            where.append(f"{name} (project {project}, experiment {experiment})")
    lines.append("  metrics: " + "; ".join(where))
    if trainer_config.get("rollout_data_dir"):
        lines.append(f"  rollouts: {os.path.abspath(str(trainer_config.rollout_data_dir))}")
    return "\n".join(lines)


@register_trainer(TRAINER_MODE)
class AvconfuseTrainer(PPOTrainerSync):
    """Synchronous PPO/GRPO trainer with RL-CoMM's reference worker and metrics."""

    @property
    def trainer_mode(self) -> str:
        """verl's sync mode, whatever name selected this class.

        verl's v1 trainers branch on ``self.trainer_mode == "sync"`` (replay buffer, refills, checkpointed
        queue state) and read ``trainer.v1.<mode>`` for the mode's settings (``parameter_sync_step``), all from
        ``PPOTrainer.__init__`` on. A read-only property answers "sync" to every one of those reads, in any
        order; ``trainer.v1.trainer_mode=avconfuse`` only picks this class from verl's registry.
        """
        return _VERL_SYNC_MODE

    @trainer_mode.setter
    def trainer_mode(self, value: str) -> None:
        # PPOTrainer.__init__ assigns config.trainer.v1.trainer_mode; anything but our name or "sync" is a bug.
        if value not in (TRAINER_MODE, _VERL_SYNC_MODE):
            raise ValueError(f"AvconfuseTrainer runs in verl's sync mode; trainer.v1.trainer_mode={value!r}")

    def _build_replay_buffer(self):
        from verl_avconfuse.settings import avconfuse_settings

        buffer = super()._build_replay_buffer()
        poll = avconfuse_settings(self.config).sampler_poll_interval_s
        if poll is not None:
            buffer.poll_interval = float(poll)
        return buffer

    def _uses_step_rr(self) -> bool:
        return self.config.reward.reward_manager.get("name") == "step_rr"

    def _init_resource_pool_mgr(self):
        super()._init_resource_pool_mgr()
        reference = self.avconfuse_settings.reference
        if self._uses_step_rr() and reference.has_worker and reference.placement == "separate":
            from verl_avconfuse.integration.placement import REFERENCE_POOL, REFERENCE_POOL_ROLE

            # A pool in verl's own spec: verl counts it in its resource check, and its GPUs are never
            # handed to the actor's placement groups.
            per_node = reference.num_gpus // reference.nnodes
            self.resource_pool_manager.resource_pool_spec[REFERENCE_POOL] = [per_node] * reference.nnodes
            self.resource_pool_manager.mapping[REFERENCE_POOL_ROLE] = REFERENCE_POOL

    def _setup(self):
        from verl_avconfuse.integration.placement import check_cluster
        from verl_avconfuse.settings import avconfuse_settings

        self.avconfuse_settings = avconfuse_settings(self.config)
        # Before any model loads: every role's demand against the Ray cluster, or one message naming each.
        report = check_cluster(self.config, self.avconfuse_settings, step_rr=self._uses_step_rr())
        print(report.render(), flush=True)
        super()._setup()
        if self.avconfuse_settings.ans_co.enable:
            self._install_ans_co_loss()
        self.step_rr_workers: dict = {}
        if self._uses_step_rr():
            from verl_avconfuse.integration.placement import start_step_rr_workers

            self.step_rr_workers = start_step_rr_workers(
                self.avconfuse_settings,
                self.resource_pool_manager,
                policy_model_path=self.config.actor_rollout_ref.model.path,
            )
        self._reference_prefetcher = self._make_reference_prefetcher()
        self._lookahead = None
        self._dataloader_state_before_lookahead = None
        self._worker_counters: dict[str, float] = {}

    # ---------------------------------------------------------------------------- prefetch

    def _make_reference_prefetcher(self):
        from verl_avconfuse.integration.placement import SIMILARITY_ACTOR, reference_actor_name
        from verl_avconfuse.integration.reference_prefetch import ReferencePrefetcher

        reference = self.avconfuse_settings.reference
        if not self._uses_step_rr() or not reference.has_worker or reference.prefetch == "none":
            return None
        replicas = [self.step_rr_workers[reference_actor_name(i)] for i in range(reference.replicas)]
        return ReferencePrefetcher(replicas, self.step_rr_workers.get(SIMILARITY_ACTOR))

    def _prefetch_references(self, batch) -> None:
        from verl_avconfuse.integration.reference_prefetch import batch_rows, prefetch_requests

        media = (self.config.get("data") or {}).get("media") or {}
        media_root = media.get("root") if hasattr(media, "get") else None
        self._reference_prefetcher.send(prefetch_requests(batch_rows(batch), media_root))

    def _next_train_batch(self, num_prompts: int | None = None):
        """verl's draw of the step's prompts; with a prefetch, their references are asked for right here,
        before verl hands the batch to the rollout (and with ``prefetch=next``, the next batch's too)."""
        from verl.utils import tensordict_utils as tu

        prefetcher = self._reference_prefetcher
        one_batch = num_prompts in (None, self.config.data.train_batch_size)
        if prefetcher is None or self.avconfuse_settings.reference.prefetch != "next" or not one_batch:
            batch = super()._next_train_batch(num_prompts)
            if prefetcher is not None:
                self._prefetch_references(batch)
            return batch
        if self._lookahead is None:
            batch = super()._next_train_batch()
            self._prefetch_references(batch)
        else:
            batch, self._lookahead = self._lookahead, None
            tu.assign_non_tensor_data(batch, "global_steps", self.global_steps)
        if self.global_steps < self.total_training_steps:
            # The next step's batch, drawn now so that its references generate during this step. Until it
            # is trained, a checkpoint must resume from the dataloader's state before this draw.
            self._dataloader_state_before_lookahead = self.train_dataloader.state_dict()
            self._lookahead = super()._next_train_batch()
            self._prefetch_references(self._lookahead)
        return batch

    def _save_checkpoint(self):
        import os

        import torch

        super()._save_checkpoint()
        if self._lookahead is not None:
            # verl just saved the dataloader one batch ahead (the lookahead's draw): a resume would skip it.
            path = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}", "data.pt")
            torch.save(self._dataloader_state_before_lookahead, path)

    # ------------------------------------------------------------------------------ Ans-CO

    def _install_ans_co_loss(self) -> None:
        from verl_avconfuse.integration.ans_co import install_ans_co_loss

        install_ans_co_loss(
            self.actor_rollout_wg, self.config.actor_rollout_ref.actor, self.avconfuse_settings.ans_co, self.tokenizer
        )

    def _check_step_rr_services(self, view: StepView, metrics) -> None:
        """Stop the run, loudly, when a step's reference or similarity failures exceed their budget."""
        health = service_health(view.reward_infos, view.uids)
        metrics.update(health)
        settings = self.avconfuse_settings
        problems = []
        budget = settings.reference.max_error_rate
        if budget is not None and health["reference/failed_prompt_frac"] > budget:
            problems.append(
                f"{health['reference/failed_prompts']:.0f} of {health['reference/prompts']:.0f} prompts got no "
                f"reference a-think (more than avconfuse.reference.max_error_rate={budget})"
            )
        budget = settings.similarity.max_error_rate
        if budget is not None and health["similarity/error_frac"] > budget:
            problems.append(
                f"{health['similarity/errors']:.0f} of {len(view.reward_infos)} samples got no similarity "
                f"(more than avconfuse.similarity.max_error_rate={budget})"
            )
        if problems:
            raise RuntimeError(
                f"Step-RR at step {self.global_steps}: {'; '.join(problems)}. The reward workers' log names each "
                'failure ("step_rr: ..."); fix the service, or raise the budget (null: never stop).'
            )

    def _compute_advantage(self, batch, metrics):
        batch = super()._compute_advantage(batch, metrics)
        # The step's one read of the transfer queue: every later use this step takes it from here.
        self._step_view = view = StepView.read(batch)
        if self._uses_step_rr():
            self._check_step_rr_services(view, metrics)
        metrics.update(advantage_signal(view.uids, view.advantages(), view.cells()))
        if self.avconfuse_settings.ans_co.enable:
            # Written with the advantages, outside the actor update (whose time is compared with plain GRPO).
            import transfer_queue as tq

            from verl_avconfuse.integration.ans_co import ans_co_fields

            fields = ans_co_fields(view, self.tokenizer, self.avconfuse_settings.ans_co)
            # The returned batch meta lists the new fields too (the worker fetches the fields it lists).
            batch = tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=fields)
        return batch

    def _view(self, batch) -> StepView:
        """This step's :class:`StepView` (verl 0.9.1 hands the metrics and the dump the batch whose advantages
        it computed, in the same order)."""
        view = getattr(self, "_step_view", None)
        if view is None or view.keys != list(batch.keys):
            raise RuntimeError(
                "avconfuse trainer: this step's batch was not read after its advantages (verl called the step's "
                "metrics or dump on another batch; verl 0.9.1, which this trainer is written for, does not)"
            )
        return view

    def _update_actor(self, batch, metrics):
        if not self.avconfuse_settings.ans_co.enable:
            return super()._update_actor(batch, metrics)
        update_metrics: dict = {}
        batch = super()._update_actor(batch, update_metrics)
        # verl prefixes every actor metric with "actor/"; Ans-CO's are reported under their own names.
        for key, value in update_metrics.items():
            metrics[key[len("actor/") :] if key.startswith("actor/ansco/") else key] = value
        return batch

    # ------------------------------------------------------------------------ rollout dump

    #: Step-RR's per-response values written beside each rollout in ``trainer.rollout_data_dir``.
    DUMP_KEYS = ("format", "arr", "avc", "acc", "sim_a_ref", "sim_a_v", "reference_a_think", "ref_error")

    def _log_rollout_data(self, batch, timing_raw, rollout_data_dir):
        """verl's rollout dump, plus each response's Step-RR terms and the texts they came from."""
        infos = self._view(batch).reward_infos
        # verl writes the rows sorted by (sample, rollout, output) of the key; the same order here.
        order = sorted(range(len(batch.keys)), key=lambda i: _dump_sort_key(batch.keys[i]))
        self._step_rr_dump = {key: [infos[i].get(key) for i in order] for key in self.DUMP_KEYS}
        try:
            return super()._log_rollout_data(batch, timing_raw, rollout_data_dir)
        finally:
            self._step_rr_dump = None

    def _dump_generations(self, inputs, outputs, gts, scores, reward_extra_infos_dict, dump_path):
        extra = getattr(self, "_step_rr_dump", None)
        if extra:
            reward_extra_infos_dict = {**reward_extra_infos_dict, **extra}
        return super()._dump_generations(inputs, outputs, gts, scores, reward_extra_infos_dict, dump_path)

    # ----------------------------------------------------------------------------- metrics

    def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch):
        super()._compute_metrics(batch, metrics, timing_raw, global_steps=global_steps, epoch=epoch)
        view = self._view(batch)
        metrics.update(self._media_metrics(view))
        metrics.update(reward_metrics(view.reward_infos))
        metrics.update(self._worker_stats())
        skipped = getattr(self.train_dataset, "skipped_samples", None)
        if skipped is not None:
            metrics["data/skipped_samples"] = float(len(skipped))

    def _worker_stats(self) -> dict[str, float]:
        import ray

        from verl_avconfuse.integration.placement import REFERENCE_ACTOR_PREFIX, SIMILARITY_ACTOR

        replicas = [h for name, h in self.step_rr_workers.items() if name.startswith(REFERENCE_ACTOR_PREFIX)]
        similarity = self.step_rr_workers.get(SIMILARITY_ACTOR)
        # Never wait forever on a worker: one that cannot report its counters within a minute is broken.
        stats = ray.get([handle.stats.remote() for handle in replicas], timeout=_STATS_TIMEOUT_S)
        metrics = {}
        counters = {}
        if stats:
            for key in ("reference/requests", "reference/generated", "reference/batched_calls"):
                metrics[key] = float(sum(s[key] for s in stats))
            for key in ("timing_s/reference_wait", "timing_s/reference_generate"):
                counters[key] = float(sum(s[key] for s in stats))
        if similarity is not None:
            similarity_stats = ray.get(similarity.stats.remote(), timeout=_STATS_TIMEOUT_S)
            counters["timing_s/similarity"] = similarity_stats.pop("timing_s/similarity")
            metrics.update(similarity_stats)
        # The workers count seconds since they started; a step's are the difference since the last step.
        for key, value in counters.items():
            metrics[key] = value - self._worker_counters.get(key, 0.0)
        self._worker_counters.update(counters)
        if self._reference_prefetcher is not None:
            metrics.update(self._reference_prefetcher.collect())
        return metrics

    def _media_metrics(self, view: StepView) -> dict[str, float]:
        token_ids = media_token_ids(self.processor) if self.processor is not None else {}
        if not token_ids:
            return {}
        prompts = view.data["prompts"]
        rows = prompts.unbind() if prompts.is_nested else list(prompts)
        return media_token_metrics((row.tolist() for row in rows), token_ids)

    # ------------------------------------------------------------------------- end of run

    def fit(self, agent_loop_manager):
        """verl's training loop, then one summary (:func:`run_summary`) after its ~1,000 lines of output."""
        import time

        started = time.monotonic()
        self._last_logged: tuple[int, dict] = (0, {})
        self._run_totals: dict[str, float] = {}
        result = super().fit(agent_loop_manager)
        steps, metrics = self._last_logged
        summary = run_summary(self.config.trainer, steps, metrics, time.monotonic() - started, self._run_totals)
        print(summary, flush=True)
        return result

    def on_train_begin(self):
        # verl's loop keeps no metrics once logged; its tracker is the one place each step's pass, so the
        # tracker's log is wrapped to remember the last step's (for the summary of fit).
        super().on_train_begin()
        log = self.logger.log

        def log_and_remember(data, step, backend=None):
            self._last_logged = (step, dict(data))
            for key in (*REFERENCE_TIMINGS, "timing_s/step", "reference/prefetched"):
                if key in data:
                    self._run_totals[key] = self._run_totals.get(key, 0.0) + float(data[key])
            return log(data=data, step=step, backend=backend)

        self.logger.log = log_and_remember
