"""Base of the hooks that change the network for test runs only."""
from __future__ import annotations

from mmengine.hooks import Hook


class InferenceOnlyHook(Hook):
    """A hook that changes the network in ``before_test`` (after the
    checkpoint is loaded), for ``tools/test.py``-style runs.

    In a run that trains it does nothing, and says so once: the change
    (rounded weights, folded BatchNorms) would spoil the training, or the
    validation of what is being trained.

    Subclasses implement :meth:`prepare_for_test` and name what a training
    run keeps in :attr:`kept_in_training`.
    """

    #: The end of the warning of a run that trains: "this run trains, so
    #: ...".
    kept_in_training = 'its network stays as it is'

    def __init__(self) -> None:
        self._trains = False

    def before_train(self, runner) -> None:
        if not self._trains:
            runner.logger.warning(
                f'{type(self).__name__} only applies to test runs '
                f'(tools/test.py); this run trains, so '
                f'{self.kept_in_training}')
        self._trains = True

    def before_test(self, runner) -> None:
        if not self._trains:
            self.prepare_for_test(runner)

    def prepare_for_test(self, runner) -> None:
        """Change ``runner.model`` for the test run."""
        raise NotImplementedError
