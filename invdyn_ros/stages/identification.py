"""Online identification of the physics prior's parameters (off the latency path).

The model's torque is linear in its parameters, ``tau = Y(q, qd, qdd) @ theta``
(:meth:`physics.RobotModel.regressor`: 10 inertial parameters per body, viscous / Coulomb / offset
per joint). :class:`OnlineIdentification` fits ``theta`` by exponentially weighted ridge
regression toward the URDF's nominal values ``theta0``::

    theta = argmin  sum_k lambda^(N-k) (|Y_k theta - tau_k|_W^2 + rho * sum_i ((theta_i - theta0_i) / s_i)^2)

with the sufficient statistics updated per sample (``A <- lambda A + Y'WY``,
``b <- lambda b + Y'W tau``; ``W`` the joints' weights, below)
and the normal equations solved every ``solve_every`` samples (every ``YOUNG_SOLVE_EVERY`` while
the fit is young, see below). ``lambda = 1 - 1 / (memory_s * rate)``:
the fit forgets with a time constant of ``memory_s`` seconds, so it follows slow changes within a
few time constants (a payload change is detected and handled at once: "Outliers" below), while the
regularization (``rho``, constant, never forgotten, so there is no
covariance wind-up) keeps directions the motion does not excite at their nominal values instead of
letting them drift. ``s_i`` is the parameter's own scale (:attr:`RobotModel.param_scale`), so ``rho``
prices *relative* deviations: a parameter 100 % off its nominal value costs as much as ``rho`` (N m)²
of squared torque error on every sample. The penalty is weighted like the data, so the balance
between data and prior is the same after 10 samples and after 10 hours.

Joint weights: ``W = diag(w)``, ``w_j = max_k var_k / var_j`` (at most ``JOINT_WEIGHT_MAX``),
``var_j`` the variance of joint j's torque over ``memory_s``: the fit minimizes each joint's error
relative to the size of its torque (as the nMSE scores it), not the absolute error that the big
joints dominate. The joint whose torque varies most keeps weight 1, so ``rho`` means for it what it
meant before. Weighted alike, a light joint's parameters were hardly identified: the demo's wrist 3
(its body's inertia moves ~0.04 N m, the shoulder's tens) stayed near the perturbed URDF's inertia,
23 % low, because a 100 % error of it explains less squared torque (~0.001 (N m)^2 per sample)
than ``rho`` (0.01) charges for it. The cap keeps a light joint's noise from outweighing the
regularization (the weight multiplies its noise too). Measured (README, "Joint weights in the
identification"): the demo's deterministic loop tracks at 1.26x the true model instead of 1.38x
(wrist 3 at 0.16 instead of 0.25 mrad), and the identified model's held-out error on the real
recordings falls on average (UR10 1.56 -> 0.72 avg nMSE, Baxter 0.82 -> 0.65; three of Baxter's
seven joints worse); on raw torques with 0.2 N m of noise on every joint and no filter, some
joints get worse.

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
it for ``OUTLIER_ACCEPT_S`` are the new normal (``changes``), most often a payload put on or taken
off the flange: the statistics from before then say nothing more about the flange body's 10
inertial parameters (they are marginalized out: ``A <- A_oo - A_of A_ff^+ A_fo`` on the other
parameters, the Schur complement, and zero for the flange body), and what they say about every
other parameter is kept at ``CHANGE_FORGET`` of its weight. The flange body then follows within a
second, while the links, the friction and the Coulomb scale keep what seconds of earlier motion
taught them: forgetting those as well (the earlier rule, every statistic x 0.02) left the fit
with a second of motion for 78 parameters, and it fitted that second and missed the rest of the
trajectory (``bench/prior_payload.py``: the prediction error first back within 1.5x of its level
before a 3 kg payload 11.0 s after the change, against 1.8 s with the flange body released).

The Coulomb term's smooth sign ``tanh(qd / v_c)`` is linear in its magnitude but not in its
velocity scale ``v_c``, and a wrong ``v_c`` is a structural error no amount of data removes (the
demo's simulated UR5, whose friction steps over 0.02 rad/s, through the evaluator: the identified
model's RMS error on an unseen motion 0.37 / 0.31 / 0.27 N m on the first three joints with
``v_c`` = 0.05, 0.19 / 0.21 / 0.13 with the chosen 0.0214; ``bench/coulomb_velocity.py``). Given
several candidate scales (``coulomb_velocities``, e.g. :data:`COULOMB_VELOCITY_CANDIDATES`), the
statistics hold one Coulomb column per candidate and joint beside the others, so the fit of every
candidate is a sub-block of the same ``A`` and ``b``: every ``SELECT_EVERY_SOLVES``-th solve fits
them all and keeps the one of the lowest penalized cost (the weighted squared error plus the
regularization, from ``A``, ``b`` and the weighted sum of ``|tau|^2``), switching only for a
``WIDTH_HYSTERESIS`` lower cost; the solves in between fit the scale in use. The prior then uses
that scale (:meth:`PhysicsPrior.set_coulomb_velocity`): its prediction path is unchanged.

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
from typing import Any, Sequence

import numpy as np

from invdyn_ros.stages.physics import (FRICTION_PER_JOINT, PARAMS_PER_BODY, PhysicsConfig,
                                      PhysicsPrior)

__all__ = ['OnlineIdentification', 'OUTLIER_SIGMAS', 'OUTLIER_ACCEPT_S', 'SCALE_MEMORY_S',
           'CHANGE_FORGET', 'YOUNG_SOLVE_EVERY', 'COULOMB_VELOCITY_CANDIDATES',
           'SELECT_EVERY_SOLVES', 'WIDTH_HYSTERESIS', 'JOINT_WEIGHT_MAX']

#: The Coulomb sign's velocity scales (rad/s) chosen among when ``coulomb_velocity`` is 0
#: ("identified"): log-spaced from 4 mrad/s to 0.2 rad/s, neighbours 1.75x apart.
COULOMB_VELOCITY_CANDIDATES = tuple(float(v) for v in np.geomspace(0.004, 0.2, 8).round(4))
#: Every this many solves, all candidate scales are fitted and compared.
SELECT_EVERY_SOLVES = 5
#: Another scale replaces the one in use only if its penalized cost is this much lower (relative).
WIDTH_HYSTERESIS = 0.002

#: A sample whose torque error exceeds this many (running RMS) errors on any joint is skipped.
OUTLIER_SIGMAS = 6.0
#: ... unless such samples keep coming for this long (s): then the dynamics changed (a payload).
OUTLIER_ACCEPT_S = 0.25
#: When outliers turned out to be the new normal, the flange body's inertial parameters are
#: released from the statistics gathered before (a payload: module docstring) and what those
#: statistics say about the other parameters is scaled by this factor.
CHANGE_FORGET = 0.25
#: Samples between solves while the fit is young (see the module docstring).
YOUNG_SOLVE_EVERY = 10
#: Regularization factors tried in turn while a solve gives a negative link mass.
INCONSISTENT_BOOSTS = (1.0, 10.0, 100.0, 1000.0)
#: Memory (s) of the running error scale behind the outlier test.
SCALE_MEMORY_S = 1.0
#: The cap of a joint's weight in the fit (module docstring, "Joint weights": the largest torque
#: variance over the joint's own); 1 = all joints weighted alike (the rule before stop 33). The
#: description of ``identification_regularization`` quotes it.
JOINT_WEIGHT_MAX = 100.0
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
    estimator measures the rate only after the first samples). ``coulomb_velocities``: candidate
    scales of the Coulomb sign to choose among (module docstring); None keeps the prior's.
    """

    def __init__(self, prior: PhysicsPrior,
                 memory_s: float = PhysicsConfig.identification_memory_s,
                 regularization: float = PhysicsConfig.identification_regularization,
                 rate_hz: float = 1000.0, solve_every: int = 50,
                 coulomb_velocities: Sequence[float] | None = None) -> None:
        self.prior = prior
        robot = prior.robot
        self.memory_s = float(memory_s)
        self.theta0 = robot.theta0.copy()
        p = robot.n_params
        n = robot.n
        self._r_unit = 1.0 / np.square(robot.param_scale)
        self.regularization = float(regularization)
        # the candidate Coulomb scales: one Coulomb column per candidate and joint after the p
        # columns of the regressor; candidate k's fit uses the p columns with joint j's Coulomb
        # column replaced by p + k n + j (one candidate: the regressor's own columns)
        widths = (prior.coulomb_velocity,) if coulomb_velocities is None else \
            tuple(float(v) for v in coulomb_velocities)
        if not widths or not all(0.0 < v < math.inf for v in widths):
            raise ValueError(f'coulomb_velocities: need finite values > 0, got {widths!r}')
        self.widths = widths
        K = len(widths) if len(widths) > 1 else 0
        coulomb_cols = robot.n_inertial + FRICTION_PER_JOINT * np.arange(n) + 1
        self._sets = []
        for k in range(max(K, 1)):
            cols = np.arange(p)
            if K:
                cols[coulomb_cols] = p + k * n + np.arange(n)
            self._sets.append(cols)
        self._Ya = np.zeros((n, p + K * n))
        self._extra_rows = np.tile(np.arange(n), K)
        self._extra_cols = p + np.arange(K * n)
        self._inv_widths = 1.0 / np.asarray(widths)[:, None] if K else None
        self.width_index = int(np.argmin(np.abs(np.log(np.asarray(widths) /
                                                        prior.coulomb_velocity))))
        if prior.coulomb_velocity != widths[self.width_index]:
            prior.set_coulomb_velocity(widths[self.width_index])
        self._solves_since_select = SELECT_EVERY_SOLVES     # compare the candidates at once
        pa = p + K * n
        self._A = np.zeros((pa, pa))
        self._b = np.zeros(pa)
        self._tt = 0.0                         # weighted sum of |tau|^2 (the fits' costs)
        self._weight = 0.0                     # sum of lambda^(N-k): the effective sample count
        # the flange body's inertial parameters (the last joint's body: a payload) and the rest
        self._flange = np.arange(robot.n_inertial - PARAMS_PER_BODY, robot.n_inertial)
        self._rest = np.setdiff1d(np.arange(pa), self._flange)
        self._flange_scale = robot.param_scale[self._flange]
        self.solve_every = int(solve_every)
        self._since_solve = 0
        self.lam = 1.0
        self._mature_weight = 0.0
        self._e2 = np.zeros(prior.robot.n)     # running mean square of the accepted errors
        # the joints' weights: running mean and mean square of the fitted torques over memory_s
        self._tau_m1 = np.zeros(prior.robot.n)
        self._tau_m2 = np.zeros(prior.robot.n)
        self._tau_updates = 0
        self._w = np.ones(prior.robot.n)
        self._scale_updates = 0
        self._outliers_in_row = 0
        self._mass_nominal = robot.body_parameters(self.theta0)[:, 0] > 0
        self.set_rate(rate_hz)
        self.counters = {'samples': 0, 'solves': 0, 'solve_failures': 0, 'rejected': 0,
                         'outliers': 0, 'inconsistent_solves': 0, 'changes': 0,
                         'coulomb_velocity_changes': 0}

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
            self._release_flange()                     # ... and let the flange body follow
            self._since_solve = max(self._since_solve, self.solve_every - 10)
            self.counters['changes'] += 1
        self._outliers_in_row = 0
        self._scale_updates += 1
        self._e2 += max(1.0 / self._scale_updates, self._scale_alpha) * (e2 - self._e2)
        return False

    def _set_weights(self) -> None:
        """The joints' weights from their torques' variances (module docstring)."""
        var = np.maximum(self._tau_m2 - self._tau_m1 * self._tau_m1, _SCALE_FLOOR)
        np.minimum(var.max() / var, max(JOINT_WEIGHT_MAX, 1.0), out=self._w)

    def _release_flange(self) -> None:
        """After a change: marginalize the flange body's parameters out of the statistics (the
        Schur complement: what the old samples say about the other parameters whatever the flange
        body is) and keep that at ``CHANGE_FORGET`` of its weight (module docstring); the effective
        sample count too, so the fit is young again (``CHANGE_FORGET`` < 0.5)."""
        A, b = self._A, self._b
        f, r = self._flange, self._rest
        # the pseudo-inverse of A_ff in the parameters' own units (kg, kg m, kg m^2 differ by
        # orders of magnitude): directions the old motion never excited carry no information
        d = self._flange_scale
        Aff_inv = d[:, None] * np.linalg.pinv(d[:, None] * A[np.ix_(f, f)] * d[None, :],
                                              rcond=1e-10, hermitian=True) * d[None, :]
        Arf = A[np.ix_(r, f)]
        gain = Arf @ Aff_inv
        A_rest = A[np.ix_(r, r)] - gain @ Arf.T
        b_rest = b[r] - gain @ b[f]
        tt = self._tt - float(b[f] @ Aff_inv @ b[f])
        A[:] = 0.0
        b[:] = 0.0
        A[np.ix_(r, r)] = CHANGE_FORGET * 0.5 * (A_rest + A_rest.T)
        b[r] = CHANGE_FORGET * b_rest
        self._tt = CHANGE_FORGET * max(tt, 0.0)
        self._weight *= CHANGE_FORGET       # the regularization's balance, and a young fit

    def update(self, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray, tau: np.ndarray) -> bool:
        """Add one sample; returns True when new parameters were just set."""
        if not (np.isfinite(tau).all() and np.isfinite(q).all() and np.isfinite(qd).all()
                and np.isfinite(qdd).all()):
            self.counters['rejected'] += 1
            return False
        Y = self.prior.regressor(q, qd, qdd)
        if self._outlier(tau - Y @ self.prior.theta):
            return False
        self._tau_updates += 1
        a = max(1.0 / self._tau_updates, 1.0 - self.lam)
        self._tau_m1 += a * (tau - self._tau_m1)
        self._tau_m2 += a * (tau * tau - self._tau_m2)
        self._set_weights()
        if self._inv_widths is not None:          # the candidates' Coulomb columns
            Ya = self._Ya
            Ya[:, :Y.shape[1]] = Y
            Ya[self._extra_rows, self._extra_cols] = np.tanh(qd[None, :] * self._inv_widths).ravel()
            Y = Ya
        lam = self.lam
        A, b = self._A, self._b
        w = self._w
        wY = w[:, None] * Y
        A *= lam
        A += Y.T @ wY
        b *= lam
        b += wY.T @ tau
        self._tt = lam * self._tt + float(tau @ (w * tau))
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
        inconsistent, the previous parameters stay (``inconsistent_solves``). With several
        candidate Coulomb scales, every ``SELECT_EVERY_SOLVES``-th solve fits them all and keeps
        the best (module docstring)."""
        current = self.width_index
        self._solves_since_select += 1
        if len(self.widths) > 1 and self._solves_since_select >= SELECT_EVERY_SOLVES:
            self._solves_since_select = 0
            fits = [self._fit(k) for k in range(len(self.widths))]
            best = min((k for k in range(len(fits)) if fits[k][0] is not None),
                       key=lambda k: fits[k][1], default=None)
            if best is not None and best != current and (
                    fits[current][0] is None or
                    fits[best][1] < (1.0 - WIDTH_HYSTERESIS) * fits[current][1]):
                self.width_index = best
                self.prior.set_coulomb_velocity(self.widths[best])
                self.counters['coulomb_velocity_changes'] += 1
            theta, _, status = fits[self.width_index]
        else:
            theta, _, status = self._fit(current)
        if theta is None:
            self.counters[status] += 1
            return False
        self.prior.set_parameters(theta)
        self.counters['solves'] += 1
        return True

    def _fit(self, k: int) -> tuple[np.ndarray | None, float, str]:
        """Candidate ``k``'s parameters (p,), its penalized cost, and '' -- or (None, inf, the
        counter of the failure)."""
        S = self._sets[k]
        A = self._A[np.ix_(S, S)] if len(self.widths) > 1 else self._A
        b = self._b[S] if len(self.widths) > 1 else self._b
        for boost in INCONSISTENT_BOOSTS:
            R = (self.regularization * boost * max(self._weight, 1.0)) * self._r_unit
            try:
                theta = np.linalg.solve(A + np.diag(R), b + R * self.theta0)
            except np.linalg.LinAlgError:
                return None, math.inf, 'solve_failures'
            if not np.isfinite(theta).all():
                return None, math.inf, 'solve_failures'
            if not (self.prior.robot.body_parameters(theta)[:, 0] < 0)[self._mass_nominal].any():
                d = theta - self.theta0
                cost = self._tt - 2.0 * float(theta @ b) + float(theta @ A @ theta) + \
                    float(R @ (d * d))
                return theta, cost, ''
        return None, math.inf, 'inconsistent_solves'       # a negative mass at every strength

    @property
    def effective_samples(self) -> float:
        return self._weight

    @property
    def joint_weights(self) -> np.ndarray:
        """Each joint's weight in the fit now (n,): 1 for the joint whose torque varies most."""
        return self._w.copy()

    def state_dict(self) -> dict[str, Any]:
        """Plain arrays (checkpoint): the statistics and the current parameters."""
        return {'A': self._A.copy(), 'b': self._b.copy(), 'weight': self._weight,
                'tt': self._tt, 'theta': np.array(self.prior.theta), 'theta0': self.theta0.copy(),
                'coulomb_velocity': self.prior.coulomb_velocity,
                'tau_moments': np.stack((self._tau_m1, self._tau_m2)),
                'tau_updates': self._tau_updates}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`; raises ValueError if it belongs to another model.

        Statistics of another layout (another set of Coulomb scales) are not resumed: the
        parameters are, and the statistics start afresh. A saved Coulomb scale is resumed when it
        is one of this fit's candidates (else the parameters' Coulomb magnitudes would belong to
        another sign: ValueError)."""
        theta0 = np.asarray(d['theta0'], dtype=np.float64)
        if theta0.shape != self.theta0.shape:
            raise ValueError(f'identification state has {theta0.size} parameters, '
                             f'this model {self.theta0.size}')
        A = np.asarray(d['A'], dtype=np.float64)
        b = np.asarray(d['b'], dtype=np.float64)
        theta = np.asarray(d['theta'], dtype=np.float64)
        if theta.shape != self.theta0.shape or not (
                np.isfinite(A).all() and np.isfinite(b).all() and np.isfinite(theta).all()):
            raise ValueError('identification state: wrong shapes or non-finite values')
        width = d.get('coulomb_velocity')
        index = self.width_index
        if width is not None:
            match = [k for k, v in enumerate(self.widths) if math.isclose(v, float(width))]
            if not match:
                raise ValueError(f'identification state: Coulomb scale {float(width):g} rad/s is '
                                 f'none of {list(self.widths)}')
            index = match[0]
        if A.shape == self._A.shape and b.shape == self._b.shape:
            self._A[:] = A
            self._b[:] = b
            self._weight = float(d.get('weight', 0.0))
            self._tt = float(d.get('tt', 0.0))
        moments = np.asarray(d.get('tau_moments', ()), dtype=np.float64)
        if moments.shape == (2, self._tau_m1.size) and np.isfinite(moments).all():
            self._tau_m1[:], self._tau_m2[:] = moments  # the joints' weights (older sets: anew)
            self._tau_updates = int(d.get('tau_updates', 0))
            self._set_weights()
        if index != self.width_index:
            self.width_index = index
            self.prior.set_coulomb_velocity(self.widths[index])
        self.prior.set_parameters(theta)
