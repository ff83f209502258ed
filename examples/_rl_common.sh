# Sourced by the RL stage scripts (stage2_step_rr.sh, grpo_baseline.sh, stage3_ans_co.sh): the release's
# hyperparameters in verl's options, shared so the paper's rows differ only where the scripts say.
# The sourcing script sets MODEL_PATH, VIDEO_DIR and OUT_DIR first.
#   NGPUS (8), NNODES (1), GRAD_ACCUM (8): one optimizer step per GRAD_ACCUM groups of 6 per actor GPU.
#   ACTOR_GPUS (NGPUS): the GPUs per node verl's actor/rollout pool gets (fewer when the reference
#   audio LM has GPUs of its own; see docs/deployment.md).

NGPUS=${NGPUS:-8}
NNODES=${NNODES:-1}
ACTOR_GPUS=${ACTOR_GPUS:-$NGPUS}
GRAD_ACCUM=${GRAD_ACCUM:-8}
PROMPTS_PER_STEP=$((GRAD_ACCUM * ACTOR_GPUS * NNODES))

# Music-AVQA as the release trains on it (the first 1,000 training questions) and a 500-question
# validation subset, into DIR/train.parquet and DIR/val.parquet.
prepare_music_avqa() {
    local out=$1
    mkdir -p "$out"
    python data_preprocess/music_avqa.py --input "$DATA_DIR/avqa-train.json" --video-dir "$VIDEO_DIR" \
        --out "$out/train.parquet" --first 1000 --relative-paths --skip-bad
    python data_preprocess/music_avqa.py --input "$DATA_DIR/avqa-val.json" --video-dir "$VIDEO_DIR" \
        --out "$out/val.parquet" --subset 500 --seed 0 --relative-paths --skip-bad
}

RL_OVERRIDES=(
    # data: video + soundtrack, paths relative to the clip folder
    data.media.root="$VIDEO_DIR"
    data.max_prompt_length=6144
    # release: 256 new tokens (also in the recipe)
    data.max_response_length=256
    # one rollout batch = one optimizer step (on-policy, as TRL's GRPO)
    data.train_batch_size="$PROMPTS_PER_STEP"
    # release: grad accumulation 8 -> each GPU accumulates 8 groups per update
    actor_rollout_ref.actor.ppo_mini_batch_size="$PROMPTS_PER_STEP"
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2
    # release: lr 1e-6 constant, 3% warm-up; max grad norm 0.3 (also in the recipe)
    actor_rollout_ref.actor.optim.lr=1e-6
    actor_rollout_ref.actor.optim.lr_warmup_steps_ratio=0.03
    actor_rollout_ref.actor.grad_clip=0.3
    # release: group size 6, temperature 0.9 (also in the recipe)
    actor_rollout_ref.rollout.n=6
    actor_rollout_ref.rollout.temperature=0.9
    # release: bf16, flash-attn 2
    actor_rollout_ref.rollout.dtype=bfloat16
    ++actor_rollout_ref.model.override_config.attn_implementation=flash_attention_2
    actor_rollout_ref.model.path="$MODEL_PATH"
    actor_rollout_ref.model.enable_gradient_checkpointing=true
    # the Omni thinker on vLLM (verl_avconfuse/integration/rollout/vllm_omni.py)
    actor_rollout_ref.rollout.name=vllm_omni
    actor_rollout_ref.rollout.tensor_model_parallel_size=1
    actor_rollout_ref.rollout.gpu_memory_utilization=0.5
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4
    trainer.nnodes="$NNODES"
    trainer.n_gpus_per_node="$ACTOR_GPUS"
    trainer.default_local_dir="$OUT_DIR"
    trainer.save_freq=20
    trainer.test_freq=20
    trainer.logger='[console]'
)
