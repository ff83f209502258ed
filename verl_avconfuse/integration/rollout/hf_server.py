"""A rollout backend built on HF transformers, registered in verl's rollout registries as ``hf``.

verl 0.9.1 generates only through server backends (vLLM, SGLang, TensorRT-LLM), none of which runs
without a GPU. This backend follows the same three-part contract so the rest of verl cannot tell
the difference:

- :class:`HFRolloutServer`, a Ray actor per replica holding an HF model: token-in/token-out
  ``generate`` (text and multimodal, through the model's processor), sleep / wake-up, abort /
  resume, and weight loading;
- :class:`HFRolloutReplica`, the ``RolloutReplica`` that launches the server next to the hybrid
  workers (``RolloutReplicaRegistry`` entry ``hf``);
- :class:`HFServerAdapter`, the ``BaseRollout`` living in each actor worker that pushes the
  freshly trained weights to its server after every update (``_ROLLOUT_REGISTRY[("hf", "async")]``).

It runs on the CPU platform and, as a debugging fallback, on a GPU: the model sits on the device
verl's platform names and is offloaded to host memory while the actor trains.

Concurrent text-only requests with the same sampling parameters are generated as one left-padded
batch (the agent loop fires all ``rollout.n`` samples of a step at once). Multimodal requests are
generated one by one: their processor features differ in shape per request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import ray
import torch
from verl.utils.config import omega_conf_to_dataclass
from verl.workers.config import HFModelConfig, RolloutConfig
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutMode, RolloutReplica, TokenOutput

from verl_avconfuse.integration.rollout import ROLLOUT_NAME

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "WARN"))

#: How long the batcher waits for more concurrent requests before generating.
BATCH_WINDOW_S = 0.005


@dataclass
class _Request:
    prompt_ids: list[int]
    sampling: dict[str, Any]
    max_tokens: int
    multi_modal: dict[str, Any] | None
    future: asyncio.Future
    arrival: float = field(default_factory=time.monotonic)

    def batch_key(self) -> tuple | None:
        """Requests with equal keys may share one ``generate`` call; multimodal ones never do."""
        if self.multi_modal:
            return None
        return tuple(sorted((k, v) for k, v in self.sampling.items() if k != "logprobs"))


class _AbortOnFlag:
    """A transformers StoppingCriteria that ends generation when the server is told to abort."""

    def __init__(self, flag: threading.Event):
        self.flag = flag

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.flag.is_set(), dtype=torch.bool, device=input_ids.device)


def _resolve_model_class(hf_config):
    """The class the checkpoint was saved with (``architectures[0]``), else AutoModelForCausalLM."""
    import transformers

    for arch in getattr(hf_config, "architectures", None) or []:
        cls = getattr(transformers, arch, None)
        if cls is not None:
            return cls
    return transformers.AutoModelForCausalLM


def placeholder_token_ids(processor) -> list[int]:
    """Media placeholder (and, for Omni, media delimiter) tokens the policy must never sample.

    A sampled ``<|AUDIO|>`` or ``<|vision_bos|>`` has no media behind it; the training forward would
    then scatter features into the wrong positions (or fail), and TMRoPE counts media blocks by
    these tokens. verl's vLLM server bans the image/video placeholders the same way.
    """
    if processor is None:
        return []
    if hasattr(processor, "audio_bos_token"):
        from dataclasses import astuple

        from verl_avconfuse.omni.vllm_contract import omni_token_ids

        return sorted(set(astuple(omni_token_ids(processor))))
    from verl.utils.tokenizer import get_processor_token_id

    ids = {get_processor_token_id(processor, modality) for modality in ("image", "video", "audio")}
    return sorted(token_id for token_id in ids if token_id is not None)


_EXPERT_WEIGHT = re.compile(r"^(?P<base>.+\.mlp\.experts)\.(?P<expert>\d+)\.(?P<proj>gate|up|down)_proj\.weight$")


def moe_expert_slot(name: str, params: dict[str, torch.Tensor]) -> tuple[str, tuple] | None:
    """Where a per-expert weight goes in transformers 5's fused MoE tensors, or None if it is not one.

    verl's FSDP engine streams MoE experts to the rollout under the checkpoint's per-expert names
    (``unfuse_moe_params``: ``...mlp.experts.{e}.gate_proj.weight``, what vLLM loads), while a transformers 5
    model holds ``experts.gate_up_proj`` (E, 2I, H), gate rows first, and ``experts.down_proj`` (E, H, I).
    Returns ``(fused parameter name, index into it)``.
    """
    match = _EXPERT_WEIGHT.match(name)
    if match is None:
        return None
    base, expert, proj = match["base"], int(match["expert"]), match["proj"]
    if proj == "down":
        fused = f"{base}.down_proj"
        return (fused, (expert,)) if fused in params else None
    fused = f"{base}.gate_up_proj"
    if fused not in params:
        return None
    half = params[fused].shape[1] // 2
    rows = slice(0, half) if proj == "gate" else slice(half, 2 * half)
    return fused, (expert, rows)


def moe_expert_slot_count(fused: str, params: dict[str, torch.Tensor]) -> int:
    """How many per-expert tensors fill ``fused``: gate and up per expert, or down per expert."""
    experts = params[fused].shape[0]
    return 2 * experts if fused.endswith(".gate_up_proj") else experts


def _torch_dtype(name: str) -> torch.dtype:
    from verl.utils.torch_dtypes import PrecisionType

    return PrecisionType.to_dtype(name)


class HFRolloutServer:
    """One HF transformers generation server (a Ray actor), token-in/token-out like vLLM's.

    Args mirror ``vLLMHttpServer`` so :class:`HFRolloutReplica` launches it the same way.
    """

    def __init__(
        self,
        config: RolloutConfig,
        model_config: HFModelConfig,
        rollout_mode: RolloutMode,
        workers: list,
        replica_rank: int,
        node_rank: int,
        gpus_per_node: int,
        nnodes: int,
        cuda_visible_devices: str,
    ):
        from verl.utils.device import get_device_name, get_visible_devices_keyword

        self.config: RolloutConfig = omega_conf_to_dataclass(config)
        self.model_config: HFModelConfig = omega_conf_to_dataclass(model_config, dataclass_type=HFModelConfig)
        self.rollout_mode = rollout_mode
        self.replica_rank = replica_rank
        self.node_rank = node_rank
        self.global_steps: int | None = None

        device_name = get_device_name()
        if device_name != "cpu" and cuda_visible_devices:
            os.environ[get_visible_devices_keyword()] = cuda_visible_devices
        self.device = torch.device(device_name if device_name == "cpu" else f"{device_name}:0")

        self.tokenizer = self.model_config.tokenizer
        self.processor = self.model_config.processor
        self.pad_token_id = self.tokenizer.pad_token_id
        if self.pad_token_id is None:
            self.pad_token_id = self.tokenizer.eos_token_id
        self.eos_token_ids = self._eos_token_ids()
        self.banned_token_ids = placeholder_token_ids(self.processor)

        model_cls = _resolve_model_class(self.model_config.hf_config)
        attn = self.model_config.override_config.get("attn_implementation")
        load_kwargs = {
            "dtype": _torch_dtype(self.config.dtype),
            "trust_remote_code": self.model_config.trust_remote_code,
        }
        if attn:
            load_kwargs["attn_implementation"] = attn
        self.model = model_cls.from_pretrained(self.model_config.local_path, **load_kwargs)
        self.model.eval().to(self.device)
        self._offloaded = False
        # remove_duplicate=False: the actor's state dict names tied weights (lm_head / embeddings) twice.
        self._params = dict(self.model.named_parameters(remove_duplicate=False))
        self._params.update(dict(self.model.named_buffers(remove_duplicate=False)))
        self._updated: set[str] = set()

        # Event-loop state is created lazily in the actor's loop (see _bind_loop).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._batcher: asyncio.Task | None = None
        self._resume: asyncio.Event | None = None
        self._abort = threading.Event()
        self._rejecting = False
        self._inflight = 0
        self._generate_lock = threading.Lock()
        logger.info("HF rollout server %s_%s ready: %s on %s", replica_rank, node_rank, model_cls.__name__, self.device)

    # ----------------------------------------------------------------------------------------------
    # lifecycle
    # ----------------------------------------------------------------------------------------------

    def _bind_loop(self) -> None:
        """(Re)create the queue, batcher and resume gate in the running event loop."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self._loop = loop
        self._queue = asyncio.Queue()
        self._batcher = loop.create_task(self._batch_loop())
        self._resume = asyncio.Event()
        if not self._abort.is_set():
            self._resume.set()

    def _eos_token_ids(self) -> list[int]:
        ids: list[int] = []
        generation_config = self.model_config.generation_config
        candidates = [getattr(generation_config, "eos_token_id", None), self.tokenizer.eos_token_id]
        for value in candidates:
            for token_id in value if isinstance(value, (list, tuple)) else [value]:
                if token_id is not None and token_id not in ids:
                    ids.append(int(token_id))
        return ids

    def get_server_address(self) -> tuple[str, str]:
        # verl keys replicas by address; this backend is reached through its actor handle only.
        return ray.util.get_node_ip_address().strip("[]"), f"hf-{self.replica_rank}-{self.node_rank}"

    async def wake_up(self, tags: list[str] | None = None):
        if self._offloaded and (tags is None or "weights" in tags):
            self.model.to(self.device)
            self._offloaded = False

    async def sleep(self):
        """Free accelerator memory for the actor's update (hybrid mode on a GPU)."""
        if not self.config.free_cache_engine or self.rollout_mode != RolloutMode.HYBRID:
            return
        if self.device.type != "cpu" and not self._offloaded:
            self.model.to("cpu")
            self._offloaded = True
            from verl.utils.device import get_torch_device

            get_torch_device().empty_cache()

    async def clear_kv_cache(self):
        # HF generate keeps no cache between requests.
        return None

    async def release_kv_cache(self):
        return None

    async def resume_kv_cache(self):
        return None

    async def start_profile(self, **kwargs):
        return None

    async def stop_profile(self):
        return None

    async def set_global_steps(self, global_steps: int):
        self.global_steps = global_steps

    async def wait_for_requests_to_drain(self):
        while self._inflight:
            await asyncio.sleep(0.01)

    async def abort_all_requests(self, reset_prefix_cache: bool = True, reject_request: bool = False) -> dict:
        """Stop in-flight generation (partial rollout): requests return what they have so far."""
        self._bind_loop()
        self._abort.set()
        self._rejecting = reject_request
        self._resume.clear()
        count = self._inflight
        await self.wait_for_requests_to_drain()
        return {"aborted_count": count, "request_ids": []}

    async def resume_generation(self):
        self._bind_loop()
        self._abort.clear()
        self._rejecting = False
        self._resume.set()

    async def abort_request(self, request_id: str) -> dict:
        return {"aborted": False, "request_id": request_id, "error": "per-request abort is not supported by hf"}

    # ----------------------------------------------------------------------------------------------
    # weights
    # ----------------------------------------------------------------------------------------------

    def begin_weight_update(self):
        self._updated = set()
        #: fused MoE parameter -> the per-expert weights received for it this update
        self._expert_slices: dict[str, set[str]] = {}

    def load_weights(self, named_tensors: list[tuple[str, torch.Tensor]]):
        unknown = []
        with torch.no_grad():
            for name, tensor in named_tensors:
                target = self._params.get(name)
                if target is None and (slot := moe_expert_slot(name, self._params)) is not None:
                    fused, index = slot
                    target = self._params[fused][index]
                    self._expert_slices.setdefault(fused, set()).add(name)
                    if len(self._expert_slices[fused]) == moe_expert_slot_count(fused, self._params):
                        self._updated.add(fused)
                    name = fused
                elif target is None:
                    unknown.append(name)
                    continue
                if target.shape != tensor.shape:
                    raise ValueError(
                        f"hf rollout: weight {name!r} has shape {tuple(tensor.shape)} from the actor but "
                        f"{tuple(target.shape)} in the rollout model"
                    )
                target.copy_(tensor.to(device=target.device, dtype=target.dtype))
                if name not in self._expert_slices:
                    self._updated.add(name)
        if unknown:
            raise KeyError(
                f"hf rollout: the actor sent {len(unknown)} weights the rollout model does not have, e.g. "
                f"{unknown[:5]}; actor and rollout must be the same architecture"
            )

    def finish_weight_update(self, global_steps: int | None = None) -> dict:
        """Check that every parameter was refreshed, then tag the new weight version."""
        refreshed = {self._params[name].data_ptr() for name in self._updated}
        # Compare storage, not names: tied weights share one tensor under two names.
        missing = sorted(
            name
            for name, param in self.model.named_parameters(remove_duplicate=False)
            if param.data_ptr() not in refreshed
        )
        if missing:
            raise RuntimeError(
                f"hf rollout: {len(missing)} parameters were not sent by the actor, e.g. {missing[:5]}; "
                "the rollout would generate with stale weights"
            )
        if global_steps is not None:
            self.global_steps = global_steps
        return {"updated": len(self._updated)}

    # ----------------------------------------------------------------------------------------------
    # generation
    # ----------------------------------------------------------------------------------------------

    def _max_tokens(self, prompt_len: int, sampling_params: dict[str, Any]) -> int:
        max_model_len = self.config.max_model_len or (self.config.prompt_length + self.config.response_length)
        room = max_model_len - prompt_len
        if room < 1:
            raise ValueError(
                f"Prompt length ({prompt_len}) leaves no room to generate within max_model_len ({max_model_len})"
            )
        if "max_tokens" in sampling_params:
            wanted = sampling_params.pop("max_tokens")
        elif "max_new_tokens" in sampling_params:
            wanted = sampling_params.pop("max_new_tokens")
        else:
            wanted = min(
                self.config.response_length, self.config.prompt_length + self.config.response_length - prompt_len
            )
        return max(1, min(int(wanted), room))

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
    ) -> TokenOutput:
        from verl.utils.tokenizer import normalize_token_ids

        self._bind_loop()
        await self._resume.wait()
        if self._rejecting:
            return TokenOutput(token_ids=[], stop_reason="aborted", extra_fields={"global_steps": self.global_steps})
        prompt_ids = normalize_token_ids(prompt_ids)
        sampling = dict(sampling_params)
        max_tokens = self._max_tokens(len(prompt_ids), sampling)
        multi_modal = None
        if image_data is not None or video_data is not None or audio_data is not None:
            multi_modal = {
                "images": image_data,
                "videos": video_data,
                "audios": audio_data,
                "mm_processor_kwargs": dict(mm_processor_kwargs or {}),
            }
        request = _Request(prompt_ids, sampling, max_tokens, multi_modal, self._loop.create_future())
        self._inflight += 1
        try:
            await self._queue.put(request)
            return await request.future
        finally:
            self._inflight -= 1

    async def _batch_loop(self):
        while True:
            first = await self._queue.get()
            await asyncio.sleep(BATCH_WINDOW_S)
            pending = [first]
            while not self._queue.empty():
                pending.append(self._queue.get_nowait())
            groups: dict[Any, list[_Request]] = {}
            singles: list[list[_Request]] = []
            for request in pending:
                key = request.batch_key()
                if key is None:
                    singles.append([request])
                else:
                    groups.setdefault(key, []).append(request)
            for batch in [*groups.values(), *singles]:
                try:
                    outputs = await asyncio.to_thread(self._generate_batch, batch)
                except Exception as error:  # the failing requests get the error, the server lives on
                    for request in batch:
                        if not request.future.done():
                            request.future.set_exception(error)
                    continue
                for request, output in zip(batch, outputs, strict=True):
                    if not request.future.done():
                        request.future.set_result(output)

    def _multimodal_inputs(self, request: _Request) -> dict[str, torch.Tensor]:
        """Processor features for one multimodal request, checked against the given prompt ids."""
        from verl.utils.tokenizer import build_multimodal_processor_inputs

        if self.processor is None:
            raise ValueError("hf rollout: multimodal request but the model has no processor")
        mm = request.multi_modal
        collapsed = self._collapse_placeholders(request.prompt_ids, mm["mm_processor_kwargs"])
        text = self.tokenizer.decode(collapsed, skip_special_tokens=False)
        inputs = build_multimodal_processor_inputs(
            self.processor,
            text=[text],
            images=mm["images"],
            videos=mm["videos"],
            audio=mm["audios"],
            mm_processor_kwargs=mm["mm_processor_kwargs"],
        )
        inputs = dict(inputs.convert_to_tensors("pt"))
        processed_ids = inputs["input_ids"][0].tolist()
        if processed_ids != request.prompt_ids:
            raise ValueError(
                "hf rollout: the processor expands the media into a different token sequence than the "
                f"prompt it was sent with ({len(processed_ids)} vs {len(request.prompt_ids)} tokens); "
                "rollout and dataset must use the same processor settings (fps, pixels, use_audio_in_video)"
            )
        return inputs

    def _collapse_placeholders(self, ids: list[int], mm_processor_kwargs: dict[str, Any]) -> list[int]:
        """One placeholder token per media item: the processor re-expands them."""
        from verl.utils.tokenizer import get_processor_token_id

        if hasattr(self.processor, "audio_bos_token"):
            # Qwen2.5/3-Omni: with audio in the video the expanded run interleaves video and audio
            # chunks inside one vision block, so repeated-token squeezing would be wrong.
            from verl_avconfuse.omni.vllm_contract import collapse_placeholders, omni_token_ids

            in_video = bool(mm_processor_kwargs.get("use_audio_in_video", False))
            return collapse_placeholders(ids, omni_token_ids(self.processor), in_video)
        placeholder_ids = {
            token_id
            for modality in ("image", "video", "audio")
            if (token_id := get_processor_token_id(self.processor, modality)) is not None
        }
        collapsed, previous = [], None
        for token_id in ids:
            if token_id in placeholder_ids and token_id == previous:
                continue
            collapsed.append(token_id)
            previous = token_id
        return collapsed

    def _generate_batch(self, batch: list[_Request]) -> list[TokenOutput]:
        with self._generate_lock, torch.inference_mode():
            if batch[0].multi_modal:
                assert len(batch) == 1
                features = self._multimodal_inputs(batch[0])
                inputs = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in features.items()}
                if "use_audio_in_video" in inputs:
                    # Recorded by OmniProcessor; the thinker's generate takes it as a plain bool.
                    inputs["use_audio_in_video"] = bool(torch.as_tensor(inputs["use_audio_in_video"]).any())
            else:
                width = max(len(r.prompt_ids) for r in batch)
                input_ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
                attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
                for i, request in enumerate(batch):
                    input_ids[i, width - len(request.prompt_ids) :] = torch.tensor(request.prompt_ids)
                    attention_mask[i, width - len(request.prompt_ids) :] = 1
                inputs = {"input_ids": input_ids.to(self.device), "attention_mask": attention_mask.to(self.device)}
            prompt_width = inputs["input_ids"].shape[1]
            generate_kwargs = self._generate_kwargs(batch[0].sampling, max(r.max_tokens for r in batch))
            output = self.model.generate(**inputs, **generate_kwargs)
            sequences = output.sequences[:, prompt_width:].cpu()
            logits = torch.stack(output.logits, dim=1).float().cpu() if output.logits else None
        temperature = float(batch[0].sampling.get("temperature", 1.0) or 1.0)
        aborted = self._abort.is_set()
        results = []
        for i, request in enumerate(batch):
            tokens = sequences[i, : request.max_tokens].tolist()
            stop_reason = "completed"
            for position, token_id in enumerate(tokens):
                if token_id in self.eos_token_ids and not request.sampling.get("ignore_eos", False):
                    tokens = tokens[: position + 1]
                    break
            else:
                if aborted and len(tokens) < request.max_tokens:
                    stop_reason = "aborted"
            log_probs = None
            if request.sampling.get("logprobs") and logits is not None:
                step_logits = logits[i, : len(tokens)] / temperature
                log_probs = (
                    torch.log_softmax(step_logits, dim=-1)
                    .gather(-1, torch.tensor(tokens)[:, None])
                    .squeeze(-1)
                    .tolist()
                )
            results.append(
                TokenOutput(
                    token_ids=tokens,
                    log_probs=log_probs,
                    stop_reason=stop_reason,
                    extra_fields={"global_steps": self.global_steps},
                )
            )
        return results

    def _generate_kwargs(self, sampling: dict[str, Any], max_new_tokens: int) -> dict[str, Any]:
        from transformers import StoppingCriteriaList

        temperature = float(sampling.get("temperature", 1.0) or 0.0)
        do_sample = temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": do_sample,
            "pad_token_id": self.pad_token_id,
            "eos_token_id": None if sampling.get("ignore_eos") else self.eos_token_ids,
            "repetition_penalty": float(sampling.get("repetition_penalty", 1.0) or 1.0),
            "return_dict_in_generate": True,
            "output_logits": bool(sampling.get("logprobs")),
            "stopping_criteria": StoppingCriteriaList([_AbortOnFlag(self._abort)]),
        }
        if self.banned_token_ids:
            kwargs["suppress_tokens"] = self.banned_token_ids
        if do_sample:
            top_k = int(sampling.get("top_k", -1) or -1)
            kwargs.update(temperature=temperature, top_p=float(sampling.get("top_p", 1.0) or 1.0), top_k=max(top_k, 0))
        if sampling.get("seed") is not None:
            torch.manual_seed(int(sampling["seed"]))
        return kwargs


class HFRolloutReplica(RolloutReplica):
    """Launches one :class:`HFRolloutServer` per replica; one replica per rollout rank."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.world_size != 1:
            raise ValueError(
                "rollout.name=hf serves a whole model per replica: set tensor_model_parallel_size, "
                f"data_parallel_size and pipeline_model_parallel_size to 1 (world size is {self.world_size})"
            )
        self.server_class = ray.remote(HFRolloutServer)

    def _server_name(self) -> str:
        role = "reward_" if self.is_reward_model else "teacher_" if self.is_teacher_model else ""
        return f"{ROLLOUT_NAME}_server_{role}{self.replica_rank}_0{self.name_suffix}"

    async def launch_servers(self):
        from verl.plugin.platform import get_platform
        from verl.utils.device import get_resource_name

        assert len(self.workers) == 1, f"hf replica expects one worker, got {len(self.workers)}"
        node_id, accelerator_ids = await self.workers[0].__ray_call__.remote(
            lambda self: (
                ray.get_runtime_context().get_node_id(),
                ray.get_runtime_context().get_accelerator_ids().get(get_resource_name(), []),
            )
        )
        env_vars = {
            **{var: "1" for var in get_platform().ray_noset_envvars()},
            **get_platform().rollout_env_vars(),
        }
        if os.environ.get("VERL_PLATFORM"):
            env_vars["VERL_PLATFORM"] = os.environ["VERL_PLATFORM"]
        server = self.server_class.options(
            scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                node_id=node_id, soft=False
            ),
            runtime_env={"env_vars": env_vars},
            name=self._server_name(),
            max_concurrency=self.max_concurrency,
        ).remote(
            config=self.config,
            model_config=self.model_config,
            rollout_mode=self.rollout_mode,
            workers=self.workers,
            replica_rank=self.replica_rank,
            node_rank=0,
            gpus_per_node=self.gpus_per_replica_node,
            nnodes=1,
            cuda_visible_devices=",".join(str(i) for i in accelerator_ids),
        )
        self.servers = [server]
        address, port = await server.get_server_address.remote()
        self._server_handle = server
        self._server_address = f"{address}:{port}"


class HFServerAdapter(BaseRollout):
    """Lives in each hybrid actor worker; pushes the actor's weights to its :class:`HFRolloutServer`."""

    def __init__(self, config: RolloutConfig, model_config: HFModelConfig, device_mesh, replica_rank: int = -1):
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ.get("RANK", 0))
        self.replica_rank = rank if replica_rank == -1 else replica_rank
        self.server_handle = None
        self.bucket_bytes = int(self.config.checkpoint_engine.update_weights_bucket_megabytes) << 20

    def _server(self):
        if self.server_handle is None:
            self.server_handle = ray.get_actor(f"{ROLLOUT_NAME}_server_{self.replica_rank}_0")
        return self.server_handle

    async def resume(self, tags: list[str]):
        if self.config.free_cache_engine:
            await self._server().wake_up.remote(tags=tags)

    async def release(self):
        if self.config.free_cache_engine:
            await self._server().sleep.remote()

    @torch.no_grad()
    async def update_weights(
        self, weights, global_steps: int | None = None, wire_format: str = "named_tensors", **kwargs
    ):
        from verl.workers.rollout.utils import ensure_async_iterator

        if wire_format != "named_tensors":
            raise NotImplementedError(f"hf rollout takes full tensors only, got wire_format={wire_format!r}")
        if kwargs.get("peft_config") is not None:
            raise NotImplementedError(
                "hf rollout loads full weights: set actor_rollout_ref.model.lora.merge=True to sync LoRA models"
            )
        server = self._server()
        await server.begin_weight_update.remote()
        bucket, size = [], 0
        # Every rank must drain the generator: FSDP's full_tensor() is a collective.
        async for name, tensor in ensure_async_iterator(weights):
            host = tensor.detach().to("cpu").contiguous()
            bucket.append((name, host))
            size += host.numel() * host.element_size()
            if size >= self.bucket_bytes:
                await server.load_weights.remote(bucket)
                bucket, size = [], 0
        if bucket:
            await server.load_weights.remote(bucket)
        await server.finish_weight_update.remote(global_steps)
