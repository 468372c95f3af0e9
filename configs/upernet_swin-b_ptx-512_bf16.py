# The Swin-B recipe under bf16 autocast (Ampere or newer GPUs). bf16 keeps
# fp32's exponent range, so the loss is not scaled; DiceCELoss computes in
# float32 regardless.
_base_ = ['./upernet_swin-b_ptx-512.py']

optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16', loss_scale=1.0)
