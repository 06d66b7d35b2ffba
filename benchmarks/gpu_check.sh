#!/usr/bin/env bash
# The GPU run of benchmarks/bench.py: the same three parts as on a CPU, on one CUDA GPU.
#
#   bash benchmarks/gpu_check.sh [extract] [train] [growth]      # no argument: all three
#
# Writes results/bench/<part>-<gpu>.json (e.g. extract-h100-80gb-hbm3.json) and prints each table.
#   extract  ViT-B/16 (random weights) at 224 px from COCO-sized JPEG files decoded on the GPU (nvJPEG): img/s and
#            GFLOP per image for each masking reading (pixel, attention, token_drop) in fp16 and bf16, each against
#            the one-image loop in the same process; then one setting changed at a time (workers, attention kernel,
#            torch.compile, batch size, PIL decoding). Goal: attention >= 3,000 img/s and >= 15x the loop
#            on one H100/H200 ("goal" in the JSON says whether it is met).
#   train    one whole epoch on an 82,081 x 196 x 512 fp16 cache (16.7 GB written under $CACHE_DIR, removed after;
#            needs ~18.5 GB free), its pages evicted first; peak RSS.
#   growth   extraction and epoch time at 1x, 2x, 4x images and at 224 vs 448 px.
# A few minutes per part on an H100. Settings (environment): IMAGES (8192), BASELINE (256), BATCH (256),
# WORKERS (CPUs - 1, at most 16), SETTINGS (1; 0 skips the sweep), TRAIN_BATCHES (empty: the whole epoch),
# CACHE_DIR (the temp folder).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'gpu_check.sh: no CUDA GPU visible')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
export TQDM_DISABLE=1 PYTHONWARNINGS=ignore
WORKERS=${WORKERS:-$(python3 -c "import os; print(max(1, min(16, len(os.sched_getaffinity(0)) - 1)))")}
BATCH=${BATCH:-256}
for part in ${*:-extract train growth}; do
  start=$SECONDS
  case $part in
    extract)
      python3 benchmarks/bench.py extract --device cuda --images "${IMAGES:-8192}" --baseline "${BASELINE:-256}" \
        --batch-size "$BATCH" --workers "$WORKERS" --decode torchvision --settings-images 2048 \
        $([ "${SETTINGS:-1}" = 0 ] && echo --no-settings) ;;
    train)
      python3 benchmarks/bench.py train --device cuda ${TRAIN_BATCHES:+--batches "$TRAIN_BATCHES"} \
        ${CACHE_DIR:+--cache-dir "$CACHE_DIR"} ;;
    growth)
      python3 benchmarks/bench.py growth --device cuda --images 1024 --train-images 8192 --batch-size "$BATCH" \
        --workers "$WORKERS" ;;
    *) echo "gpu_check.sh: unknown part '$part': choose extract, train, growth" >&2; exit 2 ;;
  esac
  echo "[$part: $((SECONDS - start)) s]"
done
ls -l results/bench/
