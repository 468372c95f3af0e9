# The Swin-B recipe on the PNG re-release of the SIIM data (png_images/,
# png_masks/, stage_1_train_images.csv; docs/data_preparation.md): the same
# pipelines, with the labels read from the 0/255 mask PNGs where the DICOM
# layout decodes the CSV's RLE. Its split files go to <data_root>/splits/
# and name the same ImageIds as the DICOM layout's.
_base_ = ['./upernet_swin-b_ptx-512.py']

data_root = 'data/siim-png'
masks = dict(type='LoadBinaryMaskFromFile')
train_pipeline = [
    masks if t['type'] == 'LoadRLEAnnotations' else t
    for t in _base_.train_pipeline
]
test_pipeline = [
    masks if t['type'] == 'LoadRLEAnnotations' else t
    for t in _base_.test_pipeline
]
# TestTimeAug's steps are lists of transforms.
tta_pipeline = [
    _base_.tta_pipeline[0],
    dict(
        type='TestTimeAug',
        transforms=[[masks] if s[0]['type'] == 'LoadRLEAnnotations' else s
                    for s in _base_.tta_pipeline[1]['transforms']])
]
png = dict(layout='png', data_root=data_root)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline, **png))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline, **png))
test_dataloader = val_dataloader
