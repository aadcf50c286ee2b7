"""identification.py: recovers a simulated arm's parameters from exciting motion, follows a payload
change, and stays at the URDF's values where the motion says nothing."""
import math

import numpy as np
import pytest

from invdyn_ros.pipeline.parameters import PARAMETERS
from invdyn_ros.sim.arm import ArmConfig, SimulatedArm, find_robot_urdf, perturbed_urdf_model
from invdyn_ros.sim.trajectory import FourierTrajectory
from invdyn_ros.stages.identification import COULOMB_VELOCITY_CANDIDATES, OnlineIdentification
from invdyn_ros.stages.physics import PhysicsPrior, RobotModel

UR5 = ['shoulder_pan_joint', 'shoulder_lift_joint', 'elbow_joint', 'wrist_1_joint',
       'wrist_2_joint', 'wrist_3_joint']
RATE = 100.0
#: The node's default identification memory (s).
DEFAULT_MEMORY_S = PARAMETERS['identification_memory_s'].default


def motion(seed, seconds, rate=RATE, **kw):
    traj = FourierTrajectory(6, seed=seed, **kw)
    t = np.arange(0.0, seconds, 1.0 / rate)
    return traj.sample(t)


def true_torque(arm, q, qd, qdd):
    return np.array([arm.rnea(a, b, c) for a, b, c in zip(q, qd, qdd)])


def nmse(pred, tau):
    return float(np.mean(np.mean((pred - tau) ** 2, axis=0) / np.var(tau, axis=0)))


@pytest.fixture(scope='module')
def arm():
    return SimulatedArm(ArmConfig(payload_kg=2.0, friction_eps=0.05))


def test_recovers_the_true_arm_from_a_wrong_urdf_and_predicts_unseen_motion(arm):
    robot = RobotModel(perturbed_urdf_model(find_robot_urdf('ur5').read_text(), 0.25, 1), UR5)
    prior = PhysicsPrior(robot)
    ident = OnlineIdentification(prior, memory_s=30.0, regularization=0.01, rate_hz=RATE)
    q, qd, qdd = motion(0, 30.0)
    tau = true_torque(arm, q, qd, qdd)
    q2, qd2, qdd2 = motion(5, 10.0)          # another trajectory: scored, never learned
    tau2 = true_torque(arm, q2, qd2, qdd2)
    before = nmse(prior.predict_many(q2, qd2, qdd2), tau2)
    for i in range(len(q)):
        ident.update(q[i], qd[i], qdd[i], tau[i])
    after = nmse(prior.predict_many(q2, qd2, qdd2), tau2)
    assert before > 0.2                      # +-25 % masses, no payload, no friction
    assert after < 0.01 < before / 50
    assert ident.counters['solves'] > 0 and ident.counters['solve_failures'] == 0
    # the friction it found is the arm's (the simulator's Coulomb term has the same shape)
    fr = robot.friction_parameters(prior.theta)
    np.testing.assert_allclose(fr[:3, 1], arm.coulomb[:3], rtol=0.2)
    np.testing.assert_allclose(fr[:3, 0], arm.viscous[:3], rtol=0.3, atol=0.2)


def test_follows_a_payload_change_within_a_few_memory_constants(arm):
    robot = RobotModel(find_robot_urdf('ur5').read_text(), UR5)
    prior = PhysicsPrior(robot)
    ident = OnlineIdentification(prior, memory_s=2.0, regularization=0.01, rate_hz=RATE)
    q, qd, qdd = motion(2, 40.0)
    light = arm.with_config(payload_kg=0.0)
    heavy = arm.with_config(payload_kg=4.0)
    half = len(q) // 2
    tau = np.concatenate((true_torque(light, q[:half], qd[:half], qdd[:half]),
                          true_torque(heavy, q[half:], qd[half:], qdd[half:])))
    err = np.zeros(len(q))
    for i in range(len(q)):
        err[i] = np.sqrt(np.mean((prior.predict(q[i], qd[i], qdd[i]) - tau[i]) ** 2))
        ident.update(q[i], qd[i], qdd[i], tau[i])
    settled = err[half - 200:half].mean()
    jump = err[half:half + 20].mean()
    after = err[half + int(10 * RATE):half + int(12 * RATE)].mean()    # 10 s after the change
    assert jump > 5 * settled
    assert after < max(1.5 * settled, 0.1 * jump)


def test_unexcited_parameters_stay_at_the_urdf_values():
    robot = RobotModel(find_robot_urdf('ur5').read_text(), UR5)
    prior = PhysicsPrior(robot)
    ident = OnlineIdentification(prior, memory_s=5.0, regularization=0.01, rate_hz=RATE)
    q0 = np.array([0.1, -1.2, 1.0, -1.4, -1.5, 0.2])
    # the arm held still: only gravity is seen, dynamics and friction are not excited
    tau = prior.predict(q0, np.zeros(6), np.zeros(6))
    for _ in range(500):
        ident.update(q0, np.zeros(6), np.zeros(6), tau)
    assert np.abs(prior.theta - robot.theta0).max() < 1e-6 * np.abs(robot.theta0).max() + 1e-9


def test_joint_weights_identify_the_light_joints(arm, monkeypatch):
    """Each joint's rows weighted by the inverse of its torque's variance (at most
    ``JOINT_WEIGHT_MAX``): the light joints, whose torques are small (the wrists: tenths of a N m of
    dynamics, the shoulder tens), weigh most, and with 0.05 N m of noise on every joint (about what
    the demo's 0.2 N m is behind the identification's 10 Hz estimator) every joint's model is better
    than with all weighted alike (``JOINT_WEIGHT_MAX = 1``, the rule before: the light joints'
    parameters stayed near the wrong URDF's)."""
    import invdyn_ros.stages.identification as identification
    unloaded = arm.with_config(payload_kg=0.0)
    urdf = perturbed_urdf_model(find_robot_urdf('ur5').read_text(), 0.25, 0)   # the demo's
    q, qd, qdd = motion(0, 60.0)
    tau = true_torque(unloaded, q, qd, qdd) + \
        np.random.default_rng(1).normal(0.0, 0.05, (len(q), 6))
    q2, qd2, qdd2 = motion(5, 10.0)                       # scored, never learned
    tau2 = true_torque(unloaded, q2, qd2, qdd2)

    def fit():
        prior = PhysicsPrior(RobotModel(urdf, UR5))
        ident = OnlineIdentification(prior, memory_s=DEFAULT_MEMORY_S, regularization=0.01,
                                     rate_hz=RATE)
        for i in range(len(q)):
            ident.update(q[i], qd[i], qdd[i], tau[i])
        err = prior.predict_many(q2, qd2, qdd2) - tau2
        return np.sqrt(np.mean(err ** 2, axis=0)), ident.joint_weights

    weighted, weights = fit()
    assert weights[1] == 1.0 and weights[3:].min() > 10.0, weights      # the shoulder lift: 1
    monkeypatch.setattr(identification, 'JOINT_WEIGHT_MAX', 1.0)
    alike, ones = fit()
    np.testing.assert_array_equal(ones, 1.0)
    assert (weighted < alike).all(), (weighted, alike)
    assert weighted.mean() < 0.7 * alike.mean(), (weighted, alike)


def test_bad_samples_are_rejected_and_state_round_trips():
    robot = RobotModel(find_robot_urdf('ur5').read_text(), UR5)
    prior = PhysicsPrior(robot)
    ident = OnlineIdentification(prior, rate_hz=RATE, solve_every=5)
    q, qd, qdd = motion(1, 1.0)
    assert not ident.update(q[0], qd[0], qdd[0], np.full(6, np.nan))
    assert ident.counters['rejected'] == 1
    for i in range(20):
        ident.update(q[i], qd[i], qdd[i], prior.predict(q[i], qd[i], qdd[i]) + 1.0)
    assert ident.joint_weights.min() == 1.0 < ident.joint_weights.max()
    other = OnlineIdentification(PhysicsPrior(robot), rate_hz=RATE)
    other.load_state_dict(ident.state_dict())
    np.testing.assert_array_equal(other.prior.theta, prior.theta)
    np.testing.assert_array_equal(other.joint_weights, ident.joint_weights)
    small = RobotModel(find_robot_urdf('ur5').read_text(), UR5[:5])
    with pytest.raises(ValueError):
        OnlineIdentification(PhysicsPrior(small)).load_state_dict(ident.state_dict())


def test_a_burst_of_inconsistent_samples_does_not_move_the_parameters(arm, monkeypatch):
    """Samples around a stream gap (filtered acceleration and torque that do not belong together)
    are skipped as outliers: the fit ends exactly where it ends without them; with the outlier
    test switched off, the solves it spoils give negative masses (kept out by the second guard);
    with both off the identified model is clearly worse."""
    import invdyn_ros.stages.identification as identification
    q, qd, qdd = motion(3, 10.0)
    rng = np.random.default_rng(0)
    tau = true_torque(arm, q, qd, qdd) + rng.normal(0.0, 0.2, (len(q), 6))
    burst = range(int(8 * RATE), int(8 * RATE) + 15)     # 0.15 s of samples that are not the arm's
    bad_qdd, bad_tau = qdd.copy(), tau.copy()
    bad_qdd[burst.start:burst.stop] = 50.0 * np.sign(qdd[burst.start])   # a filter transient
    bad_tau[burst.start:burst.stop] = tau[burst.start] - 20.0             # a stale, offset effort
    q2, qd2, qdd2 = motion(6, 5.0)                       # scored, never learned
    tau2 = true_torque(arm, q2, qd2, qdd2)

    def fit(with_burst, mass_check=True):
        robot = RobotModel(find_robot_urdf('ur5').read_text(), UR5)
        ident = OnlineIdentification(PhysicsPrior(robot), memory_s=5.0, regularization=0.01,
                                     rate_hz=RATE, solve_every=5)
        if not mass_check:
            ident._mass_nominal[:] = False
        for i in range(burst.stop + 20):
            if with_burst or i not in burst:
                ident.update(q[i], qd[i], bad_qdd[i], bad_tau[i])
        ident.solve()
        return nmse(ident.prior.predict_many(q2, qd2, qdd2), tau2), ident.counters

    clean, _ = fit(False)
    protected, counters = fit(True)
    assert counters['outliers'] == len(burst) and counters['inconsistent_solves'] == 0
    assert protected == pytest.approx(clean, rel=1e-9)
    monkeypatch.setattr(identification, 'OUTLIER_SIGMAS', 1e9)
    spoiled, _ = fit(True)
    assert spoiled > 100 * clean
    # the mass guard, on the fit with the joints weighted alike (weighted, this burst's solves
    # happen to keep positive masses: the outlier test above is what protects the fit)
    monkeypatch.setattr(identification, 'JOINT_WEIGHT_MAX', 1.0)
    unprotected, counters = fit(True)
    assert counters['outliers'] == 0 and counters['inconsistent_solves'] > 0   # the second guard
    unprotected, counters = fit(True, mass_check=False)
    assert counters['outliers'] == 0 and counters['inconsistent_solves'] == 0
    assert unprotected > 3 * clean


def test_a_payload_change_releases_the_flange_body_and_keeps_the_rest(arm, monkeypatch):
    """A lasting jump of the error is a change of the dynamics, most often a payload: the old
    statistics then say nothing more about the flange body and keep (at CHANGE_FORGET) what they
    say about everything else. With the node's default memory (30 s: long, because this rule
    follows payloads) the fit is back near its level before the change within 1-2 s; forgetting
    every statistic instead (the earlier rule, x 0.02) leaves it fitting a second of motion for
    all 78 parameters, and not releasing anything leaves it far off for seconds."""
    import invdyn_ros.stages.identification as identification
    q, qd, qdd = motion(4, 40.0)
    half = len(q) // 2
    tau = np.concatenate((true_torque(arm.with_config(payload_kg=0.0), q[:half], qd[:half],
                                      qdd[:half]),
                          true_torque(arm.with_config(payload_kg=4.0), q[half:], qd[half:],
                                      qdd[half:])))
    second = int(RATE)

    def run():
        prior = PhysicsPrior(RobotModel(find_robot_urdf('ur5').read_text(), UR5))
        ident = OnlineIdentification(prior, memory_s=DEFAULT_MEMORY_S, regularization=0.01,
                                     rate_hz=RATE)
        err = np.zeros(len(q))
        for i in range(len(q)):
            err[i] = np.sqrt(np.mean((prior.predict(q[i], qd[i], qdd[i]) - tau[i]) ** 2))
            ident.update(q[i], qd[i], qdd[i], tau[i])
        level = err[half - 5 * second:half].mean()
        jump = err[half:half + 20].mean()
        after = err[half + second:half + 2 * second].mean()     # 1-2 s after the change
        return level, jump, after, ident.counters

    level, jump, after, counters = run()
    assert counters['changes'] >= 1 and counters['solve_failures'] == 0
    assert jump > 100 * level                 # 4 kg on the flange: N m against < 0.03
    assert after < 0.01 * jump

    def forget_everything(self):
        for stat in (self._A, self._b):
            stat *= 0.02
        self._tt *= 0.02
        self._weight *= 0.02
    monkeypatch.setattr(OnlineIdentification, '_release_flange', forget_everything)
    _, jump_all, after_all, _ = run()
    assert after_all > 5 * after
    monkeypatch.setattr(OnlineIdentification, '_release_flange', lambda self: None)
    _, jump_none, after_none, _ = run()
    assert after_none > 0.2 * jump_none > 20 * after


def test_releasing_the_flange_body_marginalizes_it_exactly():
    """The statistics after a release are the Schur complement of the flange body's block (x
    CHANGE_FORGET): the released fit's other parameters minimize the old cost over every value of
    the flange body's parameters, and the flange body's rows and columns are zero."""
    from invdyn_ros.stages.identification import CHANGE_FORGET
    prior = PhysicsPrior(RobotModel(find_robot_urdf('ur5').read_text(), UR5))
    ident = OnlineIdentification(prior, memory_s=20.0, regularization=0.01, rate_hz=RATE)
    rng = np.random.default_rng(0)
    q, qd, qdd = motion(2, 5.0)
    tau = true_torque(SimulatedArm(ArmConfig(payload_kg=1.0)), q, qd, qdd) + \
        0.05 * rng.standard_normal((len(q), 6))
    for i in range(len(q)):
        ident.update(q[i], qd[i], qdd[i], tau[i])
    A, b, tt = ident._A.copy(), ident._b.copy(), ident._tt
    f, r = ident._flange, ident._rest
    assert list(f) == list(range(50, 60))               # wrist 3's body: the last of six
    ident._release_flange()
    assert not ident._A[f].any() and not ident._A[:, f].any() and not ident._b[f].any()
    # the old cost minimized over the flange body = the released cost / CHANGE_FORGET
    x = prior.theta[r] * (1.0 + 0.1 * rng.standard_normal(len(r)))
    y = np.linalg.lstsq(A[np.ix_(f, f)], b[f] - A[np.ix_(f, r)] @ x, rcond=None)[0]
    theta = np.zeros(len(b))
    theta[r], theta[f] = x, y
    old_min = theta @ A @ theta - 2.0 * b @ theta + tt
    released = (x @ ident._A[np.ix_(r, r)] @ x - 2.0 * ident._b[r] @ x + ident._tt) / CHANGE_FORGET
    assert released == pytest.approx(old_min, rel=1e-6, abs=1e-6 * tt)


def test_a_young_fit_is_solved_more_often_until_it_holds_half_its_memory(arm):
    """YOUNG_SOLVE_EVERY samples between solves while the effective sample count is below half of
    what memory_s holds (at the start, and after a change), solve_every after that."""
    from invdyn_ros.stages.identification import YOUNG_SOLVE_EVERY
    prior = PhysicsPrior(RobotModel(find_robot_urdf('ur5').read_text(), UR5))
    ident = OnlineIdentification(prior, memory_s=2.0, regularization=0.01, rate_hz=RATE,
                                 solve_every=50)
    q, qd, qdd = motion(3, 8.0)
    tau = true_torque(arm, q, qd, qdd)
    solved_at = [i for i in range(len(q)) if ident.update(q[i], qd[i], qdd[i], tau[i])]
    young = 0.5 * 2.0 * RATE                 # half of memory_s x rate: ~69 samples of weight
    gaps = np.diff([-1] + solved_at)
    assert gaps[0] == YOUNG_SOLVE_EVERY and set(gaps[:5]) == {YOUNG_SOLVE_EVERY}
    assert solved_at[-1] > 600 and set(gaps[-5:]) == {50}
    # the switch happens where the weight reaches half the memory: ~ln(2) memory constants
    switch = solved_at[int(np.argmax(gaps > YOUNG_SOLVE_EVERY)) - 1]
    assert young * 0.5 < switch < 2 * young


def test_the_coulomb_sign_scale_is_chosen_among_candidates():
    """An arm whose friction steps over 0.02 rad/s and a prior that starts at 0.05: with the
    candidate scales the fit moves to the one nearest 0.02 and predicts unseen motion far better
    than the same fit held at 0.05."""
    arm = SimulatedArm(ArmConfig(friction_eps=0.02))
    q, qd, qdd = motion(0, 30.0)
    tau = true_torque(arm, q, qd, qdd)
    q2, qd2, qdd2 = motion(5, 10.0)
    tau2 = true_torque(arm, q2, qd2, qdd2)
    urdf = perturbed_urdf_model(find_robot_urdf('ur5').read_text(), 0.25, 1)
    fits = {}
    for widths in (None, COULOMB_VELOCITY_CANDIDATES):
        prior = PhysicsPrior(RobotModel(urdf, UR5), 0.05)
        ident = OnlineIdentification(prior, memory_s=30.0, regularization=0.01, rate_hz=RATE,
                                     coulomb_velocities=widths)
        for i in range(len(q)):
            ident.update(q[i], qd[i], qdd[i], tau[i])
        fits[widths is None] = (prior.coulomb_velocity, nmse(prior.predict_many(q2, qd2, qdd2),
                                                            tau2), ident.counters)
    (held, held_nmse, _), (chosen, chosen_nmse, counters) = fits[True], fits[False]
    assert held == 0.05
    assert chosen == min(COULOMB_VELOCITY_CANDIDATES, key=lambda v: abs(math.log(v / 0.02)))
    assert counters['coulomb_velocity_changes'] >= 1 and counters['solve_failures'] == 0
    assert chosen_nmse < held_nmse / 3


def test_the_chosen_scale_round_trips_and_a_foreign_one_is_refused():
    robot = RobotModel(find_robot_urdf('ur5').read_text(), UR5)
    arm = SimulatedArm(ArmConfig(friction_eps=0.01))
    ident = OnlineIdentification(PhysicsPrior(robot), rate_hz=RATE,
                                 coulomb_velocities=COULOMB_VELOCITY_CANDIDATES)
    q, qd, qdd = motion(3, 10.0)
    tau = true_torque(arm, q, qd, qdd)
    for i in range(len(q)):
        ident.update(q[i], qd[i], qdd[i], tau[i])
    width = ident.prior.coulomb_velocity
    assert width == COULOMB_VELOCITY_CANDIDATES[ident.width_index]
    assert width < 0.05
    state = ident.state_dict()
    other = OnlineIdentification(PhysicsPrior(robot), rate_hz=RATE,
                                 coulomb_velocities=COULOMB_VELOCITY_CANDIDATES)
    other.load_state_dict(state)
    assert other.prior.coulomb_velocity == width
    assert other.effective_samples == ident.effective_samples
    np.testing.assert_array_equal(other.prior.predict(q[7], qd[7], qdd[7]),
                                  ident.prior.predict(q[7], qd[7], qdd[7]))
    # a fit held at that scale keeps statistics of another layout: parameters resumed, statistics
    # fresh; held at another scale, the Coulomb magnitudes would belong to another sign: refused
    held = OnlineIdentification(PhysicsPrior(robot, width), rate_hz=RATE)
    held.load_state_dict(state)
    np.testing.assert_array_equal(held.prior.theta, ident.prior.theta)
    assert held.effective_samples == 0.0
    with pytest.raises(ValueError, match='Coulomb scale'):
        OnlineIdentification(PhysicsPrior(robot, 0.05), rate_hz=RATE).load_state_dict(state)
