#!/usr/bin/env bash
# RL-CoMM stage 2 (Step-RR GRPO) for Qwen2.5-Omni-3B on one node (recipes/avconfuse.yaml).
#   MODEL_PATH       thinker directory (after warm-up SFT: OUT_DIR/global_step_N/huggingface)
#   DATA_DIR         Music-AVQA json folder (avqa-train.json, avqa-val.json); VIDEO_DIR its clips
#   REFERENCE_MODEL  the reference audio LM (paper: Qwen2-Audio-7B-Instruct)
#   EMBEDDING_MODEL  the similarity model (paper: Qwen3-Embedding-0.6B)
# The references are generated once before training (resumable cache), so no reference worker
# competes with the rollout for GPU memory. Extra arguments are Hydra overrides.
set -euo pipefail

: "${MODEL_PATH:?}" "${DATA_DIR:?}" "${VIDEO_DIR:?}" "${REFERENCE_MODEL:?}"
EMBEDDING_MODEL=${EMBEDDING_MODEL:-Qwen/Qwen3-Embedding-0.6B}
NGPUS=${NGPUS:-8}
NNODES=${NNODES:-1}
OUT_DIR=${OUT_DIR:-checkpoints/rl_comm_step_rr}
GRAD_ACCUM=${GRAD_ACCUM:-8}
DATA=${OUT_DIR}/data
mkdir -p "$DATA"

# Release: the first 1,000 Music-AVQA training questions.
python data_preprocess/music_avqa.py --input "$DATA_DIR/avqa-train.json" --video-dir "$VIDEO_DIR" \
    --out "$DATA/train.parquet" --first 1000 --relative-paths --skip-bad
python data_preprocess/music_avqa.py --input "$DATA_DIR/avqa-val.json" --video-dir "$VIDEO_DIR" \
    --out "$DATA/val.parquet" --subset 500 --seed 0 --relative-paths --skip-bad
# extra_info.reference_a_think for every question (temperature 0.5, top-p 0.95, sampled once).
avconfuse reference precompute --data "$DATA/train.parquet" --out "$DATA/train.ref.parquet" \
    --model "$REFERENCE_MODEL" --backend vllm --media-root "$VIDEO_DIR" --batch-size 32

# One optimizer step per GRAD_ACCUM groups of 6 per GPU (the release: grad accumulation 8).
PROMPTS_PER_STEP=$((GRAD_ACCUM * NGPUS * NNODES))

python -m verl.trainer.main_ppo \
    +recipe=avconfuse \
    `# data: video + soundtrack, paths relative to the clip folder` \
    data.train_files="$DATA/train.ref.parquet" \
    data.val_files="$DATA/val.parquet" \
    data.media.root="$VIDEO_DIR" \
    data.max_prompt_length=6144 \
    `# release: 256 new tokens (also in the recipe)` \
    data.max_response_length=256 \
    `# one rollout batch = one optimizer step (on-policy, as TRL's GRPO)` \
    data.train_batch_size="$PROMPTS_PER_STEP" \
    `# release: grad accumulation 8 -> each GPU accumulates 8 groups per update` \
    actor_rollout_ref.actor.ppo_mini_batch_size="$PROMPTS_PER_STEP" \
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2 \
    `# release: lr 1e-6 constant, 3% warm-up; max grad norm 0.3 (also in the recipe)` \
    actor_rollout_ref.actor.optim.lr=1e-6 \
    actor_rollout_ref.actor.optim.lr_warmup_steps_ratio=0.03 \
    actor_rollout_ref.actor.grad_clip=0.3 \
    `# release: group size 6, temperature 0.9 (also in the recipe)` \
    actor_rollout_ref.rollout.n=6 \
    actor_rollout_ref.rollout.temperature=0.9 \
    `# release: bf16, flash-attn 2` \
    actor_rollout_ref.rollout.dtype=bfloat16 \
    ++actor_rollout_ref.model.override_config.attn_implementation=flash_attention_2 \
    actor_rollout_ref.model.path="$MODEL_PATH" \
    actor_rollout_ref.model.enable_gradient_checkpointing=true \
    `# the Omni thinker on vLLM (verl_avconfuse/omni/vllm_server.py)` \
    actor_rollout_ref.rollout.name=vllm_omni \
    actor_rollout_ref.rollout.tensor_model_parallel_size=1 \
    actor_rollout_ref.rollout.gpu_memory_utilization=0.5 \
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4 \
    `# references come from extra_info (precomputed above): no reference worker needs a GPU` \
    avconfuse.reference.enable=false \
    avconfuse.similarity.model="$EMBEDDING_MODEL" \
    `# release: 3 epochs` \
    trainer.total_epochs=3 \
    trainer.nnodes="$NNODES" \
    trainer.n_gpus_per_node="$NGPUS" \
    trainer.default_local_dir="$OUT_DIR" \
    trainer.save_freq=20 \
    trainer.test_freq=20 \
    trainer.logger='[console]' \
    "$@"
