"""The vLLM worker extension of ``rollout.name=vllm_omni``: verl's, with weight sync on vLLM's CPU build.

verl names the class vLLM mixes into its workers (``vLLMHttpServer._get_worker_extension_cls``, verl 0.9.1
``workers/rollout/vllm_rollout/vllm_async_server.py``); :class:`OmniVLLMServer` names this one. On a GPU it
is verl's ``vLLMColocateWorkerExtension`` unchanged. On vLLM's CPU build one thing differs:

vLLM's CPU linear layers repack each weight for oneDNN once it is loaded and leave an empty parameter behind
(``vllm/model_executor/layers/utils.py: dispatch_cpu_unquantized_gemm``, called from
``UnquantizedLinearMethod.process_weights_after_loading``), and the vision tower's plain parameters carry
no ``weight_loader``. verl's sync calls ``model.load_weights`` on the live model, which then fails
("Attempted to load weight (torch.Size([64, 128])) into parameter (torch.Size([0]))", and
"'Parameter' object has no attribute 'weight_loader'" in ``qwen2_5_vl.py``). vLLM's own answer is its
layerwise reload (``vllm/model_executor/model_loader/reload/layerwise.py``, what
``GPUModelRunner.reload_weights`` does): put each layer back in checkpoint form, buffer the incoming
tensors until a layer is complete, then load, process and copy into the kernel tensors. The sync below is
verl's transport (``BucketedWeightReceiver``, shared memory over ZMQ: no CUDA IPC needed) and verl's
``_update_weights``, inside that reload, followed by what vLLM's ``reload_weights`` and verl's sleep do after
new weights: the encoder cache is cleared (its audio/video features came from the old towers).
"""

from __future__ import annotations

import logging

from verl.workers.rollout.vllm_rollout.utils import vLLMColocateWorkerExtension

logger = logging.getLogger(__name__)

#: The fully qualified name verl passes to vLLM as ``worker_extension_cls``.
WORKER_EXTENSION = f"{__name__}.OmniVLLMWorkerExtension"


def _on_vllm_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


class OmniVLLMWorkerExtension(vLLMColocateWorkerExtension):
    """verl's colocated worker extension; full-weight syncs on vLLM's CPU build go through layerwise reload."""

    def update_weights_from_ipc(self, peft_config: dict = None, base_sync_done=False, use_shm: bool = False):
        adapter_only = bool(peft_config) and base_sync_done
        if not _on_vllm_cpu() or adapter_only or self._is_qat_model or self._is_modelopt_qat:
            return super().update_weights_from_ipc(
                peft_config=peft_config, base_sync_done=base_sync_done, use_shm=use_shm
            )
        return self._update_weights_by_layerwise_reload(peft_config, base_sync_done, use_shm)

    def _update_weights_by_layerwise_reload(self, peft_config, base_sync_done, use_shm: bool) -> None:
        import time

        import torch
        from verl.workers.rollout.vllm_rollout.bucketed_weight_transfer import BucketedWeightReceiver
        from vllm.model_executor.model_loader.reload import (
            finalize_layerwise_reload,
            initialize_layerwise_reload,
        )

        if self.device is None:
            self.device = torch.device("cpu")
        start = time.perf_counter()
        model = self.model_runner.model
        model_config = self.model_runner.vllm_config.model_config
        received = 0

        def on_bucket_received(weights, is_last: bool) -> None:
            nonlocal received
            # The reload buffers a layer's tensors until the layer is complete, past this callback, while
            # the receiver reuses its bucket buffer for the next bucket: copy them out first.
            weights = [(name, tensor.clone()) for name, tensor in weights]
            received += len(weights)
            self._update_weights(weights, peft_config=peft_config, base_sync_done=base_sync_done)

        initialize_layerwise_reload(model)
        BucketedWeightReceiver(zmq_handle=self._get_zmq_handle(), device=self.device, use_shm=use_shm).receive_weights(
            on_bucket_received=on_bucket_received
        )
        finalize_layerwise_reload(model, model_config)
        # Encoder outputs cached for clips seen before were computed with the old audio/vision towers. verl
        # clears this cache when it puts the engine to sleep (vllm_async_server._sleep_hybrid), which never
        # happens on the CPU platform (no sleep mode); vLLM's own reload_weights clears it too.
        self.model_runner.reset_encoder_cache()
        logger.info("vllm_omni: %d tensors synced by layerwise reload in %.2f s", received, time.perf_counter() - start)
