"""A simulated robot arm (UR5 by default) with rigid-body physics from Pinocchio.

Why this exists: the closed-loop demo needs an arm whose *true* inverse dynamics are known, so the
learned feedforward can be compared against the ideal one (`SimulatedArm.rnea`, the ceiling), and so
a payload change mid-run is a known, physical change of the dynamics.

Physics: the URDF from example-robot-data, loaded with Pinocchio; forward dynamics with Pinocchio's
articulated-body algorithm (``pin.aba``). Units: rad, rad/s, rad/s^2, N m, kg, s.

Integration: semi-implicit (symplectic) Euler with ``substeps`` internal steps per publish period
``dt`` (default 4 x 0.5 ms = 2 kHz inside a 500 Hz period). The command is held constant over the
period (zero-order hold, like a real drive between two controller cycles). Friction is smooth
Coulomb + viscous, ``coulomb * tanh(qd / eps) + viscous * qd``, opposing motion. Its slope at
``qd = 0`` is ``coulomb / eps`` (hundreds of N m s/rad), which would make an explicit velocity
update unstable on the light wrist links, so the friction term is integrated *linearly implicitly*:
``(I + h M^-1 D) dv = h * aba(q, qd, tau - f(qd))`` with ``D = df/dqd`` (diagonal). With friction
off this is exactly semi-implicit Euler on ``pin.aba``.

Joint limits come from the model; reaching one is a plastic hard stop (position clamped, an
impulse stops the joints moving into their limits, ``counters['limit_hits']`` counts
the periods in which that happened). Commanded torques
are clamped to the model's effort limits; ``measure()`` reports that applied (clamped) torque as the
joint effort, which is what a real drive reports (motor current x torque constant), so it contains
the friction the motor has to overcome -- and so does ``rnea``.
"""
from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from invdyn_ros.errors import ConfigError

#: URDF of each supported robot, relative to example-robot-data's ``robots/`` folder.
ROBOT_URDFS = {
    'ur3': 'ur_description/urdf/ur3_robot.urdf',
    'ur5': 'ur_description/urdf/ur5_robot.urdf',
    'ur10': 'ur_description/urdf/ur10_robot.urdf',
}
#: The frame the payload is attached to (the tool flange).
TOOL_FRAME = 'tool0'
GRAVITY = 9.81


def find_robot_urdf(robot: str) -> Path:
    """The URDF file of ``robot`` from the installed example-robot-data package.

    example-robot-data >= 5 ships as a cmeel wheel without a Python module (the robots live in
    ``<site-packages>/cmeel.prefix/share/example-robot-data/robots``), so the file is located
    through the wheel's installed-file record; older releases with ``example_robot_data`` and
    ``$EXAMPLE_ROBOT_DATA_MODEL_DIR`` are tried too.
    """
    if robot not in ROBOT_URDFS:
        raise ConfigError(f'robot: unknown robot {robot!r}; choose one of {sorted(ROBOT_URDFS)}')
    rel = ROBOT_URDFS[robot]
    candidates: list[Path] = []
    env = os.environ.get('EXAMPLE_ROBOT_DATA_MODEL_DIR')
    if env:
        candidates.append(Path(env) / rel)
    try:
        for f in importlib.metadata.files('example-robot-data') or ():
            if str(f).replace('\\', '/').endswith('example-robot-data/robots/' + rel):
                candidates.append(Path(f.locate()))
    except importlib.metadata.PackageNotFoundError:
        pass
    try:  # older releases with a Python module
        import example_robot_data  # type: ignore[import-not-found]
        candidates.append(Path(example_robot_data.getModelPath(rel)) / 'robots' / rel)
    except Exception:  # noqa: BLE001 - any failure here just means "not this way"
        pass
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(f'robot: URDF of {robot!r} not found; install example-robot-data '
                      '(pip install example-robot-data) or set EXAMPLE_ROBOT_DATA_MODEL_DIR')


@dataclass(frozen=True)
class ArmConfig:
    """Parameters of the simulated arm.

    ``coulomb`` / ``viscous``: per-joint friction (N m, N m s/rad); ``None`` derives them from the
    effort limits (2 % and 1 % of the limit: for the UR5 3 N m / 1.5 N m s/rad on the big joints,
    0.56 / 0.28 on the wrists -- the order of magnitude of identified UR friction).
    ``friction=False`` (or zeros) makes the arm frictionless. ``friction_eps`` (rad/s) is the
    velocity scale of the smooth Coulomb term.
    Noise stds apply to ``measure()`` only, never to the physics. ``initial_positions``: ``None``
    is the UR "home" pose (upper arm up, forearm horizontal) clipped into the joint limits.
    """

    robot: str = 'ur5'
    dt: float = 0.002
    substeps: int = 4
    friction: bool = True
    coulomb: tuple[float, ...] | None = None
    viscous: tuple[float, ...] | None = None
    friction_eps: float = 0.02
    position_noise_std: float = 0.0
    velocity_noise_std: float = 0.0
    effort_noise_std: float = 0.0
    payload_kg: float = 0.0
    payload_radius: float = 0.05
    max_payload_kg: float = 20.0
    initial_positions: tuple[float, ...] | None = None
    seed: int = 0

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the first invalid parameter."""
        if self.robot not in ROBOT_URDFS:
            raise ConfigError(f'robot: unknown robot {self.robot!r}; choose one of '
                              f'{sorted(ROBOT_URDFS)}')
        if not (np.isfinite(self.dt) and 0.0 < self.dt <= 0.1):
            raise ConfigError(f'dt: must be in (0, 0.1] s, got {self.dt!r}')
        if not (isinstance(self.substeps, (int, np.integer)) and 1 <= self.substeps <= 1000):
            raise ConfigError(f'substeps: must be an integer in [1, 1000], got {self.substeps!r}')
        if not (np.isfinite(self.friction_eps) and self.friction_eps > 0.0):
            raise ConfigError(f'friction_eps: must be > 0 rad/s, got {self.friction_eps!r}')
        for name in ('position_noise_std', 'velocity_noise_std', 'effort_noise_std'):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0.0):
                raise ConfigError(f'{name}: must be a finite value >= 0, got {value!r}')
        if not (np.isfinite(self.max_payload_kg) and self.max_payload_kg >= 0.0):
            raise ConfigError(f'max_payload_kg: must be >= 0, got {self.max_payload_kg!r}')
        if not (np.isfinite(self.payload_kg) and 0.0 <= self.payload_kg <= self.max_payload_kg):
            raise ConfigError(f'payload_kg: must be in [0, max_payload_kg={self.max_payload_kg}], '
                              f'got {self.payload_kg!r}')
        if not (np.isfinite(self.payload_radius) and self.payload_radius >= 0.0):
            raise ConfigError(f'payload_radius: must be >= 0 m, got {self.payload_radius!r}')
        for name in ('coulomb', 'viscous'):
            value = getattr(self, name)
            if value is not None:
                arr = np.asarray(value, dtype=float)
                if arr.ndim != 1 or not np.all(np.isfinite(arr)) or np.any(arr < 0.0):
                    raise ConfigError(f'{name}: must be a list of finite values >= 0, '
                                      f'got {value!r}')
        if self.initial_positions is not None:
            arr = np.asarray(self.initial_positions, dtype=float)
            if arr.ndim != 1 or not np.all(np.isfinite(arr)):
                raise ConfigError(f'initial_positions: must be a list of finite values, '
                                  f'got {self.initial_positions!r}')


#: UR "home": shoulder_lift -90 deg (upper arm up), elbow +90 deg (forearm horizontal), wrists bent.
UR_HOME = (0.0, -np.pi / 2, np.pi / 2, -np.pi / 2, -np.pi / 2, 0.0)


class SimulatedArm:
    """A Pinocchio rigid-body arm stepped at a fixed publish period with a zero-order-hold command.

    Not thread-safe: the node calls it from one callback group.
    """

    def __init__(self, config: ArmConfig | None = None) -> None:
        import pinocchio as pin  # heavy import, only where the simulator is used

        self._pin = pin
        self.config = config = config if config is not None else ArmConfig()
        config.validate()
        self.urdf_path = find_robot_urdf(config.robot)
        self.model = pin.buildModelFromUrdf(str(self.urdf_path))
        if self.model.nq != self.model.nv:
            raise ConfigError(f'robot: {config.robot!r} has joints with nq != nv (continuous or '
                              'free joints); only revolute/prismatic arms are supported')
        self.data = self.model.createData()
        self.n = n = self.model.nv
        self.joint_names: tuple[str, ...] = tuple(self.model.names[1:])
        self.effort_limits = np.array(self.model.effortLimit, dtype=float)
        self.velocity_limits = np.array(self.model.velocityLimit, dtype=float)
        self.lower_limits = np.array(self.model.lowerPositionLimit, dtype=float)
        self.upper_limits = np.array(self.model.upperPositionLimit, dtype=float)

        self.coulomb = self._per_joint('coulomb', config.coulomb, 0.02 * self.effort_limits)
        self.viscous = self._per_joint('viscous', config.viscous, 0.01 * self.effort_limits)
        if not config.friction:
            self.coulomb[:] = 0.0
            self.viscous[:] = 0.0
        self._friction_on = bool(np.any(self.coulomb > 0.0) or np.any(self.viscous > 0.0))

        # Payload: a solid sphere at the tool flange, added to the inertia of the flange's parent
        # link. The flange placement and the bare link inertia are kept to rebuild it at runtime.
        frame = self.model.frames[self.model.getFrameId(TOOL_FRAME)]
        joint = getattr(frame, 'parentJoint', None)      # Pinocchio >= 3; `parent` in 2.x
        self._payload_joint = int(frame.parent if joint is None else joint)
        self._payload_placement = frame.placement.copy()
        self._bare_inertia = self.model.inertias[self._payload_joint].copy()
        self.payload_kg = 0.0
        self.set_payload(config.payload_kg)

        self._rng = np.random.default_rng(config.seed)
        self.counters = {'steps': 0, 'limit_hits': 0, 'effort_clamped': 0}
        if config.initial_positions is None:
            q0 = np.zeros(n)
            q0[:min(n, len(UR_HOME))] = UR_HOME[:n]
        else:
            q0 = self._vector('initial_positions', config.initial_positions)
        self.reset(q0)

    # ------------------------------------------------------------------ helpers
    def _per_joint(self, name: str, value, default: np.ndarray) -> np.ndarray:
        if value is None:
            return default.copy()
        return self._vector(name, value)

    def _vector(self, name: str, value) -> np.ndarray:
        arr = np.asarray(value, dtype=float).reshape(-1)
        if arr.shape != (self.n,):
            raise ConfigError(f'{name}: expected {self.n} values (one per joint), got {arr.size}')
        return arr

    def _check(self, name: str, value) -> np.ndarray:
        """A finite float64 vector of length n, else ValueError (the state is never touched)."""
        try:
            arr = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f'{name}: expected {self.n} numbers, got {value!r}') from None
        if arr.shape != (self.n,):
            raise ValueError(f'{name}: expected shape ({self.n},), got {arr.shape}')
        if not np.all(np.isfinite(arr)):
            raise ValueError(f'{name}: contains NaN or Inf')
        return arr

    # ------------------------------------------------------------------ state
    @property
    def time(self) -> float:
        """Simulated time in s since the last ``reset`` (steps x dt, no accumulated rounding)."""
        return self._steps_since_reset * self.config.dt

    @property
    def step_count(self) -> int:
        """Periods simulated since the last ``reset`` (``step`` and ``brake_step`` both count)."""
        return self._steps_since_reset

    def reset(self, q=None, qd=None) -> None:
        """Put the arm at rest (or at ``qd``) at ``q`` (clipped into the joint limits); time = 0."""
        q = self._check('q', q) if q is not None else self._q.copy()
        self._q = np.clip(q, self.lower_limits, self.upper_limits)
        self._qd = self._check('qd', qd).copy() if qd is not None else np.zeros(self.n)
        self._tau = np.zeros(self.n)
        self._steps_since_reset = 0

    def true_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Noise-free ``(q, qd)`` (copies)."""
        return self._q.copy(), self._qd.copy()

    def measure(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(q, qd, tau_applied)`` as sensors report them: plus independent Gaussian noise."""
        c = self.config
        q = self._q + c.position_noise_std * self._rng.standard_normal(self.n)
        qd = self._qd + c.velocity_noise_std * self._rng.standard_normal(self.n)
        tau = self._tau + c.effort_noise_std * self._rng.standard_normal(self.n)
        return q, qd, tau

    @property
    def applied_torque(self) -> np.ndarray:
        """The torque applied during the last step (the command clamped to the effort limits)."""
        return self._tau.copy()

    # ------------------------------------------------------------------ dynamics
    def set_payload(self, kg: float) -> None:
        """Attach a point-like payload of ``kg`` at the tool flange (0 removes it). Runtime-safe."""
        kg = float(kg)
        if not (np.isfinite(kg) and 0.0 <= kg <= self.config.max_payload_kg):
            raise ConfigError(f'payload_kg: must be in [0, {self.config.max_payload_kg}] kg, '
                              f'got {kg!r}')
        inertia = self._bare_inertia.copy()
        if kg > 0.0:
            sphere = self._pin.Inertia.FromSphere(kg, self.config.payload_radius)
            inertia += self._payload_placement.act(sphere)
        self.model.inertias[self._payload_joint] = inertia
        self.payload_kg = kg

    def friction(self, qd) -> np.ndarray:
        """Joint friction torque (N m) that the motors must overcome at velocity ``qd``."""
        qd = np.asarray(qd, dtype=float)
        return self.coulomb * np.tanh(qd / self.config.friction_eps) + self.viscous * qd

    def _friction_and_slope(self, qd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``f(qd)`` and its diagonal Jacobian ``df/dqd`` (sech^2 = 1 - tanh^2: no overflow)."""
        eps = self.config.friction_eps
        th = np.tanh(qd / eps)
        return (self.coulomb * th + self.viscous * qd,
                self.coulomb / eps * (1.0 - th * th) + self.viscous)

    def rnea(self, q, qd, qdd) -> np.ndarray:
        """The simulator's own inverse dynamics (payload and friction included): the torque that
        makes the arm move with (q, qd, qdd) -- the ideal feedforward. Not clamped."""
        q, qd, qdd = self._check('q', q), self._check('qd', qd), self._check('qdd', qdd)
        tau = np.array(self._pin.rnea(self.model, self.data, q, qd, qdd), dtype=float)
        return tau + self.friction(qd)

    def gravity(self, q) -> np.ndarray:
        """Gravity torque (N m) at ``q`` with the current payload."""
        q = self._check('q', q)
        return np.array(self._pin.computeGeneralizedGravity(self.model, self.data, q), dtype=float)

    def mass_matrix(self, q) -> np.ndarray:
        """Joint-space inertia matrix M(q) (symmetric, kg m^2)."""
        q = self._check('q', q)
        return np.array(self._pin.crba(self.model, self.data, q), dtype=float)

    def energy(self) -> float:
        """Kinetic + potential energy (J) of the true state; the potential's zero is arbitrary."""
        pin = self._pin
        kinetic = pin.computeKineticEnergy(self.model, self.data, self._q, self._qd)
        potential = pin.computePotentialEnergy(self.model, self.data, self._q)
        return float(kinetic + potential)

    def clamp_torque(self, tau) -> np.ndarray:
        """``tau`` clipped to the model's effort limits."""
        return np.clip(tau, -self.effort_limits, self.effort_limits)

    def step(self, tau_cmd) -> None:
        """Advance one publish period ``dt`` with ``tau_cmd`` held constant (clamped to the effort
        limits). A command of the wrong shape or with NaN/Inf raises ``ValueError`` and leaves the
        arm untouched, so bad input can never reach the physics."""
        tau_cmd = self._check('tau_cmd', tau_cmd)
        tau = self.clamp_torque(tau_cmd)
        if np.any(tau != tau_cmd):
            self.counters['effort_clamped'] += 1
        pin, model, data = self._pin, self.model, self.data
        h = self.config.dt / self.config.substeps
        q, qd = self._q.copy(), self._qd.copy()
        eye = np.eye(self.n)
        lower, upper = self.lower_limits, self.upper_limits
        hit = False
        for _ in range(self.config.substeps):
            if self._friction_on:
                fric, slope = self._friction_and_slope(qd)
                qdd = pin.aba(model, data, q, qd, tau - fric)
                minv = pin.computeMinverse(model, data, q)
                # (I + h M^-1 D) dv = h qdd; minv * slope scales column j by slope[j].
                dv = np.linalg.solve(eye + h * minv * slope, h * qdd)
            else:
                dv = h * pin.aba(model, data, q, qd, tau)
            qd = qd + dv
            q = q + h * qd
            if np.any(q > upper) or np.any(q < lower):
                q, qd = self._hard_stop(q, qd)
                hit = True
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(qd))):
            # Cannot happen with clamped torques and finite inertias; never let it escape anyway.
            raise FloatingPointError('simulation produced a non-finite state; state left unchanged')
        self._q, self._qd, self._tau = q, qd, tau
        self.counters['limit_hits'] += int(hit)
        self._steps_since_reset += 1
        self.counters['steps'] += 1

    def _hard_stop(self, q: np.ndarray, qd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A plastic impact at the joint limits: clamp the position and apply the joint impulses
        that stop exactly the joints moving into their limit (``qd_S = 0``). Using the impulse
        ``M^-1[:, S] lam`` (not just zeroing ``qd_S``) keeps the impact dissipative: the kinetic
        energy drops by ``0.5 qd_S^T (M^-1_SS)^-1 qd_S`` and never rises through coupling."""
        into = ((q > self.upper_limits) & (qd > 0.0)) | ((q < self.lower_limits) & (qd < 0.0))
        q = np.clip(q, self.lower_limits, self.upper_limits)
        if into.any():
            minv = self._pin.computeMinverse(self.model, self.data, q)
            idx = np.flatnonzero(into)
            lam = np.linalg.solve(minv[np.ix_(idx, idx)], -qd[idx])
            qd = qd + minv[:, idx] @ lam
            qd[idx] = 0.0  # exact zero (the solve leaves ~1e-16)
        return q, qd

    def brake_step(self) -> None:
        """Advance one period with the brakes engaged: the arm stays where it is at rest, and the
        applied (reported) torque is the holding torque -- gravity at q, what a joint torque
        sensor reads on a braked arm -- so effort stays consistent with inverse dynamics."""
        self._qd = np.zeros(self.n)
        self._tau = self.clamp_torque(self.gravity(self._q))
        self._steps_since_reset += 1
        self.counters['steps'] += 1

    def with_config(self, **changes) -> 'SimulatedArm':
        """A fresh arm with some config fields replaced (e.g. a controller's ideal model)."""
        return SimulatedArm(replace(self.config, **changes))


def perturbed_urdf_model(urdf: str, scale: float, seed: int) -> str:
    """A copy of ``urdf`` whose link masses and inertias are multiplied by independent factors in
    ``[1 - scale, 1 + scale]`` (seeded): what a user's nominal URDF is to the real arm. Used by
    the demo and the tests; the joints and kinematics are untouched."""
    import xml.etree.ElementTree as ET  # noqa: PLC0415
    rng = np.random.default_rng(seed)
    root = ET.fromstring(urdf)
    for link in root.iter('link'):
        inertial = link.find('inertial')
        if inertial is None:
            continue
        k = 1.0 + scale * rng.uniform(-1.0, 1.0)
        mass = inertial.find('mass')
        if mass is not None:
            mass.set('value', repr(float(mass.get('value')) * k))
        inertia = inertial.find('inertia')
        if inertia is not None:
            ki = 1.0 + scale * rng.uniform(-1.0, 1.0)
            for key in ('ixx', 'ixy', 'ixz', 'iyy', 'iyz', 'izz'):
                if inertia.get(key) is not None:
                    inertia.set(key, repr(float(inertia.get(key)) * ki))
    return ET.tostring(root, encoding='unicode')


__all__ = ['ArmConfig', 'SimulatedArm', 'find_robot_urdf', 'perturbed_urdf_model', 'ROBOT_URDFS',
           'TOOL_FRAME', 'UR_HOME', 'GRAVITY']
