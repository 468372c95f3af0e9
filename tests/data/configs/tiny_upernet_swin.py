# Tiny UPerNet + Swin for fast CPU tests (model and optimizer only, no data).
# Inherits mmseg's own base config through the `mmseg::` scope.
_base_ = ['mmseg::_base_/models/upernet_swin.py']

# Plain BN: SyncBN needs a process group (and CUDA).
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    backbone=dict(
        pretrain_img_size=64,
        embed_dims=32,
        depths=[2, 2, 2, 2],
        num_heads=[1, 2, 4, 8],
        window_size=4,
        drop_path_rate=0.1),
    decode_head=dict(
        in_channels=[32, 64, 128, 256],
        channels=32,
        num_classes=2,
        norm_cfg=norm_cfg),
    auxiliary_head=dict(
        in_channels=128, channels=16, num_classes=2, norm_cfg=norm_cfg))
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.01))
