# The Swin-B recipe with the speed switches of docs/performance.md that keep
# its maths (to float rounding) and that a config can set:
# SwinTransformerSDPA (the same weights and checkpoints as mmseg's Swin),
# bf16 autocast, fused AdamW, channels_last convolution weights
# (ChannelsLastHook), and a train loop in which the host never waits
# for the GPU: batches copied to it without blocking, losses read back only
# when they are logged (DeferredRuntimeInfoHook; the logs are the same).
# Everything else is upernet_swin-b_ptx-512.py's (tested). For test runs
# add `--dtype bfloat16` (bf16 weights) and `--fuse-conv-bn` (BatchNorm
# folded) to tools/test.py, and `--compile` only for test sets of tens of
# thousands of images (docs/evaluation.md). Compilation is not on in
# training (about two minutes for 1.13x the train step at batch 16 on an
# H200, not measured at this recipe's 4 per GPU; docs/performance.md);
# add it with
#   custom_hooks = [..., dict(type='CompileModulesHook', blocks=['SwinBlock'])]
# Train: bash tools/dist_train.sh configs/upernet_swin-b_ptx-512_fast.py 3
_base_ = ['./upernet_swin-b_ptx-512_bf16.py']

model = dict(
    backbone=dict(type='SwinTransformerSDPA'),
    data_preprocessor=dict(non_blocking=True))
optim_wrapper = dict(optimizer=dict(fused=True))
default_hooks = dict(runtime_info=dict(type='DeferredRuntimeInfoHook'))
custom_hooks = _base_.custom_hooks + [dict(type='ChannelsLastHook')]
