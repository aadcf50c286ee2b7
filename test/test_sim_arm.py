"""SimulatedArm: the physics agrees with Pinocchio, conserves/dissipates energy as it should, and
its inverse dynamics (the ideal feedforward) is consistent with its forward dynamics."""
import numpy as np
import pytest

pin = pytest.importorskip('pinocchio')

from invdyn_ros.errors import ConfigError  # noqa: E402
from invdyn_ros.sim.arm import GRAVITY, TOOL_FRAME, UR_HOME, ArmConfig, SimulatedArm  # noqa: E402
from invdyn_ros.sim.trajectory import FourierTrajectory  # noqa: E402

UR5_NAMES = ('shoulder_pan_joint', 'shoulder_lift_joint', 'elbow_joint',
             'wrist_1_joint', 'wrist_2_joint', 'wrist_3_joint')
ZERO_FRICTION = dict(coulomb=(0.0,) * 6, viscous=(0.0,) * 6)
# A pose from which the free arm falls for 1 s without reaching a joint limit.
FREE_FALL_POSE = (0.0, -0.8, 0.5, -1.5, -1.57, 0.0)


def rk4_free_fall(model, q, v, horizon, h):
    """Independent reference: classic RK4 on pin.aba with zero torque."""
    data = model.createData()
    zero = np.zeros(model.nv)

    def f(q, v):
        return v, pin.aba(model, data, q, v, zero).copy()

    accelerations = []
    for _ in range(int(round(horizon / h))):
        k1 = f(q, v)
        accelerations.append(k1[1])
        k2 = f(q + h / 2 * k1[0], v + h / 2 * k1[1])
        k3 = f(q + h / 2 * k2[0], v + h / 2 * k2[1])
        k4 = f(q + h * k3[0], v + h * k3[1])
        q = q + h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        v = v + h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
    return q, v, np.max(np.abs(accelerations))


def fall(substeps, horizon=0.2, **overrides):
    arm = SimulatedArm(ArmConfig(substeps=substeps, initial_positions=FREE_FALL_POSE,
                                 **{**ZERO_FRICTION, **overrides}))
    for _ in range(int(round(horizon / arm.config.dt))):
        arm.step(np.zeros(arm.n))
    return arm


def test_model_is_the_ur5():
    arm = SimulatedArm()
    assert arm.joint_names == UR5_NAMES
    np.testing.assert_allclose(arm.effort_limits, [150, 150, 150, 28, 28, 28])
    assert np.all(arm.lower_limits < arm.upper_limits)
    q, qd = arm.true_state()
    np.testing.assert_allclose(q, UR_HOME)
    np.testing.assert_array_equal(qd, 0.0)


def test_free_fall_matches_independent_rk4_with_first_order_convergence():
    horizon = 0.2
    q0 = np.array(FREE_FALL_POSE)
    coarse, fine = fall(4, horizon), fall(8, horizon)
    q_ref, _, max_qdd = rk4_free_fall(coarse.model, q0, np.zeros(6), horizon, 1e-4)
    err_coarse = np.max(np.abs(coarse.true_state()[0] - q_ref))
    err_fine = np.max(np.abs(fine.true_state()[0] - q_ref))
    h = coarse.config.dt / coarse.config.substeps
    # Euler-type global error ~ h * T * max|qdd| / 2; allow a factor 2 on that.
    assert err_coarse < h * horizon * max_qdd, (err_coarse, h * horizon * max_qdd)
    # Halving the step halves the error (first order), so the error really is discretization.
    assert 1.6 < err_coarse / err_fine < 2.5
    assert coarse.counters['limit_hits'] == 0
    assert coarse.time == pytest.approx(horizon)


def test_energy_is_conserved_without_friction():
    arm = SimulatedArm(ArmConfig(initial_positions=FREE_FALL_POSE, **ZERO_FRICTION))
    e0 = arm.energy()
    energies, kinetic = [], []
    for _ in range(500):  # 1 s
        arm.step(np.zeros(6))
        q, qd = arm.true_state()
        energies.append(arm.energy())
        kinetic.append(pin.computeKineticEnergy(arm.model, arm.model.createData(), q, qd))
    assert arm.counters['limit_hits'] == 0
    assert max(kinetic) > 10.0  # it really moved (the arm falls and swings)
    drift = np.max(np.abs(np.array(energies) - e0)) / max(kinetic)
    assert drift < 0.02, drift


def test_friction_dissipates_exactly_the_friction_work():
    arm = SimulatedArm(ArmConfig(initial_positions=FREE_FALL_POSE))  # default friction
    e0 = arm.energy()
    energies, work = [], 0.0
    for _ in range(500):
        arm.step(np.zeros(6))
        _, qd = arm.true_state()
        work += qd @ arm.friction(qd) * arm.config.dt
        energies.append(arm.energy())
    energies = np.array(energies)
    assert np.all(np.diff(energies) <= 1e-9)  # zero torque + friction: never gains energy
    assert e0 - energies[-1] > 10.0
    assert e0 - energies[-1] == pytest.approx(work, rel=0.03)


def test_payload_adds_m_g_r_to_the_shoulder_gravity_torque():
    arm = SimulatedArm()
    q = np.zeros(6)  # UR5 stretched out horizontally: the largest lever arm
    g0 = arm.gravity(q)
    mass = 2.0
    arm.set_payload(mass)
    g1 = arm.gravity(q)
    # Lever arm: the horizontal distance of the flange from the shoulder_lift axis.
    data = arm.model.createData()
    pin.framesForwardKinematics(arm.model, data, q)
    joint = data.oMi[arm.model.getJointId('shoulder_lift_joint')]
    axis = joint.rotation @ np.array([0.0, 1.0, 0.0])  # UR5 lift axis is the joint's y axis
    lever = data.oMf[arm.model.getFrameId(TOOL_FRAME)].translation - joint.translation
    moment = np.cross(lever, np.array([0.0, 0.0, -mass * GRAVITY])) @ axis
    r = np.linalg.norm(np.cross(axis, [0.0, 0.0, 1.0]) @ lever)
    assert r > 0.8  # 0.425 + 0.392 m of links
    assert abs(g1[1] - g0[1]) == pytest.approx(mass * GRAVITY * r, rel=1e-9)
    assert g1[1] - g0[1] == pytest.approx(-moment, rel=1e-9)
    assert g1[0] == pytest.approx(g0[0], abs=1e-9)  # the pan axis is vertical
    arm.set_payload(0.0)
    np.testing.assert_allclose(arm.gravity(q), g0, atol=1e-12)


def test_set_payload_rejects_bad_values():
    arm = SimulatedArm()
    for bad in (-1.0, float('nan'), float('inf'), 1e3):
        with pytest.raises(ConfigError, match='payload_kg'):
            arm.set_payload(bad)
    assert arm.payload_kg == 0.0


def test_rnea_command_makes_the_arm_follow_the_reference():
    arm = SimulatedArm(ArmConfig(payload_kg=3.0))  # friction and payload on
    traj = FourierTrajectory(6, seed=3, center=UR_HOME, lower=arm.lower_limits,
                             upper=arm.upper_limits, ramp_s=0.0)
    q0, qd0, _ = traj.sample(0.0)
    arm.reset(q0, qd0)
    # Control: the same arm driven by the feedforward of a model without the payload drifts off.
    unaware = SimulatedArm(ArmConfig(payload_kg=0.0))
    driven = SimulatedArm(ArmConfig(payload_kg=3.0))
    driven.reset(q0, qd0)
    half = arm.config.dt / 2  # ZOH: sampling the reference mid-period is second-order accurate
    err, err_wrong = [], []
    for _ in range(250):  # 0.5 s open loop (the arm is unstable open loop: errors compound)
        t = arm.time
        ref = traj.sample(t + half)
        arm.step(arm.rnea(*ref))
        driven.step(unaware.rnea(*ref))
        q_ref = traj.sample(arm.time)[0]
        err.append(np.max(np.abs(arm.true_state()[0] - q_ref)))
        err_wrong.append(np.max(np.abs(driven.true_state()[0] - q_ref)))
    assert max(err) < 1e-3, max(err)
    assert max(err_wrong) > 20 * max(err)


def test_torque_is_clamped_and_reported_as_effort():
    arm = SimulatedArm()
    arm.step(np.array([1e4, -1e4, 0.0, 100.0, 0.0, 0.0]))
    np.testing.assert_allclose(arm.applied_torque, [150, -150, 0, 28, 0, 0])
    _, _, effort = arm.measure()
    np.testing.assert_allclose(effort, [150, -150, 0, 28, 0, 0])
    assert arm.counters['effort_clamped'] == 1


@pytest.mark.parametrize('bad', [np.zeros(5), np.array([0, 0, np.nan, 0, 0, 0]),
                                 np.array([np.inf, 0, 0, 0, 0, 0]), 'abc'])
def test_bad_command_raises_and_leaves_state_untouched(bad):
    arm = SimulatedArm()
    arm.step(np.zeros(6))
    before = arm.true_state(), arm.time
    with pytest.raises(ValueError):
        arm.step(bad)
    after = arm.true_state(), arm.time
    np.testing.assert_array_equal(before[0][0], after[0][0])
    np.testing.assert_array_equal(before[0][1], after[0][1])
    assert before[1] == after[1]


def test_joint_limit_is_a_dissipative_hard_stop():
    arm = SimulatedArm(ArmConfig(**ZERO_FRICTION))
    q = np.array(UR_HOME)
    q[2] = arm.upper_limits[2] - 0.01  # elbow 0.01 rad from its limit, driven into it
    arm.reset(q, np.array([0.5, -0.3, 2.0, 0.0, 0.0, 0.0]))
    for _ in range(50):
        arm.step(arm.gravity(arm.true_state()[0]) + np.array([0, 0, 20.0, 0, 0, 0]))
        q_now, _ = arm.true_state()
        assert np.all(q_now <= arm.upper_limits) and np.all(q_now >= arm.lower_limits)
    assert arm.counters['limit_hits'] > 0
    assert arm.true_state()[0][2] == pytest.approx(arm.upper_limits[2])
    assert arm.true_state()[1][2] == pytest.approx(0.0, abs=1e-12)


def test_impact_never_adds_kinetic_energy():
    arm = SimulatedArm(ArmConfig(**ZERO_FRICTION))
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.uniform(arm.lower_limits, arm.upper_limits)
        q[2] = arm.upper_limits[2] + 1e-3
        qd = rng.normal(size=6)
        qd[2] = abs(qd[2]) + 0.1
        m_before = arm.mass_matrix(np.clip(q, arm.lower_limits, arm.upper_limits))
        q2, qd2 = arm._hard_stop(q.copy(), qd.copy())
        assert qd2[2] == 0.0
        assert 0.5 * qd2 @ m_before @ qd2 <= 0.5 * qd @ m_before @ qd + 1e-12


def test_measurement_noise_has_the_configured_std_and_is_seeded():
    cfg = ArmConfig(position_noise_std=0.01, velocity_noise_std=0.02, effort_noise_std=0.5, seed=7)
    arm = SimulatedArm(cfg)
    samples = [arm.measure() for _ in range(4000)]
    q = np.array([s[0] for s in samples]) - np.array(UR_HOME)
    qd = np.array([s[1] for s in samples])
    tau = np.array([s[2] for s in samples])
    assert np.std(q) == pytest.approx(0.01, rel=0.05)
    assert np.std(qd) == pytest.approx(0.02, rel=0.05)
    assert np.std(tau) == pytest.approx(0.5, rel=0.05)
    again = SimulatedArm(cfg).measure()
    np.testing.assert_array_equal(again[0], samples[0][0])
    # The physics itself is noise-free.
    np.testing.assert_array_equal(arm.true_state()[0], UR_HOME)


@pytest.mark.parametrize('field, value', [('dt', 0.0), ('substeps', 0), ('friction_eps', -1.0),
                                          ('position_noise_std', float('nan')),
                                          ('payload_kg', -1.0), ('coulomb', (1.0, -2.0)),
                                          ('robot', 'ur42')])
def test_config_validation_names_the_parameter(field, value):
    with pytest.raises(ConfigError, match=field):
        SimulatedArm(ArmConfig(**{field: value}))


def test_wrong_length_per_joint_parameter_is_a_config_error():
    with pytest.raises(ConfigError, match='viscous'):
        SimulatedArm(ArmConfig(viscous=(1.0, 2.0)))
