"""GreyscalePhotoMetricDistortion gives mmseg's PhotoMetricDistortion's
output bit for bit."""
import numpy as np
import pytest

import mmseg_ptx  # noqa: F401  (registers the transform; first: compat)
from mmseg.datasets.transforms import PhotoMetricDistortion
from mmseg.registry import TRANSFORMS
from mmseg_ptx.datasets.transforms.greyscale_photometric import is_grey_bgr

#: mmseg's defaults, and this project's config (grey: brightness and
#: contrast only).
SETTINGS = [
    dict(),
    dict(brightness_delta=24, contrast_range=(0.8, 1.25),
         saturation_range=(1.0, 1.0), hue_delta=1),
]


def grey_image(seed, shape=(37, 53)):
    rng = np.random.default_rng(seed)
    grey = rng.integers(0, 256, shape, dtype=np.uint8)
    grey[0, :4] = (0, 1, 254, 255)  # both ends of the clip
    return np.repeat(grey[..., None], 3, axis=2)


def run_both(img, settings, seed):
    """mmseg's output and next random number, then ours, each from the
    same numpy random state (mmseg draws from numpy.random)."""
    outs = []
    for cls in (PhotoMetricDistortion,
                TRANSFORMS.get('GreyscalePhotoMetricDistortion')):
        np.random.seed(seed)
        outs.append(cls(**settings).transform(dict(img=img.copy()))['img'])
        outs.append(np.random.random())  # where the random stream ended
    return outs


@pytest.mark.parametrize('settings', SETTINGS)
def test_grey_images_bit_for_bit(settings):
    changed = 0
    for seed in range(40):  # covers every branch (brightness, mode, ...)
        img = grey_image(seed)
        theirs_img, theirs_next, ours_img, ours_next = run_both(
            img, settings, seed)
        assert ours_img.dtype == np.uint8 and ours_img.shape == img.shape
        np.testing.assert_array_equal(ours_img, theirs_img)
        assert ours_next == theirs_next  # the same draws were made
        changed += not np.array_equal(ours_img, img)
    assert changed > 20  # the jitter was actually applied


def test_colour_and_float_images_fall_through():
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert not is_grey_bgr(colour)
    theirs, _, ours, _ = run_both(colour, SETTINGS[0], 3)
    np.testing.assert_array_equal(ours, theirs)
    floats = grey_image(1).astype(np.float32)
    assert not is_grey_bgr(floats)
    assert not is_grey_bgr(grey_image(1)[..., 0])
    assert is_grey_bgr(grey_image(1))
    # Every channel compared: blue = green with another red is colour.
    red = grey_image(1).copy()
    red[..., 2] //= 2
    assert not is_grey_bgr(red)


@pytest.mark.parametrize('settings', SETTINGS)
def test_single_channel_images_bit_for_bit(settings):
    """A grey H x W image gets one channel of what mmseg gives for it
    repeated to BGR, from the same random draws."""
    for seed in range(40):
        img = grey_image(seed)
        theirs_img, theirs_next, _, _ = run_both(img, settings, seed)
        np.random.seed(seed)
        single = TRANSFORMS.get('GreyscalePhotoMetricDistortion')(
            **settings).transform(dict(img=img[..., 0].copy()))['img']
        assert single.dtype == np.uint8 and single.shape == img.shape[:2]
        np.testing.assert_array_equal(single, theirs_img[..., 0])
        np.testing.assert_array_equal(theirs_img[..., 1:],
                                      theirs_img[..., :1].repeat(2, axis=2))
        assert np.random.random() == theirs_next


def test_single_channel_float_image_is_an_error():
    transform = TRANSFORMS.get('GreyscalePhotoMetricDistortion')()
    img = grey_image(0)[..., 0].astype(np.float32)
    with pytest.raises(ValueError, match=r'uint8, got float32 for a\.dcm'):
        transform.transform(dict(img=img, img_path='a.dcm'))
