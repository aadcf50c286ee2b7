"""The pipeline's side toward its trainer: samples out, weights in, checkpoints from a thread.

:class:`LearningSide` owns the :class:`~invdyn_ros.learning.trainers.Trainer` of a
:class:`~invdyn_ros.pipeline.pipeline.Pipeline`: it submits the windows (or keeps them in a bounded
backlog while a checkpoint is being written: neither trainer is thread-safe, so nothing else
touches it meanwhile), polls for new weights every ``poll_every`` samples, remembers a failed
trainer (the pipeline keeps predicting with the last weights), and writes the checkpoint sets,
blocking or from a background thread under normal scheduling. Loading the weights into the
predictors stays with the pipeline, which owns them. It counts into the pipeline's ``counters``
(``submitted``, ``backlog_dropped``, ``trainer_errors``). ROS-free.
"""
from __future__ import annotations

import collections
import os
import threading
from typing import Any, Callable, Sequence

import numpy as np

from invdyn_ros.errors import InvdynError
from invdyn_ros.learning.checkpoints import checkpoint_prefix
from invdyn_ros.learning.training import ProcessTrainer, TrainerError
from invdyn_ros.pipeline.scheduling import normal_scheduling

__all__ = ['LearningSide']


class LearningSide:
    """The trainer of one pipeline and everything that touches it (module docstring).

    ``counters``: the pipeline's counters dict (shared, updated in place); ``joint_names`` go
    into every checkpoint set. Not thread-safe, like the pipeline: one caller.
    """

    def __init__(self, trainer: Any, counters: dict, poll_every: int,
                 joint_names: Sequence[str]) -> None:
        self.trainer = trainer
        self.counters = counters
        self.poll_every = poll_every
        self.joint_names = joint_names
        self.error: str | None = None
        self._since_poll = 0
        self._save_thread: threading.Thread | None = None
        self._save_result: tuple[bool, Any] | None = None
        self._physics_snapshot: dict | None = None
        self._backlog: collections.deque = collections.deque(maxlen=20000)
        self._learner_stats: dict = {}

    # ------------------------------------------------------------------ samples and weights
    @property
    def saving(self) -> bool:
        """A background checkpoint holds the trainer (until :meth:`tidy` sees it ended)."""
        return self._save_thread is not None

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    def poll(self) -> dict | None:
        """New weights ``{name: weights}`` from the trainer, or None (also once it failed)."""
        if self.error is not None:
            return None
        try:
            return self.trainer.poll()
        except TrainerError as exc:      # the worker died: keep predicting with the last weights
            self.error = str(exc)
            self.counters['trainer_errors'] += 1
            return None

    def poll_due(self) -> dict | None:
        """:meth:`poll` every ``poll_every``-th call (one call per sample), else None."""
        self._since_poll += 1
        if self._since_poll >= self.poll_every:
            self._since_poll = 0
            return self.poll()
        return None

    def submit(self, window: np.ndarray, tau: np.ndarray) -> None:
        """One training sample to the trainer, or to the backlog while a checkpoint is written."""
        if self.error is not None:
            return
        if self._save_thread is not None:          # the trainer is busy saving: keep it for later
            if len(self._backlog) == self._backlog.maxlen:
                self.counters['backlog_dropped'] += 1
            self._backlog.append((window, tau.copy()))
            return
        self.trainer.submit(window, tau)
        self.counters['submitted'] += 1

    def tidy(self) -> bool:
        """Per sample: False while a background checkpoint still runs (leave the trainer alone);
        else forget the finished thread, hand over up to 4 backlogged samples and return True."""
        if self._save_thread is not None:
            if self._save_thread.is_alive():
                return False
            self._save_thread = None
        if self._backlog:
            for _ in range(min(4, len(self._backlog))):
                w, t = self._backlog.popleft()
                if self.error is None:
                    self.trainer.submit(w, t)
                    self.counters['submitted'] += 1
        return True

    def learner_stats(self) -> dict:
        """The trainer's learner statistics (the last ones while a checkpoint is written)."""
        if self._save_thread is not None:
            return self._learner_stats       # the trainer is busy saving: leave it alone
        try:
            learners = self._learner_stats = self.trainer.stats()
        except InvdynError as exc:
            learners = {'error': str(exc)}
        return learners

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: str | os.PathLike, physics_state: Callable[[], dict | None],
                        final: bool = False) -> dict[str, str]:
        """Wait for a background save, then write the set now (``Pipeline.save_checkpoint``);
        ``physics_state()`` is the physics member (None: none)."""
        if self._save_thread is not None:
            self._save_thread.join()
            self._save_thread = None
        self._physics_snapshot = physics_state()
        return self._write_checkpoint(path, final)

    def start_checkpoint(self, path: str | os.PathLike, physics_state: Callable[[], dict | None],
                         on_done: Any = None) -> bool:
        """Write the set from a background thread (``Pipeline.start_checkpoint``); False if one
        is already running or the trainer has failed."""
        if self._save_thread is not None and not self._save_thread.is_alive():
            self._save_thread = None     # finished while no sample came to tidy it up
        if self._save_thread is not None or self.error is not None:
            return False
        self._save_result = None
        # taken here, in the caller's thread: process() keeps changing the stage meanwhile
        self._physics_snapshot = physics_state()

        def run() -> None:
            normal_scheduling()          # not the SCHED_FIFO of a real-time control thread
            try:
                result = (True, self._write_checkpoint(path))
            except Exception as exc:  # noqa: BLE001 - reported through checkpoint_result
                result = (False, f'{type(exc).__name__}: {exc}')
            self._save_result = result
            if on_done is not None:
                on_done(*result)

        thread = threading.Thread(target=run, name='invdyn-checkpoint', daemon=True)
        self._save_thread = thread
        thread.start()
        return True

    def _write_checkpoint(self, path: str | os.PathLike, final: bool = False) -> dict[str, str]:
        prefix = checkpoint_prefix(path)
        os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
        options: dict[str, Any] = {'joint_names': self.joint_names}
        physics = self._physics_snapshot                      # the physics stage, one more member
        if physics is not None:
            options['physics'] = physics
        if final and isinstance(self.trainer, ProcessTrainer):
            options['learn_pending'] = False
        return self.trainer.save(prefix, **options)

    def save_checkpoint_wait(self, timeout: float | None = None) -> None:
        """Wait for a background save to end (it reports through checkpoint_result)."""
        thread = self._save_thread
        if thread is not None:
            thread.join(timeout)

    @property
    def checkpoint_running(self) -> bool:
        return self._save_thread is not None and self._save_thread.is_alive()

    def checkpoint_result(self) -> tuple[bool, Any] | None:
        """``(True, {name: file})`` or ``(False, error)`` of the last finished background save,
        None while one runs or if none finished since the last call."""
        if self.checkpoint_running:
            return None
        result, self._save_result = self._save_result, None
        return result

    def close(self) -> None:
        """Wait for a running checkpoint and close the trainer."""
        if self._save_thread is not None:
            self._save_thread.join(120.0)
            self._save_thread = None
        self.trainer.close()
