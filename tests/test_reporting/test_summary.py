"""reporting.summary: what the report reads and how it says it."""
import os

import pytest
import torch
from mmengine.config import Config

from mmseg_ptx.reporting.summary import _model_rows


@pytest.mark.parametrize('loss, expected', [
    (dict(type='DiceCELoss', ce_weight=0.5, dice_weight=0.5,
          class_weight=[1.0, 2.0]),
     'DiceCELoss: 0.5 x CE (class-weighted) + 0.5 x soft Dice'),
    # The terms it has, weighted or not, as configured.
    (dict(type='mmseg.DiceCELoss', ce_weight=0.3, focal_weight=0.5,
          dice_mode='image'),
     'DiceCELoss: 0.3 x CE + 0.5 x soft Dice, one per image + 0.5 x focal '
     '(gamma 2.0)'),
    (dict(type='DiceCELoss', ce_weight=0.0, dice_weight=1.0),
     'DiceCELoss: 1.0 x soft Dice'),
    (dict(type='DiceCELoss', class_weight=[1.0, 2.0], focal_weight=0.5),
     'DiceCELoss: 0.5 x CE (class-weighted) + 0.5 x soft Dice + 0.5 x focal '
     '(gamma 2.0, class-weighted)'),
    (dict(type='CrossEntropyLoss'), 'CrossEntropyLoss'),
    # MMSeg's factor on a whole loss.
    (dict(type='DiceCELoss', loss_weight=0.4),
     'DiceCELoss: 0.4 x (0.5 x CE + 0.5 x soft Dice)'),
    (dict(type='CrossEntropyLoss', loss_weight=0.4), '0.4 x CrossEntropyLoss'),
    (dict(type='CrossEntropyLoss', loss_weight=0.0), '0.0 x CrossEntropyLoss'),
    ([dict(type='CrossEntropyLoss'), dict(type='DiceLoss')],
     'CrossEntropyLoss, DiceLoss'),
])
def test_loss_row_names_every_loss(loss, expected):
    cfg = Config.fromfile('configs/upernet_swin-b_ptx-512.py')
    cfg.model.decode_head.loss_decode = loss
    rows = dict(_model_rows(cfg))
    assert rows['Loss function'] == expected
    # The auxiliary head's loss is in the total loss the report plots.
    assert rows['Auxiliary head loss (FCNHead)'] == (
        'DiceCELoss: 0.2 x CE (class-weighted) + 0.2 x soft Dice')
    assert rows['Input size'] == '512 x 512'
    assert rows['Architecture'] == 'EncoderDecoder + UPerHead'


def test_input_size_row_of_a_config_that_validates_larger():
    # The demo config trains on 128 px crops and validates 256 px images.
    rows = dict(_model_rows(
        Config.fromfile('configs/upernet_swin-nano_ptx-demo-128.py')))
    assert rows['Input size'] == ('128 x 128 training crops; validation '
                                  'images resized to fit 256 x 256 (aspect '
                                  'kept)')


def test_rows_and_title_of_another_mmseg_model():
    """A plugin user's OCRNet (a cascade of heads) on a ResNet: named as
    it is, not as this project's UPerNet + Swin."""
    from mmseg_ptx.reporting.summary import _architecture
    cfg = Config.fromfile('configs/upernet_swin-b_ptx-512.py')
    assert _architecture(cfg) == 'UPerNet'
    head = cfg.model.decode_head
    cfg.model.backbone = dict(type='ResNetV1c', depth=50)
    cfg.model.decode_head = [dict(type='FCNHead', num_classes=2),
                             dict(head, type='OCRHead', channels=512)]
    rows = dict(_model_rows(cfg))
    assert rows['Backbone'] == 'ResNetV1c'
    assert rows['Architecture'] == 'EncoderDecoder + OCRHead'
    assert rows['Decode head channels'] == 512
    assert _architecture(cfg) == 'OCRHead'
    assert _architecture(None) == 'Segmentation model'


def test_model_rows_see_through_test_time_wrappers():
    """tools/test.py --tta / --extra-model dump a wrapped model config over
    the training run's."""
    cfg = Config.fromfile('configs/upernet_swin-b_ptx-512.py')
    plain = _model_rows(cfg)
    inner = cfg.model
    cfg.model = dict(type='SegTTAModelWithLogits',
                     module=dict(type='EnsembleSegmentor',
                                 models=[inner, inner],
                                 checkpoints=['a.pth', 'b.pth']))
    assert _model_rows(cfg) == plain


def test_pictures_load_the_checkpoint_through_wrappers(tmp_path, demo_root,
                                                       capfd):
    """A TTA-wrapped dumped config still draws with the checkpoint's
    weights (a wrapper's keys would not match them). The progress bar is
    tqdm's on stderr, not mmengine's on stdout, which left its line open
    for the next message."""
    from tiny_model import build_tiny_model, save_tiny_checkpoint

    from conftest import write_tiny_run_config
    from mmseg_ptx.reporting.summary import render_predictions
    ckpt = save_tiny_checkpoint(build_tiny_model(seed=3),
                                tmp_path / 'tiny.pth')
    cfg = Config.fromfile(
        str(write_tiny_run_config(tmp_path / 'cfg.py', demo_root)))
    kwargs = dict(checkpoint=str(ckpt), num_pos=1, num_neg=1, max_images=3,
                  device='cpu')
    # mmseg's init_model drops the pretrained weights from the config it
    # is given.
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint='x')
    before = cfg.to_dict()
    plain = render_predictions(cfg, out_dir=str(tmp_path / 'a'), **kwargs)
    assert cfg.to_dict() == before  # the caller's (the runner's) config
    cfg.model = dict(type='SegTTAModelWithLogits', module=cfg.model)
    capfd.readouterr()
    wrapped = render_predictions(cfg, out_dir=str(tmp_path / 'b'), **kwargs)
    assert wrapped == plain and plain
    out, err = capfd.readouterr()
    assert 'report pictures' not in out and 'task/s' not in out
    if not os.environ.get('TQDM_DISABLE'):  # read when tqdm is imported
        assert 'report pictures: 100%' in err and err.endswith('\n')


def pr_curve(seed: int):
    """A PneumothoraxMetric PR curve of random predictions."""
    import torch

    from mmseg_ptx.evaluation import PneumothoraxMetric
    g = torch.Generator().manual_seed(seed)
    gt = (torch.rand(32, 32, generator=g) < 0.1).long()
    logit = torch.randn(32, 32, generator=g) + 2 * gt
    metric = PneumothoraxMetric()
    metric.process({}, [dict(
        seg_logits=dict(data=torch.stack([torch.zeros_like(logit), logit])),
        gt_sem_seg=dict(data=gt[None]))])
    metric.evaluate(1)
    return metric.last_curve


def test_iteration_based_run(tmp_path):
    """mmseg's own configs train by iterations: every record has epoch 0,
    PRCurveHook names curves by iteration, and the best validation is not
    the latest."""
    import json

    from mmseg_ptx.reporting.summary import write_performance_summary
    history = [
        dict(mode='val', epoch=0, iter=it, dice=dice, ap=ap,
             **{'train/loss': 1.0 / it})
        for it, dice, ap in ((1000, 0.40, 0.30), (2000, 0.60, 0.50),
                             (3000, 0.55, 0.45))
    ]
    # A standalone validation (tools/test.py-style record) has no iteration.
    history.append(dict(mode='val', epoch=None, iter=None, dice=0.1))
    (tmp_path / 'metrics_history.json').write_text(json.dumps(history))
    curves = tmp_path / 'pr_curves'
    curves.mkdir()
    for it in (2000, 3000):
        curve = pr_curve(seed=it).to_dict(max_points=50)
        (curves / f'val_iter_{it:06d}.json').write_text(json.dumps(curve))
    (curves / 'val_latest.json').write_text(
        (curves / 'val_iter_003000.json').read_text())

    report = open(write_performance_summary(str(tmp_path),
                                            images=False)).read()
    assert '| Iterations run (to the last validation) | 3,000 |' in report
    assert '| Best iteration (by val pooled Dice) | 2,000 |' in report
    assert 'at iteration 2000' in report
    # No split_meta.json: the split is not described.
    assert 'at iteration 2000 on the validation split;' in report
    assert '| 2000 | 0.6000 | 2000 |\n| 3000 | 0.5500 | 3000 |' in report
    assert (tmp_path / 'precision_recall_curve.png').is_file()

    # A dumped config that tools/test.py --tta wrapped, given as a Config.
    cfg = Config.fromfile('configs/upernet_swin-b_ptx-512.py')
    cfg.model = dict(type='SegTTAModelWithLogits', module=cfg.model)
    report = open(write_performance_summary(str(tmp_path), config=cfg,
                                            images=False)).read()
    assert '**Class weights** (cross-entropy): [0.5047, 54.2225]' in report
    # Weights computed by tools/dataset_stats.py: rounded as in the
    # findings, and their file named.
    stats = tmp_path / 'stats.json'
    stats.write_text(json.dumps(dict(class_weights=[0.5125606131706554,
                                                    20.40348692403487])))
    cfg.model.module.decode_head.loss_decode.class_weight = str(stats)
    report = open(write_performance_summary(str(tmp_path), config=cfg,
                                            images=False)).read()
    assert ('**Class weights** (cross-entropy): [0.5126, 20.4035] (from '
            f'{stats})') in report

    # Without the best validation's curve the latest does not stand in.
    (tmp_path / 'precision_recall_curve.png').unlink()
    (curves / 'val_iter_002000.json').unlink()
    write_performance_summary(str(tmp_path), images=False)
    assert not (tmp_path / 'precision_recall_curve.png').exists()


def test_progression_by_epoch_ranges_or_tenths_of_validations():
    from mmseg_ptx.reporting.summary import _progression
    by_epoch = [dict(epoch=e, iter=10 * e, dice=e / 100) for e in range(1, 24)]
    assert _progression(by_epoch, 'epoch') == [
        ('1-10', 0.10, 10), ('11-20', 0.20, 20), ('21-23', 0.23, 23)]
    by_iter = [dict(epoch=0, iter=100 * i, dice=1 - i / 100)
               for i in range(1, 26)]
    rows = _progression(by_iter, 'iter')
    assert rows[0] == ('100-300', 0.99, 100) and len(rows) == 9
    assert rows[-1] == ('2500', 0.75, 2500)


def test_dice_row_names_the_metric_threshold():
    from mmseg_ptx.reporting.summary import _metric_threshold
    cfg = Config.fromfile('configs/upernet_swin-b_ptx-512.py')
    assert _metric_threshold(cfg) == 0.5
    cfg.val_evaluator.threshold = 0.4
    assert _metric_threshold(cfg) == 0.4
    assert _metric_threshold(None) == 0.5
    # A scoped name or the class itself (new-style configs) too.
    from mmseg_ptx.evaluation import PneumothoraxMetric
    for type_ in ('mmseg.PneumothoraxMetric', PneumothoraxMetric):
        cfg.val_evaluator.type = type_
        assert _metric_threshold(cfg) == 0.4


def test_training_run_files_after_tests_in_the_same_work_dir(tmp_path):
    """tools/test.py logs (and dumps its config) into the training's work
    dir: the report keeps to the training run's config, log and best
    checkpoint."""
    import os
    import time

    from mmseg_ptx.reporting.summary import (_find_best_checkpoint,
                                             _find_config, _training_log,
                                             _world_size)

    def write(rel, text='', age=0.0):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        stamp = time.time() - 100 + age
        os.utime(path, (stamp, stamp))
        return path

    train_cfg = write('20260101_000000/vis_data/config.py', 'a = 1\n', 1)
    write('20260101_000000/20260101_000000.log',
          'GPU number: 3\nEpoch(train) [1][10/50] loss: 1.0\n', 2)
    write('20260102_000000/20260102_000000.log',
          'GPU number: 1\nEpoch(test) [5/5] dice: 0.5\n', 3)
    write('other_test_config.py', 'a = 2\n', 4)
    log = _training_log(str(tmp_path))
    assert _find_config(str(tmp_path), log) == str(train_cfg)
    # Without the visualizer's copy: the training run's dumped config, not
    # a newer test run's <timestamp>.py.
    train_cfg.unlink()
    dumped = write('cfg.py', 'a = 3\n', 5)
    write('20260102_000000.py', 'a = 4\n', 6)
    assert _find_config(str(tmp_path), log) == str(dumped)
    assert _world_size(log) == 3

    # A resumed run left its earlier attempt's best checkpoint, newer.
    best = write('best_dice_epoch_1.pth', age=5)
    write('best_dice_epoch_2.pth', age=6)
    for path in (best, tmp_path / 'best_dice_epoch_2.pth'):
        stamp = path.stat().st_mtime
        torch.save({}, path)
        os.utime(path, (stamp, stamp))
    assert _find_best_checkpoint(str(tmp_path), dict(epoch=1, iter=50),
                                 'epoch') == str(best)


def test_pictures_come_from_the_best_validations_checkpoint(
        tmp_path, monkeypatch):
    """Without save_best the best step's regular checkpoint is taken, not
    the last; a relative path in last_checkpoint (a relative work_dir) is
    found from another directory."""
    from mmseg_ptx.reporting.summary import _find_best_checkpoint
    work_dir = tmp_path / 'work_dirs' / 'run'
    work_dir.mkdir(parents=True)
    for name in ('iter_3.pth', 'iter_6.pth'):
        torch.save({}, work_dir / name)
    (work_dir / 'last_checkpoint').write_text('./work_dirs/run/iter_6.pth')
    monkeypatch.chdir(tmp_path / 'work_dirs')  # not the training's folder
    best = dict(epoch=0, iter=3)
    assert _find_best_checkpoint(str(work_dir), best, 'iter') == str(
        work_dir / 'iter_3.pth')
    (work_dir / 'iter_3.pth').unlink()
    assert _find_best_checkpoint(str(work_dir), best, 'iter') == str(
        work_dir / 'iter_6.pth')


def test_a_checkpoint_cut_short_is_passed_over(tmp_path):
    """A job killed while CheckpointHook wrote the new best (mmengine
    removes the old one first) leaves a truncated best_*.pth: the pictures
    come from another checkpoint, not from a failed load."""
    import os

    from mmseg_ptx.reporting.summary import _find_best_checkpoint
    torch.save({'state_dict': {'w': torch.zeros(1000)}},
               tmp_path / 'epoch_2.pth')
    data = (tmp_path / 'epoch_2.pth').read_bytes()
    (tmp_path / 'best_dice_epoch_2.pth').write_bytes(data[:len(data) // 2])
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_2.pth'))
    best = dict(epoch=2, iter=10)
    # The exact step's regular checkpoint.
    assert _find_best_checkpoint(str(tmp_path), best, 'epoch') == str(
        tmp_path / 'epoch_2.pth')
    # Otherwise the last checkpoint, as without a best one.
    os.rename(tmp_path / 'epoch_2.pth', tmp_path / 'epoch_3.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_3.pth'))
    assert _find_best_checkpoint(str(tmp_path), best, 'epoch') == str(
        tmp_path / 'epoch_3.pth')


def test_statistics_of_other_split_settings_are_left_out(tmp_path):
    import json

    from mmseg_ptx.reporting.summary import _stats
    path = tmp_path / 'stats.json'
    stats = dict(settings=dict(neg_keep_ratio=0.15, val_ratio=0.2, seed=42,
                               split_order='balance_first'),
                 num_images=dict(val=2), imbalance_ratio=50.0)
    path.write_text(json.dumps(stats))
    split = dict(settings=dict(neg_keep_ratio=0.15, val_ratio=0.2, seed=42,
                               order='balance_first'))
    assert _stats(None, str(path), split) == stats
    split['settings']['order'] = 'split_first'
    assert _stats(None, str(path), split) == {}
    # Without split_meta.json (hand-made split lists): the config's
    # settings, the dataset's defaults where it sets none.
    cfg = Config.fromfile('configs/upernet_swin-b_ptx-512.py')
    assert _stats(cfg, str(path), {}) == stats
    cfg.train_dataloader.dataset.neg_keep_ratio = 1.0
    assert _stats(cfg, str(path), {}) == {}
    path.write_text('{not json')
    with pytest.raises(ValueError, match=r'stats\.json is not valid JSON'):
        _stats(None, str(path), split)
    # Not the tool's object, or one that does not say its split: named,
    # or left out.
    path.write_text('[1, 2]')
    with pytest.raises(ValueError,
                       match=r'stats\.json is not the statistics JSON .* '
                       'holds a list'):
        _stats(None, str(path), split)
    path.write_text(json.dumps(dict(imbalance_ratio=45.6)))
    assert _stats(None, str(path), split) == {}


def test_statistics_of_other_training_images_are_left_out(tmp_path):
    """tools/dataset_stats.py records which training images it counted:
    the run's train.txt decides (a hand-made split ignores the settings;
    the data may have changed under a kept stats.json)."""
    import json

    from mmseg_ptx.datasets.split import ids_sha256
    from mmseg_ptx.reporting.summary import _stats
    split_dir = tmp_path / 'splits'
    split_dir.mkdir()
    (split_dir / 'train.txt').write_text('b\na\n')
    (split_dir / 'val.txt').write_text('c\n')
    cfg = Config.fromfile('configs/upernet_swin-b_ptx-512.py')
    cfg.train_dataloader.dataset.data_root = str(tmp_path)
    # Settings the hand-made split ignored: not held against the file.
    stats = dict(settings=dict(neg_keep_ratio=0.7, val_ratio=0.2, seed=42,
                               split_order='balance_first',
                               train_ids_sha256=ids_sha256(['a', 'b'])))
    path = tmp_path / 'stats.json'
    path.write_text(json.dumps(stats))
    assert _stats(cfg, str(path), {}) == stats
    # The run's own settings, other training images: only the
    # fingerprint can tell.
    stats['settings']['neg_keep_ratio'] = 0.15
    path.write_text(json.dumps(stats))
    assert _stats(cfg, str(path), {}) == stats
    (split_dir / 'train.txt').write_text('a\nd\n')
    assert _stats(cfg, str(path), {}) == {}


def test_a_broken_statistics_file_found_by_default_is_left_out(tmp_path):
    """The statistics are optional: a half-written stats.json (an
    interrupted dataset_stats.py before it wrote atomically) costs the
    report only them; one the user names is still an error."""
    from mmseg_ptx.reporting.summary import _stats
    (tmp_path / 'splits').mkdir()
    path = tmp_path / 'splits' / 'stats.json'
    path.write_text('{"settings": {"neg_keep')
    cfg = Config.fromfile('configs/upernet_swin-b_ptx-512.py')
    cfg.train_dataloader.dataset.data_root = str(tmp_path)
    assert _stats(cfg, None, {}) == {}
    with pytest.raises(ValueError, match='is not valid JSON'):
        _stats(cfg, str(path), {})


def test_findings_name_the_loss_class_weights(tmp_path):
    import json

    from mmseg_ptx.reporting.summary import _findings, _loss_class_weight
    cfg = Config.fromfile('configs/upernet_swin-b_ptx-512.py')
    assert _loss_class_weight(cfg) == [0.5047, 54.2225]
    stats_path = tmp_path / 'stats.json'
    stats_path.write_text(json.dumps(dict(class_weights=[0.5, 20.0])))
    cfg.model.decode_head.loss_decode.class_weight = str(stats_path)
    assert _loss_class_weight(cfg) == [0.5, 20.0]
    cfg.model.decode_head.loss_decode.class_weight = None
    assert _loss_class_weight(cfg) is None

    stats = dict(imbalance_ratio=80.0, class_weights=[9.0, 9.0])
    text = ' '.join(_findings({}, 'the split', stats, 'epoch',
                              [0.5, 20.0]))
    assert 'class weights [0.5, 20.0] in the loss\'s cross-entropy' in text
    assert '9.0' not in text and 'Dice term' not in text
    text = ' '.join(_findings({}, 'the split', stats, 'epoch', None))
    assert 'with no class weights in the loss' in text
    # With a focal term, which DiceCELoss weighs with them too.
    from mmseg_ptx.reporting.summary import _class_weighted_terms
    assert _class_weighted_terms(cfg) == 'cross-entropy'
    cfg.model.decode_head.loss_decode.update(class_weight=[0.5, 20.0],
                                             focal_weight=0.5)
    terms = _class_weighted_terms(cfg)
    assert terms == 'cross-entropy and focal'
    text = ' '.join(_findings({}, 'the split', stats, 'epoch', [0.5, 20.0],
                              weighted_terms=terms))
    assert ("[0.5, 20.0] in the loss's cross-entropy and focal terms."
            in text)
    cfg.model.decode_head.loss_decode.ce_weight = 0.0  # focal alone
    assert _class_weighted_terms(cfg) == 'focal'


def test_best_validation_is_the_one_save_best_kept():
    """The report's numbers and pictures are of the validation whose
    checkpoint CheckpointHook kept: by its save_best metric and rule."""
    from mmseg_ptx.reporting.summary import (_best_metric_rule,
                                             _best_validation)
    val = [dict(epoch=1, dice=0.5, ap=0.9, loss=0.2),
           dict(epoch=2, dice=0.7, ap=0.6, loss=0.1),
           dict(epoch=3, dice=0.7, ap=0.7, loss=0.3)]
    cfg = Config.fromfile('configs/upernet_swin-b_ptx-512.py')
    assert _best_metric_rule(cfg) == ('dice', 'greater')
    # Ties: the first, as CheckpointHook keeps it.
    assert _best_validation(val, 'dice', 'greater') == (val[1], 'dice')
    cfg.default_hooks.checkpoint.save_best = 'ap'
    assert _best_validation(val, *_best_metric_rule(cfg)) == (val[0], 'ap')
    cfg.default_hooks.checkpoint.save_best = ['loss', 'dice']
    assert _best_metric_rule(cfg) == ('loss', 'greater')  # the config's
    cfg.default_hooks.checkpoint.rule = None  # as mmengine infers it
    assert _best_metric_rule(cfg) == ('loss', 'less')
    assert _best_validation(val, *_best_metric_rule(cfg)) == (val[1],
                                                              'loss')
    cfg.default_hooks.checkpoint.rule = ['greater', 'greater']
    assert _best_validation(val, *_best_metric_rule(cfg)) == (val[2],
                                                              'loss')
    # mmengine's order: greater keys ('acc') before less keys ('loss').
    cfg.default_hooks.checkpoint.save_best = 'loss_acc'
    assert _best_metric_rule(cfg) == ('loss_acc', 'greater')
    cfg.default_hooks.checkpoint.save_best = 'auto'
    assert _best_metric_rule(cfg) == ('dice', 'greater')
    assert _best_metric_rule(None) == ('dice', 'greater')
    # A metric no record has (a prefixed name): by pooled Dice.
    assert _best_validation(val, 'val/ap', 'greater') == (val[1], 'dice')


def test_report_of_a_run_without_positive_pixels(tmp_path):
    """AP and the best F1 are NaN without a positive pixel; the curve's
    JSON holds them as null, which the report must still plot."""
    import torch

    from mmseg_ptx.evaluation import PneumothoraxMetric
    from mmseg_ptx.reporting.json_io import write_json
    from mmseg_ptx.reporting.summary import write_performance_summary
    metric = PneumothoraxMetric()
    metric.process({}, [dict(
        seg_logits=dict(data=torch.randn(2, 32, 32)),
        gt_sem_seg=dict(data=torch.zeros(1, 32, 32, dtype=torch.uint8)))])
    metrics = metric.evaluate(1)
    curve = metric.last_curve.to_dict(max_points=100)
    (tmp_path / 'pr_curves').mkdir()
    write_json(curve, str(tmp_path / 'pr_curves' / 'val_epoch_001.json'))
    write_json([dict(mode='val', epoch=1, iter=10, **metrics)],
               str(tmp_path / 'metrics_history.json'))
    write_performance_summary(str(tmp_path), images=False, world_size=1)
    assert (tmp_path / 'precision_recall_curve.png').is_file()


def report_on_split(tmp_path, split_meta=None, synthetic=False,
                    drop=(), exist_ok=False, **dataset):
    """The report of a one-validation run of the demo config on a data
    root holding ``split_meta`` (None: none) and, if ``synthetic``,
    make_demo_data's marker; its datasets without the settings ``drop``
    and with ``dataset``'s; ``exist_ok``: the data root may hold files
    already."""
    from mmseg_ptx.datasets.synthetic import SYNTHETIC_MARKER
    from mmseg_ptx.reporting.json_io import write_json
    from mmseg_ptx.reporting.summary import write_performance_summary
    root = tmp_path / 'data'
    (root / 'splits').mkdir(parents=True, exist_ok=exist_ok)
    if synthetic:
        (root / SYNTHETIC_MARKER).write_text('synthetic')
    if split_meta is not None:
        write_json(split_meta, str(root / 'splits' / 'split_meta.json'))
    cfg = Config.fromfile('configs/upernet_swin-nano_ptx-demo-128.py')
    for loader in ('train_dataloader', 'val_dataloader'):
        cfg[loader].dataset.update(data_root=str(root), **dataset)
        for name in drop:
            cfg[loader].dataset.pop(name)
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    write_json([dict(mode='val', epoch=1, iter=10, dice=0.5, iou=0.33,
                     dice_pp=0.6)],
               str(work_dir / 'metrics_history.json'))
    return open(write_performance_summary(
        str(work_dir), config=cfg, images=False, world_size=1)).read()


def test_split_settings_are_read_from_split_meta(tmp_path):
    """split_meta.json names them 'seed' and 'order'; a config that leaves
    them at the dataset's defaults must still report the split's."""
    report = report_on_split(
        tmp_path,
        dict(settings=dict(neg_keep_ratio=0.15, val_ratio=0.2, seed=7,
                           order='split_first'),
             counts=dict(train=80, val=20, val_positive=5,
                         balanced_positive=30, balanced_negative=70)),
        drop=('split_seed', 'split_order'))
    assert ('**Negative undersampling**: keep ratio 0.15 (split_first; '
            'seed 7)') in report
    # The kept negatives include the natural validation set's.
    assert '| Kept (training subset undersampled) - negative | 70 |' in report
    assert 'After balancing' not in report


@pytest.mark.parametrize('settings, synthetic, description, against', [
    # The reference's split of the SIIM data: the difference is given.
    (dict(neg_keep_ratio=0.15, val_ratio=0.2, order='balance_first'), False,
     'validation split of 20 images (negatives undersampled before the '
     'split, as in the reference, 25% positive)',
     'the reference reported 0.6095 (-0.1095)'),
    # balance_first keeping every negative undersamples nothing.
    (dict(neg_keep_ratio=1.0, val_ratio=0.2, order='balance_first'), False,
     'validation split of 20 images (natural class distribution, 25% '
     'positive)',
     'the reference reported 0.6095 on a split of its own'),
    (dict(neg_keep_ratio=0.15, val_ratio=0.2, order='split_first'), False,
     'validation split of 20 images (natural class distribution, 25% '
     'positive)',
     'the reference reported 0.6095 on a split of its own'),
    # tools/make_demo_data.py's images are no SIIM radiographs.
    (dict(neg_keep_ratio=0.15, val_ratio=0.2, order='balance_first'), True,
     'validation split of 20 synthetic images (negatives undersampled '
     'before the split, as in the reference, 25% positive)',
     'the reference reported 0.6095 on the SIIM radiographs, which these '
     'synthetic images are not: the two are not comparable.'),
])
def test_the_reference_is_compared_only_on_its_split(
        tmp_path, settings, synthetic, description, against):
    report = report_on_split(
        tmp_path, dict(settings=dict(seed=0, **settings),
                       counts=dict(train=80, val=20, val_positive=5)),
        synthetic)
    assert f'### Segmentation Metrics ({description})' in report
    assert f'**Pooled validation Dice 0.5000** at epoch 1 on the ' \
        f'{description}; {against}' in report
    assert ('**Synthetic demo data**' in report) == synthetic
    # The best epoch was chosen on these images, and the report says so.
    assert ('**Selection**: the best epoch was chosen by validation '
            'pooled Dice on these same images') in report
    # Which post-processing the *_pp rows are of (the demo config's).
    assert ('| Post-processing of the rows below (the validation metric\'s) '
            '| TripletThresholdPostProcessor(top_threshold=0.75, '
            'min_area=125, bottom_threshold=0.3, ') in report


@pytest.mark.parametrize('order, against', [
    ('balance_first', 'the reference reported 0.6095 (-0.1095)'),
    ('split_first', 'the reference reported 0.6095 on a split of its own')])
def test_without_the_split_file_the_configs_split_is_compared(
        tmp_path, order, against):
    """The data moved (or the report runs elsewhere): the config's split
    settings say whether the split is the reference's."""
    report = report_on_split(tmp_path, split_order=order)
    assert f'on the validation split; {against}' in report


def test_hand_made_lists_are_no_reference_split(tmp_path):
    """train.txt/val.txt without split_meta.json are the user's lists,
    which the config's split settings did not make."""
    (tmp_path / 'data' / 'splits').mkdir(parents=True)
    for name in ('train.txt', 'val.txt'):
        (tmp_path / 'data' / 'splits' / name).write_text('1.2.3\n')
    report = report_on_split(tmp_path, exist_ok=True)
    assert 'the reference reported 0.6095 on a split of its own' in report


def test_synthetic_data_is_found_by_the_validation_root(tmp_path):
    """The marker in the validation data root says synthetic, also where
    the split file is missing (the description then from the record)."""
    from mmseg_ptx.datasets.synthetic import SYNTHETIC_MARKER
    from mmseg_ptx.reporting.json_io import write_json
    from mmseg_ptx.reporting.summary import write_performance_summary
    root = tmp_path / 'demo'
    root.mkdir()
    (root / SYNTHETIC_MARKER).write_text('synthetic')
    cfg = Config.fromfile('configs/upernet_swin-nano_ptx-demo-128.py')
    cfg.train_dataloader.dataset.data_root = str(tmp_path / 'other')
    cfg.val_dataloader.dataset.data_root = str(root)
    # A post-processor this process cannot build: named as configured.
    cfg.val_evaluator.postprocess = dict(type='NotRegisteredPP', k=3)
    write_json([dict(mode='val', epoch=1, iter=10, dice=0.5, iou=0.33,
                     dice_pp=0.6, num_images=20, num_pos_images=5)],
               str(tmp_path / 'metrics_history.json'))
    report = open(write_performance_summary(
        str(tmp_path), config=cfg, images=False, world_size=1)).read()
    assert '**Synthetic demo data**' in report
    assert ('### Segmentation Metrics (validation split of 20 synthetic '
            'images, 25% positive)') in report
    assert ('| Post-processing of the rows below (the validation metric\'s) '
            '| type=NotRegisteredPP, k=3 |') in report


def test_pictures_count_pixels_at_the_original_resolution(
        tmp_path, demo_root):
    """Drawn at the network's input size (here half the original), the
    pictures' pixel counts are the original resolution's, as the metrics
    count them."""
    from mmseg.registry import DATASETS
    from tiny_model import build_tiny_model, save_tiny_checkpoint

    from conftest import write_tiny_run_config
    from mmseg_ptx.reporting.summary import render_predictions
    ckpt = save_tiny_checkpoint(build_tiny_model(seed=3),
                                tmp_path / 'tiny.pth')
    cfg = Config.fromfile(
        str(write_tiny_run_config(tmp_path / 'cfg.py', demo_root)))
    for step in cfg.val_dataloader.dataset.pipeline:
        if step.type == 'Resize':
            step.scale = (64, 64)  # the demo images are 128 x 128
    pics = tmp_path / 'pics'
    # An earlier report's picture goes (its name has another Dice); what
    # else is in the folder stays.
    pics.mkdir()
    (pics / 'prediction_01_positive_dice0.123.png').write_bytes(b'old')
    (pics / 'prediction_101_negative_dice1.000.png').write_bytes(b'old')
    (pics / 'notes.txt').write_text('mine')
    records = render_predictions(cfg, str(ckpt), str(pics),
                                 num_pos=1, num_neg=0, max_images=6,
                                 device='cpu')
    assert sorted(p.name for p in pics.iterdir()) == sorted(
        ['notes.txt', records[0]['file']])
    dataset = DATASETS.build(cfg.val_dataloader.dataset)
    sums = {int((dataset[i]['data_samples'].gt_sem_seg.data == 1).sum())
            for i in range(len(dataset))}
    assert records[0]['kind'] == 'positive'
    assert records[0]['gt_pixels'] in sums - {0}


def _epoch_history(tmp_path, **extra):
    """Validations every 5 epochs, with post-processed scores; training
    Dice logged as PRCurveHook records it (the mean since the previous
    validation)."""
    import json
    history = [
        dict(mode='val', epoch=e, iter=10 * e, dice=d, iou=d / (2 - d),
             kaggle_dice=k, dice_pp=d + 0.01, iou_pp=0.4,
             kaggle_dice_pp=k + 0.2, **{'train/decode.dice_seg': t},
             **extra)
        for e, d, k, t in ((5, 0.90, 0.50, 0.6), (10, 0.80, 0.60, 0.7))
    ]
    (tmp_path / 'metrics_history.json').write_text(json.dumps(history))
    return history


def test_rows_say_raw_post_processed_and_the_training_window(tmp_path):
    from mmseg_ptx.reporting.summary import write_performance_summary
    _epoch_history(tmp_path)
    report = open(write_performance_summary(
        str(tmp_path), images=False, world_size=1)).read()
    assert ('| Best validation Dice (pooled over all pixels, raw: '
            'probability > 0.5) | 0.9000 |') in report
    assert ('| Validation competition Dice (per-image mean, empty = 1, raw) '
            '| 0.5000 |') in report
    assert ('| Validation competition Dice, post-processed (per-image '
            'mean, empty = 1) | 0.7000 |') in report
    assert '| Validation Dice, post-processed (pooled) | 0.9100 |' in report
    assert '| Validation IoU at that epoch (pooled, raw) | 0.8182 |' in report
    assert '| Validation IoU, post-processed (pooled) | 0.4000 |' in report
    # The training scores recorded with the best validation (epoch 5),
    # not the last ones: compared with it, they are of the same model.
    assert ('| Training Dice at that epoch (mean over epochs 1-5, '
            'batch-pooled on rank 0, augmented) | 0.6000 |') in report
    assert 'training Dice 0.6000 (mean over epochs 1-5,' in report
    assert 'a sign of over-fitting' not in report
    # The reference's Dice is another protocol, and the report says so.
    assert ('the reference pooled each batch and averaged over batches '
            '(its IoU 0.4648 is not D/(2-D) = 0.4383') in report
    assert '| Epochs run (to the last validation) | 10 |' in report


def test_rows_and_findings_give_the_dice_intervals(tmp_path):
    """PneumothoraxMetric's bootstrap intervals beside the scores they
    are of; records without them (older runs, bootstrap_samples=0) as
    before."""
    from mmseg_ptx.reporting.summary import write_performance_summary
    _epoch_history(tmp_path, dice_ci_low=0.7, dice_ci_high=0.95,
                   kaggle_dice_ci_low=0.4, kaggle_dice_ci_high=0.61,
                   dice_ci_low_pp=0.71, dice_ci_high_pp=0.96,
                   kaggle_dice_ci_low_pp=0.6, kaggle_dice_ci_high_pp=0.8)
    report = open(write_performance_summary(
        str(tmp_path), images=False, world_size=1)).read()
    assert ('| Best validation Dice (pooled over all pixels, raw: '
            'probability > 0.5) | 0.9000 (95% CI 0.7000-0.9500) |') in report
    # The coverage the run's metric was configured with.
    cfg = Config.fromfile('configs/upernet_swin-nano_ptx-demo-128.py')
    cfg.val_evaluator.confidence = 0.9
    ninety = open(write_performance_summary(
        str(tmp_path), config=cfg, images=False, world_size=1)).read()
    assert ninety.count('90% CI') == 5 and '95% CI' not in ninety
    assert ('| Validation competition Dice (per-image mean, empty = 1, raw) '
            '| 0.5000 (95% CI 0.4000-0.6100) |') in report
    assert ('| Validation Dice, post-processed (pooled) | 0.9100 (95% CI '
            '0.7100-0.9600) |') in report
    assert ('| Validation competition Dice, post-processed (per-image '
            'mean, empty = 1) | 0.7000 (95% CI 0.6000-0.8000) |') in report
    assert ('**Pooled validation Dice 0.9000** (95% CI 0.7000-0.9500: a '
            'percentile bootstrap over the validation images') in report


def test_training_window_after_a_resume(tmp_path):
    """Resumed at epoch 8: the record's training scores are the mean over
    epochs 8-10 (PRCurveHook's train_from_epoch), not since the previous
    validation at epoch 5."""
    import json
    from mmseg_ptx.reporting.summary import write_performance_summary
    history = _epoch_history(tmp_path)
    history[1]['dice'] = 0.95
    history[1]['train_from_epoch'] = 8
    (tmp_path / 'metrics_history.json').write_text(json.dumps(history))
    report = open(write_performance_summary(
        str(tmp_path), images=False, world_size=1)).read()
    assert ('| Training Dice at that epoch (mean over epochs 8-10, '
            'batch-pooled on rank 0, augmented) | 0.7000 |') in report


def test_best_by_another_metric_is_named_with_its_value(tmp_path):
    """save_best='kaggle_dice_pp' picks epoch 10, whose pooled Dice is not
    the best one: the rows say so and give the selecting metric."""
    from mmseg_ptx.reporting.summary import write_performance_summary
    _epoch_history(tmp_path)
    cfg = Config.fromfile('configs/upernet_swin-b_ptx-512.py')
    cfg.default_hooks.checkpoint.save_best = 'kaggle_dice_pp'
    cfg.val_evaluator.threshold = 0.4
    report = open(write_performance_summary(
        str(tmp_path), config=cfg, images=False, world_size=1)).read()
    assert ('| Validation post-processed competition Dice (selects the '
            'best epoch) | 0.8000 |') in report
    assert ('| Best epoch (by val post-processed competition Dice) | 10 |'
            in report)
    assert ('| Validation Dice at the best epoch (pooled over all pixels, '
            'raw: probability > 0.4) | 0.8000 |') in report
    assert 'Best validation Dice' not in report
    assert ('| Training Dice at that epoch (mean over epochs 6-10, '
            'batch-pooled on rank 0, augmented) | 0.7000 |') in report
    assert ('**Selection**: the best epoch was chosen by validation '
            'post-processed competition Dice on these same images') in report


def test_a_history_that_is_not_a_list_is_named(tmp_path):
    from mmseg_ptx.reporting.summary import (InvalidMetricsHistory,
                                             write_performance_summary)
    (tmp_path / 'metrics_history.json').write_text('{"a": 1}')
    with pytest.raises(InvalidMetricsHistory,
                       match='metrics_history.json is not a metrics '
                       'history .* got a dict'):
        write_performance_summary(str(tmp_path), images=False)


def test_a_history_that_is_not_json_is_named(tmp_path):
    from mmseg_ptx.reporting.summary import (InvalidMetricsHistory,
                                             write_performance_summary)
    (tmp_path / 'metrics_history.json').write_text('[{"mode": ')
    with pytest.raises(InvalidMetricsHistory,
                       match='metrics_history.json is not valid JSON'):
        write_performance_summary(str(tmp_path), images=False)


def test_history_and_curves_from_the_pr_curve_hooks_out_dir(tmp_path,
                                                            monkeypatch):
    """PRCurveHook(out_dir=...) writes the history and curves there; the
    report (hook or tools/summarize.py, which finds the run's config) reads
    them there and still writes into the work dir."""
    import torch
    from mmengine.config import Config

    from mmseg_ptx.evaluation import PneumothoraxMetric
    from mmseg_ptx.reporting.json_io import write_json
    from mmseg_ptx.reporting.summary import write_performance_summary
    metric = PneumothoraxMetric()
    gt = torch.zeros(1, 32, 32, dtype=torch.uint8)
    gt[0, 8:16, 8:16] = 1
    metric.process({}, [dict(seg_logits=dict(data=torch.randn(2, 32, 32)),
                             gt_sem_seg=dict(data=gt))])
    metrics = metric.evaluate(1)
    out_dir = tmp_path / 'elsewhere'
    (out_dir / 'pr_curves').mkdir(parents=True)
    write_json(metric.last_curve.to_dict(max_points=100),
               str(out_dir / 'pr_curves' / 'val_epoch_001.json'))
    write_json([dict(mode='val', epoch=1, iter=10, **metrics)],
               str(out_dir / 'metrics_history.json'))
    work_dir = tmp_path / 'work_dir'
    work_dir.mkdir()
    from conftest import TINY_CONFIG
    cfg = Config.fromfile(TINY_CONFIG)
    hooks = [h for h in cfg.custom_hooks if h.type == 'PRCurveHook']
    assert len(hooks) == 1
    hooks[0].out_dir = str(out_dir)
    cfg.dump(str(work_dir / 'run.py'))
    for config in (cfg, None):  # given (the hook), found (summarize.py)
        report = write_performance_summary(str(work_dir), config=config,
                                           images=False, world_size=1)
        assert report == str(work_dir / 'PERFORMANCE_SUMMARY.md')
        assert (work_dir / 'precision_recall_curve.png').is_file()
        (work_dir / 'precision_recall_curve.png').unlink()
    # Trained from tmp_path with relative folders; reported from another.
    hooks[0].out_dir = 'elsewhere'
    cfg.work_dir = './work_dir'
    cfg.dump(str(work_dir / 'run.py'))
    (tmp_path / 'other').mkdir()
    monkeypatch.chdir(tmp_path / 'other')
    write_performance_summary(str(work_dir), images=False, world_size=1)
    assert (work_dir / 'precision_recall_curve.png').is_file()


def test_a_report_when_the_data_is_gone(tmp_path, monkeypatch):
    """Re-summarized after the data moved: the pictures cannot be drawn,
    the report is still written (with a warning), its validation set
    described from the history, and it names no checkpoint for pictures
    it does not have, nor curves that are not there."""
    from tiny_model import build_tiny_model, save_tiny_checkpoint

    from conftest import write_tiny_run_config
    from mmseg_ptx.reporting import summary
    logged = []
    monkeypatch.setattr(summary, 'print_log',
                        lambda msg, **kwargs: logged.append(msg))
    _epoch_history(tmp_path, num_images=20, num_pos_images=5)
    save_tiny_checkpoint(build_tiny_model(seed=3), tmp_path / 'epoch_10.pth')
    cfg = Config.fromfile(str(write_tiny_run_config(
        tmp_path / 'cfg.py', tmp_path / 'gone')))
    cfg.default_hooks.checkpoint.save_best = 'kaggle_dice'  # epoch 10
    (tmp_path / 'precision_recall_curve.png').write_bytes(b'earlier')
    report = open(summary.write_performance_summary(
        str(tmp_path), config=cfg, world_size=1, device='cpu')).read()
    assert any(msg.startswith('Prediction pictures not drawn: data_root')
               for msg in logged), logged
    assert 'validation split of 20 images, 25% positive' in report
    assert 'Checkpoint used for pictures' not in report
    assert 'Sample predictions' not in report
    assert 'pr_curves/' not in report
    # An earlier report's curve, of another validation perhaps, is gone.
    assert not (tmp_path / 'precision_recall_curve.png').exists()


def test_the_work_dirs_own_checkpoint_before_last_checkpoints_path(
        tmp_path):
    """A copied work dir: last_checkpoint still names the original's
    file. The copy's own is taken; without one, the original, named in
    full (it may hold another run's model by now)."""
    from mmseg_ptx.reporting.summary import (_checkpoint_name,
                                             _find_best_checkpoint)
    original, copy = tmp_path / 'run', tmp_path / 'copy'
    for folder in (original, copy):
        folder.mkdir()
        torch.save({}, folder / 'epoch_3.pth')
        (folder / 'last_checkpoint').write_text(
            str(original / 'epoch_3.pth'))
    best = dict(epoch=2, iter=10)  # no checkpoint of its own
    found = _find_best_checkpoint(str(copy), best, 'epoch')
    assert found == str(copy / 'epoch_3.pth')
    assert _checkpoint_name(found, str(copy)) == 'epoch_3.pth'
    (copy / 'epoch_3.pth').unlink()
    found = _find_best_checkpoint(str(copy), best, 'epoch')
    assert _checkpoint_name(found, str(copy)) == str(original / 'epoch_3.pth')
