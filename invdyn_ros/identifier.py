"""Dual-network identification: per joint, publish the torque of whichever network is doing better.

Two networks (by default an LSTM and a GRU) predict the same torques. Each network's *identification
error* ``tau_measured - prediction`` is kept per joint in a rolling window of the last ``window``
samples; a joint switches to the other network only when the other's error spread is clearly smaller
(``std_other < (1 - hysteresis) * std_active``), so two nearly equal networks do not make the
published torque flip back and forth (every flip is a small step in the feedforward).

The error spread is the root-mean-square of the error (its standard deviation about *zero*) by
default, not the standard deviation about its own mean: a network with a constant 10 Nm bias has a
tiny ordinary std but is a bad feedforward, and RMS sees that. ``centered=True`` gives the plain std.

Pure numpy; ``n_joints`` is at most 7, so recomputing the statistics from the ring buffers on every
update costs a few microseconds and cannot drift the way running sums of squares do.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

__all__ = ['DualIdentifier', 'IdentifierOutput']


@dataclass(frozen=True)
class IdentifierOutput:
    """What the identifier publishes for one sample (all arrays have shape ``(n,)``, float64).

    ``torque``: per joint the prediction of the active network; ``active``: 0 = ``names[0]``
    (``pred_a``), 1 = ``names[1]`` (``pred_b``); ``std_a`` / ``std_b``: the rolling error spread of each
    network (0 until a joint has samples); ``uncertainty``: ``max(std_active, |pred_a - pred_b|)``, an
    honest error bar: large when the active network has been wrong lately or the two networks disagree.
    """

    torque: np.ndarray
    active: np.ndarray
    std_a: np.ndarray
    std_b: np.ndarray
    uncertainty: np.ndarray


class DualIdentifier:
    """Per-joint choice between two networks from their rolling identification errors.

    ``update(pred_a, pred_b, tau_measured)`` pushes one sample's errors and re-decides the active
    network of every joint (the decision is state, because of the hysteresis); ``select(pred_a,
    pred_b)`` only applies the current decision, so it can be used for any pair of predictions (e.g.
    the feedforward for a reference trajectory) without touching the statistics.

    Until ``min_samples`` errors are in the window every joint keeps network 0 (the primary).
    A sample with a non-finite or wrongly shaped value is rejected and counted, never raised on.
    """

    def __init__(self, n_joints: int, window: int = 200, hysteresis: float = 0.1,
                 names: tuple[str, str] = ('lstm', 'gru'), min_samples: int = 10,
                 centered: bool = False) -> None:
        if not isinstance(n_joints, (int, np.integer)) or n_joints < 1:
            raise ConfigError(f'n_joints must be a positive int, got {n_joints!r}')
        if not isinstance(window, (int, np.integer)) or window < 2:
            raise ConfigError(f'dual_window must be an int >= 2, got {window!r}')
        if not (isinstance(hysteresis, (int, float)) and 0.0 <= hysteresis < 1.0):
            raise ConfigError(f'dual_hysteresis must be in [0, 1), got {hysteresis!r}')
        if len(names) != 2 or not all(isinstance(s, str) for s in names):
            raise ConfigError(f'names must be two strings, got {names!r}')
        if not isinstance(min_samples, (int, np.integer)) or not 1 <= min_samples <= window:
            raise ConfigError(f'min_samples must be an int in [1, window], got {min_samples!r}')
        self.n_joints = int(n_joints)
        self.window = int(window)
        self.hysteresis = float(hysteresis)
        self.names = (str(names[0]), str(names[1]))
        self.min_samples = int(min_samples)
        self.centered = bool(centered)
        # Ring buffers of errors: axis 0 = network (a, b), axis 1 = time, axis 2 = joint.
        self._err = np.zeros((2, self.window, self.n_joints))
        self._pos = 0
        self._count = 0
        self._active = np.zeros(self.n_joints, dtype=np.int64)
        self._std = np.zeros((2, self.n_joints))
        self.counters = {'updates': 0, 'rejected': 0, 'switches': 0}
        self.switches_per_joint = np.zeros(self.n_joints, dtype=np.int64)

    # ------------------------------------------------------------------ state
    @property
    def active(self) -> np.ndarray:
        """Current choice per joint (0 = ``names[0]``, 1 = ``names[1]``); a copy."""
        return self._active.copy()

    @property
    def std_a(self) -> np.ndarray:
        return self._std[0].copy()

    @property
    def std_b(self) -> np.ndarray:
        return self._std[1].copy()

    @property
    def count(self) -> int:
        """Number of errors currently in the rolling window (≤ ``window``)."""
        return self._count

    def reset(self) -> None:
        """Forget all errors and go back to network 0 on every joint (counters are kept)."""
        self._err[:] = 0.0
        self._pos = 0
        self._count = 0
        self._active[:] = 0
        self._std[:] = 0.0

    # ------------------------------------------------------------------ input
    def _as_vector(self, x) -> np.ndarray | None:
        try:
            v = np.asarray(x, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            return None
        if v.shape != (self.n_joints,):
            return None
        return v

    def update(self, pred_a, pred_b, tau_measured) -> bool:
        """Push one sample's identification errors and re-decide the active network per joint.

        Returns False (and counts it in ``counters['rejected']``) when an input is missing, has the
        wrong shape or is not finite; the statistics are then left untouched.
        """
        a, b, tau = self._as_vector(pred_a), self._as_vector(pred_b), self._as_vector(tau_measured)
        if a is None or b is None or tau is None or not (
                np.isfinite(a).all() and np.isfinite(b).all() and np.isfinite(tau).all()):
            self.counters['rejected'] += 1
            return False
        self._err[0, self._pos] = tau - a
        self._err[1, self._pos] = tau - b
        self._pos = (self._pos + 1) % self.window
        self._count = min(self._count + 1, self.window)
        self.counters['updates'] += 1

        errs = self._err[:, :self._count]
        if self.centered:
            self._std = errs.std(axis=1)
        else:
            self._std = np.sqrt(np.mean(errs * errs, axis=1))
        if self._count >= self.min_samples:
            self._decide()
        return True

    def _decide(self) -> None:
        """The switching law: leave the active network only for a clearly better one."""
        joints = np.arange(self.n_joints)
        std_active = self._std[self._active, joints]
        std_other = self._std[1 - self._active, joints]
        switch = std_other < (1.0 - self.hysteresis) * std_active
        if switch.any():
            self._active[switch] = 1 - self._active[switch]
            self.switches_per_joint += switch
            self.counters['switches'] += int(switch.sum())

    # ------------------------------------------------------------------ output
    def select(self, pred_a, pred_b=None) -> IdentifierOutput:
        """Combine two predictions per joint with the current choice.

        ``pred_b=None`` (single-network mode) returns ``pred_a`` with ``active`` all 0. If the chosen
        prediction of a joint is not finite but the other one is, the other one is used for that
        joint (a broken network never hides a working one); if both are non-finite the torque stays
        non-finite and the caller (the pipeline) must drop the sample.
        """
        a = self._as_vector(pred_a)
        if a is None:
            raise ValueError(f'pred_a must have shape ({self.n_joints},)')
        joints = np.arange(self.n_joints)
        if pred_b is None:
            std_a = self._std[0].copy()
            active = np.zeros(self.n_joints, dtype=np.int64)
            unc = std_a.copy()
            return IdentifierOutput(a.copy(), active, std_a, self._std[1].copy(), unc)
        b = self._as_vector(pred_b)
        if b is None:
            raise ValueError(f'pred_b must have shape ({self.n_joints},)')
        active = self._active.copy()
        fa, fb = np.isfinite(a), np.isfinite(b)
        active[~fa & fb] = 1
        active[fa & ~fb] = 0
        both = np.stack([a, b])
        torque = both[active, joints]
        std_active = self._std[active, joints]
        with np.errstate(invalid='ignore'):
            diff = np.abs(a - b)
        # A non-finite partner says nothing about the disagreement: fall back to the error spread.
        diff = np.where(np.isfinite(diff), diff, 0.0)
        unc = np.maximum(std_active, diff)
        return IdentifierOutput(torque, active, self._std[0].copy(), self._std[1].copy(), unc)

    def __repr__(self) -> str:
        return (f'DualIdentifier(n_joints={self.n_joints}, window={self.window}, '
                f'hysteresis={self.hysteresis}, names={self.names})')
