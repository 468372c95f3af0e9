#!/usr/bin/env bash
# The GPU figures of docs/performance.md in one run (about 8 minutes on an
# H200): UPerNet + Swin-B at 512x512,
#   1. stock mmseg vs each switch alone vs all together, at batch 4 (the
#      reference's setting) and batch 16;
#   2. all switches at larger batches, to find the best batch, and at
#      batch 16 with each SDPA kernel the window attention can be held to;
#   3. this project's config (DiceCELoss) fed by its real data loader, on a
#      generated set of 1024x1024 DICOMs, at the config's workers and more;
#   4. all switches plus torch.compile (last: compilation takes minutes).
# Each part writes a JSON file (rows are added as variants finish) and a log.
#
# Usage: bash tools/benchmark_gpu.sh OUT_DIR
# Environment: PYTHON (default python), DEVICE (default cuda; cpu with
# tiny settings only checks the script), ITERS, WARMUP, IMG, SWEEP_BATCHES,
# BIG_BATCHES, BATCH, LOADER_WORKERS, DEMO_NUM, DEMO_SIZE,
# DEMO_DATA, SWINB_CONFIG, PTX_CONFIG, COMPILE_TIMEOUT.
set -euo pipefail

OUT_DIR=${1:?usage: bash tools/benchmark_gpu.sh OUT_DIR}
PYTHON=${PYTHON:-python}
DEVICE=${DEVICE:-cuda}
ITERS=${ITERS:-10}
WARMUP=${WARMUP:-3}
IMG=${IMG:-512}
SWEEP_BATCHES=${SWEEP_BATCHES:-4 16}
BIG_BATCHES=${BIG_BATCHES:-32 64}
# The batch of the kernel, loader and compile parts.
BATCH=${BATCH:-16}
LOADER_WORKERS=${LOADER_WORKERS:-12}
DEMO_NUM=${DEMO_NUM:-240}
DEMO_SIZE=${DEMO_SIZE:-1024}
COMPILE_TIMEOUT=${COMPILE_TIMEOUT:-200}
PTX_CONFIG=${PTX_CONFIG:-configs/upernet_swin-b_ptx-512.py}
if [ -z "${SWINB_CONFIG:-}" ]; then
    SWINB_CONFIG=$($PYTHON -c "import mmseg, os; print(os.path.join(os.path.dirname(mmseg.__file__), '.mim/configs/swin/swin-base-patch4-window7-in22k-pre_upernet_8xb2-160k_ade20k-512x512.py'))")
fi
mkdir -p "$OUT_DIR"
DEMO_DATA=${DEMO_DATA:-$OUT_DIR/demo_data}

SWITCHES=(--backbone-type SwinTransformerSDPA --amp bf16 --channels-last
          --fused-adamw)
if [ "$DEVICE" = cuda ]; then
    SWITCHES+=(--tf32 --cudnn-benchmark)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv \
        | tee "$OUT_DIR/gpu.txt"
fi
bench() {  # bench NAME CONFIG ARGS...: one tools/benchmark.py run, logged
    # A failed part is reported and the next one still runs.
    local name=$1 config=$2
    shift 2
    echo "== $name"
    # $PYTHON unquoted: it may carry words ("timeout 200 python").
    $PYTHON tools/benchmark.py "$config" --device "$DEVICE" \
        --img-size "$IMG" "$IMG" --iters "$ITERS" --warmup "$WARMUP" \
        --json "$OUT_DIR/$name.json" "$@" 2>&1 | tee "$OUT_DIR/$name.log" \
        || echo "== $name failed" | tee -a "$OUT_DIR/$name.log"
}

# The loader part's data, drawn on the CPU while the GPU parts run.
$PYTHON tools/make_demo_data.py --out "$DEMO_DATA" --num "$DEMO_NUM" \
    --seed 0 --size "$DEMO_SIZE" --positive-fraction 0.6 \
    >"$OUT_DIR/demo_data.log" 2>&1 &
demo_pid=$!

# mmseg's ADE20K config with this project's 2 classes.
TWO_CLASSES=(model.decode_head.num_classes=2
             model.auxiliary_head.num_classes=2)
# shellcheck disable=SC2086  # batch lists are meant to split
bench sweep "$SWINB_CONFIG" --mode all --sweep --batch-size $SWEEP_BATCHES \
    "${SWITCHES[@]}" --cfg-options "${TWO_CLASSES[@]}"
# shellcheck disable=SC2086
bench big_batches "$SWINB_CONFIG" --mode all --batch-size $BIG_BATCHES \
    "${SWITCHES[@]}" --cfg-options "${TWO_CLASSES[@]}"
# (math as the fallback where a kernel cannot run, e.g. on a CPU)
for kernels in efficient,math math; do
    bench "sdpa_${kernels%%,*}" "$SWINB_CONFIG" --mode all \
        --batch-size "$BATCH" "${SWITCHES[@]}" --cfg-options \
        "${TWO_CLASSES[@]}" "model.backbone.sdpa_backends=[$kernels]"
done

if wait "$demo_pid"; then
    for workers in default "$LOADER_WORKERS"; do
        options=("train_dataloader.dataset.data_root=$DEMO_DATA")
        [ "$workers" = default ] || \
            options+=("train_dataloader.num_workers=$workers")
        bench "ptx_loader_workers-$workers" "$PTX_CONFIG" --mode all \
            --batch-size "$BATCH" "${SWITCHES[@]}" \
            --cfg-options "${options[@]}"
    done
else
    echo "== loader parts skipped: make_demo_data.py failed" \
        "(see $OUT_DIR/demo_data.log)"
fi

# Compilation can take longer than the rest together: bounded, and last.
PYTHON="timeout $COMPILE_TIMEOUT $PYTHON" bench compile "$SWINB_CONFIG" \
    --mode all --batch-size "$BATCH" "${SWITCHES[@]}" --compile \
    --cfg-options "${TWO_CLASSES[@]}"

# Every row of every part in one table.
$PYTHON - "$OUT_DIR" <<'PY'
import glob, json, os, sys
print(f"{'part':<28} {'variant':<58} {'mode':<6} {'batch':>5} "
      f"{'img/s':>8} {'peak MiB':>9}")
for path in sorted(glob.glob(os.path.join(sys.argv[1], '*.json'))):
    part = os.path.basename(path)[:-5]
    for r in json.load(open(path))['results']:
        figures = (r['error'] if 'error' in r else
                   f"{r['img_per_s']:8.1f} {r['peak_mem_mib']:9.0f}")
        print(f"{part:<28} {r['variant']:<58} {r['mode']:<6} "
              f"{r['batch_size']:>5} {figures}")
PY
