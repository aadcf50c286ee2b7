"""The code that runs inside :class:`~invdyn_ros.learning.training.ProcessTrainer`'s spawned
trainer process: its loop (:func:`_worker_main`, the spawn target), its parent-death handling and
the tensor <-> numpy conversion of what crosses the queues.

The owner's side (:class:`~invdyn_ros.learning.training.ProcessTrainer`: queues, the save
handshake, the stop sequence) stays in :mod:`invdyn_ros.learning.training`, which imports
:func:`_worker_main` and :func:`_to_torch_tree` from here; this module never imports it.

The worker talks to its owner only through four queues:

- samples (owner -> worker, bounded): ``(windows, taus)`` chunks of numpy arrays;
- control (owner -> worker): ``('save', prefix, req, joint_names, budget_s | None, physics)``,
  ``('stop',)`` (leave at once with ``os._exit``) and ``('noop',)``;
- results (worker -> owner, bounded, ``put_nowait``): ``('weights', {name: weights} | None,
  stats, counters)`` every ``publish_period_s``;
- replies (worker -> owner): ``('ready', weights, stats)``, ``('init_error', exc_type,
  message)``, ``('saved', req, {name: file})``, ``('save_error', req, message)`` and
  ``('error', traceback)``.

Weights and samples cross as numpy arrays (plain pickles; torch's shared-memory tensor passing
needs file descriptors and the sender alive, both fragile here): :func:`_to_numpy_tree` before
sending, :func:`_to_torch_tree` (CPU tensors) on arrival.

The worker cannot outlive its owner: it ignores SIGINT and SIGTERM (a stop signal to the whole
process group must not kill it before the owner has saved its state; the owner stops it), gets
SIGKILL when the thread that started it dies (``PR_SET_PDEATHSIG``, Linux; asked for when the
owner is its process's main thread), checks that its parent is alive on every loop
(:func:`_parent_gone`), and never waits on a pipe at exit (its queue feeder threads are not
joined: a full pipe whose reader is gone would hold the exit forever; :func:`_flush_briefly`).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import time
import traceback
from typing import Any

import numpy as np
import torch

from invdyn_ros.learning.learner import LearnerConfig
from invdyn_ros.learning.trainers import TrainingLoop, build_learners


#: The tags of the queue messages (the first item of every tuple; the module docstring lists
#: them), for both sides: control (owner -> worker) ...
SAVE, STOP, NOOP = 'save', 'stop', 'noop'
#: ... results (worker -> owner) ...
WEIGHTS = 'weights'
#: ... and replies (worker -> owner).
READY, INIT_ERROR, SAVED, SAVE_ERROR, ERROR = 'ready', 'init_error', 'saved', 'save_error', 'error'


def _to_numpy_tree(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().numpy()
    if isinstance(obj, dict):
        return {k: _to_numpy_tree(v) for k, v in obj.items()}
    return obj


def _to_torch_tree(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj)
    if isinstance(obj, dict):
        return {k: _to_torch_tree(v) for k, v in obj.items()}
    return obj


def _set_parent_death_signal(sig: int) -> bool:
    """``prctl(PR_SET_PDEATHSIG, sig)`` (Linux): the kernel sends ``sig`` to this process when the
    thread that created it exits. False where unavailable."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(1, int(sig), 0, 0, 0) == 0      # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError, TypeError):
        return False


def _parent_gone(parent_pid: int) -> bool:
    """The worker's liveness check: re-parented (the owner died) or the owner's pid is gone."""
    if os.getppid() != parent_pid:
        return True
    try:
        os.kill(parent_pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        pass
    return False


def _worker_main(n_joints: int, nets: list[tuple[str, dict]], checkpoints: dict[str, str],
                 samples_q: Any, control_q: Any, results_q: Any, replies_q: Any,
                 publish_period_s: float, max_updates_per_sample: float,
                 parent_pid: int | None = None, death_signal: bool = False) -> None:
    """The training process. Talks to the parent only through the four queues."""
    # the owner decides when training stops (after saving), not a signal to the process group
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if parent_pid is None:
        parent_pid = os.getppid()
    if death_signal:
        _set_parent_death_signal(signal.SIGKILL)
    if _parent_gone(parent_pid):          # the owner died before the death signal was set
        os._exit(0)
    # Never wait on a pipe at exit: a feeder thread blocked on a full pipe (its reader gone or
    # not reading) would hold the interpreter's exit forever (multiprocessing joins feeders).
    results_q.cancel_join_thread()
    replies_q.cancel_join_thread()
    torch.set_num_threads(1)
    parent = mp.parent_process()
    try:
        learners = build_learners(n_joints, [(n, LearnerConfig.from_dict(d)) for n, d in nets],
                                  checkpoints)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        replies_q.put((INIT_ERROR, type(exc).__name__, str(exc)))
        _flush_briefly(replies_q, 5.0)
        return

    def send(weights: dict | None, stats: dict) -> bool:
        try:
            results_q.put_nowait((WEIGHTS, None if weights is None else _to_numpy_tree(weights),
                                  stats, dict(loop.counters)))
            return True
        except queue.Full:
            return False

    loop = TrainingLoop(learners, send, max_updates_per_sample, publish_period_s)
    replies_q.put((READY, _to_numpy_tree(loop.export()), loop.stats()))
    try:
        while True:
            # 1. commands first (stop / save)
            try:
                while True:
                    cmd = control_q.get_nowait()
                    if cmd[0] == STOP:
                        # at once: everything the owner needs has been handed over, and the
                        # interpreter's teardown (torch) takes ~1 s of CPU, seconds under load
                        os._exit(0)
                    if cmd[0] == SAVE:
                        _, prefix, req, joint_names, budget, physics = cmd
                        # learn what was submitted before the request (within the budget,
                        # None: nothing), then write
                        budget_end = time.monotonic() + (budget or 0.0)
                        try:
                            while budget is not None:
                                loop.learn(*samples_q.get_nowait())
                                if time.monotonic() > budget_end:
                                    break
                        except queue.Empty:
                            pass
                        try:
                            replies_q.put((SAVED, req, loop.save(prefix, joint_names,
                                                                     physics=physics)))
                        except Exception as exc:  # noqa: BLE001 - e.g. disk full: the parent raises
                            replies_q.put((SAVE_ERROR, req, f'{type(exc).__name__}: {exc}'))
            except queue.Empty:
                pass
            # 2. one waiting chunk (then back to the commands, so stop/save stay responsive;
            #    learning the stream has priority over extra steps), else an extra step; publish
            try:
                chunk = samples_q.get_nowait()
            except queue.Empty:
                chunk = None
            worked = loop.turn(chunk)
            if (parent is not None and not parent.is_alive()) or _parent_gone(parent_pid):
                os._exit(0)   # the owner is gone: nobody reads, nothing to hand over
            if not worked:
                time.sleep(0.005)  # idle: nothing to learn and the step cap is reached
    except Exception:  # noqa: BLE001 - a bug: tell the parent, then die
        replies_q.put((ERROR, traceback.format_exc()))
        _flush_briefly(replies_q, 2.0)
        raise


def _flush_briefly(q: Any, timeout: float) -> None:
    """Before the worker exits: give a queue whose feeder is not joined at exit
    (``cancel_join_thread``) up to ``timeout`` seconds to write its last messages (a reader that
    is alive gets them; a pipe nobody reads cannot hold the exit longer than that)."""
    q.close()
    thread = getattr(q, '_thread', None)
    if thread is not None:
        thread.join(timeout)
