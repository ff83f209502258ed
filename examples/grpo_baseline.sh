#!/usr/bin/env bash
# The paper's "+GRPO" row: stage 2's setup with the reward reduced to format + accuracy
# (recipes/grpo_baseline.yaml: no reference audio LM, no ARR/AVC). Same data and hyperparameters as
# examples/stage2_step_rr.sh, so the two runs differ only in the reward.
#   MODEL_PATH, DATA_DIR, VIDEO_DIR, NGPUS, NNODES, OUT_DIR, GRAD_ACCUM as in stage2_step_rr.sh
set -euo pipefail

: "${MODEL_PATH:?}" "${DATA_DIR:?}" "${VIDEO_DIR:?}"
NGPUS=${NGPUS:-8}
NNODES=${NNODES:-1}
OUT_DIR=${OUT_DIR:-checkpoints/grpo_baseline}
GRAD_ACCUM=${GRAD_ACCUM:-8}
DATA=${OUT_DIR}/data
mkdir -p "$DATA"

python data_preprocess/music_avqa.py --input "$DATA_DIR/avqa-train.json" --video-dir "$VIDEO_DIR" \
    --out "$DATA/train.parquet" --first 1000 --relative-paths --skip-bad
python data_preprocess/music_avqa.py --input "$DATA_DIR/avqa-val.json" --video-dir "$VIDEO_DIR" \
    --out "$DATA/val.parquet" --subset 500 --seed 0 --relative-paths --skip-bad

PROMPTS_PER_STEP=$((GRAD_ACCUM * NGPUS * NNODES))

python -m verl.trainer.main_ppo \
    +recipe=avconfuse \
    +recipe=grpo_baseline \
    data.train_files="$DATA/train.parquet" \
    data.val_files="$DATA/val.parquet" \
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
    `# release: 3 epochs` \
    trainer.total_epochs=3 \
    trainer.nnodes="$NNODES" \
    trainer.n_gpus_per_node="$NGPUS" \
    trainer.default_local_dir="$OUT_DIR" \
    trainer.save_freq=20 \
    trainer.test_freq=20 \
    trainer.logger='[console]' \
    "$@"
