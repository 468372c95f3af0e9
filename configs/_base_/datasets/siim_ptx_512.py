# SIIM-ACR Pneumothorax, raw Kaggle layout (DICOM tree + train-rle.csv), with
# the reference's balancing: keep 15% of negatives (seeded), then an 80/20
# split stratified by positive/negative. The split is written to
# <data_root>/splits/ on first use and read back afterwards.
dataset_type = 'SIIMPneumothoraxDataset'
data_root = 'data/siim'
crop_size = (512, 512)
split_settings = dict(
    layout='dicom',
    split_dir='splits',
    neg_keep_ratio=0.15,
    val_ratio=0.2,
    split_seed=42,
    split_order='balance_first')

# Kaggle images are 1024x1024; the reference trained at 512x512. The
# photometric jitter only moves brightness/contrast: the images are grey.
# They stay one channel until GreyToBGR repeats it for the model: the same
# tensors as loading in colour, on a third of the bytes.
train_pipeline = [
    dict(type='LoadDicomImageFromFile', color_type='grayscale'),
    dict(type='LoadRLEAnnotations'),
    # AlignedResize: mmcv's Resize puts the label half a pixel off the
    # image (corner-sampled nearest against centre-sampled bilinear).
    dict(
        type='RandomResize',
        scale=crop_size,
        ratio_range=(0.8, 1.25),
        keep_ratio=True,
        resize_type='mmseg.AlignedResize'),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    # mmseg's PhotoMetricDistortion, bit for bit, through a lookup table
    # on grey images (a quarter of the pipeline's time otherwise).
    dict(
        type='GreyscalePhotoMetricDistortion',
        brightness_delta=24,
        contrast_range=(0.8, 1.25),
        # Saturation and hue are no-ops on grey images (and hue_delta=0
        # crashes mmseg's randint), so they stay at neutral values.
        saturation_range=(1.0, 1.0),
        hue_delta=1),
    dict(type='GreyToBGR'),
    dict(type='PackSegInputs'),
]
# Predictions are resized back to the original 1024x1024, where the ground
# truth is decoded: metrics are computed at the competition's resolution.
# One channel up to GreyToBGR here too (the same tensors).
test_pipeline = [
    dict(type='LoadDicomImageFromFile', color_type='grayscale'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='LoadRLEAnnotations'),
    dict(type='GreyToBGR'),
    dict(type='PackSegInputs'),
]
# Horizontal-flip test-time augmentation (tools/test.py --tta).
tta_pipeline = [
    dict(type='LoadDicomImageFromFile', color_type='grayscale'),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale=crop_size, keep_ratio=True)],
            [
                dict(type='RandomFlip', prob=0., direction='horizontal'),
                dict(type='RandomFlip', prob=1., direction='horizontal')
            ],
            [dict(type='LoadRLEAnnotations')],
            [dict(type='GreyToBGR')],
            [dict(type='PackSegInputs')],
        ])
]

train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    # Also for the augmentation: mmengine seeds each worker from the run's
    # seed alone, so workers started anew every epoch would draw every
    # epoch's random scales and flips from the same sequence.
    persistent_workers=True,
    pin_memory=True,
    # A last batch of one image breaks BatchNorm in the decode head's
    # pooling branch (1x1 features); the sampler redraws every epoch.
    drop_last=True,
    # Positives weighted 1.5x a negative's 1.0, drawn with replacement;
    # each rank takes its own positions of the one draw all ranks share.
    sampler=dict(type='ClassBalancedSampler', pos_weight=1.5),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='train',
        pipeline=train_pipeline,
        **split_settings))
val_dataloader = dict(
    # In eval mode a batch predicts what its images do one at a time (to
    # float rounding), and a GPU infers far more images/s in batches: 1.9x
    # from batch 4 to 16 with the speed switches on an H200
    # (docs/performance.md, 2026-11-27). MMSeg needs the
    # images of a test batch to be one size: Kaggle's 1024 x 1024
    # radiographs all resize to 512 x 512; other test sets of mixed sizes
    # need batch_size=1 (docs/evaluation.md).
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='val',
        pipeline=test_pipeline,
        **split_settings))
test_dataloader = val_dataloader

val_evaluator = dict(type='PneumothoraxMetric')
test_evaluator = val_evaluator
