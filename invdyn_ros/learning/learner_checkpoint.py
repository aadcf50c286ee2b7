"""The learner's checkpoint format: write it atomically, read and verify it, restore a learner.

One ``torch.save`` file of plain dicts / lists / tensors / str / int / float (loads with
``torch.load(weights_only=True)``; the manifest of :mod:`invdyn_ros.learning.checkpoints` verifies
it first). :func:`learner_state_dict` and :func:`learner_from_state_dict` are the two halves of the
format (:meth:`OnlineLearner.state_dict` / :meth:`OnlineLearner.from_state_dict` call them; they
read and restore the learner's internal state, so they live and change together with it).
Re-exported by :mod:`invdyn_ros.learning.learner`.
"""
from __future__ import annotations

import copy
import os
import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch

from invdyn_ros import __version__
from invdyn_ros.atomic import atomic_write
from invdyn_ros.errors import CheckpointError, ConfigError
from invdyn_ros.learning.checkpoints import verified_file
from invdyn_ros.learning.learner_config import LearnerConfig
from invdyn_ros.learning.models import config_to_dict, make_config
from invdyn_ros.learning.replay_buffer import as_numpy

if TYPE_CHECKING:
    from invdyn_ros.learning.learner import OnlineLearner

__all__ = ['CHECKPOINT_FORMAT_VERSION', 'atomic_torch_save', 'load_checkpoint_dict', 'all_finite',
           'learner_state_dict', 'learner_from_state_dict']

CHECKPOINT_FORMAT_VERSION = 1


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temp file in the target directory, fsync, then ``os.replace``
    (:func:`invdyn_ros.atomic.atomic_write` with ``durable=True``).

    A crash (or power loss) mid-write leaves either the old file or the new one, never a torn file.
    """
    atomic_write(path, lambda f: torch.save(obj, f), durable=True)


def load_checkpoint_dict(path: str | os.PathLike) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with every failure mapped to :class:`CheckpointError`.

    Where a checkpoint manifest lists the file (:mod:`invdyn_ros.learning.checkpoints`), its sha256
    is verified first: a file that does not match is refused (CheckpointError naming both)."""
    path = Path(path)
    source, _ = verified_file(path)   # the manifest's sha256, where one lists the file
    if not os.path.isfile(source):
        raise CheckpointError(f'checkpoint {path} does not exist (or is not a file)')
    try:
        ckpt = torch.load(source, map_location='cpu', weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile,
            KeyError, AttributeError, TypeError, IndexError) as exc:
        raise CheckpointError(f'checkpoint {path} is truncated, corrupt or not a torch checkpoint: '
                              f'{type(exc).__name__}: {exc}') from exc
    if not isinstance(ckpt, dict):
        raise CheckpointError(f'checkpoint {path} does not hold a dict (got {type(ckpt).__name__})')
    version = ckpt.get('format_version')
    if version != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(f'checkpoint {path} has format_version {version!r}; this invdyn_ros '
                              f'({__version__}) reads version {CHECKPOINT_FORMAT_VERSION}')
    return ckpt


def all_finite(state: Mapping[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values()
               if isinstance(v, torch.Tensor) and v.is_floating_point())


def learner_state_dict(learner: 'OnlineLearner', include_buffer: bool = True) -> dict[str, Any]:
    """The checkpoint dict (plain types and tensors only)."""
    return {
        'format_version': CHECKPOINT_FORMAT_VERSION, 'invdyn_version': __version__,
        'kind': learner.kind, 'n_joints': learner.n_joints,
        'learner_config': learner.config.to_dict(), 'model_config': learner.model_config_dict(),
        'model': {k: v.detach().cpu().clone() for k, v in learner.model.state_dict().items()},
        'averaged_model': None if learner._averaged is None else {
            k: v.detach().cpu().clone() for k, v in learner._averaged.module.state_dict().items()},
        'optimizer': copy.deepcopy(learner.optimizer.state_dict()),
        'scheduler': dict(learner.scheduler.state_dict()),
        'in_scaler': learner.in_scaler.state_dict(), 'out_scaler': learner.out_scaler.state_dict(),
        'buffer': learner.buffer.state_dict() if include_buffer else None,
        'counters': {'samples': learner.samples, 'steps': learner.steps,
                     'good_steps': learner.good_steps, 'rollbacks': learner.rollbacks,
                     **learner.counters},
        'loss': {'ema': learner.loss_ema, 'last': learner.last_loss,
                 'history': torch.tensor(list(learner._loss_hist), dtype=torch.float64),
                 'credit': learner._credit},
        # the ring of squared errors, its position and fill ('errors': their square roots,
        # for readers of checkpoints before 'squared_errors')
        'prequential': {'squared_errors': torch.from_numpy(learner._recent.sq.copy()),
                        'errors': torch.from_numpy(np.sqrt(learner._recent.sq)),
                        'pos': learner._recent.pos, 'count': learner._recent.count},
    }


def learner_from_state_dict(cls: type['OnlineLearner'], ckpt: Mapping[str, Any],
                            config: LearnerConfig | None = None, n_joints: int | None = None,
                            source: str = 'checkpoint') -> 'OnlineLearner':
    """A learner of class ``cls`` restored from a :func:`learner_state_dict` dict
    (:meth:`OnlineLearner.load`, which documents ``config`` / ``n_joints``); every inconsistency
    raises :class:`CheckpointError` naming ``source``."""
    try:
        saved_n = int(ckpt['n_joints'])
        kind = ckpt['kind']
        saved_cfg = LearnerConfig.from_dict(ckpt['learner_config'])
        saved_model_cfg = dict(ckpt['model_config'])
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f'{source}: missing or invalid header field: {exc}') from exc
    if n_joints is not None and int(n_joints) != saved_n:
        raise CheckpointError(f'{source} is for {saved_n} joints, expected {n_joints}')
    if config is not None:
        try:
            expected_model = config_to_dict(make_config(config.model, saved_n,
                                                        **config.model_options))
        except ConfigError as exc:
            raise CheckpointError(f'{source}: expected config is invalid: {exc}') from exc
        if config.model != kind:
            raise CheckpointError(f'{source} holds a {kind!r} model, expected {config.model!r}')
        if expected_model != saved_model_cfg:
            raise CheckpointError(f'{source} model options {saved_model_cfg} differ from the '
                                  f'expected {expected_model}')
        if config.window != saved_cfg.window:
            raise CheckpointError(f'{source} was trained on windows of {saved_cfg.window}, '
                                  f'expected {config.window}')
        use_cfg = config
    else:
        use_cfg = saved_cfg
    try:
        learner = cls(saved_n, use_cfg)
        if config_to_dict(learner.model.config) != saved_model_cfg:
            raise CheckpointError(f'{source}: model config {saved_model_cfg} does not match the '
                                  f'learner config')
        if not all_finite(ckpt['model']):
            raise CheckpointError(f'{source}: model weights contain NaN/Inf')
        learner.model.load_state_dict(ckpt['model'])
        if learner._averaged is not None:
            # the saved average, or (saved without averaging) the model: the average
            # continues from there instead of restarting from the first new step
            avg = ckpt.get('averaged_model')
            if avg is None or not all_finite(avg):
                avg = ckpt['model']
            learner._averaged.module.load_state_dict(avg)
            learner._averaged.n_averaged.fill_(1)
        learner.optimizer.load_state_dict(ckpt['optimizer'])
        if config is not None:   # new training parameters, the saved schedule position
            for g in learner.optimizer.param_groups:
                g['weight_decay'] = config.weight_decay
        sched = dict(ckpt['scheduler'])
        if config is not None:
            sched.update(patience=config.plateau_patience, factor=config.plateau_factor,
                         min_lrs=[config.min_learning_rate] * len(learner.optimizer.param_groups))
        learner.scheduler.load_state_dict(sched)
        learner.in_scaler.load_state_dict(ckpt['in_scaler'])
        learner.out_scaler.load_state_dict(ckpt['out_scaler'])
        if ckpt.get('buffer') is not None:
            learner.buffer.load_state_dict(ckpt['buffer'])
        c = ckpt['counters']
        learner.samples, learner.steps = int(c['samples']), int(c['steps'])
        learner.good_steps, learner.rollbacks = int(c['good_steps']), int(c['rollbacks'])
        for k in learner.counters:
            learner.counters[k] = int(c.get(k, 0))
        loss = ckpt['loss']
        learner.loss_ema = None if loss['ema'] is None else float(loss['ema'])
        learner.last_loss = None if loss['last'] is None else float(loss['last'])
        learner._loss_hist.extend(float(v) for v in as_numpy(loss['history']).reshape(-1))
        learner._credit = float(loss['credit'])
        pq = ckpt['prequential']
        squared = 'squared_errors' in pq
        learner._recent.load(as_numpy(pq['squared_errors' if squared else 'errors']),
                             int(pq['pos']), int(pq['count']), squared=squared)
        learner._take_snapshot()
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, ConfigError) as exc:
        raise CheckpointError(f'{source} is incompatible or damaged: {type(exc).__name__}: '
                              f'{exc}') from exc
    return learner
