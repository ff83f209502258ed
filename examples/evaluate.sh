#!/usr/bin/env bash
# Evaluate a thinker checkpoint on Music-AVQA, AVQA and AVHBench (docs/evaluation.md).
#   MODEL_PATH   thinker directory (or BACKEND=openai:http://HOST:PORT/v1#NAME for a served model)
#   MUSIC_AVQA_JSON, MUSIC_AVQA_VIDEOS   avqa-test.json and its clips
#   AVQA_JSON, AVQA_VIDEOS               val_qa.json and its clips
#   AVHBENCH_DIR                         AVHBench_v0 (json/ and video/)
#   OUT_DIR      results: TASK.results.json, TASK.md, TASK.predictions.jsonl (re-running resumes)
# Benchmarks whose variables are unset are skipped. Extra arguments go to every `avconfuse eval`.
set -euo pipefail

BACKEND=${BACKEND:-hf:${MODEL_PATH:?set MODEL_PATH or BACKEND}}
OUT_DIR=${OUT_DIR:-eval/$(basename "${MODEL_PATH:-served}")}
# Inputs as in training (recipes/avconfuse.yaml): fps 2, <= 32 frames of <= 100352 pixels.
MEDIA=(--fps 2 --max-frames 32 --max-pixels 100352 --dtype bfloat16 --attn-implementation flash_attention_2)

if [ -n "${MUSIC_AVQA_JSON:-}" ]; then
    avconfuse eval music-avqa --data "$MUSIC_AVQA_JSON" --video-dir "$MUSIC_AVQA_VIDEOS" \
        --backend "$BACKEND" --out "$OUT_DIR" "${MEDIA[@]}" "$@"
fi
if [ -n "${AVQA_JSON:-}" ]; then
    avconfuse eval avqa --data "$AVQA_JSON" --video-dir "$AVQA_VIDEOS" \
        --backend "$BACKEND" --out "$OUT_DIR" "${MEDIA[@]}" "$@"
fi
if [ -n "${AVHBENCH_DIR:-}" ]; then
    avconfuse eval avhbench --data "$AVHBENCH_DIR/json" --video-dir "$AVHBENCH_DIR/video" \
        --backend "$BACKEND" --out "$OUT_DIR" "${MEDIA[@]}" "$@"
fi
