"""The process trainer (what the node uses, its owner's side) and the trainer factory.

The trainers' interface, their shared loop and the in-process trainers are in
:mod:`invdyn_ros.learning.trainers` (re-exported here: :class:`InlineTrainer`,
:func:`per_network_labels`, :func:`learn_chunk`); :func:`make_trainer` builds any of the three
kinds (:data:`TRAINER_KINDS`).

- :class:`ProcessTrainer` runs the learners in a ``multiprocessing`` *spawn* worker so training
  never stalls the control loop: ``submit`` only appends to a local list and ships chunks with
  ``put_nowait`` on a bounded queue (a full queue drops the chunk and counts it: the caller never
  blocks); the worker learns every sample (prequential, ``updates_per_sample`` steps each, as
  inline) and spends its spare time on extra Adam steps up to ``max_updates_per_sample``; every
  ``publish_period_s`` it sends the exported weights back, which ``poll`` picks up without
  blocking. Weights and samples cross the process boundary as numpy arrays and are turned back
  into CPU tensors on arrival.

The code that runs inside the worker process -- its loop (``_worker_main``, the spawn target),
its parent-death handling, the tensor <-> numpy conversions and the messages on the four queues
-- is in :mod:`invdyn_ros.learning.training_worker`; this module holds the owner's side (queues,
weights, the save handshake, the stop sequence).

Checkpoints: ``save(prefix, joint_names=None)`` writes one checkpoint *set*: a file per network,
``checkpoint_path(prefix, name)`` (``<prefix>.<name>.pt``), and the manifest
``<prefix>.manifest.json`` written last (:mod:`invdyn_ros.learning.checkpoints`: atomic as a
whole, sha256-verified on load); every trainer resumes from such sets (``checkpoint=prefix``) or
from files (a ``{name: path}`` mapping).

The worker process of :class:`ProcessTrainer` cannot outlive its owner: it ignores SIGINT and
SIGTERM (the owner ignores them too while it starts the worker, which inherits that, and stops
it itself after saving), gets SIGKILL when the thread that started it dies
(``PR_SET_PDEATHSIG``, asked for here when the owner is its process's main thread), checks that
its parent is alive on every loop, and never waits on a pipe at exit (details in
:mod:`invdyn_ros.learning.training_worker`).
"""
from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
import weakref
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from invdyn_ros.errors import CheckpointError, ConfigError
from invdyn_ros.errors import TrainerError  # noqa: F401 (re-exported)
from invdyn_ros.learning.checkpoints import checkpoint_path, checkpoint_to_resume
from invdyn_ros.learning.learner import LearnerConfig
from invdyn_ros.learning.trainers import (InlineTrainer, ThreadTrainer, check_networks,
                                          learn_chunk, per_network_labels, resolve_checkpoints)
from invdyn_ros.learning.training_worker import (ERROR, INIT_ERROR, NOOP, READY, SAVE,
                                                  SAVE_ERROR, SAVED, STOP, _to_torch_tree,
                                                  _worker_main)

__all__ = ['InlineTrainer', 'ProcessTrainer', 'TrainerError', 'checkpoint_path', 'make_trainer',
           'TRAINER_KINDS', 'learn_chunk', 'per_network_labels', 'SAVE_LEARN_BUDGET_S']

#: A save learns the samples queued before it first, for at most this long (wall seconds; the
#: chunk in progress is finished, the first chunk always learned): the rest stays queued and is
#: learned after the save. Without the bound, a trainer at nice 10 on a loaded machine answered
#: a manual save only after it had learned its whole queue (seconds to minutes).
SAVE_LEARN_BUDGET_S = 1.0


# ======================================================== process (the owner's side)
class ProcessTrainer:
    """Learners in a spawned worker process; ``submit`` costs microseconds and never blocks.

    ``chunk_size`` samples are shipped together (or fewer, after ``max_pending_s``); the sample
    queue holds ``queue_chunks`` chunks, beyond which chunks are dropped and counted in
    ``counters['dropped']``. ``max_updates_per_sample`` caps the worker's Adam steps per learned
    sample (each learner's own ``updates_per_sample`` steps always happen; spare CPU time adds steps
    up to the cap, so a small buffer is not overfitted). ``start_timeout_s`` bounds the wait for the
    worker to import torch and build (or load) its learners; a checkpoint that fails to load raises
    :class:`CheckpointError` here, a worker that does not come up :class:`TrainerError`.
    ``save_learn_budget_s``: how long a save may learn the samples queued before it
    (:data:`SAVE_LEARN_BUDGET_S`).
    """

    def __init__(self, n_joints: int, networks: Sequence[tuple[str, LearnerConfig]],
                 checkpoint: str | os.PathLike | Mapping[str, Any] | None = None,
                 publish_period_s: float = 1.0, chunk_size: int = 32, queue_chunks: int = 64,
                 max_updates_per_sample: float = 1.0, max_pending_s: float = 0.5,
                 start_timeout_s: float = 120.0, main_threads: int | None = 1,
                 abort: Any = None, save_learn_budget_s: float = SAVE_LEARN_BUDGET_S) -> None:
        nets = check_networks(networks)
        if not (publish_period_s > 0 and chunk_size >= 1 and queue_chunks >= 1
                and max_updates_per_sample >= 0 and max_pending_s > 0):
            raise ConfigError('publish_period_s, chunk_size, queue_chunks, max_pending_s must be '
                              'positive and max_updates_per_sample >= 0')
        if main_threads is not None:
            torch.set_num_threads(main_threads)
        self.n_joints = int(n_joints)
        self.names = tuple(n for n, _ in nets)
        self.window = nets[0][1].window
        self.chunk_size = int(chunk_size)
        self.max_pending_s = float(max_pending_s)
        self.save_learn_budget_s = max(0.0, float(save_learn_budget_s))
        checkpoints = resolve_checkpoints(checkpoint, self.names)
        for name, path in checkpoints.items():   # a clear error now rather than from the worker
            if not os.path.isfile(path):
                raise CheckpointError(f'checkpoint {path} for network {name!r} does not exist')
        ctx = mp.get_context('spawn')
        self._samples_q = ctx.Queue(maxsize=int(queue_chunks))
        self._control_q = ctx.Queue()
        self._results_q = ctx.Queue(maxsize=4)
        self._replies_q = ctx.Queue()
        self._proc = ctx.Process(
            target=_worker_main, name='invdyn-trainer', daemon=True,
            args=(self.n_joints, [(n, c.to_dict()) for n, c in nets], checkpoints,
                  self._samples_q, self._control_q, self._results_q, self._replies_q,
                  float(publish_period_s), float(max_updates_per_sample), os.getpid(),
                  # PR_SET_PDEATHSIG fires when the creating *thread* exits: only ask for it
                  # when that thread lives as long as the process
                  threading.current_thread() is threading.main_thread()))
        self._pending_w: list[np.ndarray] = []
        self._pending_t: list[np.ndarray] = []
        self._pending_since = 0.0
        self._closed = False
        self._error: str | None = None
        self._weights: dict[str, dict] | None = None
        self._weights_new = False
        self._stats: dict[str, dict] = {}
        self._req = itertools.count(1)
        self._replies: dict[int, tuple] = {}
        self.counters = {'submitted': 0, 'rejected': 0, 'sent': 0, 'dropped': 0,
                         'weights_received': 0, 'worker_alive': False, 'worker_exitcode': None}
        self.worker_counters: dict[str, int] = {}
        # The worker ignores SIGINT and SIGTERM: it inherits the dispositions through spawn's
        # exec (so a signal during its start-up is ignored too) and sets them again itself.
        # Ctrl-C in a terminal and `kill -TERM -PGID` (systemd) hit the whole process group;
        # the owner decides when training stops (and saves first), not a signal in the middle of
        # an Adam step.
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, signal.SIG_IGN)
        try:
            self._proc.start()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self._finalizer = weakref.finalize(self, ProcessTrainer._shutdown, self._proc,
                                           self._control_q, self._samples_q,
                                           (self._results_q, self._replies_q), 2.0)
        self._wait_ready(start_timeout_s, abort)
        self._start_feeders()

    # ------------------------------------------------------------------ lifecycle
    def _start_feeders(self) -> None:
        """Start the outgoing queues' feeder threads now, from the constructing thread.

        A thread inherits its creator's scheduling policy, and the node puts its control thread
        under SCHED_FIFO after building the trainer (``realtime_priority``). Started lazily, at
        the first sample / command, the feeders would inherit SCHED_FIFO and compete with the
        control loop at its own priority (pickling and writing chunks). An empty chunk and a
        no-op command cost the worker nothing."""
        self._samples_q.put(([], []))
        self._control_q.put((NOOP,))

    def _wait_ready(self, timeout: float, abort: Any = None) -> None:
        """Wait for the worker's 'ready'. ``abort`` (an object with ``is_set()``, e.g. the node's
        stop event): when it is set meanwhile, the half-started worker -- still importing torch,
        which takes tens of seconds on a loaded machine, and holding nothing worth saving -- is
        terminated at once and :class:`TrainerError` raised, so a shutdown requested during
        start-up is not delayed until the worker is up."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self._replies_q.get(timeout=0.1)
            except queue.Empty:
                if abort is not None and abort.is_set():
                    self.close(timeout=0.0)   # no wait for a stop it cannot read yet: terminate
                    raise TrainerError('training worker start-up interrupted') from None
                if not self._proc.is_alive():
                    self.close()
                    raise TrainerError(f'training worker exited during start-up (exit code '
                                       f'{self._proc.exitcode})') from None
                if time.monotonic() > deadline:
                    self.close()
                    raise TrainerError(
                        f'training worker did not start within {timeout} s') from None
                continue
            if msg[0] == READY:
                self._weights = {n: _to_torch_tree(w) for n, w in msg[1].items()}
                self._weights_new = True
                self._stats = msg[2]
                return
            if msg[0] == INIT_ERROR:
                self.close()
                cls = CheckpointError if msg[1] == 'CheckpointError' else TrainerError
                raise cls(f'training worker could not start: {msg[1]}: {msg[2]}')
            if msg[0] == ERROR:
                self.close()
                raise TrainerError(f'training worker failed during start-up:\n{msg[1]}')

    @staticmethod
    def _shutdown(proc: Any, control_q: Any, samples_q: Any, incoming: tuple,
                  timeout: float) -> None:
        """Stop the worker: stop sentinel, join, then SIGKILL (it ignores SIGTERM) if needed.

        The worker leaves with ``os._exit`` as soon as it reads the sentinel, without waiting for
        its queue feeders (``cancel_join_thread``): a feeder blocked on a full pipe cannot hold
        it. Nothing is read from the worker's queues here: a message it was still writing when
        it exited would be cut short, and reading that would block forever (this process holds
        the pipe's write end too, so no end-of-file ever comes)."""
        if proc.is_alive():
            try:
                control_q.put((STOP,))
            except (ValueError, OSError):
                pass
            proc.join(timeout)
        if proc.is_alive():
            proc.kill()
            proc.join(2.0)
        for q in (samples_q, control_q, *incoming):
            q.cancel_join_thread()   # never block interpreter exit on data for a dead reader
            q.close()

    def close(self, timeout: float = 2.0) -> None:
        """Stop the worker and release the queues (idempotent). Unsent pending samples are
        dropped. The worker answers the stop within milliseconds (it finishes its current
        chunk or step); after ``timeout`` seconds it is killed."""
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        ProcessTrainer._shutdown(self._proc, self._control_q, self._samples_q,
                                 (self._results_q, self._replies_q), timeout)
        self.counters['worker_alive'] = False
        self.counters['worker_exitcode'] = self._proc.exitcode

    def __enter__(self) -> 'ProcessTrainer':
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return not self._closed and self._proc.is_alive()

    # ------------------------------------------------------------------ samples
    def submit(self, window: Any, tau: Any) -> None:
        """Queue one sample for the worker: never blocks, never raises on bad data."""
        if self._closed:
            return
        self.counters['submitted'] += 1
        try:
            w = np.asarray(window, dtype=np.float32)
            t = per_network_labels(tau, len(self.names), self.n_joints)
        except (TypeError, ValueError):
            self.counters['rejected'] += 1
            return
        if w.shape != (self.window, 3 * self.n_joints) \
                or not (np.isfinite(w).all() and np.isfinite(t).all()):
            self.counters['rejected'] += 1
            return
        if not self._pending_w:
            self._pending_since = time.monotonic()
        self._pending_w.append(w)
        self._pending_t.append(t)
        if len(self._pending_w) >= self.chunk_size:
            self._flush()

    def _flush(self) -> None:
        if not self._pending_w:
            return
        chunk = (np.stack(self._pending_w), np.stack(self._pending_t))
        k = len(self._pending_w)
        self._pending_w, self._pending_t = [], []
        try:
            self._samples_q.put_nowait(chunk)
            self.counters['sent'] += k
        except (queue.Full, ValueError, OSError):
            self.counters['dropped'] += k

    # ------------------------------------------------------------------ results
    def _drain(self) -> None:
        while True:
            try:
                msg = self._results_q.get_nowait()
            except (queue.Empty, ValueError, OSError, EOFError):
                break
            _, weights, stats, worker_counters = msg
            if weights is not None:
                self._weights = {n: _to_torch_tree(w) for n, w in weights.items()}
                self._weights_new = True
                self.counters['weights_received'] += 1
            self._stats = stats
            self.worker_counters = worker_counters
        while True:
            try:
                msg = self._replies_q.get_nowait()
            except (queue.Empty, ValueError, OSError, EOFError):
                break
            if msg[0] == ERROR:
                self._error = msg[1]
            elif msg[0] in (SAVED, SAVE_ERROR):
                self._replies[msg[1]] = msg

    def _check_worker(self) -> None:
        alive = self._proc.is_alive()
        self.counters['worker_alive'] = alive
        if not alive:
            self.counters['worker_exitcode'] = self._proc.exitcode
            detail = f':\n{self._error}' if self._error else ''
            raise TrainerError(f'training worker died (exit code {self._proc.exitcode}){detail}')

    def poll(self) -> dict[str, dict] | None:
        """The newest weights ``{name: export_weights()}`` received since the last poll, or None.

        Never blocks. Raises :class:`TrainerError` if the worker has died (every call, until
        closed).
        """
        if self._closed:
            return None
        if self._pending_w and time.monotonic() - self._pending_since > self.max_pending_s:
            self._flush()
        self._drain()
        self._check_worker()
        if not self._weights_new:
            return None
        self._weights_new = False
        return self._weights

    def stats(self) -> dict[str, dict]:
        """Latest learner stats from the worker (``{name: OnlineLearner.stats()}``); never raises.

        Trainer-level counts (submitted, dropped, worker_alive, ...) are in ``self.counters`` and
        the worker's own counts in ``self.worker_counters``.
        """
        if not self._closed:
            self._drain()
            self.counters['worker_alive'] = self._proc.is_alive()
            if not self.counters['worker_alive']:
                self.counters['worker_exitcode'] = self._proc.exitcode
        return {name: dict(s) for name, s in self._stats.items()}

    def save(self, path_prefix: str | os.PathLike, timeout: float = 60.0,
             joint_names: Sequence[str] | None = None,
             learn_pending: bool = True, physics: Any = None) -> dict[str, str]:
        """Ask the worker to write the checkpoint set (all learners, manifest last, see
        :func:`invdyn_ros.learning.checkpoints.write_set`) and wait for it (≤ ``timeout``).

        ``learn_pending``: pending samples are shipped and learned first so they are part of the
        checkpoint (when the queue has room; for at most :data:`SAVE_LEARN_BUDGET_S`, the rest is
        learned after the save); False (a shutdown) writes what is learned now.
        ``physics``: the physics stage's state_dict, one more member of the set.
        Raises :class:`TrainerError` if the worker is dead, fails to write, or does not answer in
        time.
        """
        if self._closed:
            raise TrainerError('trainer is closed')
        if learn_pending:
            self._flush()
        self._check_worker()
        req = next(self._req)
        self._control_q.put((SAVE, os.fspath(path_prefix), req,
                             None if joint_names is None else [str(j) for j in joint_names],
                             self.save_learn_budget_s if learn_pending else None, physics))
        deadline = time.monotonic() + timeout
        while req not in self._replies:
            if time.monotonic() > deadline:
                raise TrainerError(f'training worker did not save within {timeout} s')
            self._drain()
            self._check_worker()
            if req not in self._replies:
                time.sleep(0.01)
        msg = self._replies.pop(req)
        if msg[0] == SAVE_ERROR:
            raise TrainerError(f'training worker could not save {path_prefix}: {msg[2]}')
        return dict(msg[2])


# ============================================================================ factory
TRAINERS: dict[str, type] = {'inline': InlineTrainer, 'process': ProcessTrainer,
                             'thread': ThreadTrainer}
TRAINER_KINDS = tuple(TRAINERS)


def make_trainer(config: Any, kind: str = 'inline', checkpoint: Any = None,
                 **options: Any) -> Any:
    """A trainer for ``config``'s networks (a :class:`~invdyn_ros.pipeline.config.PipelineConfig`):
    ``'inline'`` (deterministic, in the caller), ``'process'`` (:class:`ProcessTrainer`, what the
    node uses) or ``'thread'``.

    ``checkpoint``: a ``checkpoint_path`` (a checkpoint set,
    :func:`~invdyn_ros.learning.checkpoints.checkpoint_to_resume`; of an old set without a manifest
    the networks whose files exist are resumed, the others start fresh) or an explicit ``{name:
    file}`` mapping. A damaged file or a checkpoint of another robot raises
    :class:`CheckpointError`. ``options`` go to the trainer (e.g. ``publish_period_s``).
    """
    if kind not in TRAINERS:
        raise ConfigError(f'trainer: must be one of {TRAINER_KINDS}, got {kind!r}')
    config.validate()
    ckpt = checkpoint
    if checkpoint is not None and not isinstance(checkpoint, Mapping):
        ckpt = checkpoint_to_resume(config, checkpoint)[0] or None
    return TRAINERS[kind](config.n_joints, config.networks(), checkpoint=ckpt, **options)
