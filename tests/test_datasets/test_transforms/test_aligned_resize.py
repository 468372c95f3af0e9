"""AlignedResize: the label map stays where the image is."""
import numpy as np

import mmseg_ptx  # noqa: F401  (registers the transform)
from mmseg.registry import TRANSFORMS


def _offsets(resize_type: str, seed: int) -> np.ndarray:
    """Label centroid minus image centroid (rows, columns) of a random
    rectangle after RandomResize from 1024 px, in output pixels."""
    rng = np.random.default_rng(seed)
    img = np.zeros((1024, 1024), np.uint8)
    seg = np.zeros((1024, 1024), np.uint8)
    y, x = rng.integers(100, 600, 2)
    h, w = rng.integers(60, 300, 2)
    img[y:y + h, x:x + w], seg[y:y + h, x:x + w] = 255, 1
    resize = TRANSFORMS.build(dict(
        type='RandomResize', scale=(512, 512), ratio_range=(0.8, 1.25),
        keep_ratio=True, resize_type=resize_type))
    # RandomResize draws its ratio from numpy's global generator: seeded
    # here (and put back), so that both transforms see the same scales.
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        out = resize(dict(img=img, gt_seg_map=seg, seg_fields=['gt_seg_map'],
                          img_shape=img.shape, ori_shape=img.shape))
    finally:
        np.random.set_state(state)
    assert out['gt_seg_map'].shape == out['img'].shape
    label = np.argwhere(out['gt_seg_map'] == 1).mean(0)
    image = np.argwhere(out['img'] > 127).mean(0)
    return label - image


def test_the_label_stays_on_the_image():
    """MMSeg's Resize shifts the label down and right by about half a
    pixel (its nearest-neighbour takes the corner, the bilinear image the
    centre); AlignedResize does not."""
    # The configs' Resize, as their default scope builds it.
    mmseg_shift = np.mean([_offsets('mmseg.Resize', s) for s in range(20)],
                          0)
    aligned = np.array([_offsets('mmseg.AlignedResize', s)
                        for s in range(20)])
    assert (mmseg_shift > 0.3).all()
    # Only a tie (an edge exactly between two output pixels) may go
    # either way.
    assert np.abs(aligned.mean(0)).max() < 0.1
    assert np.abs(aligned).max() <= 0.5


def test_what_cv2_cannot_resize_exactly_goes_to_mmseg():
    """int64 labels (cv2 has no nearest-exact for them), or no image to
    take the size from: MMSeg's own resize, as before."""
    seg = np.zeros((64, 64), np.int64)
    seg[10:20, 10:20] = 1
    seg8 = seg.astype(np.uint8)
    for results in (dict(img=np.zeros((64, 64), np.uint8), gt_seg_map=seg),
                    dict(gt_seg_map=seg8),
                    dict(img=None, img_shape=(64, 64), gt_seg_map=seg8)):
        outs = [TRANSFORMS.build(dict(type=name, scale=(32, 32)))(
            dict(results, seg_fields=['gt_seg_map']))
                for name in ('AlignedResize', 'Resize')]
        assert outs[0]['gt_seg_map'].shape == (32, 32)
        np.testing.assert_array_equal(outs[0]['gt_seg_map'],
                                      outs[1]['gt_seg_map'])
    aligned = TRANSFORMS.build(dict(type='AlignedResize', scale=(32, 32)))(
        dict(img=np.zeros((64, 64), np.uint8), seg_fields=['gt_seg_map'],
             gt_seg_map=seg8))['gt_seg_map']
    assert aligned.dtype == np.uint8 and aligned.sum() == 25


def test_non_square_images_keep_their_orientation():
    """cv2 takes (width, height): the map must come out as the image,
    not transposed, and cover the same rectangle."""
    img = np.zeros((64, 96), np.uint8)
    seg = np.zeros((64, 96), np.uint8)
    img[8:40, 16:80], seg[8:40, 16:80] = 255, 1
    out = TRANSFORMS.build(dict(type='AlignedResize', scale=(48, 32),
                                keep_ratio=False))(
        dict(img=img, gt_seg_map=seg, seg_fields=['gt_seg_map']))
    assert out['img'].shape == out['gt_seg_map'].shape == (32, 48)
    np.testing.assert_array_equal(out['gt_seg_map'] == 1, out['img'] > 127)
