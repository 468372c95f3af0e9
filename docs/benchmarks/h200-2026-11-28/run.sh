#!/bin/bash
# Session 14's device run: this project's config with every switch, current
# code (window-token gathers, non-blocking copies), then per Swin block
# compilation, a bigger batch and stock.  Rows land in $B as measured.
set -u
export TQDM_DISABLE=1 PYTHONWARNINGS=ignore PYTHONUNBUFFERED=1
DEV=${DEV:-cuda}; IMG=${IMG:-512}; B16=${B16:-16}; BBIG=${BBIG:-64}
P=${P:-configs/upernet_swin-b_ptx-512.py}; PY=${PY:-python3}
ITERS=${ITERS:-10}; WARMUP=${WARMUP:-3}; END=${END:-540}
B=${B:-/tmp/b}; mkdir -p $B
T0=$SECONDS
log() { echo "[$((SECONDS-T0))s] $*" | tee -a $B/run.log; }
left() { echo $((END-(SECONDS-T0))); }
if [ "$DEV" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $B/gpu.txt
  SW_DEV="--tf32 --cudnn-benchmark"
else SW_DEV=""; fi
$PY -c "import torch, mmseg, mmengine, sys; print(sys.version.split()[0], torch.__version__, mmseg.__version__, mmengine.__version__)" > $B/versions.txt 2>&1
git rev-parse HEAD >> $B/versions.txt 2>/dev/null
SW="--backbone-type SwinTransformerSDPA --amp bf16 --bf16-weights --fuse-conv-bn --channels-last --fused-adamw --merge-param-groups $SW_DEV"
NB=model.data_preprocessor.non_blocking=True
bench() {  # bench NAME SECONDS ARGS...
  local name=$1 t=$2; shift 2
  if [ "$t" -lt 30 ]; then log "$name skipped: ${t}s left"; return; fi
  log "$name start (limit ${t}s)"
  timeout $t $PY tools/benchmark.py $P --device $DEV --img-size $IMG $IMG \
    --iters $ITERS --warmup $WARMUP --flops --json $B/$name.json "$@" > $B/$name.log 2>&1
  log "$name rc=$?"
}
if true; then
  log "cuda tests start"
  timeout 90 $PY -m pytest -q -p no:warnings -p no:xdist -p no:cacheprovider \
    tests/test_models/test_backbones/test_swin_sdpa.py tests/test_models/test_losses/test_dice_ce_loss.py \
    tests/test_utils tests/test_evaluation/test_metrics/test_pneumothorax_metric.py \
    tests/test_engine/test_hooks/test_channels_last_hook.py tests/test_models/test_utils/test_window_tokens.py \
    -k "$DEV or compiled" > $B/cuda_tests.log 2>&1
  log "cuda tests rc=$?"
fi
bench ptx_all_b$B16 150 --mode step infer eval --batch-size $B16 $SW \
  --sync iteration end --host-syncs --cfg-options $NB
bench ptx_compile_blocks_infer_b$B16 130 --mode infer \
  --batch-size $B16 $SW --compile --compile-scope blocks --sync end --cfg-options $NB
bench ptx_compile_blocks_step_b$B16 $(( $(left) - 150 )) --mode step \
  --batch-size $B16 $SW --compile --compile-scope blocks --sync end --cfg-options $NB
bench ptx_all_b$BBIG 80 --mode step infer --batch-size $BBIG $SW --sync end --cfg-options $NB
bench ptx_plain_b$B16 70 --mode step infer --batch-size $B16
bench ptx_all_cudnn_attn_b$B16 $(( $(left) - 5 )) --mode step --batch-size $B16 $SW \
  --sync end --cfg-options $NB "model.backbone.sdpa_backends=[cudnn,math]"
log done
