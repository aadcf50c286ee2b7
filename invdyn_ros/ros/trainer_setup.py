"""Starting the node's trainer and shaping its process, without ROS: :func:`start_trainer`
(resumed from the checkpoint, the ``checkpoint_mismatch`` rule), :func:`renice_trainer` (the
training worker behind the control loop on a shared core). ``log`` is any logger with ``info`` and
``warning`` (the node passes its rclpy logger).
"""
from __future__ import annotations

import os
from typing import Any

from invdyn_ros.errors import CheckpointError
from invdyn_ros.learning.checkpoints import clean_stale, read_physics
from invdyn_ros.pipeline.pipeline import (checkpoint_prefix, checkpoint_to_resume,
                                          fresh_checkpoint_path, make_trainer)


def trainer_options(kind: str, publish_period_s: float, max_updates: float, nice: int,
                    abort: Any = None) -> dict[str, Any]:
    """The keyword options of :func:`make_trainer` for the node's ``trainer`` kind."""
    options: dict[str, Any] = {}
    if kind in ('process', 'thread'):
        options = {'publish_period_s': publish_period_s, 'max_updates_per_sample': max_updates}
    if kind == 'thread':
        options['nice'] = nice
    if kind == 'process' and abort is not None:
        options['abort'] = abort
    return options


def start_trainer(config: Any, kind: str, checkpoint_path: str, mismatch: str,
                  options: dict[str, Any], log: Any) -> tuple[Any, str, dict]:
    """(trainer, checkpoint_path, physics states): the trainer, resumed from the checkpoint at
    ``checkpoint_path`` if there is one, the path the node uses from now on, and the
    checkpoint's physics members (``{}`` without).

    A checkpoint that does not fit (joint names / count, networks) or fails its checksums
    is never renamed, deleted or overwritten: ``mismatch`` ``refuse`` raises
    :class:`CheckpointError` (main exits with code 2 naming the path and the problem);
    ``fresh`` switches to :func:`fresh_checkpoint_path` (resumed from there when it holds a
    fitting set). Debris of interrupted saves is tidied first
    (:func:`invdyn_ros.learning.checkpoints.clean_stale`), only for a set the node will use.

    The worker process ignores SIGINT and SIGTERM (``ProcessTrainer`` starts it that way: a
    terminal's Ctrl-C and ``kill -TERM -PGID`` hit the whole process group; the node, not
    the worker, decides when training stops and saves the final checkpoint first). A stop
    requested while the worker is still starting (``options['abort']``) ends its start-up at
    once with :class:`TrainerError`.
    """
    if not checkpoint_path:
        return make_trainer(config, kind, **options), checkpoint_path, {}
    try:
        trainer, physics = resume(config, kind, checkpoint_path, options, log)
        return trainer, checkpoint_path, physics
    except CheckpointError as exc:
        if mismatch == 'refuse':
            raise CheckpointError(f'{exc} -- left untouched; set another checkpoint_path, or '
                                  'checkpoint_mismatch: fresh to learn anew beside it') from None
        fresh = fresh_checkpoint_path(config, checkpoint_path)
        log.warning(f'checkpoint not used ({exc}); left untouched; checkpoint_mismatch: fresh: '
                    f'this node uses checkpoint_path {fresh}')
        try:
            trainer, physics = resume(config, kind, fresh, options, log)
        except CheckpointError as exc2:
            raise CheckpointError(f'{exc2} (the checkpoint_mismatch: fresh location; both '
                                  'left untouched)') from None
        return trainer, fresh, physics


def resume(config: Any, kind: str, path: str, options: dict[str, Any],
           log: Any) -> tuple[Any, dict]:
    """(trainer, physics states) resumed from the checkpoint set at ``path`` (a fresh trainer if
    there is none); CheckpointError if it does not fit or is corrupt."""
    files, verified = checkpoint_to_resume(config, path)   # raises on a mismatch
    physics = read_physics(checkpoint_prefix(path))          # verified; may raise
    for line in clean_stale(checkpoint_prefix(path)):
        log.info(f'checkpoint {path}: {line}')
    if not files:
        return make_trainer(config, kind, **options), physics
    trainer = make_trainer(config, kind, checkpoint=files, **options)
    if verified:
        log.info(f'resumed from checkpoint {sorted(files.values())} (sha256 verified)')
    else:
        log.warning(f'resumed from checkpoint {sorted(files.values())}: UNVERIFIED (no '
                    'manifest: written by an older invdyn_ros; the next save adds one)')
    return trainer, physics


def renice_trainer(kind: str, trainer_nice: int, nice: int | None = None,
                   log: Any = None) -> None:
    """Lower the priority of the training worker process (``multiprocessing`` children of
    this process named by ProcessTrainer) to ``nice`` (default ``trainer_nice``), so on a
    shared core the scheduler runs the control loop first. Only for ``kind`` process and a
    ``trainer_nice`` > 0. Failure to renice is only logged (``nice`` 0 at shutdown needs
    CAP_SYS_NICE: quietly skipped without)."""
    if kind != 'process' or trainer_nice == 0:
        return
    import multiprocessing
    for child in multiprocessing.active_children():
        if child.name == 'invdyn-trainer' and child.pid:
            try:
                os.setpriority(os.PRIO_PROCESS, child.pid,
                               trainer_nice if nice is None else nice)
            except OSError as exc:
                if nice is None and log is not None:
                    log.warning(f'could not renice the trainer: {exc}')
