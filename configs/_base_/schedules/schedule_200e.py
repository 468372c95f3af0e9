# The reference schedule: AdamW lr 1e-4, weight decay 0.01, cosine decay over
# 200 epochs (after a short linear warm-up), validation every epoch.
max_epochs = 200
warmup_epochs = 2
optim_wrapper = dict(
    type='OptimWrapper',
    # Same settings as mmengine's default constructor, in one parameter
    # group per setting instead of one per parameter (a faster step).
    constructor='MergedParamGroupsOptimWrapperConstructor',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.01),
    # MMSeg's Swin settings: no weight decay on position tables and norms.
    paramwise_cfg=dict(
        custom_keys={
            'absolute_pos_embed': dict(decay_mult=0.),
            'relative_position_bias_table': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.)
        }))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-6,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=True),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # Keep the best checkpoint by pooled validation Dice, and the last 3
    # epoch_N.pth: every 10th epoch's, and (mmengine saves it again) an
    # epoch's with a new best.
    checkpoint=dict(
        type='CheckpointHook',
        by_epoch=True,
        interval=10,
        max_keep_ckpts=3,
        save_best='dice',
        rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
