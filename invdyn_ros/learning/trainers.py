"""What every trainer is (:class:`Trainer`), the one loop they all run (:class:`TrainingLoop`)
and the two in-process trainers.

A trainer owns one :class:`~invdyn_ros.learning.learner.OnlineLearner` per network name (e.g.
``{'lstm': ..., 'gru': ...}`` for the dual identifier) and gives every submitted sample to every
learner: ``submit(window, tau)`` (``tau`` (n,): the same label for every network, or (k, n): one row
per network in ``names`` order -- with a physics prior the residual network learns ``tau -
tau_prior`` while the black-box one learns ``tau``), ``poll() -> {name: weights} | None``, ``stats()
-> {name: stats}``, ``save(prefix, joint_names=..., learn_pending=...) -> {name: file}``, ``alive``,
``close()``; each is a context manager.

- :class:`InlineTrainer` learns synchronously inside ``submit`` (reproducible to the bit; used by
  the offline evaluator and tests).
- :class:`ThreadTrainer` learns in a background thread of this process (for comparison: the
  learner's Python code holds the GIL for long stretches, so the control loop waits behind it).
- :class:`~invdyn_ros.learning.training.ProcessTrainer` learns in a worker process (what the node
  uses).

All three run :class:`TrainingLoop`: its ``learn`` takes submitted windows, ``turn`` is one pass
of a background trainer (learn what came, else one extra Adam step within the
``max_updates_per_sample`` cap, then publish the weights when due), ``publish`` hands out the
weights when any learner stepped since the last hand-out, and ``save`` is the one path that
writes the networks as a checkpoint set (:func:`invdyn_ros.learning.checkpoints.write_set`).
"""
from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from invdyn_ros.errors import ConfigError
from invdyn_ros.learning.checkpoints import checkpoint_path, read_set, write_set
from invdyn_ros.learning.learner import LearnerConfig, OnlineLearner

__all__ = ['Trainer', 'TrainingLoop', 'InlineTrainer', 'ThreadTrainer', 'per_network_labels',
           'learn_chunk', 'check_networks', 'build_learners', 'resolve_checkpoints']


@runtime_checkable
class Trainer(Protocol):
    """The interface the pipeline, the node and the evaluator use (module docstring)."""

    names: tuple[str, ...]
    counters: dict

    def submit(self, window: Any, tau: Any) -> None:
        """Hand one sample to every learner; never raises on bad data."""

    def poll(self) -> dict[str, dict] | None:
        """New weights ``{name: export_weights()}`` since the last poll, or None."""

    def stats(self) -> dict[str, dict]:
        """The learners' latest ``stats()``."""

    def save(self, path_prefix: str | os.PathLike, *, joint_names: Sequence[str] | None = None,
             learn_pending: bool = True, physics: Any = None) -> dict[str, str]:
        """Write the checkpoint set; ``learn_pending`` False: without first learning samples
        still on their way (a shutdown); ``physics``: the physics stage's state_dict, one more
        member of the set (:func:`invdyn_ros.learning.checkpoints.write_set`)."""

    @property
    def alive(self) -> bool:
        """False once closed (or its worker died)."""

    def close(self) -> None:
        """Stop learning and release the trainer (idempotent)."""

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: Any) -> None: ...


# ============================================================================ shared pieces
def resolve_checkpoints(checkpoint: str | os.PathLike | Mapping[str, Any] | None,
                        names: Iterable[str]) -> dict[str, str]:
    """``{name: file}`` to resume from: an explicit mapping, or the set at a prefix."""
    if checkpoint is None:
        return {}
    if isinstance(checkpoint, Mapping):
        unknown = sorted(set(checkpoint) - set(names))
        if unknown:
            raise ConfigError(f'checkpoint given for unknown network(s) {unknown}')
        return {k: os.fspath(v) for k, v in checkpoint.items()}
    files, manifest = read_set(checkpoint, names)   # a set with a manifest: all of it, checked
    if manifest is not None:
        return files
    return {name: checkpoint_path(checkpoint, name) for name in names}


def check_networks(networks: Sequence[tuple[str, LearnerConfig]]) -> list[tuple[str, LearnerConfig]]:
    nets = list(networks)
    if not nets:
        raise ConfigError('networks must name at least one (name, LearnerConfig)')
    names = [n for n, _ in nets]
    if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f'network names must be distinct non-empty strings, got {names}')
    for name, cfg in nets:
        if not isinstance(cfg, LearnerConfig):
            raise ConfigError(f'network {name!r}: expected a LearnerConfig, got {type(cfg).__name__}')
        cfg.validate()
    windows = {cfg.window for _, cfg in nets}
    if len(windows) != 1:
        raise ConfigError(f'all networks must use the same window length, got {sorted(windows)}')
    return nets


def per_network_labels(tau: Any, k: int, n: int) -> np.ndarray:
    """``tau`` as (k, n) float32 (one label row per network); a (n,) label is repeated. Raises
    ValueError for any other shape."""
    t = np.asarray(tau, dtype=np.float32)
    if t.shape == (n,):
        return np.broadcast_to(t, (k, n))
    if t.shape != (k, n):
        raise ValueError(f'tau: expected ({n},) or ({k}, {n}), got {t.shape}')
    return t


def learn_chunk(learners: Mapping[str, OnlineLearner], windows: Any, taus: Any) -> None:
    """``taus`` (B, k, n): learner i learns ``taus[:, i]``."""
    if len(windows) == 0:
        return
    taus = np.asarray(taus)
    for i, learner in enumerate(learners.values()):
        learner.learn_many(windows, taus[:, i])


def build_learners(n_joints: int, nets: list[tuple[str, LearnerConfig]],
                   checkpoints: Mapping[str, str]) -> dict[str, OnlineLearner]:
    learners = {}
    for name, cfg in nets:
        if name in checkpoints:
            learners[name] = OnlineLearner.load(checkpoints[name], config=cfg, n_joints=n_joints)
        else:
            learners[name] = OnlineLearner(n_joints, cfg)
    return learners


# ============================================================================ the loop
class TrainingLoop:
    """The learners of one trainer and the one way they are trained, published and saved.

    ``send(weights | None, stats) -> bool`` delivers a publication (weights None: no learner
    stepped since the last delivered weights); False means it was not delivered (counted in
    ``counters['dropped_publishes']``; the weights go out again next time). Not thread-safe: the
    owner serializes calls (ThreadTrainer's lock, the worker's single thread)."""

    def __init__(self, learners: Mapping[str, OnlineLearner],
                 send: Callable[[dict | None, dict], bool],
                 max_updates_per_sample: float = 1.0, publish_period_s: float = 0.0) -> None:
        self.learners = dict(learners)
        self.send = send
        self.max_updates_per_sample = float(max_updates_per_sample)
        self.publish_period_s = float(publish_period_s)
        self.counters = {'received_chunks': 0, 'extra_steps': 0, 'dropped_publishes': 0}
        self._published: dict[str, int] | None = None      # steps of the delivered weights
        self._last_publish = time.monotonic()

    def _steps(self) -> dict[str, int]:
        return {n: lr.steps for n, lr in self.learners.items()}

    def stats(self) -> dict[str, dict]:
        return {n: lr.stats() for n, lr in self.learners.items()}

    def export(self) -> dict[str, dict]:
        """Every learner's weights now (the first hand-out), counted as delivered."""
        self._published = self._steps()
        return {n: lr.export_weights() for n, lr in self.learners.items()}

    def learn(self, windows: Any, taus: Any) -> None:
        """Learn submitted samples: ``windows`` (B, L, 3n), ``taus`` (B, k, n)."""
        self.counters['received_chunks'] += 1
        learn_chunk(self.learners, windows, taus)

    def extra_step(self) -> bool:
        """Spare time: one Adam step for the learner furthest below ``max_updates_per_sample``
        steps per learned sample; False if none is below it (or none could step)."""
        best, best_ratio = None, self.max_updates_per_sample
        for learner in self.learners.values():
            if learner.samples > 0:
                ratio = learner.steps / learner.samples
                if ratio < best_ratio:
                    best, best_ratio = learner, ratio
        if best is None or best.step() is None:
            return False
        self.counters['extra_steps'] += 1
        return True

    def publish(self, force: bool = False) -> None:
        """Send the weights (if any learner stepped since the last delivery) and the stats, when
        ``publish_period_s`` has passed since the last publication (or ``force``)."""
        now = time.monotonic()
        if not force and now - self._last_publish < self.publish_period_s:
            return
        self._last_publish = now
        steps = self._steps()
        weights = None if steps == self._published else \
            {n: lr.export_weights() for n, lr in self.learners.items()}
        if self.send(weights, self.stats()):
            if weights is not None:
                self._published = steps
        else:
            self.counters['dropped_publishes'] += 1

    def turn(self, chunk: tuple[Any, Any] | None) -> bool:
        """One pass of a background trainer: learn ``chunk`` (windows, taus) or, without one, an
        extra step; then publish when due. True if it learned or stepped (else the caller
        idles a moment)."""
        if chunk is not None:
            self.learn(*chunk)
            worked = True
        else:
            worked = self.extra_step()
        self.publish()
        return worked

    def save(self, path_prefix: str | os.PathLike, joint_names: Sequence[str] | None = None,
             lock: Any = None, physics: Any = None) -> dict[str, str]:
        """Write every network as one checkpoint set (manifest last; ``joint_names`` go into the
        manifest). ``lock``: held while the states are taken, not while they are written."""
        with lock if lock is not None else contextlib.nullcontext():
            states = {n: lr.state_dict() for n, lr in self.learners.items()}
        return write_set(path_prefix, states, joint_names, physics=physics)


# ============================================================================ inline
class InlineTrainer:
    """Learners in the caller's process; ``submit`` learns synchronously (deterministic)."""

    def __init__(self, n_joints: int, networks: Sequence[tuple[str, LearnerConfig]],
                 checkpoint: str | os.PathLike | Mapping[str, Any] | None = None) -> None:
        nets = check_networks(networks)
        self.n_joints = int(n_joints)
        self.names = tuple(n for n, _ in nets)
        self.learners = build_learners(self.n_joints, nets,
                                       resolve_checkpoints(checkpoint, self.names))
        self._loop = TrainingLoop(self.learners, send=self._deliver)
        self._weights: dict | None = None
        self.counters = {'submitted': 0, 'dropped': 0}
        self._closed = False

    def _deliver(self, weights: dict | None, stats: dict) -> bool:
        self._weights = weights
        return True

    def submit(self, window: Any, tau: Any) -> None:
        """Learn the sample in every learner (bad samples are rejected and counted by each)."""
        if self._closed:
            return
        self.counters['submitted'] += 1
        try:
            labels = per_network_labels(tau, len(self.learners), self.n_joints)
        except (TypeError, ValueError):
            for learner in self.learners.values():   # each learner rejects and counts it
                learner.learn_one(window, tau)
            return
        self._loop.learn([window], labels[None])

    def poll(self) -> dict[str, dict] | None:
        """Exported weights of every learner if any of them took a step since the last poll (the
        first poll returns the initial weights, as ProcessTrainer's does)."""
        if self._closed:
            return None
        self._loop.publish(force=True)
        weights, self._weights = self._weights, None
        return weights

    def stats(self) -> dict[str, dict]:
        return self._loop.stats()

    def save(self, path_prefix: str | os.PathLike, joint_names: Sequence[str] | None = None,
             learn_pending: bool = True, physics: Any = None) -> dict[str, str]:
        """Write the checkpoint set (all networks, manifest last); ``joint_names`` go into the
        manifest (what a later start checks the robot against). Nothing is ever pending."""
        return self._loop.save(path_prefix, joint_names, physics=physics)

    @property
    def alive(self) -> bool:
        return not self._closed

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> 'InlineTrainer':
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ============================================================================ thread
class ThreadTrainer:
    """Learners in a background *thread* of this process (for comparison with ProcessTrainer).

    It exists to measure what the module docstring of ``training`` argues: the learner's Python
    code holds the GIL for long stretches between torch kernels, so the control loop's callbacks
    wait behind it; use :class:`~invdyn_ros.learning.training.ProcessTrainer` on a robot.
    """

    def __init__(self, n_joints: int, networks: Sequence[tuple[str, LearnerConfig]],
                 checkpoint: Any = None, publish_period_s: float = 1.0, queue_samples: int = 4096,
                 max_updates_per_sample: float = 1.0, chunk_size: int = 32, nice: int = 0) -> None:
        nets = check_networks(networks)
        self.n_joints = int(n_joints)
        self.names = tuple(n for n, _ in nets)
        self.learners = build_learners(self.n_joints, nets,
                                       resolve_checkpoints(checkpoint, self.names))
        self.window = nets[0][1].window
        self.chunk_size = int(chunk_size)
        self.nice = int(nice)
        self._loop = TrainingLoop(self.learners, send=self._deliver,
                                  max_updates_per_sample=max_updates_per_sample,
                                  publish_period_s=publish_period_s)
        self._queue: collections.deque = collections.deque(maxlen=int(queue_samples))
        self._lock = threading.Lock()           # guards the learners
        self._stop = threading.Event()
        self._weights: dict | None = self._loop.export()
        self._stats = self._loop.stats()
        self.counters = {'submitted': 0, 'dropped': 0, 'weights_received': 0}
        self._thread = threading.Thread(target=self._run, name='invdyn-trainer-thread', daemon=True)
        self._thread.start()

    def _deliver(self, weights: dict | None, stats: dict) -> bool:
        if weights is not None:
            self._weights = weights
        self._stats = stats
        return True

    def _take(self) -> tuple[np.ndarray, np.ndarray] | None:
        chunk = []
        while self._queue and len(chunk) < self.chunk_size:
            chunk.append(self._queue.popleft())
        if not chunk:
            return None
        return np.stack([c[0] for c in chunk]), np.stack([c[1] for c in chunk])

    def _run(self) -> None:
        torch.set_num_threads(1)
        if self.nice:
            try:   # Linux: a thread is a task with its own nice value
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
            except (OSError, AttributeError):
                pass
        while not self._stop.is_set():
            chunk = self._take()
            with self._lock:
                worked = self._loop.turn(chunk)
            if not worked:
                time.sleep(0.005)

    def submit(self, window: Any, tau: Any) -> None:
        self.counters['submitted'] += 1
        if len(self._queue) == self._queue.maxlen:
            self.counters['dropped'] += 1
        self._queue.append((np.asarray(window, dtype=np.float64).copy(),
                            per_network_labels(tau, len(self.names), self.n_joints).copy()))

    def poll(self) -> dict | None:
        weights, self._weights = self._weights, None
        if weights is not None:
            self.counters['weights_received'] += 1
        return weights

    def stats(self) -> dict:
        return {n: dict(s) for n, s in self._stats.items()}

    def save(self, path_prefix: Any, joint_names: Sequence[str] | None = None,
             learn_pending: bool = True, physics: Any = None) -> dict[str, str]:
        """The checkpoint set as learned now (queued samples are not waited for)."""
        return self._loop.save(path_prefix, joint_names, lock=self._lock, physics=physics)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(10.0)

    def __enter__(self) -> 'ThreadTrainer':
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
