#!/usr/bin/env bash
# RL-CoMM stage 2 (Step-RR) with the Qwen3-Omni (MoE) thinker as the policy, LoRA r 32 on its attention
# (recipes/avconfuse.yaml + recipes/policy/qwen3_omni.yaml; docs/qwen3_omni.md). Beyond the paper (Qwen2.5-Omni-3B).
#   MODEL_PATH       a full Qwen3-Omni checkpoint or its thinker (e.g. Qwen3-Omni-30B-A3B-Instruct): a full
#                    one is reduced to its thinker once (${avconfuse_thinker:...}, cached)
#   DATA_DIR, VIDEO_DIR, REFERENCE_MODEL, EMBEDDING_MODEL, NGPUS, NNODES, GRAD_ACCUM: as stage2_step_rr.sh
#   LOSS             grpo (default: the paper's token-level clipped objective, seq-mean-token-mean) or gspo
#                    (sequence-level importance ratio, as verl-omni trains this model; clip 3e-4 / 4e-4)
#   LORA_RANK        32 (default; 0 trains the full thinker: 30 B parameters, FSDP over every GPU)
#   ROLLOUT          hf (default; HF generate, token-exact with the actor, slow) -- vLLM for Qwen3-Omni is
#                    not wired yet (docs/qwen3_omni.md, "vLLM")
# References are precomputed once (no reference worker during training). Extra arguments are Hydra overrides.
set -euo pipefail

: "${MODEL_PATH:?}" "${DATA_DIR:?}" "${VIDEO_DIR:?}" "${REFERENCE_MODEL:?}"
EMBEDDING_MODEL=${EMBEDDING_MODEL:-Qwen/Qwen3-Embedding-0.6B}
OUT_DIR=${OUT_DIR:-checkpoints/rl_comm_qwen3_omni}
DATA=${OUT_DIR}/data
LOSS=${LOSS:-grpo}
LORA_RANK=${LORA_RANK:-32}
ROLLOUT=${ROLLOUT:-hf}
source "$(dirname "$0")/_rl_common.sh"

case "$LOSS" in
    grpo) LOSS_OVERRIDES=() ;;
    # GSPO (arXiv 2507.18071): sequence-level ratio; its clip range is ~3 orders smaller than GRPO's.
    gspo) LOSS_OVERRIDES=(
        actor_rollout_ref.actor.policy_loss.loss_mode=gspo
        actor_rollout_ref.actor.clip_ratio_low=0.0003
        actor_rollout_ref.actor.clip_ratio_high=0.0004
    ) ;;
    *) echo "stage2_qwen3_omni.sh: LOSS=$LOSS: expected grpo or gspo" >&2; exit 2 ;;
esac

prepare_music_avqa "$DATA"
avconfuse reference precompute --data "$DATA/train.parquet" --out "$DATA/train.ref.parquet" \
    --model "$REFERENCE_MODEL" --backend vllm --media-root "$VIDEO_DIR" --batch-size 32

python -m verl.trainer.main_ppo \
    +recipe=avconfuse \
    +policy=qwen3_omni \
    data.train_files="$DATA/train.ref.parquet" \
    data.val_files="$DATA/val.parquet" \
    "${RL_OVERRIDES[@]}" \
    actor_rollout_ref.model.path="\${avconfuse_thinker:$MODEL_PATH}" \
    actor_rollout_ref.model.lora_rank="$LORA_RANK" \
    actor_rollout_ref.rollout.name="$ROLLOUT" \
    "${LOSS_OVERRIDES[@]}" \
    avconfuse.reference.placement=none \
    avconfuse.similarity.model="$EMBEDDING_MODEL" \
    trainer.total_epochs=3 \
    "$@"
