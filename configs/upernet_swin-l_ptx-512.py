# UPerNet + Swin-L (ImageNet-22K, 384) with the Swin-B recipe: the reference
# report's suggestion of a larger backbone.
_base_ = ['./upernet_swin-b_ptx-512.py']

checkpoint_file = 'https://download.openmmlab.com/mmsegmentation/v0.5/pretrain/swin/swin_large_patch4_window12_384_22k_20220412-6580f57d.pth'  # noqa
model = dict(
    backbone=dict(
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file),
        embed_dims=192,
        num_heads=[6, 12, 24, 48]),
    decode_head=dict(in_channels=[192, 384, 768, 1536]),
    auxiliary_head=dict(in_channels=768))
