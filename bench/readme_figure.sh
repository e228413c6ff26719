#!/usr/bin/env bash
# The README figure: coverage vs width from the report of the N-Queens 8x8 quality runs (GRAM vs deterministic).
#   bash bench/readme_figure.sh [RUNS]   RUNS: a `bench/quality.py --out` folder; if it holds no runs yet, the
#   benchmark behind the README table runs first (45 CPU minutes per model, the two models in parallel).
set -euo pipefail
out=${1:-runs/readme-nqueens-8}
if [ ! -d "$out/gram" ]; then
  python bench/quality.py --task nqueens-8 --preset cpu --cpu-minutes 45 --jobs 2 --set optim.ema_decay=0.998 \
    --set train.eval_every=250 --depths 4,16 --temperatures 1,0.5,0.25 --out "$out"
fi
gram report "$out/gram" "$out/deterministic" --out "$out/report.html"
cp "$out/report_figures/coverage_vs_width.png" docs/figures/coverage_vs_width.png
