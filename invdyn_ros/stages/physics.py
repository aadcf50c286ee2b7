"""The robot's own physics: URDF -> Pinocchio model, the RNEA prior, gravity, the regressor.

Two objects, as in Pinocchio (an immutable model, per-call data):

* :class:`RobotModel` (immutable): built once from a URDF (``robot_description`` XML or a file),
  reduced to the configured ``joint_names`` (every other movable joint -- grippers, fingers, the
  other arm -- locked at its neutral position), with an optional payload at the last joint. It maps
  the node's joint order to Pinocchio's and knows the *nominal* parameters
  ``theta0 = [pi_1 .. pi_n, friction]``: per moving body the 10 inertial parameters of
  ``pin.Inertia.toDynamicParameters`` (m, m c, I about the joint frame) and per joint
  ``[viscous, coulomb, offset]`` (nominally 0: a URDF has no friction).
* :class:`PhysicsPrior` (mutable, per-call data): the torque of the model with the *current*
  parameters ``theta`` (the nominal ones until :mod:`identification` replaces them)::

      tau_prior = RNEA_pi(q, qd, qdd) + viscous * qd + coulomb * tanh(qd / v_c) + offset

  computed by the compiled RNEA of :func:`kernels.rnea_prior <invdyn_ros.stages.kernels.rnea_prior>`
  (with the friction terms and the finiteness check in the same call: one dispatch and a small
  contiguous pack per body, which matters on the fast path where every call runs with cold
  caches; README "Latency of the prior"), or, without numba or for a joint that is not a
  one-axis revolute / prismatic one, with Pinocchio's RNEA on a copy of the model whose inertias
  are ``pi``; both give the same torques (tested to 1e-12). ``gravity(q)`` is ``g_pi(q)`` (the
  gravity torque a vendor's torque interface already compensates, see ``feedforward_mode:
  minus_gravity``).

The rigid-body torque is linear in the parameters: ``tau = Y(q, qd, qdd) @ theta``
(:meth:`RobotModel.regressor`, Pinocchio's joint torque regressor plus the friction columns), which
is what online identification fits. ``RNEA_pi`` equals ``Y @ theta`` for any ``pi`` whose masses are
not ~0 (:meth:`PhysicsPrior.set_parameters` keeps ``|m| >= MIN_MASS``).

Everything here is float64 numpy in the node's ``joint_names`` order; Pinocchio is imported lazily
so the rest of the package works without it (a prior then fails with a clear ConfigError).
"""
from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from invdyn_ros.errors import ConfigError
from invdyn_ros.stages import kernels

__all__ = ['PRIORS', 'FEEDFORWARD_MODES', 'FEEDFORWARD_FALLBACKS', 'FIXED_COULOMB_VELOCITY',
           'PhysicsConfig', 'RobotModel', 'PhysicsPrior', 'load_urdf_text']

PRIORS = ('none', 'rnea')
FEEDFORWARD_MODES = ('total', 'minus_gravity')
FEEDFORWARD_FALLBACKS = ('prior', 'zeros')
PARAMS_PER_BODY = 10
FRICTION_PER_JOINT = 3          # viscous, coulomb, offset
#: The friction parameters' scale in the identification's regularization (N m s/rad, N m, N m):
#: their nominal value is 0 (a URDF carries no friction), which is no knowledge, and any motion of
#: a joint excites them, so the pull toward 0 is weak -- at 1 (as before) it shrank a wrist's
#: 0.56 N m Coulomb term and 0.28 N m s/rad viscous term by about 1 %, 0.006-0.01 N m of error
#: on a joint whose PD stiffness may be 40 N m/rad (the demo's wrist 3).
FRICTION_SCALE = 10.0
MIN_MASS = 1e-6                 # kg: below it pin.Inertia.FromDynamicParameters divides by ~0
#: The Coulomb sign's scale (rad/s) when it is neither set nor identified (``identify: false``).
FIXED_COULOMB_VELOCITY = 0.05


# Pinocchio's one-axis joints (kernels.rnea_prior): aligned axes, and the unaligned ones' ``.axis``
_AXES = {f'{kind}{suffix}{a}': np.eye(3)[i] for i, a in enumerate('XYZ')
         for kind, suffix in (('R', ''), ('R', 'UB'), ('P', ''))}
_UNALIGNED = ('RevoluteUnaligned', 'RevoluteUnboundedUnaligned', 'PrismaticUnaligned')


def _pin() -> Any:
    try:
        import pinocchio  # noqa: PLC0415 - optional heavy dependency, imported when a prior is used
    except ImportError as exc:  # pragma: no cover - pinocchio is in requirements.txt
        raise ConfigError('prior: the physics prior needs Pinocchio (pip install pin, or '
                          'apt install ros-$ROS_DISTRO-pinocchio)') from exc
    return pinocchio


@dataclass(frozen=True)
class PhysicsConfig:
    """What the physics stage needs (see the node's parameters of the same names).

    ``prior``: ``'none'`` (the black-box networks alone, as before) or ``'rnea'``.
    ``urdf``: the URDF XML text (from ``robot_description``, ``urdf_path`` or the
    ``/robot_description`` topic; the pipeline never reads files or topics itself).
    ``payload_mass_kg`` / ``payload_com`` (m, in the last joint's frame): a known tool, added to the
    last joint's body as a point mass. ``gravity``: the gravity vector in the URDF's base frame
    (m/s², ``[0, 0, -9.81]`` for an upright arm). ``identify``: fit the parameters online
    (:mod:`identification`); ``identification_memory_s``: the time constant of its exponential
    forgetting (how fast it follows slow changes; a payload change is detected and released at
    once); ``identification_regularization``: how
    strongly the fit is pulled to the URDF's nominal values: a parameter 100 % off costs as much as
    this many (N m)² of squared torque error per sample (of the joint whose torque varies most;
    the others' errors weigh more: :mod:`identification`, "Joint weights"), so poorly excited
    parameters stay put.
    ``identification_cutoff_hz``: the cutoff of the identification's own estimator, which keeps
    acceleration noise out of its regressor (errors in variables; the pipeline builds it:
    ``PipelineConfig.identification_filter``, README "What it was").
    ``coulomb_velocity``: the velocity (rad/s) of the smooth sign ``tanh(qd / coulomb_velocity)``;
    0 (the default): identified (:mod:`identification` chooses it among
    ``COULOMB_VELOCITY_CANDIDATES``), or :data:`FIXED_COULOMB_VELOCITY` without identification
    (:attr:`initial_coulomb_velocity`). ``residual_trust_distance``: how far
    (RMS over the scaled q and qd of a sample, in standard deviations of the visited data) a state
    may be from the nearest visited one before the learned residual is shrunk toward zero.
    ``feedforward_mode``: ``'total'`` (the predicted torque) or ``'minus_gravity'`` (the predicted
    torque minus the model's gravity torque, for torque interfaces that add the robot's own gravity
    compensation: KUKA FRI torque mode, UR ``direct_torque``, Franka). ``feedforward_fallback``
    (with a prior): what the feedforward carries while the learned prediction is not ready:
    ``'prior'`` (the physics model alone, if *it* passes the same readiness test on the measured
    torques) or ``'zeros'``.
    """

    prior: str = 'none'
    urdf: str | None = None
    payload_mass_kg: float = 0.0
    payload_com: tuple = (0.0, 0.0, 0.0)
    gravity: tuple = (0.0, 0.0, -9.81)
    identify: bool = True
    identification_memory_s: float = 30.0
    identification_regularization: float = 0.01
    identification_cutoff_hz: float = 10.0
    coulomb_velocity: float = 0.0
    residual_trust_distance: float = 0.5
    feedforward_mode: str = 'total'
    feedforward_fallback: str = 'prior'

    @property
    def enabled(self) -> bool:
        return self.prior != 'none'

    @property
    def identifies_coulomb_velocity(self) -> bool:
        """Whether identification chooses the Coulomb sign's scale (``coulomb_velocity`` 0)."""
        return self.identify and self.coulomb_velocity == 0.0

    @property
    def initial_coulomb_velocity(self) -> float:
        """The scale the prior starts with: the configured one, else :data:`FIXED_COULOMB_VELOCITY`
        (identification then moves it to the nearest candidate and on)."""
        return self.coulomb_velocity or FIXED_COULOMB_VELOCITY

    def validate(self) -> 'PhysicsConfig':
        if self.prior not in PRIORS:
            raise ConfigError(f'prior: must be one of {PRIORS}, got {self.prior!r}')
        if self.feedforward_mode not in FEEDFORWARD_MODES:
            raise ConfigError(f'feedforward_mode: must be one of {FEEDFORWARD_MODES}, '
                              f'got {self.feedforward_mode!r}')
        if self.feedforward_fallback not in FEEDFORWARD_FALLBACKS:
            raise ConfigError(f'feedforward_fallback: must be one of {FEEDFORWARD_FALLBACKS}, '
                              f'got {self.feedforward_fallback!r}')
        if (self.enabled or self.feedforward_mode == 'minus_gravity') and not self.urdf:
            what = f'prior: {self.prior}' if self.enabled else 'feedforward_mode: minus_gravity'
            raise ConfigError(f'{what} needs the robot model: set robot_description (URDF XML) '
                              'or urdf_path, or publish /robot_description')
        if not (isinstance(self.payload_mass_kg, (int, float)) and
                0.0 <= self.payload_mass_kg < math.inf):
            raise ConfigError(f'payload_mass_kg: must be a finite number >= 0, '
                              f'got {self.payload_mass_kg!r}')
        for name, size in (('payload_com', 3), ('gravity', 3)):
            v = getattr(self, name)
            if len(v) != size or not all(math.isfinite(float(x)) for x in v):
                raise ConfigError(f'{name}: need {size} finite numbers, got {list(v)!r}')
        c = self.identification_cutoff_hz
        if not (isinstance(c, (int, float)) and not isinstance(c, bool) and 0.0 <= c < math.inf):
            raise ConfigError(f'identification_cutoff_hz: must be a finite number >= 0 (0: the '
                              f'estimator\'s cutoff), got {c!r}')
        for name in ('identification_memory_s', 'identification_regularization',
                     'residual_trust_distance'):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 < v < math.inf):
                raise ConfigError(f'{name}: must be a finite number > 0, got {v!r}')
        v = self.coulomb_velocity
        if not (isinstance(v, (int, float)) and 0.0 <= v < math.inf):
            raise ConfigError(f'coulomb_velocity: must be a finite number >= 0 (0: identified), '
                              f'got {v!r}')
        if not isinstance(self.identify, bool):
            raise ConfigError(f'identify: expected true or false, got {self.identify!r}')
        return self


def load_urdf_text(robot_description: str = '', urdf_path: str = '') -> str | None:
    """The URDF XML from the parameters: ``robot_description`` (the XML itself) wins over
    ``urdf_path`` (a file); None when neither is set. A path that cannot be read is a ConfigError
    naming it."""
    if robot_description and robot_description.strip():
        return robot_description
    if urdf_path and urdf_path.strip():
        path = os.path.expanduser(urdf_path.strip())
        try:
            with open(path, encoding='utf-8') as f:
                return f.read()
        except OSError as exc:
            raise ConfigError(f'urdf_path: cannot read {path!r}: {exc.strerror}') from None
    return None


class RobotModel:
    """The URDF reduced to ``joint_names`` (immutable after construction; see module docstring).

    ``n`` joints in the node's order; ``model`` is the reduced ``pin.Model`` (nv == n);
    ``v_index[j]`` is joint j's velocity index in it; ``theta0`` the nominal parameters
    (``n_params = 10 n + 3 n``); ``param_scale`` a per-parameter magnitude used to measure
    relative deviations (identification's regularization).
    """

    def __init__(self, urdf: str, joint_names: Sequence[str], payload_mass_kg: float = 0.0,
                 payload_com: Sequence[float] = (0.0, 0.0, 0.0),
                 gravity: Sequence[float] = (0.0, 0.0, -9.81)) -> None:
        pin = _pin()
        try:
            full = pin.buildModelFromXML(urdf)
        except (RuntimeError, ValueError) as exc:
            raise ConfigError(f'robot_description: not a URDF Pinocchio can read: {exc}') from None
        names = list(joint_names)
        missing = [j for j in names if not full.existJointName(j)]
        if missing:
            raise ConfigError(f'joint_names: {missing} not in the URDF (its movable joints: '
                              f'{[full.names[i] for i in range(1, full.njoints)]})')
        keep = {full.getJointId(j) for j in names}
        for j in names:
            if full.joints[full.getJointId(j)].nv != 1:
                raise ConfigError(f'joint_names: {j!r} is not a one-degree-of-freedom joint')
        lock = [i for i in range(1, full.njoints) if i not in keep]
        model = pin.buildReducedModel(full, lock, pin.neutral(full)) if lock else full
        model.gravity.linear = np.asarray(gravity, dtype=np.float64)
        ids = [model.getJointId(j) for j in names]
        if payload_mass_kg > 0.0:
            last = ids[-1]
            point = pin.Inertia(float(payload_mass_kg), np.asarray(payload_com, dtype=np.float64),
                                np.zeros((3, 3)))
            model.inertias[last] = model.inertias[last] + point
        self.model = model
        self.joint_names = tuple(names)
        self.n = len(names)
        self.v_index = np.array([model.joints[i].idx_v for i in ids], dtype=np.intp)
        # q -> configuration: revolute / prismatic (nq 1) or continuous (nq 2: cos, sin)
        one = [(j, model.joints[i].idx_q) for j, i in enumerate(ids) if model.joints[i].nq == 1]
        two = [(j, model.joints[i].idx_q) for j, i in enumerate(ids) if model.joints[i].nq == 2]
        self._q1 = (np.array([j for j, _ in one], dtype=np.intp),
                    np.array([k for _, k in one], dtype=np.intp))
        self._q2 = (np.array([j for j, _ in two], dtype=np.intp),
                    np.array([k for _, k in two], dtype=np.intp))
        self._neutral = pin.neutral(model)
        #: joint_names in the model's own order with no continuous joints: no reindexing at all
        self.identity = bool((self.v_index == np.arange(self.n)).all()) and not two and \
            all(k == j for j, k in one)
        # nominal parameters, in joint_names order (body of joint j = model joint ids[j])
        self._body_of = ids
        pi0 = np.concatenate([model.inertias[i].toDynamicParameters() for i in ids])
        self.theta0 = np.concatenate((pi0, np.zeros(FRICTION_PER_JOINT * self.n)))
        self.theta0.flags.writeable = False
        self.n_params = self.theta0.size
        self.n_inertial = PARAMS_PER_BODY * self.n
        self.param_scale = self._parameter_scale(pi0)
        # the regressor's columns: Pinocchio orders bodies by joint id, we by joint_names
        order = np.argsort(np.argsort(ids))            # rank of each of our bodies in pin's order
        self._pin_cols = np.concatenate([np.arange(PARAMS_PER_BODY) + PARAMS_PER_BODY * r
                                         for r in order])
        if model.nv != self.n:       # cannot happen after the reduction; never compute garbage
            raise ConfigError(f'joint_names: the reduced URDF has {model.nv} velocities, '
                              f'expected {self.n}')
        self.kernel_geometry = self._kernel_geometry(ids)

    def _kernel_geometry(self, ids: Sequence[int]) -> np.ndarray | None:
        """The geometry part of ``kernels.rnea_prior``'s pack (one row per body in Pinocchio's
        order, then [gravity, 0]; inertial and friction columns zero), or None where the kernel
        does not apply: numba missing or disabled, or a joint that is not a one-axis revolute or
        prismatic joint (the prior then uses Pinocchio's RNEA)."""
        if kernels.rnea_prior is None:
            return None
        model, n = self.model, self.n
        pack = np.zeros((n + 1, kernels.RNEA_PACK_WIDTH))
        for k in range(n):
            jid = k + 1                                  # the reduced model: joints 1..n
            kind = model.joints[jid].shortname().replace('JointModel', '')
            if kind in _AXES:
                axis = _AXES[kind]
            elif kind in _UNALIGNED:
                axis = self._unaligned_axis(jid, prismatic=kind.startswith('P'))
            else:
                return None
            placement = model.jointPlacements[jid]
            pack[k, 0:9] = placement.rotation.reshape(-1)
            pack[k, 9:12] = placement.translation
            pack[k, 12:15] = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
            pack[k, 15] = 1.0 if kind.startswith('P') else 0.0
            pack[k, 16] = model.parents[jid] - 1
            pack[k, 17] = list(ids).index(jid)
        pack[n, 0:3] = model.gravity.linear
        pack.flags.writeable = False
        return pack

    def _unaligned_axis(self, jid: int, prismatic: bool) -> np.ndarray:
        """An unaligned joint's unit axis in its own frame: its column of the joint Jacobian in
        the LOCAL frame (``S``: (axis, 0) prismatic, (0, axis) revolute), which every Pinocchio
        version has (``JointModel.extract().axis`` is not in Pinocchio 2)."""
        pin = _pin()
        model = self.model
        data = model.createData()
        pin.computeJointJacobians(model, data, pin.neutral(model))
        column = pin.getJointJacobian(model, data, jid, pin.ReferenceFrame.LOCAL)[
            :, model.joints[jid].idx_v]
        return np.array(column[:3] if prismatic else column[3:], dtype=np.float64)

    @staticmethod
    def _parameter_scale(pi0: np.ndarray) -> np.ndarray:
        """Per-parameter magnitude: |nominal| with floors by kind (1 kg, 0.1 kg m, 0.01 kg m² per
        body), so a 100 % error of a tiny parameter is not 'free' and a zero nominal value still
        has a scale; friction: ``FRICTION_SCALE`` (see there)."""
        n = pi0.size // PARAMS_PER_BODY
        floor = np.tile(np.r_[1.0, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01], n)
        inertial = np.maximum(np.abs(pi0), floor)
        return np.concatenate((inertial, np.full(FRICTION_PER_JOINT * n, FRICTION_SCALE)))

    # ------------------------------------------------------------------ conversions
    def configuration(self, q: np.ndarray) -> np.ndarray:
        """Pinocchio's configuration vector for joint positions q (n,) in our order."""
        if self.identity:
            return q
        cfg = self._neutral.copy()
        j, k = self._q1
        cfg[k] = q[j]
        j, k = self._q2
        if j.size:
            cfg[k] = np.cos(q[j])
            cfg[k + 1] = np.sin(q[j])
        return cfg

    def to_model(self, x: np.ndarray) -> np.ndarray:
        """A velocity-like vector (n,) in our order -> Pinocchio's velocity order."""
        out = np.empty(self.n)
        out[self.v_index] = x
        return out

    # ------------------------------------------------------------------ linear form
    def friction_columns(self, qd: np.ndarray, coulomb_velocity: float) -> np.ndarray:
        """(n, 3n) friction part of the regressor: per joint [qd, tanh(qd / v_c), 1]."""
        n = self.n
        F = np.zeros((n, FRICTION_PER_JOINT * n))
        r = np.arange(n)
        F[r, 3 * r] = qd
        F[r, 3 * r + 1] = np.tanh(qd / coulomb_velocity)
        F[r, 3 * r + 2] = 1.0
        return F

    def regressor(self, data: Any, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray,
                  coulomb_velocity: float) -> np.ndarray:
        """Y (n, n_params) with ``tau = Y @ theta`` in our joint order (``data``: a
        ``model.createData()`` of the caller's)."""
        pin = _pin()
        Yp = pin.computeJointTorqueRegressor(self.model, data, self.configuration(q),
                                             self.to_model(qd), self.to_model(qdd))
        Y = np.empty((self.n, self.n_params))
        Y[:, :self.n_inertial] = Yp[self.v_index][:, self._pin_cols]
        Y[:, self.n_inertial:] = self.friction_columns(qd, coulomb_velocity)
        return Y

    def body_parameters(self, theta: np.ndarray) -> np.ndarray:
        """(n, 10) inertial parameters of each joint's body, our order."""
        return np.asarray(theta[:self.n_inertial]).reshape(self.n, PARAMS_PER_BODY)

    def friction_parameters(self, theta: np.ndarray) -> np.ndarray:
        """(n, 3): per joint viscous, Coulomb, offset."""
        return np.asarray(theta[self.n_inertial:]).reshape(self.n, FRICTION_PER_JOINT)


class PhysicsPrior:
    """The model's torque with the current parameters (per-call data of a :class:`RobotModel`).

    ``predict(q, qd, qdd)`` and ``gravity(q)`` return (n,) float64 in joint order
    (``predict_finite``: None instead of a non-finite torque); ``theta`` is a read-only view of the
    current parameters, ``version`` counts :meth:`set_parameters` calls.
    """

    def __init__(self, robot: RobotModel,
                 coulomb_velocity: float = FIXED_COULOMB_VELOCITY) -> None:
        pin = _pin()
        self.robot = robot
        self.coulomb_velocity = float(coulomb_velocity)
        self._model = robot.model.copy()
        self._data = self._model.createData()
        self._rdata = robot.model.createData()           # for regressors
        self._rnea = pin.rnea
        self._gravity = pin.computeGeneralizedGravity
        self._from_params = pin.Inertia.FromDynamicParameters
        self._v = robot.v_index
        n = robot.n
        self._fv = np.zeros(n)
        self._fc = np.zeros(n)
        self._off = np.zeros(n)
        self._qd_m = np.zeros(n)
        self._qdd_m = np.zeros(n)
        self._theta = robot.theta0.copy()
        self.version = 0
        # the compiled RNEA (kernels.rnea_prior) where it applies: its pack, per-call work rows
        self._kernel = kernels.rnea_prior if robot.kernel_geometry is not None else None
        if self._kernel is not None:
            self._pack = robot.kernel_geometry.copy()
            self._pack[n, 3] = self.coulomb_velocity
            self._work = np.zeros((n, kernels.RNEA_WORK_WIDTH))
            self._pack_rows = list(range(1, n + 1))           # the bodies' model joint ids
            self._pack_joint = self._pack[:n, 17].astype(np.intp)
            kernels.warm_up()
        self.set_parameters(robot.theta0)

    def frozen(self) -> 'PhysicsPrior':
        """A copy with the current parameters whose later calls share nothing that
        :meth:`set_parameters` or a prediction changes (for another thread)."""
        other = copy.copy(self)
        other._model = self._model.copy()
        other._data, other._rdata = other._model.createData(), self.robot.model.createData()
        for name in ('_fv', '_fc', '_off', '_qd_m', '_qdd_m', '_theta'):
            setattr(other, name, getattr(self, name).copy())
        if self._kernel is not None:
            other._pack, other._work = self._pack.copy(), np.zeros_like(self._work)
        return other

    @property
    def theta(self) -> np.ndarray:
        view = self._theta.view()
        view.flags.writeable = False
        return view

    def set_parameters(self, theta: np.ndarray) -> None:
        """Use ``theta`` (n_params,) from now on; masses are kept at ``|m| >= MIN_MASS``."""
        robot = self.robot
        theta = np.array(theta, dtype=np.float64, copy=True)
        if theta.shape != (robot.n_params,) or not np.isfinite(theta).all():
            raise ValueError(f'theta: need {robot.n_params} finite values')
        bodies = robot.body_parameters(theta)
        m = bodies[:, 0]
        small = np.abs(m) < MIN_MASS
        m[small] = np.where(m[small] < 0, -MIN_MASS, MIN_MASS)
        for j, body in enumerate(robot._body_of):
            self._model.inertias[body] = self._from_params(bodies[j])
        fr = robot.friction_parameters(theta)
        self._fv[:], self._fc[:], self._off[:] = fr[:, 0], fr[:, 1], fr[:, 2]
        if self._kernel is not None:
            pack = self._pack
            for k, jid in enumerate(self._pack_rows):
                inertia = self._model.inertias[jid]
                pack[k, 18] = inertia.mass
                pack[k, 19:22] = inertia.lever
                pack[k, 22:31] = inertia.inertia.reshape(-1)
            pack[:robot.n, 31:34] = fr[self._pack_joint]
        self._theta = theta
        self.version += 1

    def predict(self, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray) -> np.ndarray:
        """tau_prior (n,) for the state (q, qd, qdd) in joint order (NaN / Inf where the state
        or the parameters make it so)."""
        return self._torque(q, qd, qdd)[0]

    def predict_finite(self, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray
                       ) -> np.ndarray | None:
        """:meth:`predict`, or None where it is not finite (the fast path's form: the compiled
        RNEA checks while it computes)."""
        tau, finite = self._torque(q, qd, qdd)
        return tau if finite else None

    def _torque(self, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray) -> tuple[np.ndarray, bool]:
        """The torque and whether it is all finite: the compiled RNEA, else Pinocchio's."""
        if self._kernel is not None:
            tau = np.empty(self.robot.n)
            finite = self._kernel(self._vector(q), self._vector(qd), self._vector(qdd),
                                  self._pack, self._work, tau)
            return tau, bool(finite)
        tau = self._predict_pinocchio(q, qd, qdd)
        return tau, bool(np.isfinite(tau).all())

    def _vector(self, x: np.ndarray) -> np.ndarray:
        """x as the kernel needs it (contiguous float64 of n values: it does not check bounds)."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.shape != (self.robot.n,):
            raise ValueError(f'the prior needs {self.robot.n} values per joint vector, got '
                             f'shape {x.shape}')
        return x

    def _predict_pinocchio(self, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray) -> np.ndarray:
        robot = self.robot
        if robot.identity:
            tau = self._rnea(self._model, self._data, q, qd, qdd).copy()
        else:
            v = self._v
            self._qd_m[v] = qd
            self._qdd_m[v] = qdd
            tau = self._rnea(self._model, self._data, robot.configuration(q), self._qd_m,
                             self._qdd_m)[v]
        tau += self._fv * qd
        tau += self._fc * np.tanh(qd / self.coulomb_velocity)
        tau += self._off
        return tau

    def predict_many(self, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray) -> np.ndarray:
        """:meth:`predict` for (N, n) arrays (rows with NaN give NaN)."""
        out = np.full(np.shape(q), np.nan)
        for i in range(len(out)):
            if np.isfinite(q[i]).all() and np.isfinite(qd[i]).all() and np.isfinite(qdd[i]).all():
                out[i] = self.predict(q[i], qd[i], qdd[i])
        return out

    def gravity(self, q: np.ndarray) -> np.ndarray:
        """g(q) (n,) of the current parameters: the torque holding the arm still at q."""
        return self._gravity(self._model, self._data, self.robot.configuration(q))[self._v]

    def set_coulomb_velocity(self, coulomb_velocity: float) -> None:
        """Use ``tanh(qd / coulomb_velocity)`` (rad/s, > 0) as the Coulomb term's smooth sign from
        now on (identification picks it among candidates)."""
        v = float(coulomb_velocity)
        if not (0.0 < v < math.inf):
            raise ValueError(f'coulomb_velocity: must be a finite number > 0, got {v!r}')
        self.coulomb_velocity = v
        if self._kernel is not None:
            self._pack[self.robot.n, 3] = v
        self.version += 1

    def regressor(self, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray) -> np.ndarray:
        return self.robot.regressor(self._rdata, q, qd, qdd, self.coulomb_velocity)

    def report(self) -> dict[str, Any]:
        """The current parameters, readable: per joint the body's mass (kg), centre of mass (m,
        in the joint's frame) and friction; plus the relative change of every inertial parameter
        against the URDF (max)."""
        robot = self.robot
        bodies = robot.body_parameters(self._theta)
        fr = robot.friction_parameters(self._theta)
        out: dict[str, Any] = {}
        for j, name in enumerate(robot.joint_names):
            m = float(bodies[j, 0])
            out[name] = {'mass': m, 'com': (bodies[j, 1:4] / m).tolist() if abs(m) > MIN_MASS
                         else [0.0, 0.0, 0.0],
                         'viscous': float(fr[j, 0]), 'coulomb': float(fr[j, 1]),
                         'offset': float(fr[j, 2])}
        rel = np.abs(self._theta - robot.theta0)[:robot.n_inertial] / \
            robot.param_scale[:robot.n_inertial]
        out['max_relative_change'] = float(rel.max()) if rel.size else 0.0
        out['coulomb_velocity'] = self.coulomb_velocity
        return out
