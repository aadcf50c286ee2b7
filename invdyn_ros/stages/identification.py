"""Online identification of the physics prior's parameters (off the latency path).

The model's torque is linear in its parameters, ``tau = Y(q, qd, qdd) @ theta``
(:meth:`physics.RobotModel.regressor`: 10 inertial parameters per body, viscous / Coulomb / offset
per joint). :class:`OnlineIdentification` fits ``theta`` by exponentially weighted ridge
regression toward the URDF's nominal values ``theta0``::

    theta = argmin  sum_k lambda^(N-k) (|Y_k theta - tau_k|^2 + rho * sum_i ((theta_i - theta0_i) / s_i)^2)

with the sufficient statistics updated per sample (``A <- lambda A + Y'Y``, ``b <- lambda b + Y'tau``)
and the normal equations solved every ``solve_every`` samples (every ``YOUNG_SOLVE_EVERY`` while
the fit is young, see below). ``lambda = 1 - 1 / (memory_s * rate)``:
the fit forgets with a time constant of ``memory_s`` seconds, so it follows a payload change within a
few time constants, while the regularization (``rho``, constant, never forgotten, so there is no
covariance wind-up) keeps directions the motion does not excite at their nominal values instead of
letting them drift. ``s_i`` is the parameter's own scale (:attr:`RobotModel.param_scale`), so ``rho``
prices *relative* deviations: a parameter 100 % off its nominal value costs as much as ``rho`` (N m)²
of squared torque error on every sample. The penalty is weighted like the data, so the balance
between data and prior is the same after 10 samples and after 10 hours.

Unlike recursive least squares, nothing here can become indefinite: ``A + R`` is positive definite
by construction, and a solve that fails (or gives a non-finite result) keeps the previous parameters
(counted); one that gives a negative mass for a body the URDF gives a mass is repeated closer to the
URDF's values (:meth:`OnlineIdentification.solve`).

Outliers: least squares follows every sample, so a short burst of inconsistent samples (the few
samples around a stream gap or a filter restart, whose filtered acceleration and torque do not
belong together) could move the masses by kilograms -- measured in the closed-loop demo on a loaded
machine: a shoulder link's identified mass went from 7.6 to -3.3 kg within a second of a burst of
147 missed joint states. So each sample's torque error under the current parameters is compared
with a running scale of the recent errors (``SCALE_MEMORY_S``, updated only by accepted samples):
a sample beyond ``OUTLIER_SIGMAS`` on any joint is skipped (``outliers``). Errors that stay beyond
it for ``OUTLIER_ACCEPT_S`` are the new normal (a payload change, ``changes``): the statistics from
before are then mostly forgotten (``CHANGE_FORGET``), so the fit follows within a second instead
of at the pace of ``memory_s``.

A young fit (its effective sample count below half of what ``memory_s`` holds: the first seconds
of motion, and right after a change) is solved every ``YOUNG_SOLVE_EVERY`` samples instead of every
``solve_every``: its parameters move most then, and the prior -- the feedforward's fallback and
the residual network's base -- should follow within a tenth of a second rather than half a second
(the simulated UR5 of the demo, perturbed URDF, 500 Hz stream: the prior alone passes the
readiness test after 2.8 s of motion instead of 3.2 s). A solve costs ~0.2 ms (78 parameters),
in ``Pipeline.finish``, after the publish.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from invdyn_ros.stages.physics import PhysicsPrior

__all__ = ['OnlineIdentification', 'OUTLIER_SIGMAS', 'OUTLIER_ACCEPT_S', 'SCALE_MEMORY_S',
           'CHANGE_FORGET', 'YOUNG_SOLVE_EVERY']

#: A sample whose torque error exceeds this many (running RMS) errors on any joint is skipped.
OUTLIER_SIGMAS = 6.0
#: ... unless such samples keep coming for this long (s): then the dynamics changed (a payload).
OUTLIER_ACCEPT_S = 0.25
#: When outliers turned out to be the new normal, the statistics gathered before are scaled by
#: this factor: the fit follows the change within a solve or two instead of forgetting the old
#: dynamics at the pace of ``memory_s`` (a payload put on the flange).
CHANGE_FORGET = 0.02
#: Samples between solves while the fit is young (see the module docstring).
YOUNG_SOLVE_EVERY = 10
#: Regularization factors tried in turn while a solve gives a negative link mass.
INCONSISTENT_BOOSTS = (1.0, 10.0, 100.0, 1000.0)
#: Memory (s) of the running error scale behind the outlier test.
SCALE_MEMORY_S = 1.0
#: Samples accepted unconditionally at the start (to measure the scale).
_WARMUP_SAMPLES = 20
#: Floor of the error scale (N m)^2: a model exact to rounding must not reject its next sample.
_SCALE_FLOOR = 1e-6


class OnlineIdentification:
    """Fits a :class:`PhysicsPrior`'s parameters from labelled samples (see module docstring).

    ``update(q, qd, qdd, tau)`` adds one sample (a (n,) state and its measured torque); every
    ``solve_every`` samples (``YOUNG_SOLVE_EVERY`` while the fit is young) the new parameters go
    into ``prior.set_parameters``.
    ``rate_hz`` sets the forgetting factor from ``memory_s``; :meth:`set_rate` changes it (the
    estimator measures the rate only after the first samples).
    """

    def __init__(self, prior: PhysicsPrior, memory_s: float = 5.0, regularization: float = 0.1,
                 rate_hz: float = 1000.0, solve_every: int = 50) -> None:
        self.prior = prior
        robot = prior.robot
        self.memory_s = float(memory_s)
        self.theta0 = robot.theta0.copy()
        p = robot.n_params
        self._r_unit = 1.0 / np.square(robot.param_scale)
        self.regularization = float(regularization)
        self._A = np.zeros((p, p))
        self._b = np.zeros(p)
        self._weight = 0.0                     # sum of lambda^(N-k): the effective sample count
        self.solve_every = int(solve_every)
        self._since_solve = 0
        self.lam = 1.0
        self._mature_weight = 0.0
        self._e2 = np.zeros(prior.robot.n)     # running mean square of the accepted errors
        self._scale_updates = 0
        self._outliers_in_row = 0
        self._mass_nominal = robot.body_parameters(self.theta0)[:, 0] > 0
        self.set_rate(rate_hz)
        self.counters = {'samples': 0, 'solves': 0, 'solve_failures': 0, 'rejected': 0,
                         'outliers': 0, 'inconsistent_solves': 0, 'changes': 0}

    def set_rate(self, rate_hz: float) -> None:
        if rate_hz and math.isfinite(rate_hz) and rate_hz > 0:
            self.lam = 1.0 - 1.0 / max(2.0, self.memory_s * float(rate_hz))
            self._mature_weight = 0.5 / (1.0 - self.lam)     # half of what memory_s holds
            self._scale_alpha = 1.0 / max(2.0, SCALE_MEMORY_S * float(rate_hz))
            self._accept_after = max(2, int(round(OUTLIER_ACCEPT_S * float(rate_hz))))

    def _outlier(self, e: np.ndarray) -> bool:
        """The outlier test for a sample's torque error ``e`` (n,), and the running scale."""
        e2 = e * e
        if self._scale_updates >= _WARMUP_SAMPLES and \
                (e2 > OUTLIER_SIGMAS ** 2 * (self._e2 + _SCALE_FLOOR)).any():
            self._outliers_in_row += 1
            if self._outliers_in_row < self._accept_after:
                self.counters['outliers'] += 1
                return True
            np.maximum(self._e2, e2, out=self._e2)     # the new normal: re-centre the scale
            self._A *= CHANGE_FORGET                   # ... and mostly forget the old dynamics
            self._b *= CHANGE_FORGET
            self._weight *= CHANGE_FORGET
            self._since_solve = max(self._since_solve, self.solve_every - 10)
            self.counters['changes'] += 1
        self._outliers_in_row = 0
        self._scale_updates += 1
        self._e2 += max(1.0 / self._scale_updates, self._scale_alpha) * (e2 - self._e2)
        return False

    def update(self, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray, tau: np.ndarray) -> bool:
        """Add one sample; returns True when new parameters were just set."""
        if not (np.isfinite(tau).all() and np.isfinite(q).all() and np.isfinite(qd).all()
                and np.isfinite(qdd).all()):
            self.counters['rejected'] += 1
            return False
        Y = self.prior.regressor(q, qd, qdd)
        if self._outlier(tau - Y @ self.prior.theta):
            return False
        lam = self.lam
        A, b = self._A, self._b
        A *= lam
        A += Y.T @ Y
        b *= lam
        b += Y.T @ tau
        self._weight = lam * self._weight + 1.0
        self.counters['samples'] += 1
        self._since_solve += 1
        every = self.solve_every if self._weight >= self._mature_weight else \
            min(self.solve_every, YOUNG_SOLVE_EVERY)
        if self._since_solve >= every:
            self._since_solve = 0
            return self.solve()
        return False

    def solve(self) -> bool:
        """Solve the normal equations now and set the prior's parameters; False if it failed.

        A solution with a negative mass for a body the URDF gives a mass is not a robot (too
        little or inconsistent data for the free directions): the solve is repeated with the
        regularization x10, x100, x1000 (closer to the URDF's values) and, if all of them are
        inconsistent, the previous parameters stay (``inconsistent_solves``)."""
        for boost in INCONSISTENT_BOOSTS:
            R = (self.regularization * boost * max(self._weight, 1.0)) * self._r_unit
            try:
                theta = np.linalg.solve(self._A + np.diag(R), self._b + R * self.theta0)
            except np.linalg.LinAlgError:
                self.counters['solve_failures'] += 1
                return False
            if not np.isfinite(theta).all():
                self.counters['solve_failures'] += 1
                return False
            if not (self.prior.robot.body_parameters(theta)[:, 0] < 0)[self._mass_nominal].any():
                self.prior.set_parameters(theta)
                self.counters['solves'] += 1
                return True
        self.counters['inconsistent_solves'] += 1       # a negative mass at every strength
        return False

    @property
    def effective_samples(self) -> float:
        return self._weight

    def state_dict(self) -> dict[str, Any]:
        """Plain arrays (checkpoint): the statistics and the current parameters."""
        return {'A': self._A.copy(), 'b': self._b.copy(), 'weight': self._weight,
                'theta': np.array(self.prior.theta), 'theta0': self.theta0.copy()}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`; raises ValueError if it belongs to another model."""
        theta0 = np.asarray(d['theta0'], dtype=np.float64)
        if theta0.shape != self.theta0.shape:
            raise ValueError(f'identification state has {theta0.size} parameters, '
                             f'this model {self.theta0.size}')
        A = np.asarray(d['A'], dtype=np.float64)
        b = np.asarray(d['b'], dtype=np.float64)
        theta = np.asarray(d['theta'], dtype=np.float64)
        if A.shape != self._A.shape or b.shape != self._b.shape or \
                not (np.isfinite(A).all() and np.isfinite(b).all() and np.isfinite(theta).all()):
            raise ValueError('identification state: wrong shapes or non-finite values')
        self._A[:] = A
        self._b[:] = b
        self._weight = float(d.get('weight', 0.0))
        self.prior.set_parameters(theta)
