#!/usr/bin/env bash
# Run from the root of a clone after `make demo` (its work_dirs/demo).
set -euxo pipefail
W=work_dirs/demo
O=${AVG_OUT:-/tmp/avgout}  # replaced whole: a folder of its own
rm -rf "$O"
mkdir -p "$O"
export TQDM_DISABLE=1
.venv/bin/python tools/average_checkpoints.py "$W/epoch_35.pth" \
    "$W/epoch_40.pth" --out "$O/average_35_40.pth"
for c in "$W/epoch_35.pth" "$W/epoch_40.pth" "$O/average_35_40.pth"; do
    n=$(basename "$c" .pth)
    .venv/bin/python tools/test.py configs/upernet_swin-nano_ptx-demo-128.py \
        "$c" --work-dir "$O/test_$n" --cfg-options \
        train_dataloader.dataset.data_root=data/demo \
        val_dataloader.dataset.data_root=data/demo \
        test_dataloader.dataset.data_root=data/demo > "$O/test_$n.out" 2>&1
done
