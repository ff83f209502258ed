#!/usr/bin/env bash
# RL-CoMM stage 3 (Ans-CO, recipes/avconfuse_ansco.yaml) on top of stage 2: the Step-RR policy
# gradient plus the answer-confidence loss, starting from the stage-2 checkpoint.
#   STAGE2_CKPT   a stage-2 step folder (OUT_DIR/global_step_N of stage2_step_rr.sh)
#   VIDEO_DIR, EMBEDDING_MODEL, NGPUS, NNODES, GRAD_ACCUM as in stage 2; STAGE2_DATA its data folder
#   (train.ref.parquet already holds the reference a-thinks)
set -euo pipefail

: "${STAGE2_CKPT:?set STAGE2_CKPT to a stage-2 global_step_N folder}" "${VIDEO_DIR:?}"
EMBEDDING_MODEL=${EMBEDDING_MODEL:-Qwen/Qwen3-Embedding-0.6B}
NGPUS=${NGPUS:-8}
NNODES=${NNODES:-1}
OUT_DIR=${OUT_DIR:-checkpoints/rl_comm_ans_co}
GRAD_ACCUM=${GRAD_ACCUM:-8}
STAGE2_DATA=${STAGE2_DATA:-checkpoints/rl_comm_step_rr/data}
MODEL_PATH=${MODEL_PATH:-$OUT_DIR/stage2_hf}

# The stage-2 actor shards as one HF thinker directory.
if [ ! -f "$MODEL_PATH/config.json" ]; then
    python -m verl.model_merger merge --backend fsdp --local_dir "$STAGE2_CKPT/actor" --target_dir "$MODEL_PATH"
fi

PROMPTS_PER_STEP=$((GRAD_ACCUM * NGPUS * NNODES))

python -m verl.trainer.main_ppo \
    +recipe=avconfuse \
    +recipe=avconfuse_ansco \
    data.train_files="$STAGE2_DATA/train.ref.parquet" \
    data.val_files="$STAGE2_DATA/val.parquet" \
    data.media.root="$VIDEO_DIR" \
    data.max_prompt_length=6144 \
    `# release: 256 new tokens` \
    data.max_response_length=256 \
    `# one rollout batch = one optimizer step; grad accumulation 8 per GPU` \
    data.train_batch_size="$PROMPTS_PER_STEP" \
    actor_rollout_ref.actor.ppo_mini_batch_size="$PROMPTS_PER_STEP" \
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2 \
    `# release: lr 1e-6, 3% warm-up, max grad norm 0.3` \
    actor_rollout_ref.actor.optim.lr=1e-6 \
    actor_rollout_ref.actor.optim.lr_warmup_steps_ratio=0.03 \
    actor_rollout_ref.actor.grad_clip=0.3 \
    `# release: group size 6, temperature 0.9` \
    actor_rollout_ref.rollout.n=6 \
    actor_rollout_ref.rollout.temperature=0.9 \
    `# release: bf16, flash-attn 2` \
    actor_rollout_ref.rollout.dtype=bfloat16 \
    ++actor_rollout_ref.model.override_config.attn_implementation=flash_attention_2 \
    actor_rollout_ref.model.path="$MODEL_PATH" \
    actor_rollout_ref.model.enable_gradient_checkpointing=true \
    actor_rollout_ref.rollout.name=vllm_omni \
    actor_rollout_ref.rollout.tensor_model_parallel_size=1 \
    actor_rollout_ref.rollout.gpu_memory_utilization=0.5 \
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4 \
    `# references come from extra_info (precomputed in stage 2): no reference worker needs a GPU` \
    avconfuse.reference.enable=false \
    avconfuse.similarity.model="$EMBEDDING_MODEL" \
    trainer.total_epochs=${EPOCHS:-1} \
    trainer.nnodes="$NNODES" \
    trainer.n_gpus_per_node="$NGPUS" \
    trainer.default_local_dir="$OUT_DIR" \
    trainer.save_freq=20 \
    trainer.test_freq=20 \
    trainer.logger='[console]' \
    "$@"
