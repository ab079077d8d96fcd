#!/usr/bin/env bash
# SDPO vs GRPO on the math environment, two seeds, from a shared warm start.
# Scale --steps / --batch-size up on a GPU; the report states only what the numbers show.
set -euo pipefail
sdpo compare --env sdpo/Math-v0 --model "${MODEL:-smollm2-135m}" --warm-start \
  --algorithms sdpo,grpo --seeds 0,1 --steps "${STEPS:-20}" --batch-size 8 --num-generations 4 \
  --max-completion-length 96 --eval-every 5 --eval-tasks 32 --eval-samples 4 \
  --output-dir "${OUT:-runs/compare}"
echo "report: ${OUT:-runs/compare}/report.md"
