"""The physics stage of the pipeline: the identified model plus a learned residual, kept sane.

With ``prior: rnea`` the primary network learns the *residual* ``tau - tau_prior`` and the
pipeline's prediction for that network is::

    tau_prior(q, qd, qdd) + trust(q, qd) * residual_network(window)

* ``tau_prior``: :class:`physics.PhysicsPrior` with the parameters identified online
  (:class:`identification.OnlineIdentification`, fed from the labelled samples off the latency path,
  at most ``IDENTIFICATION_RATE_HZ`` updates per second).
* ``trust`` in [0, 1]: how close the state is to the states the networks were trained on.
  :class:`VisitedRegion` keeps a reservoir sample of the visited (q, qd) (the same samples the
  trainer gets) and measures the distance of a state to its nearest visited one, in standard
  deviations of the visited data (RMS over the 2n coordinates). Up to ``residual_trust_distance``
  the residual counts fully; beyond, it fades as ``exp(-((d - d0) / d0)^2)``: off the visited
  region the prediction falls back to the identified model instead of extrapolating a network.
  Before any labelled sample the trust is 0 (the prior alone). The distance is measured on every
  ``stride``-th sample (and reference), as the visited region grows and identification runs (at
  most ``IDENTIFICATION_RATE_HZ`` per second): the trust changes slowly, the distance costs
  ~20 µs.
* ``gate`` per joint, 0 or 1: whether the residual has earned its place. The stage keeps rolling
  squared errors (``GATE_MEMORY_SAMPLES``) of the model alone and of the model plus the trusted
  residual against every labelled sample; a joint uses the residual only while that makes its
  error smaller (with ``GATE_HYSTERESIS``). A network that has not learned yet, or learns
  something wrong, can therefore never make a joint worse than the identified model.
* ``uncertainty``: ``(1 - trust) * rms(tau - tau_prior)`` per joint -- where the residual is not
  trusted, the model's own recent error is what the prediction may be off by.

The stage owns its one-sample form (:meth:`PhysicsStage.begin` / :meth:`combine` / :meth:`learn`,
the live node) and its many-sample form (:meth:`PhysicsStage.predict_many`, replay and evaluation).
"""
from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import numpy as np

from invdyn_ros.stages.identification import COULOMB_VELOCITY_CANDIDATES, OnlineIdentification
from invdyn_ros.stages.physics import PhysicsConfig, PhysicsPrior, RobotModel

__all__ = ['VisitedRegion', 'PhysicsStage', 'IDENTIFICATION_RATE_HZ']

#: Identification updates per second at most (each costs a regressor and a rank-n update,
#: ~30-60 µs for 6-7 joints); samples in between are skipped for identification only.
IDENTIFICATION_RATE_HZ = 100.0
#: Memory (labelled samples) of the rolling errors behind the residual's per-joint gate.
GATE_MEMORY_SAMPLES = 500
#: The gate opens when the residual's error is below (1 - h) x the model's, closes above it.
GATE_HYSTERESIS = 0.05


class VisitedRegion:
    """Reservoir sample (Algorithm R) of visited states and the distance of a state to it.

    ``add(x)`` with x (d,); ``distance(x)``: min over the kept states of the RMS of
    ``(x - p) / std`` (std: running std of every added state, floored), ``inf`` while empty.
    """

    def __init__(self, dim: int, capacity: int = 256, seed: int = 0,
                 std_floor: Sequence[float] | float = 1e-3) -> None:
        self.dim = int(dim)
        self.capacity = int(capacity)
        self._points = np.zeros((self.capacity, self.dim))
        self._size = 0
        self._seen = 0
        self._rng = np.random.default_rng(seed)
        self._mean = np.zeros(self.dim)
        self._m2 = np.zeros(self.dim)
        self._floor = np.broadcast_to(np.asarray(std_floor, dtype=np.float64), (self.dim,)).copy()
        self._inv_std = 1.0 / self._floor
        self._scaled = np.zeros((self.capacity, self.dim))     # points * inv_std, kept in step
        self._norm2 = np.zeros(self.capacity)                  # |scaled point|^2, kept in step

    def __len__(self) -> int:
        return self._size

    def add(self, x: np.ndarray) -> None:
        self._seen += 1
        k = self._seen
        delta = x - self._mean
        self._mean += delta / k
        self._m2 += delta * (x - self._mean)
        if self._size < self.capacity:
            slot = self._size
            self._size += 1
        else:
            slot = int(self._rng.integers(0, k))
            if slot >= self.capacity:
                slot = -1
        if slot >= 0:
            self._points[slot] = x
        # the scale follows the data: refresh it (and the scaled copy) every capacity samples
        if k <= 16 or k % self.capacity == 0:
            std = np.sqrt(self._m2 / max(k - 1, 1))
            self._inv_std = 1.0 / np.maximum(std, self._floor)
            self._rescale()
        elif slot >= 0:
            row = np.multiply(x, self._inv_std, out=self._scaled[slot])
            self._norm2[slot] = row @ row

    def _rescale(self) -> None:
        S = np.multiply(self._points[:self._size], self._inv_std, out=self._scaled[:self._size])
        self._norm2[:self._size] = np.einsum('ij,ij->i', S, S)

    def distance(self, x: np.ndarray) -> float:
        """|s - p|^2 = |p|^2 - 2 p.s + |s|^2 with the |p|^2 kept: one matrix-vector product
        (the control loop's fast path)."""
        size = self._size
        if size == 0:
            return math.inf
        xs = x * self._inv_std
        d2 = float((self._norm2[:size] - 2.0 * (self._scaled[:size] @ xs)).min()) + float(xs @ xs)
        return math.sqrt(max(d2, 0.0) / self.dim)

    def distance_many(self, X: np.ndarray) -> np.ndarray:
        """:meth:`distance` for (N, d) rows (chunked to bound memory)."""
        out = np.full(len(X), math.inf)
        if self._size == 0:
            return out
        P = self._scaled[:self._size]
        p2 = self._norm2[:self._size]
        for lo in range(0, len(X), 2048):
            S = X[lo:lo + 2048] * self._inv_std
            d2 = np.einsum('ij,ij->i', S, S)[:, None] - 2.0 * S @ P.T + p2[None]
            out[lo:lo + 2048] = np.sqrt(np.maximum(d2.min(axis=1), 0.0) / self.dim)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {'points': self._points[:self._size].copy(), 'seen': self._seen,
                'mean': self._mean.copy(), 'm2': self._m2.copy()}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        pts = np.asarray(d['points'], dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != self.dim or len(pts) > self.capacity:
            raise ValueError('visited region: wrong shape')
        self._size = len(pts)
        self._points[:self._size] = pts
        self._seen = int(d['seen'])
        self._mean[:] = d['mean']
        self._m2[:] = d['m2']
        std = np.sqrt(self._m2 / max(self._seen - 1, 1))
        self._inv_std = 1.0 / np.maximum(std, self._floor)
        self._rescale()


def trust_of(distance: Any, d0: float) -> Any:
    """1 up to ``d0``, then ``exp(-((d - d0) / d0)^2)``; 0 for an infinite distance."""
    excess = np.maximum(np.asarray(distance, dtype=np.float64) - d0, 0.0) / d0
    return np.exp(-np.square(excess))


class PhysicsStage:
    """Prior + identification + visited region for one pipeline (see module docstring)."""

    def __init__(self, config: PhysicsConfig, joint_names: Sequence[str], seed: int = 0) -> None:
        self.config = config
        self.robot = RobotModel(config.urdf, joint_names, config.payload_mass_kg,
                                config.payload_com, config.gravity)
        self.prior = PhysicsPrior(self.robot, config.initial_coulomb_velocity)
        self.identification = OnlineIdentification(
            self.prior, config.identification_memory_s, config.identification_regularization,
            rate_hz=IDENTIFICATION_RATE_HZ,
            coulomb_velocities=COULOMB_VELOCITY_CANDIDATES
            if config.identifies_coulomb_velocity else None) if config.identify else None
        n = self.n = self.robot.n
        # floors: 1 mrad, 1 mrad/s -- a joint that never moves must not make every state "far"
        self.region = VisitedRegion(2 * n, seed=seed, std_floor=1e-3)
        self._x = np.zeros(2 * n)
        self._err2 = np.zeros(n)              # EMA of (tau - tau_prior)^2
        self._err2_comb = np.zeros(n)         # EMA of (tau - tau_prior - trust * residual)^2
        self._err_count = 0
        self.gate = np.zeros(n)               # per joint: use the residual (1) or not (0)
        self._residual: np.ndarray | None = None
        self._stride = 1
        self._since_ident = 0
        self._since_trust = 0
        self._since_ref_trust = 0
        self._ref_trust = 0.0
        self.tau_prior = np.zeros(n)          # of the current sample (after begin)
        self.ref_prior: np.ndarray | None = None  # the last reference's prior (None: not finite)
        self.trust = 0.0
        self.counters = {'prior_nonfinite': 0}

    # ------------------------------------------------------------------ rate
    def set_rate(self, rate_hz: float | None) -> None:
        """The samples' rate: identification uses every ``stride``-th labelled sample."""
        if rate_hz and math.isfinite(rate_hz) and rate_hz > 0:
            self._stride = max(1, int(round(rate_hz / IDENTIFICATION_RATE_HZ)))
            if self.identification is not None:
                self.identification.set_rate(rate_hz / self._stride)

    # ------------------------------------------------------------------ one sample
    def begin(self, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray) -> np.ndarray | None:
        """The prior for this sample and the residual's trust; None if the prior is not finite."""
        tp = self.prior.predict_finite(q, qd, qdd)
        if tp is None:
            self.counters['prior_nonfinite'] += 1
            return None
        self.tau_prior = tp
        x = self._x
        n = self.n
        x[:n] = q
        x[n:] = qd
        self._since_trust += 1
        if self._since_trust >= self._stride:   # the trust changes slowly: every stride-th sample
            self._since_trust = 0
            self.trust = float(trust_of(self.region.distance(x), self.config.residual_trust_distance))
        return tp

    def combine(self, residual: np.ndarray | None) -> np.ndarray:
        """The prediction of the residual network's side: prior + trust * gate * residual."""
        self._residual = residual
        if residual is None or self.trust == 0.0:
            return self.tau_prior.copy()
        out = residual * self.gate
        out *= self.trust
        out += self.tau_prior
        return out

    def residual_counts(self) -> np.ndarray:
        """(n,) bool: whether :meth:`combine` adds the residual on each joint now (trusted here and
        its gate open); False: that joint gets the identified model alone."""
        return (self.gate > 0.0) & (self.trust > 0.0)

    def evaluate(self, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray,
                 residual: np.ndarray | None) -> np.ndarray | None:
        """prior + trust * residual for any state, without touching the stream's sample
        (references); None if the prior is not finite."""
        tp = self.prior.predict_finite(q, qd, qdd)
        if tp is None:
            self.counters['prior_nonfinite'] += 1
            self.ref_prior = None
            return None
        self.ref_prior = tp
        if residual is None:
            return tp
        self._since_ref_trust += 1
        if self._since_ref_trust >= self._stride:  # as in begin(): every stride-th reference
            self._since_ref_trust = 0
            self._ref_trust = float(trust_of(self.region.distance(np.concatenate((q, qd))),
                                             self.config.residual_trust_distance))
        return tp + self._ref_trust * self.gate * residual

    def uncertainty(self) -> np.ndarray:
        """(n,) ``(1 - trust) * rms(tau - tau_prior)``."""
        return (1.0 - self.trust) * np.sqrt(self._err2)

    def learn(self, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray, tau: np.ndarray,
              ident: tuple | None = None) -> bool:
        """A labelled sample (after the prediction): error statistics (every sample); visited
        region and identification every ``stride``-th sample (at most ``IDENTIFICATION_RATE_HZ``
        per second: they cost ~20 and ~60 µs) -- returns True for those samples. ``ident``: the
        ``(q, qd, qdd, tau)`` the identification fits instead of this sample's (its own, more
        strongly filtered estimate, ``identification_cutoff_hz``); ``()``: none this time."""
        e = tau - self.tau_prior
        self._err_count += 1
        a = max(1.0 / self._err_count, 1.0 / GATE_MEMORY_SAMPLES)
        self._err2 += a * (e * e - self._err2)
        if self._residual is not None:               # the residual's own record, gate or not
            ec = e - self.trust * self._residual
            self._err2_comb += a * (ec * ec - self._err2_comb)
            better = self._err2_comb < (1.0 - GATE_HYSTERESIS) * self._err2
            worse = self._err2_comb > self._err2
            self.gate[better] = 1.0
            self.gate[worse] = 0.0
            self._residual = None
        self._since_ident += 1
        if self._since_ident < self._stride:
            return False
        self._since_ident = 0
        self.region.add(self._x)                     # add() copies what it keeps
        if self.identification is not None:
            if ident is None:
                self.identification.update(q, qd, qdd, tau)
            elif ident:
                self.identification.update(*ident)
        return True

    # ------------------------------------------------------------------ many samples
    def frozen(self) -> 'PhysicsStage':
        """A copy for :meth:`predict_many` / :meth:`combine_many` in another thread: the current
        parameters, visited region and gate, none of them shared with this stage, and no
        identification (it does not learn)."""
        other = copy.copy(self)
        other.prior = self.prior.frozen()
        other.region = copy.deepcopy(self.region)
        other.identification = None
        for name in ('gate', '_err2', '_err2_comb', '_x', 'tau_prior'):
            setattr(other, name, getattr(self, name).copy())
        other.counters = dict(self.counters)
        return other

    def predict_many(self, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tau_prior (N, n), trust (N,), prior-error rms (n,)) for rows of states, with the
        current parameters (learning off)."""
        tp = self.prior.predict_many(q, qd, qdd)
        X = np.concatenate((q, qd), axis=1)
        trust = trust_of(self.region.distance_many(X), self.config.residual_trust_distance)
        return tp, trust, np.sqrt(self._err2)

    def combine_many(self, tau_prior: np.ndarray, trust: np.ndarray,
                     residual: np.ndarray) -> np.ndarray:
        """:meth:`combine` for rows (the gate as it is now; NaN residual rows: the prior)."""
        out = tau_prior.copy()
        ok = np.isfinite(residual).all(axis=1)
        out[ok] += trust[ok, None] * self.gate[None, :] * residual[ok]
        return out

    def gravity(self, q: np.ndarray) -> np.ndarray:
        return self.prior.gravity(q)

    def model_report(self) -> dict[str, Any]:
        """The model's part of :meth:`stats` (also the evaluator's details of ``rnea`` /
        ``identified``): its parameters and, when identified, the fit's counters and joint
        weights."""
        out: dict[str, Any] = {'parameters': self.prior.report()}
        if self.identification is not None:
            out['identification'] = dict(self.identification.counters)
            out['identification_weights'] = self.identification.joint_weights.tolist()
        return out

    def stats(self) -> dict[str, Any]:
        return {'trust': self.trust, 'visited': len(self.region),
                'prior_error_rms': np.sqrt(self._err2).tolist(),
                'residual_error_rms': np.sqrt(self._err2_comb).tolist(),
                'residual_gate': self.gate.tolist(), **self.model_report()}

    def state_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {'theta': np.array(self.prior.theta), 'err2': self._err2.copy(),
                             'err2_comb': self._err2_comb.copy(), 'gate': self.gate.copy(),
                             'region': self.region.state_dict()}
        if self.identification is not None:
            d['identification'] = self.identification.state_dict()
        return d

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.prior.set_parameters(np.asarray(d['theta'], dtype=np.float64))
        self._err2[:] = d['err2']
        self._err2_comb[:] = d.get('err2_comb', d['err2'])
        self.gate[:] = d.get('gate', 0.0)
        self._err_count = GATE_MEMORY_SAMPLES
        self.region.load_state_dict(d['region'])
        if self.identification is not None and 'identification' in d:
            self.identification.load_state_dict(d['identification'])
