"""``rollout.name=vllm_omni``: verl's vLLM rollout, speaking the Omni thinker contract (Qwen2.5-Omni, Qwen3-Omni).

verl 0.9.1's vLLM server sends Omni requests vLLM 0.24.0 mis-reads (already-expanded placeholder
runs, audio items without a sample rate, no ``use_audio_in_video``), syncs weights under names
the thinker's loader rejects, and launches a thinker-only directory on the image-only
Transformers backend. These subclasses fix each point through :mod:`.vllm_contract`, where every
field is documented against vLLM's source and tested field by field; nothing else changes:

- :class:`OmniVLLMHttpServer` rewrites each ``generate`` request with ``build_omni_prompt``, sets
  the engine's ``hf_overrides`` (``vllm_engine_overrides``) and bans every media token;
- :class:`OmniVLLMServerAdapter` renames the actor's weights (``thinker.`` prefix) on sync;
- :class:`OmniVLLMReplica` launches the server above under its own actor-name prefix;
- the server names :mod:`.vllm_omni_worker`'s extension as vLLM's ``worker_extension_cls`` (weight sync on
  vLLM's CPU build), and takes the rollout settings the active verl platform asks for
  (``vllm_rollout_settings``: the CPU platform turns sleep mode off and eager mode on).

vLLM itself is patched only where it must be (Omni M-RoPE positions with audio in video, thinker weight
names): :mod:`verl_avconfuse.integration.patches`, installed in every vLLM process by vLLM's own plugin hook.

Importing this module needs vLLM (the plugin registers it lazily, by name).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
from dataclasses import astuple
from typing import Any

from verl.utils.device import get_device_name
from verl.workers.rollout.vllm_rollout.vllm_async_server import vLLMHttpServer, vLLMReplica
from verl.workers.rollout.vllm_rollout.vllm_rollout import ServerAdapter

from verl_avconfuse.integration.rollout.vllm_omni_worker import WORKER_EXTENSION
from verl_avconfuse.integration.rollout.vllm_weights import vllm_thinker_weights_async
from verl_avconfuse.omni.vllm_contract import (
    DEFAULT_AUDIO_SAMPLE_RATE,
    OmniFamily,
    OmniTokenIds,
    build_omni_prompt,
    omni_family,
    omni_token_ids,
    vllm_engine_overrides,
)

logger = logging.getLogger(__name__)

ROLLOUT_NAME = "vllm_omni"
#: Seconds between two health checks of the vLLM engine (``OmniVLLMHttpServer._watch_engine``).
ENGINE_CHECK_S = 2.0
#: Exit status of a server whose engine died.
ENGINE_DEAD_EXIT_CODE = 75
#: vLLM's multimodal processor cache for the Omni rollout: off (see ``_preprocess_engine_kwargs``).
MM_PROCESSOR_CACHE_GB = 0
SERVER_PREFIX = f"{ROLLOUT_NAME}_"


def _read_config(model_path: str) -> dict[str, Any]:
    with open(os.path.join(model_path, "config.json")) as f:
        return json.load(f)


def _engine_overrides(model_path: str) -> dict[str, Any]:
    return vllm_engine_overrides(_read_config(model_path))


def _platform_rollout_settings() -> dict[str, Any]:
    """What the active verl platform needs of the rollout config (``{}`` on verl's own platforms)."""
    from verl.plugin.platform import get_platform

    settings = getattr(get_platform(), "vllm_rollout_settings", None)
    return dict(settings()) if callable(settings) else {}


class OmniVLLMHttpServer(vLLMHttpServer):
    """vLLM server whose requests and engine follow the Omni thinker contract."""

    def _init_config(self, config):
        rollout = super()._init_config(config)
        settings = {key: value for key, value in _platform_rollout_settings().items() if getattr(rollout, key) != value}
        if settings:
            logger.info("vllm_omni: rollout settings of the %s platform: %s", get_device_name(), settings)
            rollout = dataclasses.replace(rollout, **settings)
        return rollout

    def _get_worker_extension_cls(self) -> str:
        return WORKER_EXTENSION

    def _preprocess_engine_kwargs(self, engine_kwargs: dict) -> None:
        super()._preprocess_engine_kwargs(engine_kwargs)
        # vLLM 0.24.0's multimodal processor cache keys each item by its own bytes. With the audio inside
        # the video, a clip whose soundtrack is byte-identical to one already cached (real datasets reuse
        # soundtracks; AV-ConfuseBench swaps five sounds into twenty videos) gets its audio from the cache
        # and its video alone sent to the HF processor with use_audio_in_video=True, which fails ("Failed to
        # apply Qwen2_5OmniProcessor": processing/processor.py _cached_apply_hf_processor ->
        # qwen2_5_omni_thinker.py _call_hf_processor). Off by default; what it costs is measured in
        # benchmarks/bench_vllm_rollout.py. With separate audio items only, it is safe to turn back on:
        # actor_rollout_ref.rollout.engine_kwargs.vllm.mm_processor_cache_gb=4
        engine_kwargs.setdefault("mm_processor_cache_gb", MM_PROCESSOR_CACHE_GB)

    def _omni_token_ids(self) -> OmniTokenIds:
        # By the processor's token attributes: Qwen3-Omni renames every media token.
        if not hasattr(self, "_token_ids"):
            self._token_ids = omni_token_ids(self.model_config.processor)
        return self._token_ids

    def _omni_family(self) -> OmniFamily:
        if not hasattr(self, "_family"):
            self._family = omni_family(_read_config(self.model_config.local_path).get("model_type"))
        return self._family

    def _apply_engine_overrides(self, args) -> None:
        overrides = _engine_overrides(self.model_config.local_path).get("hf_overrides")
        if overrides is None:
            return
        existing = getattr(args, "hf_overrides", None)
        if callable(overrides) or not existing:
            # A callable (thinker-only directory) cannot be merged with a dict; it wraps the config.
            args.hf_overrides = overrides
        else:
            args.hf_overrides = {**existing, **overrides}

    async def run_server(self, args):
        self._apply_engine_overrides(args)
        await super().run_server(args)
        self._engine_watch = asyncio.get_running_loop().create_task(self._watch_engine())
        # verl bans <|image_pad|>/<|video_pad|> only; Omni's audio placeholder and media delimiters
        # are just as meaningless when sampled (and TMRoPE counts media blocks by them).
        await self.engine.collective_rpc(
            method="monkey_patch_model",
            kwargs={
                "vocab_size": len(self.model_config.tokenizer),
                "banned_token_ids": sorted(set(astuple(self._omni_token_ids()))),
            },
        )

    async def _watch_engine(self) -> None:
        """End this server when its vLLM engine dies, so the run fails in bounded time instead of waiting.

        verl 0.9.1 keeps calling a server whose engine core or worker died: requests fail one by one (a sync
        trainer then stops on "terminal groups with no materializable trajectories", if it gets that far) and a
        weight sync into a dead worker waits on its ZMQ socket forever. vLLM's own health check
        (``AsyncLLM.check_health``, ``EngineDeadError``) notices within ``ENGINE_CHECK_S``; the server logs one
        line that says which engine died and why, and exits, so every pending and later call from verl's
        workers raises Ray's ``ActorDiedError`` and ``main_ppo`` stops.
        """
        while True:
            await asyncio.sleep(ENGINE_CHECK_S)
            try:
                await self.engine.check_health()
            except Exception as error:  # EngineDeadError, or the engine client itself broken
                logger.error(
                    "vllm_omni: the vLLM engine of rollout replica %s died (%s: %s); stopping its server so "
                    "the run fails now instead of waiting on it",
                    self.replica_rank,
                    type(error).__name__,
                    error or "engine core or worker process exited",
                )
                for handler in logging.getLogger().handlers:
                    handler.flush()
                os._exit(ENGINE_DEAD_EXIT_CODE)

    async def run_headless(self, args):
        self._apply_engine_overrides(args)
        await super().run_headless(args)

    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: list[Any] | None = None,
        video_data: list[Any] | None = None,
        audio_data: list[Any] | None = None,
        mm_processor_kwargs: dict[str, Any] | None = None,
        priority: int = 0,
        kv_transfer_params: dict | None = None,
    ):
        mm_processor_kwargs = dict(mm_processor_kwargs or {})
        use_audio_in_video = bool(mm_processor_kwargs.pop("use_audio_in_video", False))
        sample_rate = int(mm_processor_kwargs.pop("sampling_rate", DEFAULT_AUDIO_SAMPLE_RATE))
        request = build_omni_prompt(
            prompt_ids,
            token_ids=self._omni_token_ids(),
            audio_data=audio_data,
            video_data=video_data,
            image_data=image_data,
            use_audio_in_video=use_audio_in_video,
            audio_sample_rate=sample_rate,
            extra_mm_processor_kwargs=mm_processor_kwargs,
            family=self._omni_family(),
        )
        media = request["multi_modal_data"]
        return await super().generate(
            request["prompt_token_ids"],
            sampling_params,
            request_id,
            image_data=media.get("image"),
            video_data=media.get("video"),
            audio_data=media.get("audio"),
            mm_processor_kwargs=request["mm_processor_kwargs"],
            priority=priority,
            kv_transfer_params=kv_transfer_params,
        )


class OmniVLLMReplica(vLLMReplica):
    def __init__(self, *args, **kwargs):
        import ray

        super().__init__(*args, **kwargs)
        self.server_class = ray.remote(OmniVLLMHttpServer)

    def _get_server_name_prefix(self) -> str:
        return SERVER_PREFIX


class OmniVLLMServerAdapter(ServerAdapter):
    """verl's vLLM adapter with the thinker's weight names mapped for vLLM's loader."""

    async def update_weights(self, weights, global_steps: int = None, wire_format: str = "named_tensors", **kwargs):
        if wire_format == "named_tensors":
            from verl.workers.rollout.utils import ensure_async_iterator

            weights = vllm_thinker_weights_async(ensure_async_iterator(weights))
        return await super().update_weights(weights, global_steps=global_steps, wire_format=wire_format, **kwargs)

    def _get_server_name_prefix(self) -> str:
        return SERVER_PREFIX
