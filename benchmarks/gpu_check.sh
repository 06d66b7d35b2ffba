#!/usr/bin/env bash
# GPU benchmarks of bacgcn on a machine with one CUDA GPU. Each part takes a few minutes on an H100; run them
# in one go or one per call (e.g. when device time comes in slices):
#
#   bash benchmarks/gpu_check.sh [extract] [train] [growth]      # no argument: all three; writes <repo>/results/bench/
#
# Writes, labelled with the GPU's name (e.g. results/bench/extract-h100-80gb-hbm3.json):
#   extract  extract-<gpu>.json: ViT-B/16 (random weights), 224 px, 640x480 JPEG files on disk, the full pass
#            (plain + g^H + g^Hc + dense patches): bacgcn.shard.extract_fast (bf16 autocast, nvJPEG decoding, pinned uint8
#            batches, channels-last, writer thread) against one image per forward in the same process; the compute
#            floor = FLOPs per image / measured bf16 matmul rate; each stage alone (decode, transfer, compute, write);
#            variants (torch.compile, PIL decoding, no channels-last, no contiguous-attention fix).
#   train    train-<gpu>.json: full epoch on an 82,081 x 196 x 512 fp16 cache (~16.8 GB, generated in $CACHE_DIR; needs
#            ~18 GB free disk) and peak RSS, with the pread reader and with np.memmap.
#   growth   growth-<gpu>.json: extraction and epoch time at 1x, 2x, 4x images and at 224 vs 448 px (~18 GB of caches).
#
# Settings (environment): N_IMAGES (2048), N_BASELINE (256), BATCH (256), WORKERS (CPUs - 1, at most 16),
# VARIANTS ("compile decode_pil no_channels_last no_contiguous_attention"; "" for none), TRAIN_BATCHES ("all" or a
# number), CACHE_DIR (/tmp/bacgcn-bench-cache), KEEP_CACHE (0).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p results/bench
export PARTS="${*:-extract train growth}"
export N_IMAGES=${N_IMAGES:-2048} N_BASELINE=${N_BASELINE:-256} BATCH=${BATCH:-256} TRAIN_BATCHES=${TRAIN_BATCHES:-all}
export VARIANTS=${VARIANTS-compile decode_pil no_channels_last no_contiguous_attention}
export CACHE_DIR=${CACHE_DIR:-/tmp/bacgcn-bench-cache} KEEP_CACHE=${KEEP_CACHE:-0}
export WORKERS=${WORKERS:-$(python3 -c "import os; print(max(1, min(16, (os.cpu_count() or 2) - 1)))")}
export PYTHONWARNINGS=ignore TQDM_DISABLE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

python3 - <<'PY'
import os, sys, time
import torch
if not torch.cuda.is_available(): sys.exit("gpu_check.sh: no CUDA GPU visible to torch")
from bacgcn.bench import bench_extract, bench_growth, bench_train, format_table
env, t0 = os.environ, time.time()
parts, B, W = env["PARTS"].split(), int(env["BATCH"]), int(env["WORKERS"])
for part in parts:
    if part == "extract":
        r = bench_extract("results/bench", device="cuda", n_images=int(env["N_IMAGES"]), n_baseline=int(env["N_BASELINE"]),
                          batch_size=B, num_workers=W, variants=tuple(env["VARIANTS"].split()))
    elif part == "train":
        nb = None if env["TRAIN_BATCHES"] == "all" else int(env["TRAIN_BATCHES"])
        r = bench_train("results/bench", device="cuda", n_batches=nb, cache_dir=env["CACHE_DIR"], keep_cache=env["KEEP_CACHE"] == "1")
    elif part == "growth":
        r = bench_growth("results/bench", device="cuda", extract_images=256, train_images=4096, batch_size=B, num_workers=W)
    else: sys.exit(f"gpu_check.sh: unknown part {part!r}: choose extract, train, growth")
    print(format_table(r), f"\n[{part} done at {time.time() - t0:.0f} s]\n", flush=True)
PY
ls -l results/bench/
