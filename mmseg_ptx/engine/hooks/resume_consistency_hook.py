"""Warn when a run is resumed with another batch size, world or data, and
resume the training sampler's seed."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Dict, Optional

from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmseg.registry import HOOKS

from mmseg_ptx.datasets.split import ids_sha256

if TYPE_CHECKING:
    from mmengine.runner import Runner

#: The checkpoint ``meta`` key this hook writes.
META_KEY = 'train_shape'
#: The checkpoint ``meta`` key of the training sampler's seed.
SAMPLER_SEED_KEY = 'sampler_seed'
#: How the warning names each entry.
_NAMES = {
    'world_size': 'processes',
    'batch_size': 'batch size per process',
    'iters_per_epoch': 'iterations per epoch',
    'train_ids_sha256': 'training images',
}


def train_shape(runner: Runner) -> Dict[str, object]:
    """What a resumed run must share with the saved one for its schedule
    and history to mean what they say.

    Args:
        runner (Runner): A runner whose training data loader is built.

    Returns:
        dict: ``world_size``, ``batch_size`` (per process),
        ``iters_per_epoch`` and, where the data infos name their images
        (``image_id``, as ``SIIMPneumothoraxDataset``'s do),
        ``train_ids_sha256`` of the training images.
    """
    loader = runner.train_dataloader
    shape: Dict[str, object] = dict(
        world_size=get_world_size(),
        batch_size=loader.batch_size,
        iters_per_epoch=len(loader))
    dataset = loader.dataset
    get_info = getattr(dataset, 'get_data_info', None)
    if get_info is not None:
        ids = [get_info(i).get('image_id') for i in range(len(dataset))]
        if ids and all(isinstance(i, str) for i in ids):
            shape['train_ids_sha256'] = ids_sha256(ids)
    return shape


@HOOKS.register_module()
class ResumeConsistencyHook(Hook):
    """Record the training run's shape in each checkpoint and warn when a
    run resumes from it with another.

    mmengine resumes whatever changed: the learning-rate schedule comes
    back counted in the saved run's iterations (a cosine schedule converted
    to iterations keeps its old length, and with fewer iterations per
    epoch it never anneals), and the metrics history then mixes epochs of
    two lengths, or two training sets. This hook writes
    :func:`train_shape` into the checkpoint's ``meta['train_shape']`` and,
    on ``--resume`` (not ``load_from``, where a new run may change
    anything), names what differs. A checkpoint without the record (saved
    without this hook) is not checked.

    It also records the training sampler's ``seed`` (``ClassBalancedSampler``
    and mmengine's ``DefaultSampler`` draw each epoch from it) and gives it
    back on ``--resume``. mmengine 0.10.7 resumes the global seed from the
    checkpoint but builds the data loader, and with it the sampler, before:
    a config without a fixed seed (``randomness.seed`` unset, as in
    MMSeg's and these configs) got a new random sampler seed at each
    requeue, so the epochs after a resume drew other images than the
    stopped run would have.
    """

    priority = 'NORMAL'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Add the run's shape and sampler seed to the checkpoint's meta.

        Args:
            runner (Runner): The runner.
            checkpoint (dict): The checkpoint being saved.
        """
        if getattr(runner, '_train_loop', None) is None or isinstance(
                runner._train_loop, dict):
            return  # not training: no shape to record
        meta = checkpoint.setdefault('meta', {})
        meta[META_KEY] = train_shape(runner)
        seed = getattr(getattr(runner.train_dataloader, 'sampler', None),
                       'seed', None)
        if isinstance(seed, int):
            meta[SAMPLER_SEED_KEY] = seed

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """On ``--resume``, give the training sampler the checkpoint's seed
        and warn when the run's shape is not the saved one's.

        Args:
            runner (Runner): The runner.
            checkpoint (dict): The checkpoint loaded.
        """
        meta = checkpoint.get('meta') or {}
        if not getattr(runner, '_resume', False):
            return
        self._resume_sampler_seed(runner, meta.get(SAMPLER_SEED_KEY))
        saved = meta.get(META_KEY)
        if not saved:
            return
        message = shape_difference(saved, train_shape(runner))
        if message:
            print_log(
                f'Resuming with {message} than the checkpoint was trained '
                'with: the learning-rate schedule resumes counted in the '
                "saved run's iterations, and the metrics history and "
                'report mix the two runs. Resume with the saved settings, '
                'or start a new run (load_from) to change them.',
                logger='current',
                level=logging.WARNING)

    @staticmethod
    def _resume_sampler_seed(runner, seed: Optional[int]) -> None:
        """Give the training sampler the checkpoint's seed (see above)."""
        sampler = getattr(runner.train_dataloader, 'sampler', None)
        current = getattr(sampler, 'seed', None)
        if seed is None or not isinstance(current, int) or current == seed:
            return
        sampler.seed = seed
        # mmengine's InfiniteSampler made its index generator with the old
        # seed when it was built.
        if callable(getattr(sampler, '_indices_of_rank', None)):
            sampler.indices = sampler._indices_of_rank()
        # IterBasedTrainLoop made its data iterator when it was built; with
        # worker processes it has drawn ahead already, with the old seed.
        loop = getattr(runner, '_train_loop', None)
        iterator = getattr(loop, 'dataloader_iterator', None)
        if iterator is not None:
            loop.dataloader_iterator = type(iterator)(loop.dataloader)
        # A seed the config set on purpose is replaced as mmengine
        # replaces a configured randomness.seed: with a warning.
        cfg = getattr(runner, 'cfg', None) or {}
        configured = ((cfg.get('train_dataloader') or {}).get('sampler')
                      or {}).get('seed')
        print_log(
            f'Resumed the training sampler\'s seed {seed} from the '
            f'checkpoint (this run\'s was {current}'
            + (', set in the config' if configured is not None else '')
            + '), so that the epochs after the resume draw what the '
            'stopped run would have drawn.',
            logger='current',
            level=logging.WARNING if configured is not None else logging.INFO)


def shape_difference(saved: dict, current: dict) -> Optional[str]:
    """What differs between two :func:`train_shape` records, in words.

    Args:
        saved (dict): The checkpoint's record.
        current (dict): This run's.

    Returns:
        str, optional: ``'other batch size per process (2, now 4)'`` and
        the like; None where they agree on every entry both have.
    """
    differ = [
        f'{_NAMES.get(key, key)} ({saved[key]}, now {current[key]})'
        if key != 'train_ids_sha256' else _NAMES[key]
        for key in sorted(set(saved) & set(current))
        if saved[key] != current[key]
    ]
    return f'other {", ".join(differ)}' if differ else None
