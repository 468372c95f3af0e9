# The Swin-B recipe with an honest validation set: split first (80/20,
# stratified), then undersample negatives in the training split only, so
# validation keeps the data's natural ~22% positive share. Its split files go
# to <data_root>/splits_natural/.
_base_ = ['./upernet_swin-b_ptx-512.py']

natural_split = dict(split_order='split_first', split_dir='splits_natural')
train_dataloader = dict(dataset=natural_split)
val_dataloader = dict(dataset=natural_split)
test_dataloader = val_dataloader
