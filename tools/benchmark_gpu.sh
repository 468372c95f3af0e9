#!/usr/bin/env bash
# The GPU figures of docs/performance.md in one run: UPerNet + Swin-B at
# 512x512, in parts (PARTS picks some, in this order):
#   window_tokens  the copies around Swin-B's window attention, mmseg's
#                vs SwinTransformerSDPA's gathers, at batch BATCH
#                (tools/benchmark_window_tokens.py; seconds);
#   sweep        stock mmseg vs each switch alone vs all together, at batch
#                4 (the reference's setting) and batch 16;
#   ablate       all switches, then all but each one, at batch 4 and 16:
#                what each switch adds on top of the others;
#   big_batches  all switches at larger batches, to find the best batch;
#   sdpa         all switches at batch 16, the window attention held to
#                each SDPA kernel;
#   ptx_sdpa     the same for this project's config (window 12: 144-token
#                windows instead of 49), at batch BATCH;
#   loader       this project's config (DiceCELoss) fed by its real data
#                loader, on generated 1024x1024 DICOMs, at the config's
#                workers and more;
#   sync         this project's config, all switches and non-blocking
#                batch copies, batch BATCH, its iterations synchronised one
#                by one (a loop that reads the losses back every iteration)
#                and only at the end (as with DeferredRuntimeInfoHook),
#                with the operations that make the host wait
#                (--host-syncs); fed by the loader part's data when that
#                part runs; with the eval mode too (inference plus the
#                config's PneumothoraxMetric: a validation iteration); its
#                inference resizes the logits back to VAL_ORI x VAL_ORI
#                (default 1024, the SIIM radiographs'), as tools/test.py
#                does, where the other parts keep the input size (random
#                data at 512, as the reference's figures);
#   profile      this project's config, all switches, batch BATCH: the
#                operators that take the GPU's time in its train step and
#                in inference (benchmark.py --profile PROFILE_ITERS,
#                default 2 iterations);
#   compile      all switches plus torch.compile of the whole modules, and
#   compile_blocks  ... of each Swin block (both bounded by
#                COMPILE_TIMEOUT: compilation takes minutes);
#   ptx_compile_infer  this project's config, all switches and non-blocking
#                copies, inference with its whole modules compiled (the
#                fastest inference on an H200, 2026-11-28: about 35 s to
#                compile), at batch BATCH;
#   ptx_compile_step  the same config's train step with each Swin block
#                compiled (about 130 s to compile at batch 16 there); both
#                timed with one wait at the end and bounded by
#                COMPILE_TIMEOUT;
#   ptx_flex_infer, ptx_flex_step  the two ptx_compile parts with the window
#                attention through FlexAttention
#                (model.backbone.attn_impl=flex, plus the cfg-options in
#                FLEX_OPTIONS, e.g. its forward tiles:
#                "model.backbone.flex_kernel_options.BLOCK_M=32
#                model.backbone.flex_kernel_options.BLOCK_N=32"; backward
#                ones are bwd_BLOCK_M1 ... bwd_BLOCK_N2).
# Each part writes a JSON file (each row as soon as it is measured) and a log;
# every row also gets the TFLOP/s it sustained (benchmark.py --flops), and
# the run ends with one table of every row. On an H200 (2026-11-27) the
# sweep (batches 4 and 16), big_batches (64 and 96), sdpa and profile parts
# took 7.5 minutes together, the loader part 2.4 minutes with its data;
# compilation takes minutes more. Pick PARTS to fit the slot, and give
# DEADLINE (whole seconds from the start) where the slot is fixed: each
# part (the loader's data too) is then bounded by the time left (less 20 s
# for the closing table) and one with under 30 s left is skipped. A part
# that did not finish says so with its exit status (124: stopped by its
# time limit); the run's status is 1 where a part failed or was skipped.
#
# Usage: bash tools/benchmark_gpu.sh OUT_DIR
# Environment: PARTS, PYTHON (default python), DEVICE (default cuda; cpu
# with tiny settings only checks the script), ITERS, WARMUP, IMG,
# SWEEP_BATCHES, BIG_BATCHES, BATCH, PROFILE_ITERS, LOADER_WORKERS, VAL_ORI,
# DEMO_NUM, DEMO_SIZE, DEMO_DATA (default: a folder in TMPDIR, so that
# OUT_DIR holds the results alone), SWINB_CONFIG, PTX_CONFIG, SDPA_KERNELS,
# FLEX_OPTIONS, DEADLINE, COMPILE_TIMEOUT (a compile part's whole process,
# imports and model building included), COMPILE_MODE (the compile parts'
# torch.compile mode, e.g. reduce-overhead: CUDA graphs, against the
# launch overhead of small batches, with BATCH=4).
set -euo pipefail

OUT_DIR=${1:?usage: bash tools/benchmark_gpu.sh OUT_DIR}
OUT_DIR=$(mkdir -p "$OUT_DIR" && cd "$OUT_DIR" && pwd)
# From the repository root, with it importable: tools/benchmark.py puts
# tools/ first on sys.path, and a machine may have the dependencies but not
# this package installed.
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1  # a part killed by a timeout keeps its log
ALL_PARTS="window_tokens sweep ablate big_batches sdpa ptx_sdpa loader sync profile compile compile_blocks ptx_compile_infer ptx_compile_step ptx_flex_infer ptx_flex_step"
PARTS=${PARTS:-$ALL_PARTS}
for part in $PARTS; do
    case " $ALL_PARTS " in
        *" $part "*) ;;
        *) echo "unknown part '$part' in PARTS; parts: $ALL_PARTS" >&2
           exit 2 ;;
    esac
done
want() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
PYTHON=${PYTHON:-python}
DEVICE=${DEVICE:-cuda}
ITERS=${ITERS:-10}
WARMUP=${WARMUP:-3}
IMG=${IMG:-512}
SWEEP_BATCHES=${SWEEP_BATCHES:-4 16}
BIG_BATCHES=${BIG_BATCHES:-32 64}
# The batch of the kernel, loader and compile parts.
BATCH=${BATCH:-16}
PROFILE_ITERS=${PROFILE_ITERS:-2}
VAL_ORI=${VAL_ORI:-1024}
LOADER_WORKERS=${LOADER_WORKERS:-12}
DEMO_NUM=${DEMO_NUM:-240}
DEMO_SIZE=${DEMO_SIZE:-1024}
COMPILE_TIMEOUT=${COMPILE_TIMEOUT:-200}
# Whole seconds: the time left is counted in them (timeout alone would
# also take "2m").
for setting in DEADLINE COMPILE_TIMEOUT; do
    if [ -n "${!setting:-}" ] && ! [[ ${!setting} =~ ^[0-9]+$ ]]; then
        echo "$setting must be whole seconds, got '${!setting}'" >&2
        exit 2
    fi
done
# The sdpa parts' kernel sets (math as the fallback where a kernel cannot
# run, e.g. on a CPU; cuDNN's kernel may not take a bias that needs a
# gradient in training).
SDPA_KERNELS=${SDPA_KERNELS:-efficient,math cudnn,math math}
COMPILE_OPTIONS=(--compile)
if [ -n "${COMPILE_MODE:-}" ]; then
    COMPILE_OPTIONS+=(--compile-mode "$COMPILE_MODE")
fi
PTX_CONFIG=${PTX_CONFIG:-configs/upernet_swin-b_ptx-512.py}
# Nothing would run without these: say so at once, not once per part.
$PYTHON -c "import mmseg_ptx, mmseg, mmengine" || {
    echo "cannot import mmseg_ptx, mmseg and mmengine with $PYTHON" >&2
    exit 1
}
FAILED=()
SKIPPED=()
# The parts on mmseg's own Swin-B config look it up (a second of imports).
if [ -z "${SWINB_CONFIG:-}" ] \
        && { want sweep || want ablate || want big_batches || want sdpa \
             || want compile || want compile_blocks; }; then
    SWINB_CONFIG=$($PYTHON -c "import mmseg, os; print(os.path.join(os.path.dirname(mmseg.__file__), '.mim/configs/swin/swin-base-patch4-window7-in22k-pre_upernet_8xb2-160k_ade20k-512x512.py'))")
fi
mkdir -p "$OUT_DIR"
DEMO_DATA=${DEMO_DATA:-${TMPDIR:-/tmp}/mmseg_ptx_benchmark_data}

SWITCHES=(--backbone-type SwinTransformerSDPA --amp bf16 --bf16-weights
          --fuse-conv-bn --channels-last --fused-adamw --merge-param-groups
          --top1-accuracy)
if [ "$DEVICE" = cuda ]; then
    SWITCHES+=(--tf32 --cudnn-benchmark)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv \
        | tee "$OUT_DIR/gpu.txt"
fi
# limit_for NAME [SECONDS]: set PART_LIMIT, the seconds part NAME may run
# (empty: unbounded): SECONDS, at most what DEADLINE leaves after 20 s
# kept for the closing table; with under 30 s left, say that NAME is
# skipped and return 1.
limit_for() {
    local name=$1 rest
    PART_LIMIT=${2:-}
    [ -n "${DEADLINE:-}" ] || return 0
    rest=$((DEADLINE - SECONDS - 20))
    if [ "$rest" -lt 30 ]; then
        echo "== $name skipped: ${rest}s left before DEADLINE"
        SKIPPED+=("$name")
        return 1
    fi
    if [ -z "$PART_LIMIT" ] || [ "$rest" -lt "$PART_LIMIT" ]; then
        PART_LIMIT=$rest
    fi
}
# Set RUN: PYTHON's words (it may carry some: "nice python"), under
# timeout PART_LIMIT where that is set.
set_run() {
    read -ra RUN <<<"$PYTHON"
    if [ -n "$PART_LIMIT" ]; then RUN=(timeout "$PART_LIMIT" "${RUN[@]}"); fi
}
# run_part NAME SCRIPT ARGS...: PYTHON SCRIPT ARGS... bounded by
# PART_LIMIT, logged to NAME.log; a failure is said with its exit status.
run_part() {
    local name=$1 status=0 why
    shift
    set_run
    "${RUN[@]}" "$@" 2>&1 | tee "$OUT_DIR/$name.log" \
        || status=${PIPESTATUS[0]}
    if [ "$status" = 0 ]; then return 0; fi
    why="exit status $status"
    if [ "$status" = 124 ]; then
        why+=": stopped by its ${PART_LIMIT}s limit"
    fi
    echo "== $name failed ($why)" | tee -a "$OUT_DIR/$name.log"
    FAILED+=("$name")
}
# bench_limited SECONDS NAME CONFIG ARGS...: one tools/benchmark.py run,
# logged, bounded by SECONDS (empty: no bound of its own) and DEADLINE. A
# failed part is reported and the next one still runs.
bench_limited() {
    local name=$2 config=$3
    limit_for "$name" "$1" || return 0
    shift 3
    echo "== $name"
    # An earlier run's rows must not pass for this run's if this one fails
    # before its first.
    rm -f "$OUT_DIR/$name.json"
    run_part "$name" tools/benchmark.py "$config" --device "$DEVICE" \
        --img-size "$IMG" "$IMG" --iters "$ITERS" --warmup "$WARMUP" \
        --flops --json "$OUT_DIR/$name.json" "$@"
}
bench() { bench_limited '' "$@"; }

demo_pid=
if want loader && limit_for demo_data; then
    # The loader part's data, drawn on the CPU while the GPU parts run.
    set_run
    "${RUN[@]}" tools/make_demo_data.py --out "$DEMO_DATA" \
        --num "$DEMO_NUM" --seed 0 --size "$DEMO_SIZE" \
        --positive-fraction 0.6 --overwrite >"$OUT_DIR/demo_data.log" 2>&1 &
    demo_pid=$!
fi

if want window_tokens && limit_for window_tokens; then
    echo "== window_tokens"
    run_part window_tokens tools/benchmark_window_tokens.py \
        --device "$DEVICE" --batch-size "$BATCH" --img-size "$IMG" \
        --iters "$ITERS" --warmup "$WARMUP" \
        --json "$OUT_DIR/window_tokens.json"
fi
# mmseg's ADE20K config with this project's 2 classes, and its optimizer
# settings (no weight decay on norms and position tables) as they are.
TWO_CLASSES=(model.decode_head.num_classes=2
             model.auxiliary_head.num_classes=2)
for part in sweep ablate big_batches; do
    want $part || continue
    # shellcheck disable=SC2206  # batch lists are meant to split
    case $part in
        sweep) options=(--sweep --batch-size $SWEEP_BATCHES) ;;
        ablate) options=(--ablate --batch-size $SWEEP_BATCHES) ;;
        big_batches) options=(--batch-size $BIG_BATCHES) ;;
    esac
    bench $part "$SWINB_CONFIG" --mode all "${options[@]}" "${SWITCHES[@]}" \
        --cfg-options "${TWO_CLASSES[@]}"
done
if want sdpa; then
    for kernels in $SDPA_KERNELS; do
        bench "sdpa_${kernels%%,*}" "$SWINB_CONFIG" --mode all \
            --batch-size "$BATCH" "${SWITCHES[@]}" --cfg-options \
            "${TWO_CLASSES[@]}" "model.backbone.sdpa_backends=[$kernels]"
    done
fi
if want ptx_sdpa; then
    for kernels in $SDPA_KERNELS; do
        bench "ptx_sdpa_${kernels%%,*}" "$PTX_CONFIG" --mode step infer \
            --batch-size "$BATCH" "${SWITCHES[@]}" --cfg-options \
            "model.backbone.sdpa_backends=[$kernels]"
    done
fi

demo_ok=0
# The data's run is bounded by DEADLINE too: so is this wait.
if want loader && { [ -z "$demo_pid" ] || ! wait "$demo_pid"; }; then
    echo "== loader parts skipped: make_demo_data.py failed or did not" \
        "run (see $OUT_DIR/demo_data.log)"
elif want loader; then
    demo_ok=1
    for workers in default "$LOADER_WORKERS"; do
        options=("train_dataloader.dataset.data_root=$DEMO_DATA")
        if [ "$workers" != default ]; then
            options+=("train_dataloader.num_workers=$workers")
        fi
        bench "ptx_loader_workers-$workers" "$PTX_CONFIG" --mode all \
            --batch-size "$BATCH" "${SWITCHES[@]}" \
            --cfg-options "${options[@]}"
    done
fi

if want sync; then
    options=(model.data_preprocessor.non_blocking=True)
    if [ $demo_ok = 1 ]; then
        options+=("train_dataloader.dataset.data_root=$DEMO_DATA")
    fi
    bench ptx_sync "$PTX_CONFIG" --mode all eval --batch-size "$BATCH" \
        "${SWITCHES[@]}" --sync iteration end --host-syncs \
        --ori-size "$VAL_ORI" "$VAL_ORI" --cfg-options "${options[@]}"
fi

if want profile; then
    for mode in step infer; do
        bench "ptx_profile_$mode" "$PTX_CONFIG" --mode $mode \
            --batch-size "$BATCH" "${SWITCHES[@]}" \
            --profile "$PROFILE_ITERS"
    done
fi

# Compilation can take longer than the rest together: bounded, and last.
for part in compile compile_blocks; do
    want $part || continue
    scope=modules
    if [ $part = compile_blocks ]; then scope=blocks; fi
    bench_limited "$COMPILE_TIMEOUT" $part "$SWINB_CONFIG" \
        --mode all --batch-size "$BATCH" "${SWITCHES[@]}" \
        "${COMPILE_OPTIONS[@]}" --compile-scope $scope \
        --cfg-options "${TWO_CLASSES[@]}"
done
for part in ptx_compile_infer ptx_compile_step ptx_flex_infer ptx_flex_step; do
    want $part || continue
    options=(--mode infer --compile-scope modules)
    case $part in
        *_step) options=(--mode step --compile-scope blocks) ;;
    esac
    cfg_options=(model.data_preprocessor.non_blocking=True)
    if [[ $part = ptx_flex_* ]]; then
        # Split into words at blanks and newlines, not expanded as file
        # names (read stops at the end of input with status 1).
        read -rd '' -a flex_options <<<"${FLEX_OPTIONS:-}" || true
        cfg_options+=(model.backbone.attn_impl=flex "${flex_options[@]}")
    fi
    bench_limited "$COMPILE_TIMEOUT" $part "$PTX_CONFIG" \
        "${options[@]}" --batch-size "$BATCH" "${SWITCHES[@]}" \
        "${COMPILE_OPTIONS[@]}" --sync end --cfg-options "${cfg_options[@]}"
done

# Every row of every tools/benchmark.py part in one table.
$PYTHON - "$OUT_DIR" <<'PY'
import glob, json, os, sys
print(f"{'part':<28} {'variant':<58} {'mode':<6} {'batch':>5} "
      f"{'img/s':>8} {'peak MiB':>9} {'warm-up s':>9} {'wu peak':>9} "
      f"{'TFLOP/s':>8}")
for path in sorted(glob.glob(os.path.join(sys.argv[1], '*.json'))):
    part = os.path.basename(path)[:-5]
    for r in json.load(open(path)).get('results', []):
        figures = (r['error'] if 'error' in r else
                   f"{r['img_per_s']:8.1f} {r['peak_mem_mib']:9.0f} "
                   f"{r['warmup_s']:9.1f} "
                   f"{r.get('warmup_peak_mem_mib', float('nan')):9.0f} "
                   f"{r.get('tflop_per_s', float('nan')):8.1f}")
        variant = r['variant']
        if r.get('sync', 'iteration') != 'iteration':
            variant += f" (sync {r['sync']})"
        print(f"{part:<28} {variant:<58} {r['mode']:<6} "
              f"{r['batch_size']:>5} {figures}")
PY

# Not all that was asked for was measured: status 1.
if [ ${#SKIPPED[@]} -gt 0 ]; then
    echo "parts skipped for want of time before DEADLINE: ${SKIPPED[*]}" >&2
fi
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "failed parts: ${FAILED[*]}" >&2
fi
if [ ${#SKIPPED[@]} -gt 0 ] || [ ${#FAILED[@]} -gt 0 ]; then
    exit 1
fi
