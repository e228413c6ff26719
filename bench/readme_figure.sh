#!/usr/bin/env bash
# The README figure: train the demo runs, render their report, keep the coverage-vs-width figure.
set -euo pipefail
out=${1:-runs/readme}
gram demo --out "$out" --quiet
gram report "$out/gram" "$out/deterministic" --out "$out/report.html"
cp "$out/report_figures/coverage_vs_width.png" docs/figures/coverage_vs_width.png
