"""PredictionWriterHook: the masks and pictures of tools/test.py."""
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from mmseg_ptx.engine.hooks import PredictionWriterHook


def _sample(img_path, pred, gt=None):
    sample = SegDataSample(metainfo=dict(img_path=str(img_path)))
    sample.pred_sem_seg = PixelData(data=torch.from_numpy(pred)[None])
    if gt is not None:
        sample.gt_sem_seg = PixelData(data=torch.from_numpy(gt)[None])
    return sample


def _runner(data_infos=()):
    """What the hook reads of a Runner: the test set's data infos."""

    class Dataset(list):

        def get_data_info(self, index):
            return self[index]

    return SimpleNamespace(test_dataloader=SimpleNamespace(
        dataset=Dataset(data_infos)))


@pytest.fixture
def titles(monkeypatch):
    """The panel titles of every picture saved."""
    saved = []
    save = Figure.savefig

    def record(fig, *args, **kwargs):
        saved.append([ax.get_title() for ax in fig.axes])
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, 'savefig', record)
    return saved


def test_masks_and_pictures_by_file_stem(tmp_path, titles):
    image = np.random.default_rng(0).integers(0, 256, (32, 40), np.uint8)
    cv2.imwrite(str(tmp_path / '1.2.3.png'), image)
    pred = np.zeros((32, 40), np.int64)
    pred[4:10, 5:9] = 1
    gt = np.zeros_like(pred)
    gt[4:12, 5:9] = 1
    hook = PredictionWriterHook(mask_dir=str(tmp_path / 'masks'),
                                panel_dir=str(tmp_path / 'panels'))
    hook.before_test(_runner())
    hook.after_test_iter(None, 0, outputs=[
        _sample(tmp_path / '1.2.3.png', pred, gt),
        # No ground truth (a pipeline without LoadAnnotations): its panel
        # says so, rather than show an empty mask as a negative.
        _sample(tmp_path / '1.2.3.png', pred)])
    mask = cv2.imread(str(tmp_path / 'masks/1.2.3.png'), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(mask, pred.astype(np.uint8) * 255)
    assert (tmp_path / 'panels/1.2.3.png').is_file()
    assert titles == [
        ['Input', 'Ground truth (32 px)', 'Prediction (24 px)'],
        ['Input', 'Ground truth: not given', 'Prediction (24 px)']]


def test_a_failed_write_names_the_mask(tmp_path):
    cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((8, 8), np.uint8))
    hook = PredictionWriterHook(mask_dir=str(tmp_path / 'masks'))
    hook.before_test(_runner())
    (tmp_path / 'masks/a.png').mkdir()  # a folder where the mask goes
    with pytest.raises(OSError, match='Could not write the mask .*a.png'):
        hook.after_test_iter(None, 0, outputs=[
            _sample(tmp_path / 'a.png', np.zeros((8, 8), np.int64))])


def test_needs_a_folder():
    with pytest.raises(ValueError, match='mask_dir or panel_dir'):
        PredictionWriterHook()


def test_masks_and_pictures_need_folders_of_their_own(tmp_path):
    """Both are named <ImageId>.png: the pictures would replace the masks
    (also where the two paths differ but name one folder)."""
    (tmp_path / 'out').mkdir()
    (tmp_path / 'link').symlink_to(tmp_path / 'out')
    for panel_dir in (tmp_path / 'out', tmp_path / 'link',
                      tmp_path / 'out' / '.'):
        with pytest.raises(ValueError, match='are the same folder'):
            PredictionWriterHook(mask_dir=str(tmp_path / 'out'),
                                 panel_dir=str(panel_dir))
    PredictionWriterHook(mask_dir=str(tmp_path / 'out'),
                         panel_dir=str(tmp_path / 'out' / 'panels'))


def test_the_test_sets_own_files_are_never_written_over(tmp_path):
    """--out pointed at the PNG layout's mask folder: its masks are named
    like their images, so a prediction would replace the ground truth."""
    for folder in ('png_images', 'png_masks'):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / 'a.png'),
                    np.full((8, 8), 7, np.uint8))
    sample = _sample(tmp_path / 'png_images' / 'a.png',
                     np.ones((8, 8), np.int64))
    sample.set_metainfo(dict(seg_map_path=str(tmp_path / 'png_masks/a.png')))
    for folder in ('png_images', 'png_masks'):
        for hook in (PredictionWriterHook(mask_dir=str(tmp_path / folder)),
                     PredictionWriterHook(panel_dir=str(tmp_path / folder))):
            with pytest.raises(OSError, match='is a file of the test set'):
                hook.after_test_iter(None, 0, outputs=[sample])
        kept = cv2.imread(str(tmp_path / folder / 'a.png'),
                          cv2.IMREAD_UNCHANGED)
        assert (kept == 7).all()


def test_the_test_sets_folders_are_refused_before_testing(tmp_path):
    """Named by ImageId, predictions no longer clash with the PNG layout's
    new_filename masks: the folders of the test set's images and masks
    are refused as a whole, before anything is written."""
    infos = [dict(img_path=str(tmp_path / 'png_images' / 'a.png'),
                  seg_map_path=str(tmp_path / 'png_masks' / 'a.png'),
                  image_id='1.2.3')]
    for folder in ('png_images', 'png_masks'):
        for kwargs, flag in ((dict(mask_dir=str(tmp_path / folder)),
                              'mask_dir'),
                             (dict(panel_dir=str(tmp_path / folder) + '/'),
                              'panel_dir')):
            with pytest.raises(OSError, match=f'{flag} .* holds the test '
                               "set's own images or masks"):
                PredictionWriterHook(**kwargs).before_test(_runner(infos))
    assert not list(tmp_path.iterdir())
    PredictionWriterHook(mask_dir=str(tmp_path / 'out')).before_test(
        _runner(infos))


def test_files_are_named_by_the_image_id_of_the_data_info(tmp_path):
    """The PNG layout's files are named by new_filename: the outputs take
    the data info's ImageId; an image without one keeps its stem."""
    cv2.imwrite(str(tmp_path / '5_train_1_.png'), np.zeros((8, 8), np.uint8))
    cv2.imwrite(str(tmp_path / 'other.png'), np.zeros((8, 8), np.uint8))
    hook = PredictionWriterHook(mask_dir=str(tmp_path / 'masks'))
    hook.before_test(_runner([
        dict(img_path=str(tmp_path / '5_train_1_.png'), image_id='1.2.3'),
        dict(img_path=str(tmp_path / 'other.png'))]))
    pred = np.zeros((8, 8), np.int64)
    hook.after_test_iter(None, 0, outputs=[
        _sample(tmp_path / '5_train_1_.png', pred),
        _sample(tmp_path / 'other.png', pred)])
    assert sorted(p.name for p in (tmp_path / 'masks').glob('*.png')) == [
        '1.2.3.png', 'other.png']


def test_a_distributed_samplers_padding_is_not_written(tmp_path,
                                                       monkeypatch):
    """Three images on two ranks: mmengine's DefaultSampler gives rank 1
    positions 1 and 3 of [a, b, c, a], and rank 0 writes ``a`` too."""
    from mmseg_ptx.engine.hooks import prediction_writer_hook
    for name in 'abc':
        cv2.imwrite(str(tmp_path / f'{name}.png'), np.zeros((8, 8),
                                                            np.uint8))
    monkeypatch.setattr(prediction_writer_hook, 'get_dist_info',
                        lambda: (1, 2))
    hook = PredictionWriterHook(mask_dir=str(tmp_path / 'masks'))
    infos = [dict(img_path=str(tmp_path / f'{n}.png')) for n in 'abc']
    hook.before_test(_runner(infos))
    pred = np.ones((8, 8), np.int64)
    hook.after_test_iter(None, 0, outputs=[_sample(tmp_path / 'b.png', pred)])
    hook.after_test_iter(None, 1, outputs=[_sample(tmp_path / 'a.png', pred)])
    # Rank 1 marked the folder too (before its first prediction: rank 0
    # sees an empty folder or a marked one, on any node's disk).
    assert sorted(p.name for p in (tmp_path / 'masks').iterdir()) == [
        prediction_writer_hook.MARKER, 'b.png']
    # A new test run starts counting again.
    hook.before_test(_runner(infos))
    hook.after_test_iter(None, 0, outputs=[_sample(tmp_path / 'c.png', pred)])
    assert (tmp_path / 'masks/c.png').is_file()


def test_a_folder_of_someone_elses_files_is_refused(tmp_path):
    """Ground-truth masks named by ImageId in the folder given: refused
    before anything is written. A folder an earlier run wrote (its
    marker) is written into again."""
    from mmseg_ptx.engine.hooks.prediction_writer_hook import MARKER
    theirs = tmp_path / 'gt_masks'
    theirs.mkdir()
    (theirs / '1.2.3.png').write_bytes(b'ground truth')
    with pytest.raises(FileExistsError, match='gt_masks holds files that '
                       r'are not predictions of an earlier test run '
                       r'\(1\.2\.3\.png\); the predictions, named '
                       r'<ImageId>\.png, would mix with them'):
        PredictionWriterHook(mask_dir=str(theirs)).before_test(_runner())
    assert [p.name for p in theirs.iterdir()] == ['1.2.3.png']
    for name in ('a.png', 'b.png', 'c.png'):
        (theirs / name).write_bytes(b'x')
    with pytest.raises(FileExistsError) as err:
        PredictionWriterHook(mask_dir=str(theirs)).before_test(_runner())
    assert ' (1.2.3.png, a.png, b.png, ...); ' in str(err.value)
    assert str(err.value).endswith('write them to a new or empty folder')
    for name in ('a.png', 'b.png', 'c.png'):
        (theirs / name).unlink()
    ours = tmp_path / 'out'
    pred = np.zeros((8, 8), np.int64)
    for _ in range(2):  # the second run writes over the first's
        hook = PredictionWriterHook(mask_dir=str(ours))
        hook.before_test(_runner())
        hook.after_test_iter(None, 0, outputs=[
            _sample(tmp_path / '1.2.3.png', pred)])
    assert sorted(p.name for p in ours.iterdir()) == ['1.2.3.png', MARKER]


def test_folders_inside_each_other_and_the_work_dir(tmp_path):
    """--out inside --show-dir: both checked before either is made (making
    the inner one makes the outer). --out the work dir: the log folder and
    config mmengine made for this run are no one else's files."""
    from mmseg_ptx.engine.hooks.prediction_writer_hook import MARKER
    show = tmp_path / 'show'
    for _ in range(2):
        PredictionWriterHook(mask_dir=str(show / 'masks'),
                             panel_dir=str(show)).before_test(_runner())
    assert sorted(p.name for p in show.iterdir()) == [MARKER, 'masks']
    work_dir = tmp_path / 'work'
    (work_dir / '20261129_010203').mkdir(parents=True)
    (work_dir / '20261129_010203.py').write_text('')
    runner = _runner()
    runner.timestamp = '20261129_010203'
    PredictionWriterHook(mask_dir=str(work_dir)).before_test(runner)
    assert (work_dir / MARKER).is_file()
