#!/usr/bin/env bash
# The GPU check of docs/performance.md (GPU section): fp16/bf16 against fp32 on the golden cases, peak VRAM and
# step time against the plain UNet (v2 full 768², xlv2 background 1024², a 1024x1600 ColorFlow page), under
# current ComfyUI with dynamic VRAM on and off. Sized for 8 minutes on one GPU (not yet timed on one); needs
# scripts/setup.sh first.
#
#   bash scripts/gpu_check.sh [--dry-run] [--out DIR] [--workdir DIR] [--rounds N]
#
# --dry-run: every code path on the CPU with the tiny golden models (tests/test_gpu_check.py runs it).
# Writes DIR/results.json (machine-readable) and DIR/performance-lines.md (the lines to paste into
# docs/performance.md); DIR defaults to .host/gpu-check. Exit 1 when a part failed (its error is in the results).
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
exec "$REPO/.venv/bin/python" "$REPO/scripts/gpu_check.py" "$@"
